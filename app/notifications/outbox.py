"""Delivery of the outbox: e-mails by SMTP, webhooks signed as the Standard Webhooks
specification says. At least once: a message is claimed for a while (a lease), sent, then
marked; a crash in between leaves it due again when the lease ends, and receivers deduplicate
by its id (`webhook-id`, the e-mail's Message-ID). Failures are retried with exponential
backoff, then the message is dead (`passerelle outbox list`)."""

import asyncio
import contextlib
import html
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from functools import partial
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import aiosmtplib
import httpx
import orjson
from sqlalchemy import update
from sqlmodel import Session, col, func, select
from standardwebhooks import Webhook as Signer

from app.config import Settings
from app.db import Db, writing
from app.models import OutboxMessage, Webhook
from app.models.common import LOCAL_TZ, utcnow
from app.notifications import webhook_address
from app.notifications.notify import NEW_LINK, TO_RECEIVER
from app.services.links import link_secret, make_link
from app.triage import PROCEDURE_THEMES
from app.triage.lifecycle import REFUSAL_REASONS

logger = logging.getLogger("passerelle")

BACKOFF = timedelta(seconds=30)  # first retry; doubles each time, up to MAX_BACKOFF
MAX_BACKOFF = timedelta(hours=6)
BATCH = 200
# A webhook receiver that answers 410 Gone wants no more retries (Standard Webhooks).
GONE = "HTTP 410 : le destinataire ne veut plus de ces messages"
# Webhook deliveries in flight at once: enough to hide the network's latency, few enough not
# to flood a receiver (most are a small web app).
CONCURRENT_DELIVERIES = 16


def backoff(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failure: 30 s, 1 min, 2 min, … at most 6 h."""
    # int ** int is typed Any (a negative exponent makes a float).
    return cast(timedelta, min(BACKOFF * 2 ** (attempts - 1), MAX_BACKOFF))


# --- what the messages say ------------------------------------------------------------


def _when(value: str) -> str:
    at = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(LOCAL_TZ)
    return at.strftime("%d/%m/%Y à %H h %M")


def render_email(
    facts: dict[str, Any], public_url: str, secret: str | None = None
) -> tuple[str, str, str]:
    """(subject, text, html) of an e-mail, in French: the code, the theme, the urgency, a
    link; never anything about the person. An e-mail to the receiving place links to the page
    it acts from without an account (app.services.links), signed with `secret`."""
    if str(facts.get("event", "")).startswith("account."):  # to a person, about their account
        from app.services import accounts

        return accounts.render_email(facts, public_url, secret)
    code, event = facts["code"], facts["event"]
    theme = PROCEDURE_THEMES[facts["theme"]].label if facts["theme"] in PROCEDURE_THEMES else ""
    urgent = "[URGENT] " if facts["urgent"] else ""
    reason = REFUSAL_REASONS.get(facts.get("reason") or "", facts.get("reason") or "")
    if event == "referral.created":
        subject = f"{urgent}Nouvelle orientation {code} : {theme}"
        lead = (
            f"{facts['origin_place']} oriente une personne vers {facts['place']} pour une "
            f"démarche « {theme} »{' urgente' if facts['urgent'] else ''}. Acceptez-la ou "
            f"refusez-la avant le {_when(facts['expires_at'])}."
        )
    elif event == "referral.reminder":
        subject = f"{urgent}Rappel : l'orientation {code} expire le {_when(facts['expires_at'])}"
        lead = (
            f"L'orientation {code} ({theme}) venue de {facts['origin_place']} attend toujours "
            f"votre suite ; sans action, elle expirera le {_when(facts['expires_at'])}."
        )
    elif event == NEW_LINK:
        subject = f"Nouveau lien pour l'orientation {code}"
        lead = (
            f"Voici un nouveau lien pour suivre l'orientation {code} ({theme}) venue de "
            f"{facts['origin_place']} : il remplace celui qui avait expiré."
        )
    elif event == "referral.refused":
        subject = f"Orientation {code} refusée : {reason.lower() or 'motif non précisé'}"
        lead = (
            f"{facts['place']} a refusé l'orientation {code} ({theme}). Motif : "
            f"{reason or 'non précisé'}. Vous pouvez la réorienter vers un autre lieu."
        )
    elif event == "referral.expired":
        subject = f"Orientation {code} expirée"
        lead = (
            f"L'orientation {code} ({theme}) vers {facts['place']} a expiré sans suite. Vous "
            "pouvez orienter la personne à nouveau."
        )
    elif event == "referral.reoriented":
        subject = f"Orientation {code} réorientée"
        lead = (
            f"{facts['place']} vous renvoie l'orientation {code} ({theme}) : la personne est à "
            "réorienter."
        )
    else:  # referral.cancelled
        subject = f"Orientation {code} annulée"
        lead = f"L'orientation {code} ({theme}) vers {facts['place']} a été annulée."
    base = public_url.rstrip("/")
    to_place = event in TO_RECEIVER and secret is not None and "place_id" in facts
    if to_place:
        token = make_link(secret or "", facts["referral_id"], facts["place_id"])
        link, action = f"{base}/lien/{token}", "Répondre à l'orientation (sans compte)"
        manage = f"{base}/lien/{token}/lieu"
        after = (
            "Ce lien ouvre cette seule orientation, sans compte ni mot de passe : ne le "
            "transférez qu'à un collègue de votre lieu.\n"
            f"Gérer mon lieu (congés, coordonnées, horaires) : {manage}\n"
        )
    else:
        link, action = f"{base}/orientations/{facts['referral_id']}", "Voir l'orientation"
        manage = after = ""
    text = (
        f"Bonjour,\n\n{lead}\n\nCode : {code}\nDémarche : {theme}"
        f"{' (urgente)' if facts['urgent'] else ''}\n{action} : {link}\n\n{after}"
        "Ce message ne contient aucune donnée personnelle : retrouvez la personne par son code.\n"
        "— Passerelle\n"
    )
    page = (
        '<!doctype html><html lang="fr"><body>'
        f"<p>Bonjour,</p><p>{html.escape(lead)}</p>"
        f"<p><strong>Code : {html.escape(code)}</strong><br>Démarche : {html.escape(theme)}"
        f"{' (urgente)' if facts['urgent'] else ''}</p>"
        f'<p><a href="{html.escape(link)}">{html.escape(action)}</a></p>'
        + (
            "<p><small>Ce lien ouvre cette seule orientation, sans compte ni mot de passe : ne "
            "le transférez qu'à un collègue de votre lieu.</small><br>"
            f'<a href="{html.escape(manage)}">Gérer mon lieu</a> (congés, coordonnées, '
            "horaires)</p>"
            if to_place
            else ""
        )
        + "<p><small>Ce message ne contient aucune donnée personnelle : retrouvez la personne par "
        "son code.</small></p></body></html>"
    )
    return subject, text, page


# --- delivery ---------------------------------------------------------------------------


@dataclass
class Claimed:
    id: str
    channel: str
    event: str
    recipient: str
    content: dict[str, Any]
    attempts: int
    secret: str | None
    claim: str = ""  # the lease's token (OutboxMessage.claim)


@dataclass
class DeliveryReport:
    sent: int = 0
    failed: int = 0
    dead: int = 0
    # Results that found their lease taken by another process (it will deliver them again):
    # only after this process outlived its lease, a database outage for instance.
    lost: int = 0
    released: int = 0  # claimed but not tried (a shutdown, the batch's time): due again now
    errors: list[str] = field(default_factory=list)

    def add(self, other: "DeliveryReport") -> None:
        self.sent += other.sent
        self.failed += other.failed
        self.dead += other.dead
        self.lost += other.lost
        self.released += other.released
        self.errors += other.errors


def _due(channels: list[str], now: datetime) -> Any:
    return (
        col(OutboxMessage.status) == "pending",
        col(OutboxMessage.next_attempt_at) <= now,
        col(OutboxMessage.channel).in_(channels),
    )


def _any_due(session: Session, channels: list[str], now: datetime) -> bool:
    """A read first: an idle worker never takes the write lock."""
    found = session.exec(select(OutboxMessage.id).where(*_due(channels, now)).limit(1)).first()
    return found is not None


def _claim(
    session: Session,
    channels: list[str],
    now: datetime,
    lease: timedelta,
) -> list[Claimed]:
    """Takes up to BATCH due messages for a lease under a token of its own, counting the
    attempt. A claimed message is due again when its lease ends, if never marked: a process
    that dies (or loses the database) mid-batch gives its messages back this way; a live
    delivery renews the lease of what it still holds (Settings.outbox_lease_seconds). On
    PostgreSQL, rows another process is claiming are skipped (FOR UPDATE SKIP LOCKED), so
    processes claim disjoint batches instead of waiting on each other."""
    token = secrets.token_hex(12)
    with writing(session):
        query = (
            select(OutboxMessage, Webhook.secret)
            .outerjoin(Webhook, col(Webhook.id) == col(OutboxMessage.webhook_id))
            .where(*_due(channels, now))
            .order_by(col(OutboxMessage.next_attempt_at))
            .limit(BATCH)
        )
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(of=OutboxMessage, skip_locked=True)
        claimed = []
        for message, secret in session.exec(query).all():
            message.attempts += 1
            message.next_attempt_at = now + lease
            message.claim = token
            session.add(message)
            claimed.append(
                Claimed(
                    message.id,
                    message.channel,
                    message.event,
                    message.recipient,
                    message.content,
                    message.attempts,
                    secret,
                    token,
                )
            )
        session.commit()
    return claimed


def _held(token: str, ids: list[str]) -> Any:
    """The messages among `ids` whose lease is still this token's."""
    return (
        col(OutboxMessage.id).in_(ids),
        col(OutboxMessage.claim) == token,
        col(OutboxMessage.status) == "pending",
    )


@dataclass
class Outcome:
    item: Claimed
    error: str | None  # None: delivered
    final: bool = False  # an error that no retry can cure: dead at once


def _mark(session: Session, outcomes: list[Outcome], max_attempts: int) -> DeliveryReport:
    """Records each outcome, if its lease is still this delivery's (else another process
    holds the message now, and its outcome is the one that counts)."""
    report = DeliveryReport()
    now = utcnow()
    with writing(session):
        # In the order of their ids, as every writer of several rows here locks them (_lock):
        # two such transactions wait for each other, never in a cycle (a deadlock).
        for outcome in sorted(outcomes, key=lambda o: o.item.id):
            item, error = outcome.item, outcome.error
            values: dict[str, Any]
            if error is None:
                values = {"status": "sent", "sent_at": now, "last_error": None, "claim": None}
            elif outcome.final or item.attempts >= max_attempts:
                values = {"status": "dead", "last_error": error, "claim": None}
            else:
                values = {
                    "next_attempt_at": now + backoff(item.attempts),
                    "last_error": error,
                    "claim": None,
                }
            done = session.execute(
                update(OutboxMessage).where(*_held(item.claim, [item.id])).values(**values)
            )
            if not done.rowcount:  # type: ignore[attr-defined]
                report.lost += 1
                continue
            if error is None:
                report.sent += 1
            elif values.get("status") == "dead":
                report.dead += 1
            else:
                report.failed += 1
            if error:
                report.errors.append(f"{item.id}: {error}")
        session.commit()
    return report


def lock_in_order(session: Session, *where: Any) -> list[str]:
    """Locks the outbox rows that match, in the order of their ids (the one order in which any
    transaction here locks several of them, so that none deadlocks another), and returns
    their ids."""
    query = select(OutboxMessage.id).where(*where).order_by(col(OutboxMessage.id))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return list(session.exec(query).all())


def _renew(session: Session, token: str, ids: list[str], lease: timedelta) -> None:
    """Extends the lease of the messages still being delivered."""
    with writing(session):
        lock_in_order(session, *_held(token, ids))
        session.execute(
            update(OutboxMessage).where(*_held(token, ids)).values(next_attempt_at=utcnow() + lease)
        )
        session.commit()


def _release(session: Session, token: str, ids: list[str]) -> int:
    """Gives back messages claimed but never tried: due again at once, the attempt uncounted."""
    with writing(session):
        lock_in_order(session, *_held(token, ids))
        done = session.execute(
            update(OutboxMessage)
            .where(*_held(token, ids))
            .values(
                next_attempt_at=utcnow(),
                attempts=col(OutboxMessage.attempts) - 1,
                claim=None,
            )
        )
        session.commit()
    return int(done.rowcount)  # type: ignore[attr-defined]


class _Batch:
    """One claimed batch being delivered: each outcome is marked as soon as possible (the
    outcomes that arrive while a marking is written go together in the next one), the lease of
    what is still in flight is renewed, and what was never tried is released at the end."""

    def __init__(self, db: Db, claimed: list[Claimed], stop: asyncio.Event | None) -> None:
        settings = db.settings
        self.db, self.claimed, self.stop = db, claimed, stop
        self.token = claimed[0].claim  # one claim, one token
        self.lease = timedelta(seconds=settings.outbox_lease_seconds)
        self.deadline = asyncio.get_running_loop().time() + settings.outbox_batch_seconds
        self.max_attempts = settings.outbox_max_attempts
        self.waiting: list[Outcome] = []
        self.unmarked = {c.id for c in claimed}
        self.tried: set[str] = set()
        self.report = DeliveryReport()
        self.arrived = asyncio.Event()
        self.progress = asyncio.Event()  # set, and replaced, after each marking written
        self.closing = False

    def over(self) -> bool:
        """The service is stopping or the batch's time is over."""
        return (self.stop is not None and self.stop.is_set()) or (
            asyncio.get_running_loop().time() > self.deadline
        )

    def may_start(self, item: Claimed) -> bool:
        """Whether to try `item` now: not once the service is stopping or the batch's time is
        over (it is released instead, for this process or another to take)."""
        if self.over():
            return False
        self.tried.add(item.id)
        return True

    def done(self, item: Claimed, error: str | None, final: bool = False) -> None:
        self.waiting.append(Outcome(item, error, final))
        self.arrived.set()

    async def settled(self, item: Claimed) -> None:
        """Waits until `item`'s outcome is written (or the batch is over). A sender holding its
        turn until then bounds what a crash can make be delivered twice: no more than the
        turns, in flight or delivered and not yet marked."""
        while item.id in self.unmarked and not self.over():
            progress = self.progress
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(progress.wait(), timeout=0.5)

    async def _mark_waiting(self) -> None:
        outcomes, self.waiting = self.waiting, []
        try:
            report = await self.db.write(
                partial(_mark, outcomes=outcomes, max_attempts=self.max_attempts)
            )
        except Exception:
            self.waiting[:0] = outcomes  # the database is away: next time, with the others
            raise
        self.unmarked -= {o.item.id for o in outcomes}
        self.report.add(report)
        self.progress.set()
        self.progress = asyncio.Event()

    async def marking(self) -> None:
        while not (self.closing and not self.waiting):
            if not self.waiting:
                self.arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.arrived.wait(), timeout=0.5)
                continue
            try:
                await self._mark_waiting()
            except Exception as exc:
                logger.warning("Marquage des notifications impossible : %s", type(exc).__name__)
                await asyncio.sleep(1)
                if self.closing:
                    return  # their leases end; delivered again (at least once)

    async def renewing(self) -> None:
        every = self.lease.total_seconds() / 3
        while True:
            await asyncio.sleep(every)
            ids = sorted(self.unmarked)
            if ids:
                with contextlib.suppress(Exception):  # the next renewal tries again
                    await self.db.write(
                        partial(_renew, token=self.token, ids=ids, lease=self.lease)
                    )

    async def run(self, secret: str) -> DeliveryReport:
        """Sends the batch's e-mails (their links signed with `secret`) and webhooks."""
        by_channel: dict[str, list[Claimed]] = {}
        for item in self.claimed:
            by_channel.setdefault(item.channel, []).append(item)
        marker = asyncio.create_task(self.marking())
        renewer = asyncio.create_task(self.renewing())
        try:
            await asyncio.gather(
                *(CHANNELS[name].send(items, self, secret) for name, items in by_channel.items())
            )
        finally:
            renewer.cancel()
            self.closing = True
            self.arrived.set()
            await marker
            untried = sorted({c.id for c in self.claimed} - self.tried)
            if untried:
                with contextlib.suppress(Exception):  # else their lease ends
                    self.report.released += await self.db.write(
                        partial(_release, token=self.token, ids=untried)
                    )
        return self.report


def _smtp(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    secure = parts.scheme == "smtps"
    return {
        "hostname": parts.hostname or "localhost",
        "port": parts.port or (465 if secure else 25),
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
        "use_tls": secure,
        "start_tls": None if not secure else False,  # STARTTLS when the server offers it
        "timeout": 20,
    }


async def _send_emails(items: list[Claimed], batch: _Batch, secret: str) -> None:
    settings = batch.db.settings
    assert settings.smtp_url
    client = aiosmtplib.SMTP(**_smtp(settings.smtp_url))
    try:
        await client.connect()  # STARTTLS when offered, then login when credentials are given
    except (aiosmtplib.SMTPException, OSError) as exc:
        for item in items:
            if batch.may_start(item):
                batch.done(item, f"SMTP injoignable : {type(exc).__name__}")
        return
    try:
        for item in items:
            if not batch.may_start(item):
                continue
            try:
                subject, text, page = render_email(item.content, settings.public_url, secret)
                message = EmailMessage()
                message["From"] = settings.mail_from
                message["To"] = item.recipient
                message["Subject"] = subject
                message["Message-ID"] = f"<{item.id}@passerelle>"
                message.set_content(text)
                message.add_alternative(page, subtype="html")
            except Exception as exc:  # this message can never be written: it alone is dead
                batch.done(item, f"message impossible à composer : {type(exc).__name__}", True)
                continue
            try:
                await client.send_message(message)
                batch.done(item, None)
            except (aiosmtplib.SMTPException, OSError) as exc:
                batch.done(item, f"SMTP : {type(exc).__name__} {str(exc)[:200]}")
    finally:
        with contextlib.suppress(aiosmtplib.SMTPException, OSError):
            await client.quit()


async def _send_webhooks(items: list[Claimed], batch: _Batch) -> None:
    settings = batch.db.settings
    limits = httpx.Limits(max_connections=CONCURRENT_DELIVERIES)
    async with httpx.AsyncClient(timeout=10, follow_redirects=False, limits=limits) as client:
        turns = asyncio.Semaphore(CONCURRENT_DELIVERIES)

        async def one(item: Claimed) -> None:
            async with turns:  # held until the outcome is marked
                if batch.may_start(item):
                    await send(item)
                    await batch.settled(item)

        async def send(item: Claimed) -> None:
            if not item.secret:  # its subscription was deleted since it was queued
                batch.done(item, "webhook supprimé", final=True)
                return
            try:
                body = orjson.dumps(item.content).decode()
                now = utcnow()
                signature = Signer(item.secret).sign(item.id, now, body)
                # Resolved, checked and connected to the same address, within one deadline.
                status = await webhook_address.post(
                    client,
                    item.recipient,
                    body,
                    {
                        "content-type": "application/json",
                        "webhook-id": item.id,
                        "webhook-timestamp": str(int(now.timestamp())),
                        "webhook-signature": signature,
                    },
                    settings.webhook_allow_private,
                )
                if status == 410:  # Gone: the receiver asks us to stop
                    batch.done(item, GONE, final=True)
                else:
                    batch.done(item, None if 200 <= status < 300 else f"HTTP {status}")
            except webhook_address.Unreachable as exc:
                batch.done(item, str(exc), final=exc.final)
            except TimeoutError:
                batch.done(item, f"délai de {webhook_address.DEADLINE_SECONDS:g} s dépassé")
            except (httpx.HTTPError, OSError) as exc:
                batch.done(item, f"{type(exc).__name__}")
            except Exception as exc:  # a bad row (a secret that is not one…): it alone is dead
                batch.done(item, f"envoi impossible : {type(exc).__name__}", final=True)

        await asyncio.gather(*(one(item) for item in items))


@dataclass(frozen=True)
class Channel:
    """A way a notification is delivered: each outbox message names one (OutboxMessage.channel;
    who gets what on each is app.notifications.notify's). A new channel is its sender and its
    entry here."""

    # Delivers a batch's messages of this channel, marking each through the batch (done).
    send: Callable[[list[Claimed], "_Batch", str], Awaitable[None]]
    # Whether this service can deliver it now (e-mails wait while no SMTP server is set).
    ready: Callable[[Settings], bool]
    signs_links: bool = False  # its messages carry links signed with the links' secret
    # The message as a person reads it (subject, text), for `passerelle outbox list --show`.
    preview: Callable[[dict[str, Any], str, str], tuple[str, str]] | None = None


def _email_preview(content: dict[str, Any], public_url: str, secret: str) -> tuple[str, str]:
    subject, text, _ = render_email(content, public_url, secret)
    return subject, text


CHANNELS: dict[str, Channel] = {
    "webhook": Channel(
        send=lambda items, batch, _secret: _send_webhooks(items, batch),
        ready=lambda _settings: True,
    ),
    "email": Channel(
        send=_send_emails,
        ready=lambda settings: bool(settings.smtp_url),
        signs_links=True,
        preview=_email_preview,
    ),
}


async def deliver_due(
    db: Db, only: str | None = None, stop: asyncio.Event | None = None
) -> DeliveryReport:
    """Delivers every due message (of channel `only`, if given), batch after batch; e-mails
    wait while no SMTP server is configured. Once `stop` is set (the service is stopping), no
    new message is tried: those in flight are finished and marked, the others released."""
    settings = db.settings
    channels = [
        name
        for name, channel in CHANNELS.items()
        if channel.ready(settings) and only in (None, name)
    ]
    lease = timedelta(seconds=settings.outbox_lease_seconds)
    total = DeliveryReport()
    secret = None  # the links' (app.services.links), read once the first e-mail needs it
    while stop is None or not stop.is_set():
        now = utcnow()
        if not await db.read(partial(_any_due, channels=channels, now=now)):
            break
        claimed = await db.write(partial(_claim, channels=channels, now=now, lease=lease))
        if not claimed:
            break
        if secret is None and any(CHANNELS[c.channel].signs_links for c in claimed):
            secret = await db.read(link_secret)
        total.add(await _Batch(db, claimed, stop).run(secret or ""))
        if len(claimed) < BATCH:
            break
    if total.lost:
        logger.warning(
            "%s notifications marquées par un autre processus (bail perdu) : envoyées deux fois.",
            total.lost,
        )
    return total


def outbox_counts(session: Session) -> dict[tuple[str, str], int]:
    rows = session.exec(
        select(OutboxMessage.channel, OutboxMessage.status, func.count()).group_by(
            col(OutboxMessage.channel), col(OutboxMessage.status)
        )
    ).all()
    return {(channel, status): n for channel, status, n in rows}


def outbox_messages(
    session: Session, status: str | None = None, limit: int = 50
) -> list[OutboxMessage]:
    query = select(OutboxMessage)
    if status:
        query = query.where(OutboxMessage.status == status)
    return list(
        session.exec(query.order_by(col(OutboxMessage.created_at).desc()).limit(limit)).all()
    )
