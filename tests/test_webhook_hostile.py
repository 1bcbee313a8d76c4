"""Issue 21, webhooks: the URL parsed and normalised at subscription, the address checked
being the address connected to, the delivery bounded in time and in what it reads, a message
that can never be sent dead at once without holding others back. Receivers are real servers
on the loopback; the app and the delivery are the real ones."""

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine

from app.config import Settings
from app.db import Db
from app.main import create_app
from app.notifications import outbox, webhook_address
from tests.conftest import Mailbox, World, count, orientation_body

PROBLEM = "application/problem+json"


# --- 1, 2, 3, 8, 10. webhooks: the URL, the address connected to, the delivery's bounds -----


class RawReceiver:
    """A TCP server on the loopback that answers every connection with `behave(conn)`: slow,
    huge or healthy answers, as a careless or hostile receiver would send them."""

    def __init__(self, behave: Callable[[socket.socket], None]) -> None:
        self.behave, self.requests = behave, list[bytes]()
        self.answered = threading.Event()  # a behaviour ended (done, or the client hung up)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/crochet"
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.listener.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:  # closed
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            head = b""
            with contextlib.suppress(OSError):
                while b"\r\n\r\n" not in head and len(head) < 65536:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    head += chunk
            self.requests.append(head)
            with contextlib.suppress(OSError):
                self.behave(conn)
            self.answered.set()

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


def _healthy(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def _subscribe(client: TestClient, world: World, url: str, who: str = "agent_tulle") -> Any:
    return client.post(
        "/v1/webhooks", json={"url": url, "events": ["referral.created"]}, headers=world.auth(who)
    )


@pytest.fixture
def hook_settings(mailbox: Mailbox) -> Settings:
    return Settings(
        smtp_url=f"smtp://127.0.0.1:{mailbox.port}",
        public_url="https://passerelle.exemple.fr",
        outbox_check_seconds=3600,  # each test delivers when it means to
        outbox_max_attempts=3,
        webhook_allow_private=True,  # the receivers are on the loopback
    )


@pytest.fixture
def hooks(engine: Engine, hook_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(engine, hook_settings), raise_server_exceptions=False) as c:
        yield c


def _deliver(engine: Engine, settings: Settings) -> outbox.DeliveryReport:
    return asyncio.run(outbox.deliver_due(Db(engine, settings)))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8971/p\u0001",
        "http://127.0.0.1:8971/p\x7f",
        "https://exemple.fr/a b",
        "https://127.0.0.1:99999/",
        "https://127.0.0.1:0/",
        "https://exemple.fr:abc/",
        "https://[::1",
        "https://exemple.fr:443:80/",
        "https://exa_mple.fr/",
        "https:///chemin",
    ],
)
def test_malformed_webhook_urls_are_a_french_422(
    hooks: TestClient, world: World, engine: Engine, url: str
) -> None:
    answer = _subscribe(hooks, world, url)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == PROBLEM
    assert "Adresse de webhook invalide" in answer.json()["errors"][0]["msg"]
    assert count(engine, "webhook") == 0


@pytest.mark.parametrize(
    "host",
    [
        "[::127.0.0.1]",  # IPv4-compatible
        "[::ffff:127.0.0.1]",  # IPv4-mapped
        "[64:ff9b::7f00:1]",  # NAT64 of 127.0.0.1
        "[64:ff9b::a9fe:a9fe]",  # NAT64 of 169.254.169.254, a cloud's metadata service
        "[2002:7f00:1::]",  # 6to4 of 127.0.0.1
        "[2002:a9fe:a9fe::]",  # 6to4 of 169.254.169.254
        "[ff02::1]",  # multicast
        "224.0.0.1",
        "[2001::1]",  # Teredo
        "100.64.0.1",  # shared address space (carrier-grade NAT)
    ],
)
def test_ssrf_filter_edges_are_refused(
    client: TestClient, world: World, engine: Engine, host: str
) -> None:
    answer = _subscribe(client, world, f"https://{host}/crochet")
    assert answer.status_code == 422, answer.text
    assert "adresse privée ou interne" in answer.json()["errors"][0]["msg"]
    assert count(engine, "webhook") == 0


def test_public_addresses_stay_public() -> None:
    for address in ("8.8.8.8", "2606:4700::1111", "64:ff9b::808:808", "2002:808:808::"):
        assert webhook_address.is_public(address), address


def test_the_address_checked_is_the_address_connected_to(
    hooks: TestClient, world: World, engine: Engine, hook_settings: Settings
) -> None:
    """Subscribed by name (normalised: upper case, default port); delivered to the address
    that lookup gave and checked, the name kept in the Host header."""
    receiver = RawReceiver(_healthy)
    port = receiver.url.split(":")[2].split("/")[0]
    try:
        created = _subscribe(hooks, world, f"http://LOCALHOST:{port}/crochet#x")
        assert created.status_code == 201, created.text
        assert created.json()["url"] == f"http://localhost:{port}/crochet"
        hooks.post("/v1/orientations", headers=world.auth("agent_tulle"), json=orientation_body())
        assert _deliver(engine, hook_settings.model_copy(update={"smtp_url": None})).sent == 1
        (head,) = receiver.requests
        assert f"host: localhost:{port}\r\n".encode() in head.lower()
    finally:
        receiver.close()


def test_a_name_that_changes_its_address_after_the_check_is_not_followed(
    hooks: TestClient,
    world: World,
    engine: Engine,
    hook_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DNS rebinding: the name answers the receiver's address to the subscription's check and
    to the delivery's, then another one. The delivery connects to the address it checked,
    looking the name up once; a second look-up would have gone elsewhere (and been refused)."""
    receiver = RawReceiver(_healthy)
    port = int(receiver.url.split(":")[2].split("/")[0])
    name = "rebind.passerelle.test"
    lookups: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host != name:
            return real(host, *args, **kwargs)
        lookups.append(host)
        address = "127.0.0.1" if len(lookups) <= 2 else "127.0.0.2"  # nothing listens there
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    try:
        assert _subscribe(hooks, world, f"http://{name}:{port}/crochet").status_code == 201
        assert len(lookups) == 1
        hooks.post("/v1/orientations", headers=world.auth("agent_tulle"), json=orientation_body())
        report = _deliver(engine, hook_settings.model_copy(update={"smtp_url": None}))
        assert (report.sent, report.failed) == (1, 0), report
        assert len(lookups) == 2  # the delivery's check; the connection used its answer
        (head,) = receiver.requests
        assert f"host: {name}:{port}\r\n".encode() in head.lower()
    finally:
        receiver.close()


def test_a_url_that_can_never_be_sent_is_dead_and_holds_nothing_back(
    hooks: TestClient, world: World, engine: Engine, hook_settings: Settings, mailbox: Mailbox
) -> None:
    """A subscription stored before these checks, with a control character: its message is
    dead at once with its reason; the e-mail of the same batch is sent, once."""
    receiver = RawReceiver(_healthy)
    try:
        assert _subscribe(hooks, world, receiver.url).status_code == 201
        with engine.begin() as connection:
            connection.execute(
                text("UPDATE webhook SET url = :u"), {"u": "http://127.0.0.1:8971/p\u0001"}
            )
        hooks.post("/v1/orientations", headers=world.auth("agent_tulle"), json=orientation_body())
        with engine.begin() as connection:  # as queued before: the message carries it too
            connection.execute(
                text("UPDATE outbox SET recipient = :u WHERE channel = 'webhook'"),
                {"u": "http://127.0.0.1:8971/p\u0001"},
            )
        report = _deliver(engine, hook_settings)
        assert (report.sent, report.dead) == (1, 1), report
        with engine.connect() as connection:
            rows: dict[str, str] = dict(
                connection.execute(
                    text("SELECT channel, status || ' ' || COALESCE(last_error, '') FROM outbox")
                ).all()
            )
        assert rows["email"] == "sent " and rows["webhook"].startswith("dead adresse"), rows
        due = _deliver(engine, hook_settings)
        assert (due.sent, due.dead, due.failed) == (0, 0, 0)
        assert len(mailbox.messages) == 1 and receiver.requests == []
    finally:
        receiver.close()


@pytest.mark.stress
def test_a_slow_receiver_is_cut_at_the_deadline_and_delays_no_one(
    hooks: TestClient, world: World, engine: Engine, hook_settings: Settings
) -> None:
    """One byte every 2 s (each read well within httpx's 10 s): cut at the overall deadline,
    retried later; the healthy receiver of the same batch got its message meanwhile."""

    def trickle(conn: socket.socket) -> None:
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 200:
            conn.sendall(bytes([byte]))
            time.sleep(2)  # bounded: at most 7 minutes, the client hangs up long before

    slow, healthy = RawReceiver(trickle), RawReceiver(_healthy)
    try:
        assert _subscribe(hooks, world, slow.url).status_code == 201
        assert _subscribe(hooks, world, healthy.url, "med_tulle").status_code == 201
        hooks.post("/v1/orientations", headers=world.auth("agent_tulle"), json=orientation_body())
        started = time.monotonic()
        report = _deliver(engine, hook_settings.model_copy(update={"smtp_url": None}))
        took = time.monotonic() - started
        assert (report.sent, report.failed) == (1, 1), report
        assert len(healthy.requests) == 1
        assert any("délai" in error for error in report.errors), report.errors
        # the deadline, plus generous room for a loaded machine; before: as long as it pleased
        assert took < webhook_address.DEADLINE_SECONDS + 30, took
    finally:
        slow.close()
        healthy.close()


def test_a_huge_answer_is_never_read_whole(
    hooks: TestClient, world: World, engine: Engine, hook_settings: Settings
) -> None:
    """A receiver that answers 300 MiB: the delivery reads a few KB, hangs up, and the
    message is sent (the status is what matters)."""
    sent = [0]

    def huge(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 314572800\r\n\r\n")
        block = b"x" * 65536
        for _ in range(300 * 16):  # 300 MiB at most
            conn.sendall(block)
            sent[0] += len(block)

    receiver = RawReceiver(huge)
    try:
        assert _subscribe(hooks, world, receiver.url).status_code == 201
        hooks.post("/v1/orientations", headers=world.auth("agent_tulle"), json=orientation_body())
        report = _deliver(engine, hook_settings.model_copy(update={"smtp_url": None}))
        assert report.sent == 1, report
        assert receiver.answered.wait(30)  # the receiver notices the hang-up
        assert sent[0] < 32 * 1024 * 1024, sent[0]  # socket buffers at most; not 300 MiB
    finally:
        receiver.close()
