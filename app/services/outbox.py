"""Delivery of the outbox: e-mails by SMTP, webhooks signed as the Standard Webhooks
specification says. At least once: a message is claimed for a while (a lease), sent, then
marked; a crash in between leaves it due again when the lease ends, and receivers deduplicate
by its id (`webhook-id`, the e-mail's Message-ID). Failures are retried with exponential
backoff, then the message is dead (`passerelle outbox list`)."""

import asyncio
import contextlib
import html
import ipaddress
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from functools import partial
from typing import Any
from urllib.parse import unquote, urlsplit

import aiosmtplib
import httpx
import orjson
from sqlmodel import Session, col, func, select
from standardwebhooks import Webhook as Signer

from app.config import Settings
from app.db import Db, writing
from app.errors import invalid
from app.models import OutboxMessage, Webhook
from app.models.common import LOCAL_TZ, utcnow
from app.services.links import link_secret, make_link
from app.services.notifications import NEW_LINK, TO_RECEIVER
from app.triage import PROCEDURE_THEMES
from app.triage.lifecycle import REFUSAL_REASONS

LEASE = timedelta(minutes=2)  # a claimed message is due again after this, if never marked
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
    return min(BACKOFF * 2 ** (attempts - 1), MAX_BACKOFF)


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
        +
        "<p><small>Ce message ne contient aucune donnée personnelle : retrouvez la personne par "
        "son code.</small></p></body></html>"
    )
    return subject, text, page


# --- where webhooks may go --------------------------------------------------------------


def _private(address: str | int) -> bool:
    """Not a public Internet address: private, loopback, link-local, reserved…"""
    return not ipaddress.ip_address(address).is_global


def check_webhook_url(url: str, allow_private: bool, loc: list[str | int]) -> None:
    """https only (http on the loopback alone), and never an internal host unless the admin
    allows private addresses (PASSERELLE_WEBHOOK_ALLOW_PRIVATE): 422 otherwise."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host:
        raise invalid(loc, "Adresse de webhook invalide : https://… attendu.")
    try:
        addresses = {a[4][0] for a in socket.getaddrinfo(host, parts.port or 443)}
    except (socket.gaierror, UnicodeError) as exc:
        raise invalid(loc, f"Hôte de webhook introuvable : {host}.") from exc
    loopback = all(ipaddress.ip_address(a).is_loopback for a in addresses)
    if parts.scheme == "http" and not loopback:
        raise invalid(loc, "Un webhook doit être en https:// (http:// : boucle locale seulement).")
    if not allow_private and any(_private(a) for a in addresses):
        raise invalid(
            loc,
            f"Adresse privée ou interne refusée pour un webhook ({host}) : seul un "
            "administrateur peut l'autoriser (PASSERELLE_WEBHOOK_ALLOW_PRIVATE).",
        )


async def _resolves_private(url: str) -> bool:
    parts = urlsplit(url)
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(parts.hostname, parts.port or 443)
    return any(_private(info[4][0]) for info in infos)


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


@dataclass
class DeliveryReport:
    sent: int = 0
    failed: int = 0
    dead: int = 0
    errors: list[str] = field(default_factory=list)


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


def _claim(session: Session, channels: list[str], now: datetime) -> list[Claimed]:
    """Takes up to BATCH due messages for a lease, counting the attempt."""
    with writing(session):
        query = (
            select(OutboxMessage, Webhook.secret)
            .outerjoin(Webhook, col(Webhook.id) == col(OutboxMessage.webhook_id))
            .where(*_due(channels, now))
            .order_by(col(OutboxMessage.next_attempt_at))
            .limit(BATCH)
        )
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(of=OutboxMessage, skip_locked=True)  # type: ignore[arg-type]
        claimed = []
        for message, secret in session.exec(query).all():
            message.attempts += 1
            message.next_attempt_at = now + LEASE
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
                )
            )
        session.commit()
    return claimed


def _mark(
    session: Session, results: dict[str, str | None], claimed: list[Claimed], max_attempts: int
) -> DeliveryReport:
    report = DeliveryReport()
    now = utcnow()
    with writing(session):
        for item in claimed:
            message = session.get_one(OutboxMessage, item.id)
            error = results[item.id]
            if error is None:
                message.status, message.sent_at, message.last_error = "sent", now, None
                report.sent += 1
            elif item.attempts >= max_attempts or error == GONE:
                message.status, message.last_error = "dead", error
                report.dead += 1
            else:
                message.next_attempt_at = now + backoff(item.attempts)
                message.last_error = error
                report.failed += 1
            if error:
                report.errors.append(f"{item.id}: {error}")
            session.add(message)
        session.commit()
    return report


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


async def _send_emails(
    items: list[Claimed], settings: Settings, secret: str, results: dict[str, str | None]
) -> None:
    assert settings.smtp_url
    client = aiosmtplib.SMTP(**_smtp(settings.smtp_url))
    try:
        await client.connect()  # STARTTLS when offered, then login when credentials are given
    except (aiosmtplib.SMTPException, OSError) as exc:
        for item in items:
            results[item.id] = f"SMTP injoignable : {type(exc).__name__}"
        return
    try:
        for item in items:
            subject, text, page = render_email(item.content, settings.public_url, secret)
            message = EmailMessage()
            message["From"] = settings.mail_from
            message["To"] = item.recipient
            message["Subject"] = subject
            message["Message-ID"] = f"<{item.id}@passerelle>"
            message.set_content(text)
            message.add_alternative(page, subtype="html")
            try:
                await client.send_message(message)
                results[item.id] = None
            except (aiosmtplib.SMTPException, OSError) as exc:
                results[item.id] = f"SMTP : {type(exc).__name__} {str(exc)[:200]}"
    finally:
        with contextlib.suppress(aiosmtplib.SMTPException, OSError):
            await client.quit()


async def _send_webhooks(
    items: list[Claimed], settings: Settings, results: dict[str, str | None]
) -> None:
    limits = httpx.Limits(max_connections=CONCURRENT_DELIVERIES)
    async with httpx.AsyncClient(timeout=10, follow_redirects=False, limits=limits) as client:
        turns = asyncio.Semaphore(CONCURRENT_DELIVERIES)

        async def one(item: Claimed) -> None:
            async with turns:
                await send(item)

        async def send(item: Claimed) -> None:
            try:
                if not settings.webhook_allow_private and await _resolves_private(item.recipient):
                    results[item.id] = "adresse privée refusée"
                    return
                body = orjson.dumps(item.content).decode()
                now = utcnow()
                signature = Signer(item.secret or "").sign(item.id, now, body)
                answer = await client.post(
                    item.recipient,
                    content=body,
                    headers={
                        "content-type": "application/json",
                        "webhook-id": item.id,
                        "webhook-timestamp": str(int(now.timestamp())),
                        "webhook-signature": signature,
                    },
                )
                if answer.status_code == 410:  # Gone: the receiver asks us to stop
                    results[item.id] = GONE
                else:
                    results[item.id] = None if answer.is_success else f"HTTP {answer.status_code}"
            except (httpx.HTTPError, OSError) as exc:
                results[item.id] = f"{type(exc).__name__}"

        await asyncio.gather(*(one(item) for item in items))


async def deliver_due(db: Db, only: str | None = None) -> DeliveryReport:
    """Delivers every due message (of channel `only`, if given), batch after batch; e-mails
    wait while no SMTP server is configured."""
    settings = db.settings
    channels = ["webhook", *(["email"] if settings.smtp_url else [])]
    channels = [c for c in channels if only in (None, c)]
    total = DeliveryReport()
    while True:
        now = utcnow()
        if not await db.read(partial(_any_due, channels=channels, now=now)):
            return total
        claimed = await db.write(partial(_claim, channels=channels, now=now))
        if not claimed:
            return total
        results: dict[str, str | None] = {}
        emails = [c for c in claimed if c.channel == "email"]
        hooks = [c for c in claimed if c.channel == "webhook"]
        await asyncio.gather(
            *([_send_emails(emails, settings, await db.read(link_secret), results)]
              if emails else []),
            *([_send_webhooks(hooks, settings, results)] if hooks else []),
        )
        report = await db.write(
            partial(
                _mark,
                results=results,
                claimed=claimed,
                max_attempts=settings.outbox_max_attempts,
            )
        )
        total.sent += report.sent
        total.failed += report.failed
        total.dead += report.dead
        total.errors += report.errors
        if len(claimed) < BATCH:
            return total


def outbox_counts(session: Session) -> dict[tuple[str, str], int]:
    rows = session.exec(
        select(OutboxMessage.channel, OutboxMessage.status, func.count()).group_by(  # type: ignore[call-overload]
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

