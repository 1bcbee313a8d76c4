"""Notifications through a real SMTP server (aiosmtpd) and a real HTTP receiver on the
loopback, on both databases: the right message to the right address for each event, nothing
lost while a server is down or after a crash, signatures that verify, private addresses
refused."""

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session
from standardwebhooks import Webhook as Signer
from standardwebhooks import Webhook as Verifier

from app.config import Settings
from app.db import Db
from app.notifications import outbox
from app.notifications.notify import remind_due
from app.services.lifecycle import expire_due
from tests.conftest import Mailbox, World, mail_settings, orientation_body


class Receiver:
    """An HTTP server on the loopback that keeps the webhook deliveries it gets."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.answer = 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                outer.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(outer.answer)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/crochet"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.server.shutdown()


@pytest.fixture
def settings(mailbox: Mailbox) -> Settings:
    return mail_settings(
        mailbox,
        mail_from="Passerelle <passerelle@example.org>",
        outbox_max_attempts=3,
        webhook_allow_private=True,
    )


def deliver(engine: Engine, settings: Settings) -> outbox.DeliveryReport:
    return asyncio.run(outbox.deliver_due(Db(engine, settings)))


def due_now(engine: Engine) -> None:
    """Time passes: every pending message is due (its backoff or its lease is over)."""
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE outbox SET next_attempt_at = :at WHERE status = 'pending'"),
            {"at": datetime.now(UTC)},
        )


def place_email(engine: Engine, world: World, source_id: str) -> str:
    with engine.connect() as connection:
        return str(
            connection.execute(
                text("SELECT email FROM place WHERE id = :id"), {"id": world.places[source_id]}
            ).scalar_one()
        )


def orient(client: TestClient, world: World, urgent: bool = True) -> dict[str, Any]:
    body = orientation_body(procedure={"theme": "caf", "urgent": urgent})
    answer = client.post("/v1/orientations", json=body, headers=world.auth("agent_tulle"))
    assert answer.status_code == 201, answer.text
    return answer.json()["referral"]  # type: ignore[no-any-return]


def move(client: TestClient, world: World, referral: str, who: str, **body: str) -> None:
    answer = client.post(f"/v1/referrals/{referral}/events", json=body, headers=world.auth(who))
    assert answer.status_code == 200, answer.text


def parts(message: Message) -> tuple[str, str]:
    text_part = html_part = ""
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            text_part = part.get_content()  # type: ignore[attr-defined]
        elif part.get_content_type() == "text/html":
            html_part = part.get_content()  # type: ignore[attr-defined]
    return text_part, html_part


def test_each_event_mails_the_right_place(
    client: TestClient, world: World, engine: Engine, settings: Settings, mailbox: Mailbox
) -> None:
    receiving = place_email(engine, world, "demo-med-tulle")
    sending = place_email(engine, world, "demo-fs-tulle")

    first = orient(client, world)
    assert deliver(engine, settings).sent == 1
    ((to, message),) = mailbox.messages
    assert to == [receiving]
    assert (
        message["Subject"] == f"[URGENT] Nouvelle orientation {first['code']} : "
        "Caisse d'allocations familiales (CAF)"
    )
    assert message["From"] == "Passerelle <passerelle@example.org>"
    assert message["Message-ID"].startswith("<msg_")
    body, page = parts(message)
    assert first["code"] in body and first["code"] in page
    # The receiving place's e-mail links to the page it acts from without an account.
    assert "https://passerelle.example.org/lien/" in body and "Gérer mon lieu" in body
    for personal in ("Jeanne", "0601020304", "06 01 02 03 04", "mardi matin"):
        assert personal not in message.as_string()

    move(client, world, first["id"], "med_tulle", status="refusee", reason="hors_territoire")
    second = orient(client, world, urgent=False)
    move(client, world, second["id"], "agent_tulle", status="annulee")
    third = orient(client, world, urgent=False)
    move(client, world, third["id"], "med_tulle", status="acceptee")
    move(client, world, third["id"], "med_tulle", status="reorientee", reason="autre lieu")
    fourth = orient(client, world, urgent=False)
    mailbox.messages.clear()
    assert deliver(engine, settings).sent == 6  # 3 new referrals, refusal, cancellation, re-or.
    mails = {(tuple(to), m["Subject"]) for to, m in mailbox.messages}
    assert (
        (sending,),
        f"Orientation {first['code']} refusée : hors de notre territoire",
    ) in mails
    assert ((receiving,), f"Orientation {second['code']} annulée") in mails  # the agent cancelled
    assert ((sending,), f"Orientation {third['code']} réorientée") in mails
    refusal = next(m for _, m in mailbox.messages if "refusée" in m["Subject"])
    assert "Motif : Hors de notre territoire" in parts(refusal)[0]

    # The reminder, three days before the deadline, once; the expiry, to the sender.
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE referral SET expires_at = :at WHERE id = :id"),
            {"at": datetime.now(UTC) + timedelta(days=2), "id": fourth["id"]},
        )
    with Session(engine) as session:
        assert remind_due(session, settings.reminder_days_before) == 1
        assert remind_due(session, settings.reminder_days_before) == 0
        assert expire_due(session, now=datetime.now(UTC) + timedelta(days=3)) == 1
    mailbox.messages.clear()
    due_now(engine)  # the expiry was written three days ahead
    assert deliver(engine, settings).sent == 2
    subjects = {(tuple(to), m["Subject"].split(" expire le")[0]) for to, m in mailbox.messages}
    assert subjects == {
        ((receiving,), f"Rappel : l'orientation {fourth['code']}"),
        ((sending,), f"Orientation {fourth['code']} expirée"),
    }


def test_a_mail_server_down_loses_nothing(
    client: TestClient, world: World, engine: Engine, settings: Settings, mailbox: Mailbox
) -> None:
    mailbox.stop()
    referral = orient(client, world)
    report = deliver(engine, settings)
    assert (report.sent, report.failed) == (0, 1) and "SMTP" in report.errors[0]
    assert deliver(engine, settings).failed == 0  # backing off: not due again yet
    with engine.connect() as connection:
        status, attempts, error = connection.execute(
            text("SELECT status, attempts, last_error FROM outbox")
        ).one()
    assert (status, attempts) == ("pending", 1) and "SMTP" in error

    mailbox.start()
    due_now(engine)  # 30 s later
    assert deliver(engine, settings).sent == 1
    assert len(mailbox.messages) == 1 and referral["code"] in mailbox.messages[0][1]["Subject"]
    assert deliver(engine, settings).sent == 0  # once

    # A server that never comes back: dead after outbox_max_attempts, shown to the admin.
    mailbox.stop()
    orient(client, world)
    for _ in range(settings.outbox_max_attempts):
        due_now(engine)
        deliver(engine, settings)
    with engine.connect() as connection:
        states = connection.execute(text("SELECT status FROM outbox ORDER BY created_at")).all()
    assert [s for (s,) in states] == ["sent", "dead"]


def test_a_crash_between_commit_and_delivery_loses_nothing(
    client: TestClient, world: World, engine: Engine, settings: Settings, mailbox: Mailbox
) -> None:
    referral = orient(client, world)  # committed with its message; the process "dies" here
    with Session(engine) as session:
        lease = timedelta(seconds=settings.outbox_lease_seconds)
        claimed = outbox._claim(session, ["email"], datetime.now(UTC), lease)  # …or mid-send
    assert [c.event for c in claimed] == ["referral.created"]
    assert deliver(engine, settings).sent == 0  # leased to the dead process for a while
    due_now(engine)  # the lease ends
    fresh = Db(engine, settings)  # another process, started later
    assert asyncio.run(outbox.deliver_due(fresh)).sent == 1
    assert [m["Subject"] for _, m in mailbox.messages] == [
        f"[URGENT] Nouvelle orientation {referral['code']} : Caisse d'allocations familiales (CAF)"
    ]


def test_webhooks_are_signed_and_follow_the_place(
    client: TestClient, world: World, engine: Engine, settings: Settings, receiver: Receiver
) -> None:
    created = client.post(
        "/v1/webhooks",
        json={"url": receiver.url, "events": ["referral.created", "referral.refused"]},
        headers=world.auth("agent_tulle"),
    )
    assert created.status_code == 201, created.text
    secret = created.json()["secret"]
    assert secret.startswith("whsec_")
    listed = client.get("/v1/webhooks", headers=world.auth("agent_tulle")).json()
    assert [w["id"] for w in listed] == [created.json()["id"]] and "secret" not in listed[0]
    assert client.get("/v1/webhooks", headers=world.auth("agent_ussel")).json() == []

    referral = orient(client, world)
    move(client, world, referral["id"], "med_tulle", status="refusee", reason="pas_de_capacite")
    other = client.post(
        "/v1/orientations",
        json=orientation_body(person={"commune": "19275", "consent": False}),
        headers=world.auth("agent_ussel"),
    )
    assert other.status_code == 201  # another place's: not delivered to this webhook
    assert deliver(engine, settings).sent >= 2
    assert len(receiver.received) == 2
    verifier = Verifier(secret)
    events = []
    for headers, body in receiver.received:
        payload = verifier.verify(body, headers)  # raises if the signature does not match
        assert headers["webhook-id"].startswith("msg_")
        data = payload["data"]
        assert data["id"] == referral["id"] and data["code"] == referral["code"]
        events.append((payload["type"], data["status"], data["event"]))
        assert "Jeanne" not in body.decode() and "0601020304" not in body.decode()
    assert sorted(events) == [
        ("referral.created", "en_attente", "referral.created"),
        ("referral.refused", "refusee", "referral.refused"),
    ]
    # A receiver down: retried until it answers 2xx; the same webhook-id every time.
    receiver.answer = 503
    receiver.received.clear()
    orient(client, world)
    assert deliver(engine, settings).failed == 1
    receiver.answer = 204
    due_now(engine)
    assert deliver(engine, settings).sent >= 1
    ids = [h["webhook-id"] for h, _ in receiver.received]
    assert len(ids) == 2 and ids[0] == ids[1]  # a receiver deduplicates by it
    receiver.answer = 410  # Gone: no retries
    orient(client, world)
    assert deliver(engine, settings).dead == 1

    gone = client.delete(f"/v1/webhooks/{created.json()['id']}", headers=world.auth("agent_ussel"))
    assert gone.status_code == 404
    gone = client.delete(f"/v1/webhooks/{created.json()['id']}", headers=world.auth("agent_tulle"))
    assert gone.status_code == 204
    assert client.get("/v1/webhooks", headers=world.auth("agent_tulle")).json() == []


def test_the_specifications_own_signature() -> None:
    """The Standard Webhooks specification's example: what our deliveries sign with."""
    signed = Signer("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").sign(
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        datetime.fromtimestamp(1614265330, tz=UTC),
        '{"test": 2432232314}',
    )
    assert signed == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_private_addresses_are_refused(
    client: TestClient, world: World, engine: Engine, settings: Settings, receiver: Receiver
) -> None:
    strict = settings.model_copy(update={"webhook_allow_private": False})
    from app.main import create_app

    with TestClient(create_app(engine, strict)) as guarded:
        for url in (
            receiver.url,  # the loopback
            "https://10.1.2.3/crochet",
            "https://169.254.169.254/latest/meta-data",  # a cloud's metadata service
            "https://[::1]/crochet",
            "ftp://example.org/x",
        ):
            refused = guarded.post(
                "/v1/webhooks",
                json={"url": url, "events": ["referral.created"]},
                headers=world.auth("agent_tulle"),
            )
            assert refused.status_code == 422, (url, refused.text)
        assert (
            guarded.post(
                "/v1/webhooks",
                json={"url": receiver.url, "events": ["referral.nope"]},
                headers=world.auth("agent_tulle"),
            ).status_code
            == 422
        )
    # Allowed once, refused at delivery when the admin no longer allows it.
    allowed = client.post(
        "/v1/webhooks",
        json={"url": receiver.url, "events": ["referral.created"]},
        headers=world.auth("agent_tulle"),
    )
    assert allowed.status_code == 201
    orient(client, world)
    report = deliver(engine, strict)
    assert report.failed == 1 and "adresse privée" in report.errors[0]
    assert receiver.received == []
    with engine.connect() as connection:
        assert connection.execute(text("SELECT COUNT(*) FROM outbox")).scalar_one() == 2


@pytest.mark.usefixtures("cli_env")
def test_outbox_commands(
    client: TestClient,
    world: World,
    mailbox: Mailbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from app.cli import app as cli
    from app.config import get_settings

    referral = orient(client, world)
    runner = CliRunner()
    waiting = runner.invoke(cli, ["outbox", "list", "--show"], env={"COLUMNS": "200"})
    assert waiting.exit_code == 0
    assert "email pending : 1" in waiting.output
    assert f"[URGENT] Nouvelle orientation {referral['code']}" in waiting.output
    monkeypatch.setenv("PASSERELLE_PUBLIC_URL", "https://passerelle.example.fr")
    get_settings.cache_clear()
    without = runner.invoke(cli, ["outbox", "deliver"])
    assert "0 envoyées" in without.output and "PASSERELLE_SMTP_URL absent" in without.output

    monkeypatch.setenv("PASSERELLE_SMTP_URL", f"smtp://127.0.0.1:{mailbox.port}")
    get_settings.cache_clear()
    sent = runner.invoke(cli, ["outbox", "deliver"])
    assert sent.exit_code == 0 and "1 envoyées" in sent.output, sent.output
    assert len(mailbox.messages) == 1
    assert "email sent : 1" in runner.invoke(cli, ["outbox", "list"]).output


def test_the_running_service_delivers_by_itself(
    world: World, engine: Engine, settings: Settings, mailbox: Mailbox
) -> None:
    """No command, no explicit call: the service's own worker sends the e-mail."""
    import time

    from app.main import create_app

    lively = settings.model_copy(update={"outbox_check_seconds": 0.2})
    with TestClient(create_app(engine, lively)) as served:
        referral = orient(served, world)
        deadline = time.monotonic() + 10
        while not mailbox.messages and time.monotonic() < deadline:
            time.sleep(0.1)
    assert [m["Subject"] for _, m in mailbox.messages] == [
        f"[URGENT] Nouvelle orientation {referral['code']} : Caisse d'allocations familiales (CAF)"
    ]
