"""What each step of a referral tells whom: e-mails to the places and deliveries to the webhooks
that follow them, queued in the outbox in the transaction of the handoff event (delivery:
app.notifications.outbox). Never the person's contact data: the code, the theme, the urgency, a
link."""

from collections.abc import Mapping
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy.engine import Dialect
from sqlmodel import Session, col, select

from app.db import engine_of, insert_row, raw_execute, writing
from app.models import DataVersion, OutboxMessage, Referral, Webhook
from app.models.common import new_id, rfc3339, utcnow
from app.places.service import place_by_id
from app.services.cache import cached
from app.triage.lifecycle import (
    EXPIRABLE,
    NOTICES,
    REMINDER,
    STATUS_TABLE,
    ReferralStatus,
    Told,
)
from app.triage.lifecycle import NEW_LINK as NEW_LINK  # links and outbox name it from here

S = ReferralStatus
# What each step tells whom, derived from the lifecycle's tables (app.triage.lifecycle): the
# event of each status a referral reaches, and who gets each event's e-mail. The receiving
# place's e-mails carry the link it acts with (app.services.links).
EVENTS = {status: info.event for status, info in STATUS_TABLE.items()}
TO_RECEIVER = frozenset(e for e, n in NOTICES.items() if n.email_to is Told.RECEIVER)
TO_SENDER = frozenset(e for e, n in NOTICES.items() if n.email_to is Told.SENDER)


def load_webhooks(session: Session) -> dict[str | None, list[Webhook]]:
    """Subscriptions by place (None: an admin's, following every referral)."""
    found: dict[str | None, list[Webhook]] = {}
    for webhook in session.exec(select(Webhook)).all():
        session.expunge(webhook)
        found.setdefault(webhook.place_id, []).append(webhook)
    return found


def _webhooks(session: Session) -> dict[str | None, list[Webhook]]:
    """The subscriptions as of this transaction. Their version is read here, with a share lock
    on PostgreSQL (a creation or deletion bumps it under an exclusive one,
    app.notifications.webhooks): a subscription committed before this transaction is always
    seen, however stale this process's copy, and one being deleted waits for this
    transaction, or is not seen."""
    copy = cached(engine_of(session), "webhook", load_webhooks)
    connection = session.connection()
    # Every orientation reads it: straight on the driver's cursor, compiled once per dialect
    # (through the ORM, building and running this query was 15% of an orientation's CPU).
    cursor = raw_execute(connection, _version_sql(connection.dialect))
    row = cursor.fetchone()
    cursor.close()
    version = row[0] if row else None
    found = copy.fresh()
    if found is not None and copy.version == version:
        return found
    found = load_webhooks(session)  # changed since the copy was read: read them here
    copy.put(found, version)
    return found


@lru_cache
def _version_sql(dialect: Dialect) -> str:
    query = select(DataVersion.version).where(col(DataVersion.name) == "webhook")
    if dialect.name == "postgresql":
        query = query.with_for_update(read=True)
    return str(query.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def _value(referral: Referral | Mapping[str, Any], name: str) -> Any:
    return referral[name] if isinstance(referral, Mapping) else getattr(referral, name)


def queue(
    session: Session,
    referral: Referral | Mapping[str, Any],
    status: ReferralStatus | None,
    at: datetime,
    reason: str | None = None,
    cancelled_by: str | None = None,
    event: str | None = None,
) -> None:
    """Queues what the referral reaching `status` (or `event`, for a reminder) tells, in the
    caller's transaction."""
    event = event or EVENTS[status]  # type: ignore[index]
    referral_id = _value(referral, "id")
    place = place_by_id(session, _value(referral, "place_id"))
    origin = place_by_id(session, _value(referral, "origin_place_id"))
    facts = {
        "event": event,
        "referral_id": referral_id,
        "place_id": place.id,
        "code": _value(referral, "code"),
        "status": (status or S(_value(referral, "status"))).value,
        "theme": _value(referral, "theme"),
        "urgent": bool(_value(referral, "urgent")),
        "reason": reason,
        "place": place.name,
        "origin_place": origin.name,
        "expires_at": rfc3339(_value(referral, "expires_at")),
        "at": rfc3339(at),
    }
    notice = NOTICES[event]
    recipients: list[str | None] = []
    if notice.email_to is Told.RECEIVER:
        recipients.append(place.email)
    elif notice.email_to is Told.SENDER:
        recipients.append(origin.email)
    elif notice.email_to is Told.OTHER_SIDE:
        recipients.append(place.email if cancelled_by == "agent" else origin.email)
    for address in recipients:
        if address:
            enqueue(session, "email", event, referral_id, address, None, facts, at)
    if not notice.webhook:  # e-mails only: the reminder, a fresh link
        return
    following = _webhooks(session)
    places = {_value(referral, "place_id"), _value(referral, "origin_place_id")}
    for place_id in (*places, None):
        for webhook in following.get(place_id, ()):
            if event in webhook.events:
                body = {
                    "type": event,
                    "timestamp": rfc3339(at),
                    "data": {
                        "id": referral_id,
                        "code": facts["code"],
                        "status": facts["status"],
                        "event": event,
                        "theme": facts["theme"],
                        "urgent": facts["urgent"],
                        "reason": reason,
                    },
                }
                enqueue(session, "webhook", event, referral_id, webhook.url, webhook.id, body, at)


def enqueue(
    session: Session,
    channel: str,
    event: str,
    referral_id: str | None,
    recipient: str,
    webhook_id: str | None,
    content: dict[str, Any],
    at: datetime,
) -> None:
    """One message in the outbox, in the caller's transaction (an account's e-mail has no
    referral: app.services.accounts)."""
    insert_row(
        session,
        OutboxMessage,
        {
            "id": new_id("msg"),
            "created_at": at,
            "channel": channel,
            "event": event,
            "referral_id": referral_id,
            "recipient": recipient,
            "webhook_id": webhook_id,
            "content": content,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": at,
        },
    )


def remind_due(session: Session, days_before: float, now: datetime | None = None) -> int:
    """Queues one reminder per open referral whose deadline is less than `days_before` away
    (run with the expiry check, and by `passerelle referrals expire`)."""
    now = now or utcnow()
    total = 0
    due_now = (
        col(Referral.status).in_([s.value for s in EXPIRABLE]),
        col(Referral.reminded_at).is_(None),
        col(Referral.expires_at) > now,
        col(Referral.expires_at) <= now + timedelta(days=days_before),
    )
    while True:
        # A read first: with nothing to remind, no write lock is taken.
        found = session.exec(select(Referral.id).where(*due_now).limit(1)).first()
        session.rollback()
        if found is None:
            return total
        with writing(session):
            # Locked while reminded; rows another process is reminding are skipped, and a row
            # it reminded since this one's snapshot no longer matches once locked (PostgreSQL
            # reads the locked row again): one reminder per referral however many processes.
            query = select(Referral).where(*due_now).limit(500)
            if session.get_bind().dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            due = session.exec(query).all()
            for referral in due:
                referral.reminded_at = now
                session.add(referral)
                queue(session, referral, None, now, event=REMINDER)
            session.commit()
        total += len(due)
        if len(due) < 500:
            return total
