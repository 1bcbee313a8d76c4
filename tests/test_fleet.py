"""Several `passerelle serve` processes on one PostgreSQL, as a fleet behind a load balancer:
every notification once, every reminder once, subscriptions and the wrong-token limit shared
by the fleet, concurrent first starts, an Idempotency-Key sent to every instance at once.

Real processes, a real SMTP server (aiosmtpd), a real HTTP receiver, loopback traffic only;
every wait is a bounded loop. PostgreSQL only: SQLite serves with one process."""

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session

from app.config import Settings
from app.notifications.notify import remind_due
from app.notifications.outbox import CONCURRENT_DELIVERIES
from app.services.stats_tally import rebuild_tallies
from tests.conftest import Mailbox, World, count, orientation_body
from tests.pgserver import free_ports

# Three `passerelle serve` processes and more on one PostgreSQL.
pytestmark = pytest.mark.stress


@pytest.fixture
def pg(database_url: str) -> str:
    if not database_url.startswith("postgresql"):
        pytest.skip("a fleet shares one PostgreSQL; SQLite serves with one process")
    return database_url


@pytest.fixture
def settings() -> Settings:
    # The in-process app (the `client` fixture) leaves its jobs asleep: the fleet does them.
    return Settings(
        webhook_allow_private=True, outbox_check_seconds=3600, expiry_check_seconds=3600
    )


class SlowMailbox(Mailbox):
    """An SMTP server that takes `delay` seconds to accept each message."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)

    def ids(self) -> Counter[str]:
        return Counter(str(m["Message-ID"]) for _, m in list(self.messages))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # three instances with 16 deliveries in flight each: no reset


class Receiver:
    """A webhook receiver on the loopback that answers after `delay` seconds."""

    def __init__(self, delay: float = 0.0) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []  # (webhook-id, body)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                time.sleep(delay)
                outer.received.append((self.headers["webhook-id"], orjson.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/crochet"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def ids(self) -> Counter[str]:
        return Counter(webhook_id for webhook_id, _ in list(self.received))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver(delay=0.05)
    yield found
    found.server.shutdown()


@dataclass
class Instance:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


def _fleet_env(database_url: str, **settings: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PASSERELLE_SECRET_KEY": "s" * 40,  # one for the fleet
        "PASSERELLE_WEBHOOK_ALLOW_PRIVATE": "true",
        "PASSERELLE_REQUEST_READ_TIMEOUT_SECONDS": "10",
        "PASSERELLE_THREADS": "8",
    }
    env.update({f"PASSERELLE_{name.upper()}": value for name, value in settings.items()})
    return env


def _healthy(instances: list[Instance]) -> None:
    for instance in instances:
        for _ in range(300):
            if not instance.alive:
                pytest.fail("instance exited: " + instance.log.read_text())
            try:
                if httpx.get(instance.url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            pytest.fail("instance did not start: " + instance.log.read_text())


@contextmanager
def fleet(database_url: str, logs: Path, n: int = 3, **settings: str) -> Iterator[list[Instance]]:
    """`n` instances of `passerelle serve` started at once on one database."""
    env = _fleet_env(database_url, **settings)
    instances = []
    with ExitStack() as stack:
        for i, port in enumerate(free_ports(n)):
            log = logs / f"instance-{i}.log"
            out = stack.enter_context(log.open("wb"))
            process = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            instances.append(Instance(process, f"http://127.0.0.1:{port}", log))
        try:
            _healthy(instances)
            yield instances
        finally:
            for instance in instances:
                if instance.alive:
                    instance.process.terminate()
            for instance in instances:
                try:
                    instance.process.wait(20)
                except subprocess.TimeoutExpired:
                    instance.process.kill()
                    instance.process.wait(5)


def _orient_everywhere(
    instances: list[Instance], world: World, n: int, concurrency: int = 8
) -> list[dict[str, Any]]:
    """`n` orientations sent round-robin to the instances still up, each with an
    Idempotency-Key: one that meets a stopping or killed instance is sent again to the next."""
    prefix = secrets.token_hex(4)

    async def run() -> list[dict[str, Any]]:
        created: list[dict[str, Any]] = []
        numbers = iter(range(n))
        async with httpx.AsyncClient(timeout=30) as client:

            async def worker() -> None:
                for number in numbers:
                    headers = {**world.auth("agent_tulle"), "Idempotency-Key": f"{prefix}-{number}"}
                    for attempt in range(60):
                        instance = instances[(number + attempt) % len(instances)]
                        if not instance.alive:
                            continue
                        try:
                            answer = await client.post(
                                instance.url + "/v1/orientations",
                                json=orientation_body(),
                                headers=headers,
                            )
                        except httpx.TransportError:
                            await asyncio.sleep(0.05)
                            continue
                        assert answer.status_code == 201, answer.text
                        created.append(answer.json())
                        break
                    else:
                        pytest.fail(f"orientation {number} never created")

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        return created

    return asyncio.run(run())


def _subscribe(url: str, world: World, receiver: Receiver, events: list[str]) -> str:
    answer = httpx.post(
        url + "/v1/webhooks",
        json={"url": receiver.url, "events": events},
        headers=world.auth("admin"),
        timeout=30,
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def _stopped_gracefully(instance: Instance) -> None:
    """Ended by its SIGTERM (uvicorn raises it again once its shutdown is complete)."""
    assert instance.process.wait(20) in (0, -signal.SIGTERM)
    log = instance.log.read_text()
    assert "Application shutdown complete" in log and "Traceback" not in log, log[-2000:]


def _wait_until(condition: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return bool(condition())


# --- the outbox ------------------------------------------------------------------------------


def test_a_thousand_referrals_through_three_instances_notify_exactly_once_each(
    pg: str, engine: Engine, world: World, receiver: Receiver, tmp_path: Path
) -> None:
    """A slow SMTP server, one instance stopped (SIGTERM) mid-batch, another killed (SIGKILL):
    every e-mail and every webhook arrives, once, but for what the killed one had in flight
    (sent, its mark not yet written: delivered again, at least once, as the receivers'
    deduplication by id expects)."""
    mailbox = SlowMailbox(delay=0.01)
    mailbox.start()
    n = 1000
    try:
        with fleet(
            pg,
            tmp_path,
            smtp_url=f"smtp://127.0.0.1:{mailbox.port}",
            outbox_check_seconds="0.3",
            outbox_lease_seconds="4",
            outbox_batch_seconds="3",
            shutdown_seconds="8",
            expiry_check_seconds="3600",
        ) as instances:
            _subscribe(instances[0].url, world, receiver, ["referral.created"])
            stopped: dict[str, int] = {}

            def stop_two() -> None:
                # Mid-delivery: one stopped gracefully, then one killed outright.
                for at, (name, how) in (
                    (n // 4, ("sigterm", signal.SIGTERM)),
                    (n // 2, ("sigkill", signal.SIGKILL)),
                ):
                    _wait_until(lambda at=at: sum(mailbox.ids().values()) >= at, 120)
                    victim = instances[0 if name == "sigterm" else 1]
                    victim.process.send_signal(how)
                    stopped[name] = sum(mailbox.ids().values())

            killer = threading.Thread(target=stop_two)
            killer.start()
            created = _orient_everywhere(instances, world, n)
            killer.join(150)
            assert set(stopped) == {"sigterm", "sigkill"}, "the stops never came"
            _stopped_gracefully(instances[0])
            referral_ids = {c["referral"]["id"] for c in created}
            assert len(referral_ids) == n == count(engine, "referral")

            def all_arrived() -> bool:
                return len(mailbox.ids()) == n and len(receiver.ids()) == n

            assert _wait_until(all_arrived, 120), (len(mailbox.ids()), len(receiver.ids()))
            time.sleep(2)  # anything sent twice late would show now
            emails, hooks = mailbox.ids(), receiver.ids()
            hooked = {body["data"]["id"] for _, body in receiver.received}
            assert hooked == referral_ids  # 0 lost
            duplicates = {
                "email": sum(c - 1 for c in emails.values()),
                "webhook": sum(c - 1 for c in hooks.values()),
            }
            # Only what the killed instance had in flight can come twice: its SMTP message
            # and outcomes not yet marked; a webhook holds its turn until marked, so no more
            # than the turns (CONCURRENT_DELIVERIES), in flight or unmarked.
            assert duplicates["email"] <= 2 and duplicates["webhook"] <= CONCURRENT_DELIVERIES, (
                f"fleet of 3, {n} referrals: stops at {stopped}, duplicates {duplicates}"
            )
            with engine.connect() as connection:
                states: dict[str, int] = dict(
                    connection.execute(
                        text("SELECT status, COUNT(*) FROM outbox GROUP BY status")
                    ).all()
                )
            assert states == {"sent": 2 * n}, states
            graceful = instances[0].log.read_text()
            assert "Traceback" not in graceful
    finally:
        mailbox.stop()


@pytest.mark.usefixtures("engine")
def test_stopping_an_instance_mid_batch_sends_nothing_twice(
    pg: str, world: World, receiver: Receiver, tmp_path: Path
) -> None:
    """A slow SMTP server and a graceful stop (SIGTERM) while a batch is under way: what the
    stopping instance sent is marked, what it had not tried is given back, none sent twice."""
    mailbox = SlowMailbox(delay=0.02)
    mailbox.start()
    n = 300
    try:
        with fleet(
            pg,
            tmp_path,
            n=2,
            smtp_url=f"smtp://127.0.0.1:{mailbox.port}",
            outbox_check_seconds="0.3",
            outbox_lease_seconds="60",  # no lease ends during the test: a resend is a bug
            shutdown_seconds="8",
            expiry_check_seconds="3600",
        ) as instances:
            _subscribe(instances[0].url, world, receiver, ["referral.created"])
            _orient_everywhere(instances[1:], world, n)
            assert _wait_until(lambda: sum(mailbox.ids().values()) >= n // 4, 60)
            instances[0].process.send_signal(signal.SIGTERM)
            _stopped_gracefully(instances[0])
            assert _wait_until(lambda: len(mailbox.ids()) == n and len(receiver.ids()) == n, 120), (
                len(mailbox.ids()),
                len(receiver.ids()),
            )
            time.sleep(1)
            assert max(mailbox.ids().values()) == 1 and max(receiver.ids().values()) == 1
    finally:
        mailbox.stop()


@pytest.mark.usefixtures("pg")
def test_a_webhook_whose_subscription_went_is_dead_alone(
    client: TestClient, engine: Engine, world: World, receiver: Receiver
) -> None:
    """A row that can never be delivered (its subscription deleted after it was claimed)
    is marked dead by itself; the rest of its batch is delivered."""
    from app.db import Db
    from app.notifications import outbox

    settings = Settings(webhook_allow_private=True)
    hook = client.post(
        "/v1/webhooks",
        json={"url": receiver.url, "events": ["referral.created"]},
        headers=world.auth("admin"),
    ).json()
    for _ in range(3):
        assert (
            client.post(
                "/v1/orientations", json=orientation_body(), headers=world.auth("agent_tulle")
            ).status_code
            == 201
        )
    with engine.begin() as connection:  # one row loses its secret, as after a deletion race
        connection.execute(
            text(
                "UPDATE outbox SET webhook_id = NULL WHERE id = "
                "(SELECT MIN(id) FROM outbox WHERE channel = 'webhook')"
            )
        )
    report = asyncio.run(outbox.deliver_due(Db(engine, settings)))
    assert (report.sent, report.dead, report.failed) == (2, 1, 0)
    assert len(receiver.ids()) == 2
    assert hook["id"]


# --- reminders ---------------------------------------------------------------------------------


def test_reminders_are_queued_once_whatever_the_number_of_processes(
    client: TestClient, pg: str, engine: Engine, world: World, tmp_path: Path
) -> None:
    n = 120
    for _ in range(n):
        assert (
            client.post(
                "/v1/orientations", json=orientation_body(), headers=world.auth("agent_tulle")
            ).status_code
            == 201
        )
    with engine.begin() as connection:  # all of them due for a reminder
        connection.execute(text("UPDATE referral SET expires_at = now() + interval '1 day'"))

    # Three threads at once, as three processes' jobs would (no advisory lock here)…
    def remind(_: int) -> int:
        with Session(engine) as session:
            return remind_due(session, 3)

    with ThreadPoolExecutor(3) as pool:
        assert sum(pool.map(remind, range(3))) == n

    def reminders() -> dict[str, int]:
        with engine.connect() as connection:
            return dict(
                connection.execute(
                    text(
                        "SELECT referral_id, COUNT(*) FROM outbox "
                        "WHERE event = 'referral.reminder' GROUP BY referral_id"
                    )
                ).all()
            )

    assert len(reminders()) == n and set(reminders().values()) == {1}
    # …and three serving processes, their expiry jobs every 0.2 s.
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM outbox WHERE event = 'referral.reminder'"))
        connection.execute(text("UPDATE referral SET reminded_at = NULL"))
    with fleet(pg, tmp_path, expiry_check_seconds="0.2", outbox_check_seconds="3600"):
        assert _wait_until(lambda: len(reminders()) == n, 60)
        time.sleep(1)
    assert set(reminders().values()) == {1}


# --- webhook subscriptions ----------------------------------------------------------------------


def test_a_subscription_made_on_one_instance_hears_every_later_event_on_any(
    pg: str, engine: Engine, world: World, receiver: Receiver, tmp_path: Path
) -> None:
    with fleet(
        pg,
        tmp_path,
        cache_check_seconds="3600",  # nothing here may wait for a process's poll
        outbox_check_seconds="0.3",
        expiry_check_seconds="3600",
    ) as instances:
        # Every instance has read the (empty) subscriptions already.
        _orient_everywhere(instances, world, 3)
        _subscribe(instances[0].url, world, receiver, ["referral.created"])
        created = _orient_everywhere(instances, world, 30)
        ids = {c["referral"]["id"] for c in created}
        arrived = _wait_until(lambda: ids <= {b["data"]["id"] for _, b in receiver.received}, 30)
        with engine.connect() as connection:
            states = connection.execute(
                text(
                    "SELECT status, attempts, last_error, COUNT(*) FROM outbox "
                    "WHERE channel = 'webhook' GROUP BY 1, 2, 3"
                )
            ).all()
        assert arrived, (len(receiver.received), states)


def test_deleting_a_subscription_under_load_answers_no_5xx(
    pg: str, engine: Engine, world: World, receiver: Receiver, tmp_path: Path
) -> None:
    with fleet(pg, tmp_path, outbox_check_seconds="0.3", expiry_check_seconds="3600") as instances:
        statuses: list[int] = []
        running = threading.Event()
        running.set()

        def load(instance: Instance) -> None:
            with httpx.Client(timeout=30) as http:
                for _ in range(400):  # bounded; stops when the deletions are done
                    if not running.is_set():
                        return
                    statuses.append(
                        http.post(
                            instance.url + "/v1/orientations",
                            json=orientation_body(),
                            headers=world.auth("agent_tulle"),
                        ).status_code
                    )

        threads = [threading.Thread(target=load, args=(i,)) for i in instances for _ in range(2)]
        for thread in threads:
            thread.start()
        deletions = []
        try:
            for round_ in range(8):
                hook = _subscribe(instances[round_ % 3].url, world, receiver, ["referral.created"])
                time.sleep(0.3)
                deletions.append(
                    httpx.delete(
                        instances[(round_ + 1) % 3].url + f"/v1/webhooks/{hook}",
                        headers=world.auth("admin"),
                        timeout=30,
                    ).status_code
                )
        finally:
            running.clear()
            for thread in threads:
                thread.join(60)
        assert deletions == [204] * 8
        assert statuses and set(statuses) == {201}, Counter(statuses)
        with engine.connect() as connection:
            pending = connection.execute(
                text(
                    "SELECT COUNT(*) FROM outbox "
                    "WHERE channel = 'webhook' AND webhook_id IS NOT NULL"
                )
            ).scalar_one()
        assert pending == 0  # none left tied to a deleted subscription


# --- wrong tokens, the client address -----------------------------------------------------------


@pytest.mark.usefixtures("engine", "world")
def test_the_wrong_token_limit_is_one_for_the_fleet(pg: str, tmp_path: Path) -> None:
    limit = Settings().auth_failures_per_minute
    with fleet(pg, tmp_path, expiry_check_seconds="3600", outbox_check_seconds="3600") as fleet_:
        statuses = []
        for i in range(limit + 1):
            # No proxy is trusted: a forged X-Forwarded-For changes nothing.
            headers = {"Authorization": "Bearer psl_faux", "X-Forwarded-For": f"203.0.113.{i}"}
            statuses.append(
                httpx.get(fleet_[i % 3].url + "/v1/referrals", headers=headers).status_code
            )
        assert statuses == [401] * limit + [429]
        again = [
            httpx.get(instance.url + "/v1/referrals", headers={"Authorization": "Bearer psl_faux"})
            for instance in fleet_
        ]
        assert [a.status_code for a in again] == [429] * 3
        assert all(int(a.headers["retry-after"]) > 0 for a in again)


@pytest.mark.usefixtures("world")
def test_a_trusted_proxy_forwards_the_client_address(engine: Engine) -> None:
    from app.main import create_app

    settings = Settings(trusted_proxies="testclient")  # TestClient's peer address
    with TestClient(create_app(engine, settings), raise_server_exceptions=False) as proxied:
        wrong = {"Authorization": "Bearer psl_faux"}
        rotating = [
            proxied.get(
                "/v1/referrals", headers={**wrong, "X-Forwarded-For": f"203.0.113.{i}"}
            ).status_code
            for i in range(30)
        ]
        assert set(rotating) == {401}  # thirty clients, one wrong token each
        same = [
            proxied.get(
                "/v1/referrals", headers={**wrong, "X-Forwarded-For": "198.51.100.7"}
            ).status_code
            for _ in range(settings.auth_failures_per_minute + 1)
        ]
        assert same[-1] == 429 and set(same[:-1]) == {401}


# --- first starts, Idempotency-Key ---------------------------------------------------------------


def test_three_first_starts_at_once_migrate_once(pg: str, tmp_path: Path) -> None:
    url = make_url(pg)
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text("DROP DATABASE IF EXISTS passerelle_first_start"))
        connection.execute(text("CREATE DATABASE passerelle_first_start"))
    empty = url.set(database="passerelle_first_start").render_as_string(hide_password=False)
    try:
        with fleet(empty, tmp_path, expiry_check_seconds="3600") as instances:
            assert all(i.alive for i in instances)
        logs = [i.log.read_text() for i in instances]
        assert not [log for log in logs if "Traceback" in log or "UniqueViolation" in log]
        fresh = create_engine(empty)
        with fresh.connect() as connection:
            assert connection.execute(text("SELECT COUNT(*) FROM alembic_version")).scalar() == 1
        fresh.dispose()
    finally:
        with admin.connect() as connection:
            connection.execute(text("DROP DATABASE IF EXISTS passerelle_first_start WITH (FORCE)"))
        admin.dispose()


def _accept(
    instance: Instance, url: str, headers: dict[str, str], start: threading.Barrier
) -> tuple[int, Any]:
    start.wait(10)
    answer = httpx.post(
        instance.url + url, json={"status": "acceptee"}, headers=headers, timeout=30
    )
    return answer.status_code, answer.json()


def test_one_idempotency_key_sent_to_every_instance_at_once_is_done_once(
    client: TestClient, pg: str, engine: Engine, world: World, tmp_path: Path
) -> None:
    with fleet(pg, tmp_path, expiry_check_seconds="3600", outbox_check_seconds="3600") as fleet_:
        for round_ in range(5):
            referral = client.post(
                "/v1/orientations", json=orientation_body(), headers=world.auth("agent_tulle")
            ).json()["referral"]
            headers = {**world.auth("med_tulle"), "Idempotency-Key": f"accept-{round_}"}
            url = f"/v1/referrals/{referral['id']}/events"
            start = threading.Barrier(3)
            with ThreadPoolExecutor(3) as pool:
                answers = list(
                    pool.map(lambda i, u=url, h=headers, b=start: _accept(i, u, h, b), fleet_)
                )
            assert len({status for status, _ in answers}) == 1, answers
            assert answers[0][0] == 200 and answers[0][1] == answers[1][1] == answers[2][1]
        with engine.connect() as connection:
            accepted = connection.execute(
                text("SELECT COUNT(*) FROM handoff_event WHERE to_status = 'acceptee'")
            ).scalar_one()
        assert accepted == 5


def test_the_tallies_stay_exact_while_three_instances_orient_and_fold(
    pg: str, engine: Engine, world: World, tmp_path: Path
) -> None:
    """Three instances orient at once, their triggers appending deltas, while one of them at a
    time folds the deltas into the cells (the advisory lock) and one is killed mid-run: the
    cells and the deltas still to fold count what a recount counts, the inbox's included, and
    the deltas are folded soon after."""
    from tests.test_stats_tallies import _cells, pending_deltas

    def pending() -> int:
        with Session(engine) as session:
            return pending_deltas(session)

    with fleet(pg, tmp_path, expiry_check_seconds="3600") as instances:
        killed_at: list[int] = []

        def kill_mid_run() -> None:
            _wait_until(lambda: count(engine, "referral") >= 100, 60)
            instances[2].process.send_signal(signal.SIGKILL)
            killed_at.append(count(engine, "referral"))

        killer = threading.Thread(target=kill_mid_run)
        killer.start()
        created = _orient_everywhere(instances, world, 400, concurrency=16)
        killer.join()
        assert killed_at and killed_at[0] < 400, killed_at  # killed while orienting
        assert len({c["referral"]["id"] for c in created}) == 400 == count(engine, "referral")
        assert _wait_until(lambda: pending() == 0, 20), pending()
        summary = httpx.get(
            instances[0].url + "/v1/referrals/summary", headers=world.auth("agent_tulle")
        )
        assert summary.status_code == 200, summary.text
        assert summary.json()["by_status"]["en_attente"] == 400
    with Session(engine) as session:
        kept = _cells(session)
        rebuild_tallies(session)
        assert _cells(session) == kept
        assert sum(cell[-3] for cell in kept["referral_stats_tally"] if cell[0] == "day") == 400
        session.rollback()
