"""Issue 21, finding 9: storage faults. A full disk, a read-only file, a PostgreSQL server
stopped or out of connections answer 503 with Retry-After and a French problem (a French page
for the pages), /readyz says so, the command line says so in French with its own exit code, and
nothing accepted is lost or half-written."""

import asyncio
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from app.config import Settings
from app.db import (
    RETRY_AFTER_SECONDS,
    Db,
    _write_locks,
    insert_row,
    make_engine,
    migrate,
    storage_fault,
    writing,
)
from app.main import create_app
from app.models import DataVersion, Role, User
from app.places.importing import import_places, place_ids_by_source_id
from app.places.sources import read_source
from app.services.accounts import open_session
from app.services.commune_reference import Reference
from app.services.communes import import_reference
from app.services.demo import DEMO_PLACES
from app.services.keys import create_key
from app.web.session import COOKIE
from tests.conftest import World, orientation_body, serving
from tests.pgserver import postgres_server
from tests.test_web import form, login

PROBLEM = "application/problem+json"
UNAVAILABLE_EXIT = 69
TABLES = (
    "orientation",
    "referral",
    "contact",
    "handoff_event",
    "outbox",
    "idempotency_record",
    "contact_read",
)


def _counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {
            t: int(connection.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one())
            for t in TABLES
        }


def _is_503(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
    assert answer.headers["content-type"].startswith(PROBLEM)
    problem = answer.json()
    assert problem["status"] == 503 and "Réessayez" in problem["detail"], problem


def _run(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_fault_on_the_drivers_own_cursor_is_classified_too(engine: Engine) -> None:
    """The hot path's statements skip SQLAlchemy's execution (app.db.insert_row, the webhooks'
    version): their driver errors still reach app.db.storage_fault wrapped as SQLAlchemy wraps
    its own, so that a fault there is a 503 too, not a 500. Here a transaction that may not
    write, on either database."""
    sqlite = engine.dialect.name == "sqlite"
    # One connection of its own, thrown away after: a read-only connection returned to the
    # session-wide pool would make every later test's writes fail.
    connection = engine.connect()
    try:
        connection.exec_driver_sql(
            "PRAGMA query_only = ON" if sqlite else "SET TRANSACTION READ ONLY"
        )
        with Session(bind=connection) as session, pytest.raises(DBAPIError) as caught:
            insert_row(session, DataVersion, {"name": "essai", "version": 1})
        reason = storage_fault(caught.value)
        assert reason is not None and "lecture seule" in reason, caught.value
    finally:
        connection.invalidate()
        connection.close()


def test_a_group_commit_answers_after_its_commit_and_fails_whole_when_sqlite_ends_it(
    engine: Engine,
) -> None:
    """SQLite writes of one turn of the loop share a COMMIT (app.db.Db.write, grouped): each is
    answered after it. When SQLite ends the transaction on a member's error (as it does on a
    full disk: it rolls back, then reports SQLITE_FULL, made here by hand since a disk fills
    when it pleases), every member written before is lost with it and is told so as a storage
    fault (a 503), the one that comes after it gets a transaction of its own, and the write
    lock is free again."""
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL writes in the thread pool, a transaction each")
    db = Db(engine, Settings())
    order: list[str] = []

    def committed(_connection: object) -> None:
        order.append("commit")

    def add(name: str, lose: bool = False) -> Callable[[Session], str]:
        def use_case(session: Session) -> str:
            with writing(session):
                insert_row(session, DataVersion, {"name": name, "version": 1})
                if lose:
                    driver = session.connection().connection.driver_connection
                    assert driver is not None
                    driver.execute("ROLLBACK")
                    full = sqlite3.OperationalError("database or disk is full")
                    full.sqlite_errorcode = sqlite3.SQLITE_FULL
                    raise DBAPIError.instance(
                        "INSERT", None, full, sqlite3.Error, dialect=engine.dialect
                    )
                session.commit()
            return name

        return use_case

    async def answer(name: str, lose: bool = False) -> str:
        written = await db.write(add(name, lose), grouped=True)
        order.append("answer")
        return written

    async def both() -> tuple[list[str], list[str], tuple[object, ...]]:
        first = await asyncio.gather(*(answer(f"groupe-{i}") for i in range(3)))
        seen = list(order)
        second = await asyncio.gather(
            answer("groupe-3"),
            answer("groupe-4", lose=True),
            answer("groupe-5"),
            return_exceptions=True,
        )
        return first, seen, second

    event.listen(engine, "commit", committed)
    try:
        first, seen, second = asyncio.run(both())
    finally:
        event.remove(engine, "commit", committed)
        with engine.begin() as connection:
            stored = (
                connection.execute(
                    text("SELECT name FROM data_version WHERE name LIKE 'groupe-%' ORDER BY name")
                )
                .scalars()
                .all()
            )
            connection.execute(text("DELETE FROM data_version WHERE name LIKE 'groupe-%'"))
    assert first == ["groupe-0", "groupe-1", "groupe-2"]
    assert seen == ["commit", "answer", "answer", "answer"]  # one COMMIT, then the answers
    for lost in second[:2]:
        assert isinstance(lost, DBAPIError) and storage_fault(lost) is not None, repr(lost)
    assert second[2] == "groupe-5"
    assert stored == ["groupe-0", "groupe-1", "groupe-2", "groupe-5"]
    lock = _write_locks[engine]
    assert lock.acquire(blocking=False)
    lock.release()


# --- a small disk, mounted by the test ---------------------------------------------------------


@contextmanager
def small_disk(where: Path, size: int) -> Iterator[Path]:
    """A tmpfs of `size` bytes at `where` (root only), unmounted at the end."""
    where.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs (a disk that fills up) needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"this machine refuses a tmpfs mount: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _fill(disk: Path) -> Path:
    """Fills the disk to its last byte; returns the filler, to remove to free it."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as out:
        for chunk in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    out.write(b"\0" * chunk)
            except OSError:
                pass
    return filler


def _sqlite_copy(engine: Engine, disk: Path) -> str:
    """The test database (its keys and places), copied whole onto `disk`."""
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    assert engine.url.database
    shutil.copyfile(engine.url.database, disk / "passerelle.db")
    return f"sqlite:///{disk / 'passerelle.db'}"


@pytest.mark.stress
def test_a_full_disk_answers_503_says_so_in_readyz_and_loses_nothing(
    engine: Engine, world: World, tmp_path: Path
) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("a full disk is a SQLite file's fault; PostgreSQL's are tested below")
    assert engine.url.database
    size = os.path.getsize(engine.url.database) + (12 << 20)
    with small_disk(tmp_path / "disk", size) as disk:
        url = _sqlite_copy(engine, disk)
        copy = make_engine(url)
        with (
            serving(url, tmp_path / "server.log") as server,
            httpx.Client(base_url=server.url, timeout=30) as http,
        ):
            agent, med = world.auth("agent_tulle"), world.auth("med_tulle")
            before = http.post("/v1/orientations", headers=agent, json=orientation_body())
            assert before.status_code == 201, before.text
            referral_id = before.json()["referral"]["id"]
            assert http.get("/readyz").status_code == 200
            counted = _counts(copy)
            filler = _fill(disk)

            # Every write refused whole, as a 503 that says why and when to come back.
            keyed = {**agent, "Idempotency-Key": "plein-1"}
            _is_503(http.post("/v1/orientations", headers=keyed, json=orientation_body()))
            full = http.post("/v1/orientations", headers=agent, json=orientation_body())
            _is_503(full)
            # Arriving together (on SQLite, one group commit): each of them refused whole.
            with ThreadPoolExecutor(6) as pool:
                together = list(
                    pool.map(
                        lambda _: http.post(
                            "/v1/orientations", headers=agent, json=orientation_body()
                        ),
                        range(12),
                    )
                )
            for answer in together:
                _is_503(answer)
            assert "plein" in full.json()["detail"]
            # Contact data is shown only with its read logged: no log, no data, and a 503.
            read = http.get(f"/v1/referrals/{referral_id}", headers=med)
            _is_503(read)
            assert "Jeanne" not in read.text
            ready = http.get("/readyz")
            assert ready.status_code == 503 and "plein" in ready.json()["detail"]
            # A page answers a page, in French.
            with httpx.Client(base_url=server.url, timeout=30) as browser:
                csrf = login(browser, world, "agent_tulle")  # type: ignore[arg-type]
                page = browser.post("/agent", data=form(csrf=csrf))
            assert page.status_code == 503 and page.headers["retry-after"]
            assert page.headers["content-type"].startswith("text/html")
            assert "Service momentanément indisponible" in page.text and "Réessayez" in page.text
            assert _counts(copy) == counted  # nothing half-written

            # Room again: the same key does the work once, and /readyz is ready again.
            filler.unlink()
            again = http.post("/v1/orientations", headers=keyed, json=orientation_body())
            assert again.status_code == 201, again.text
            replay = http.post("/v1/orientations", headers=keyed, json=orientation_body())
            assert replay.json()["id"] == again.json()["id"]
            assert http.get(f"/v1/referrals/{referral_id}", headers=med).status_code == 200
            for _ in range(2 * RETRY_AFTER_SECONDS * 10):
                if http.get("/readyz").status_code == 200:
                    break
                time.sleep(0.1)
            else:
                pytest.fail("/readyz stayed 503 once the disk had room again")
            after = _counts(copy)
            assert after["orientation"] == counted["orientation"] + 1
            assert after["referral"] == counted["referral"] + 1
            assert after["idempotency_record"] == counted["idempotency_record"] + 1
            assert after["contact_read"] > counted["contact_read"]
        copy.dispose()


@pytest.mark.usefixtures("world")
def test_a_read_only_sqlite_file_at_start_is_a_french_error(engine: Engine, tmp_path: Path) -> None:
    """With or without its write-ahead log beside it, a read-only database stops `serve` and
    `migrate` at once, in French, exit code 69 (EX_UNAVAILABLE), no traceback."""
    if engine.dialect.name != "sqlite":
        pytest.skip("a read-only file is SQLite's; PostgreSQL's start is tested below")
    files = tmp_path / "files"
    files.mkdir()
    url = _sqlite_copy(engine, files)
    if os.geteuid() == 0:  # root writes through file modes: a read-only bind mount instead
        target = tmp_path / "ro"
        target.mkdir()
        bound = subprocess.run(["mount", "--bind", str(files), str(target)], capture_output=True)
        if bound.returncode != 0:
            pytest.skip("as root, a read-only file needs a read-only bind mount: refused here")
        subprocess.run(["mount", "-o", "remount,ro,bind", str(target)], check=True)
        url = f"sqlite:///{target / 'passerelle.db'}"
    else:
        (files / "passerelle.db").chmod(0o444)
        files.chmod(0o555)
    try:
        for log_beside in (False, True):
            # Alone, SQLite cannot open its write-ahead log; with the log there (a reader
            # holds it open), it opens and refuses the first write.
            reader = sqlite3.connect(files / "passerelle.db") if log_beside else None
            if reader is not None:
                reader.execute("SELECT COUNT(*) FROM place").fetchone()
                assert (files / "passerelle.db-shm").exists()
            for command in (("migrate",), ("serve", "--port", "1")):
                done = _run(url, *command)
                assert done.returncode == UNAVAILABLE_EXIT, done.stdout + done.stderr
                assert "lecture seule" in done.stderr, done.stderr
                assert "Traceback" not in done.stderr + done.stdout
            if reader is not None:
                reader.close()
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", "-l", str(tmp_path / "ro")], capture_output=True)
        else:
            files.chmod(0o755)


# --- PostgreSQL stopped, or out of connections -------------------------------------------------


def _world(engine: Engine, reference: Reference) -> World:
    migrate(engine)
    with Session(engine) as session:
        import_reference(session, reference)
        import_places(session, read_source(DEMO_PLACES))
        places = place_ids_by_source_id(session)
        tokens = {}
        for name, role, kwargs in (
            ("agent_tulle", Role.AGENT, {"place_id": places["demo-fs-tulle"]}),
            ("med_tulle", Role.MEDIATEUR, {"place_id": places["demo-med-tulle"]}),
        ):
            _, tokens[name] = create_key(session, role, name=name, **kwargs)
    return World(places, tokens)


def _data_directory(url: str) -> str:
    with psycopg.connect(url) as connection:
        return str(connection.execute("SHOW data_directory").fetchone()[0])  # type: ignore[index]


def _pg_ctl(data: str, *args: str) -> None:
    """pg_ctl on the server of that data directory (as `postgres` when root, as it runs);
    `start` again with the options it was started with."""
    installed = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    bindir = Path(shutil.which("pg_ctl") or installed[-1]).resolve().parent
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    extra: list[str] = []
    if args[0] == "start":  # its log to a file: a pipe would hold this call open for ever
        options = (Path(data) / "postmaster.opts").read_text().strip().split(" ", 1)[1]
        log = str(Path(data).parent / "restarted.log")
        extra = ["-o", options.replace(f'"-D" "{data}"', ""), "-l", log]
    subprocess.run(
        [*prefix, str(bindir / "pg_ctl"), "-D", data, "-w", *extra, *args],
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.mark.stress
def test_postgresql_stopped_or_out_of_connections_answers_503_then_recovers(
    reference: Reference,
) -> None:
    with postgres_server("max_connections=12") as (host, port):
        url = f"postgresql+psycopg://postgres@{host}:{port}/postgres"
        raw = f"postgresql://postgres@{host}:{port}/postgres"
        engine = make_engine(url)
        world = _world(engine, reference)
        app = create_app(engine, Settings())
        with TestClient(app, raise_server_exceptions=False) as client:
            agent = world.auth("agent_tulle")
            assert (
                client.post("/v1/orientations", headers=agent, json=orientation_body()).status_code
                == 201
            )
            counted = _counts(engine)

            # Out of connections: everything the server allows is taken by someone else.
            engine.dispose()
            hogs = []
            with pytest.raises(psycopg.OperationalError):
                for _ in range(20):
                    hogs.append(psycopg.connect(raw))
            _is_503(client.post("/v1/orientations", headers=agent, json=orientation_body()))
            assert client.get("/readyz").status_code == 503
            for hog in hogs:
                hog.close()
            assert (
                client.post("/v1/orientations", headers=agent, json=orientation_body()).status_code
                == 201
            )

            # A person signed in: her session is read from the database, so is her page.
            person = User(email="marie@example.org", first_name="Marie")
            with Session(engine, expire_on_commit=False) as session:
                session.add(person)
                session.commit()
            with Session(engine) as session:
                token = open_session(session, person.id, "lien", 10)
            cookie = app.state.web_signer.dumps({"k": None, "c": "csrf", "s": token})
            client.cookies.set(COOKIE, cookie)
            assert client.get("/agent", follow_redirects=False).status_code in (200, 303)

            # Stopped: refused connections, a 503 (never a 500), a French reason.
            data = _data_directory(raw)
            _pg_ctl(data, "stop", "-m", "fast")
            try:
                down = client.post(
                    "/v1/orientations",
                    headers={**agent, "Idempotency-Key": "arret-1"},
                    json=orientation_body(),
                )
                _is_503(down)
                assert "injoignable" in down.json()["detail"]
                _is_503(client.get("/v1/referrals", headers=world.auth("med_tulle")))
                ready = client.get("/readyz")
                assert ready.status_code == 503 and "injoignable" in ready.json()["detail"]
                page = client.get("/agent", follow_redirects=False)
                assert page.status_code == 503 and page.headers["retry-after"]
                assert page.headers["content-type"].startswith("text/html")
                assert "Service momentanément indisponible" in page.text
                assert "injoignable" in page.text and COOKIE not in page.headers.get(
                    "set-cookie", ""
                )
                client.cookies.clear()
            finally:
                _pg_ctl(data, "start")
            again = client.post(
                "/v1/orientations",
                headers={**agent, "Idempotency-Key": "arret-1"},
                json=orientation_body(),
            )
            assert again.status_code == 201, again.text
            after = _counts(engine)
            assert after["orientation"] == counted["orientation"] + 2
            assert after["referral"] == counted["referral"] + 2
        engine.dispose()


def test_postgresql_unreachable_at_start_is_a_french_error() -> None:
    with postgres_server() as (host, port):
        pass  # started and stopped: nothing listens there any more
    done = _run(f"postgresql+psycopg://postgres@{host}:{port}/postgres", "serve", "--port", "1")
    assert done.returncode == UNAVAILABLE_EXIT, done.stdout + done.stderr
    assert "injoignable" in done.stderr and "Traceback" not in done.stderr + done.stdout
