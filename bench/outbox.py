"""make bench (notifications): how fast the outbox drains, with 10,000 messages pending.

A SQLite database with the demo places and N referrals (default 10,000) made in bulk; the
notifications of their creation queued through the service (app.notifications.notify.queue,
as an orientation does): one e-mail to the receiving place and one delivery to an admin's
webhook each. Then the worker (app.notifications.outbox.deliver_due) drains the outbox into a real
SMTP server (aiosmtpd) and an HTTP receiver on the loopback, e-mails alone first, then the
webhooks. Prints messages per second, and the time to find due messages with the outbox full.

Usage: python -m bench.outbox [--messages 10000]"""

import argparse
import asyncio
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from sqlmodel import Session, select

from app.config import Settings
from app.db import Db, writing
from app.models import ApiKey, Referral, Webhook
from app.notifications import outbox
from app.notifications.notify import queue
from app.places.importing import place_ids_by_source_id
from app.services.demo import DEMO_MEDIATEUR_PLACE
from bench.load import demo_database, fill
from tests.pgserver import free_port


class Sink:
    received = 0

    async def handle_DATA(self, _server: Any, _session: Any, _envelope: Any) -> str:
        Sink.received += 1
        return "250 OK"


class Hook(BaseHTTPRequestHandler):
    received = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        Hook.received += 1
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=10_000)
    args = parser.parse_args()
    n = args.messages
    with tempfile.TemporaryDirectory(prefix="passerelle-bench-") as tmp:
        db_file = Path(tmp) / "outbox.db"
        engine = demo_database(f"sqlite:///{db_file}")
        with Session(engine) as session:
            places = place_ids_by_source_id(session)
            key = ApiKey(role="admin", token_hash="bench", prefix="bench")
            session.add(key)
            session.commit()
            key_id = key.id
        others = [p for s, p in places.items() if s.startswith("demo-med-")]
        fill(db_file, n, n // 10, places[DEMO_MEDIATEUR_PLACE], others, places["demo-fs-tulle"])

        ThreadingHTTPServer.request_queue_size = 1024  # a receiver that accepts what comes
        http = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
        threading.Thread(target=http.serve_forever, daemon=True).start()
        smtp = Controller(Sink(), hostname="127.0.0.1", port=free_port())
        smtp.start()
        settings = Settings(smtp_url=f"smtp://127.0.0.1:{smtp.port}", webhook_allow_private=True)
        with Session(engine) as session, writing(session):
            session.add(
                Webhook(
                    api_key_id=key_id,
                    url=f"http://127.0.0.1:{http.server_address[1]}/h",
                    events=["referral.created"],
                    secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                )
            )
            session.commit()
        started = time.perf_counter()
        with Session(engine) as session, writing(session):
            now = datetime.now(UTC)
            for referral in session.exec(select(Referral)).all():
                referral.expires_at = now + timedelta(days=14)
                queue(session, referral, None, now, event="referral.created")
            session.commit()
        queued = time.perf_counter() - started
        print(
            f"  queued {2 * n:,} messages ({n:,} e-mails, {n:,} webhooks) in {queued:.1f} s "
            f"({2 * n / queued:,.0f}/s, through notifications.queue)"
        )

        db = Db(engine, settings)
        with Session(engine) as session:
            t = time.perf_counter()
            for _ in range(100):
                outbox._any_due(session, ["email", "webhook"], datetime.now(UTC))
                session.rollback()
            print(
                f"  finding due messages with {2 * n:,} pending: "
                f"{(time.perf_counter() - t) * 10:.2f} ms"
            )

        t = time.perf_counter()
        report = asyncio.run(outbox.deliver_due(db, only="email"))
        mail_s = time.perf_counter() - t
        print(
            f"  e-mails: {report.sent:,} delivered in {mail_s:.1f} s "
            f"= {report.sent / mail_s:,.0f}/s (one SMTP connection per batch of "
            f"{outbox.BATCH}); received {Sink.received:,}"
        )
        t = time.perf_counter()
        report = asyncio.run(outbox.deliver_due(db))
        hook_s = time.perf_counter() - t
        at_once = outbox.CONCURRENT_DELIVERIES
        print(
            f"  webhooks: {report.sent:,} delivered in {hook_s:.1f} s "
            f"= {report.sent / hook_s:,.0f}/s (signed, {at_once} at a time); "
            f"received {Hook.received:,}"
        )
        smtp.stop()
        http.shutdown()
        engine.dispose()


if __name__ == "__main__":
    main()
