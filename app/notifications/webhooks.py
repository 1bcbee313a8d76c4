"""Webhook subscriptions: a place's tool (or an admin's) follows the events of its referrals."""

import base64
import secrets

from sqlalchemy import ColumnElement, true, update
from sqlmodel import Session, col, select

from app.config import Settings
from app.db import writing
from app.models import OutboxMessage, Principal, Role, Webhook
from app.notifications import webhook_address
from app.notifications.models import WEBHOOK_EVENTS, WebhookCreated, WebhookIn, WebhookOut
from app.notifications.outbox import lock_in_order
from app.places.service import get_place
from app.problems import invalid
from app.services.cache import bump
from app.services.lookup import first_or_404


def _out(webhook: Webhook) -> WebhookOut:
    return WebhookOut(
        id=webhook.id,
        url=webhook.url,
        events=webhook.events,
        place_id=webhook.place_id,
        created_at=webhook.created_at,
    )


def check_webhook(data: WebhookIn, settings: Settings) -> None:
    """The events and the URL of a new subscription: 422 if they will not do; the URL kept
    normalised. It resolves the host (blocking: call it from a thread)."""
    unknown = [e for e in data.events if e not in WEBHOOK_EVENTS]
    if unknown:
        raise invalid(
            ["body", "events"],
            f"Événement inconnu : {', '.join(unknown)}. Possibles : {', '.join(WEBHOOK_EVENTS)}.",
        )
    data.url = webhook_address.check(data.url, settings.webhook_allow_private, ["body", "url"])


def create_webhook(session: Session, principal: Principal, data: WebhookIn) -> WebhookCreated:
    """Subscribes the caller's place (after check_webhook)."""
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    with writing(session):
        webhook = Webhook(
            api_key_id=principal.key,
            place_id=principal.place_id if principal.role is not Role.ADMIN else None,
            url=data.url,
            events=sorted(set(data.events), key=WEBHOOK_EVENTS.index),
            secret=secret,
        )
        session.add(webhook)
        bump(session, "webhook")
        session.flush()
        created = WebhookCreated(**_out(webhook).model_dump(), secret=secret)
        session.commit()
    return created


def _managed(principal: Principal) -> ColumnElement[bool]:
    """The one rule of whose webhooks a caller manages: its place's; an admin, everyone's."""
    if principal.role is Role.ADMIN:
        return true()
    return col(Webhook.place_id) == principal.place_id


def list_webhooks(
    session: Session, principal: Principal, place_id: str | None = None
) -> list[WebhookOut]:
    """The webhooks the caller manages (app.notifications.webhooks._managed); `place_id`: only
    that place's (an unknown place: 404). Without it, an admin lists its own, which follow
    every place."""
    query = select(Webhook).where(_managed(principal))
    if place_id is not None:
        get_place(session, place_id)
        query = query.where(col(Webhook.place_id) == place_id)
    elif principal.role is Role.ADMIN:
        query = query.where(col(Webhook.place_id).is_(None))
    rows = session.exec(query.order_by(col(Webhook.created_at))).all()
    return [_out(w) for w in rows]


def delete_webhook(session: Session, principal: Principal, webhook_id: str) -> None:
    with writing(session):
        # The version first: it waits for the orientations queueing for this subscription
        # right now (they hold it shared, app.notifications.notify) and makes later ones
        # wait, so the messages updated below include theirs and none refers to it after.
        bump(session, "webhook")
        webhook = first_or_404(
            session,
            select(Webhook).where(Webhook.id == webhook_id, _managed(principal)),
            webhook_id,
            "Aucun webhook avec cet identifiant.",
        )
        # Deliveries not made yet die with it; every message it had stays in the outbox's
        # history, no longer tied to it.
        mine = col(OutboxMessage.webhook_id) == webhook.id
        lock_in_order(session, mine)  # as deliveries marking them do: no deadlock
        session.execute(
            update(OutboxMessage)
            .where(mine, col(OutboxMessage.status) == "pending")
            .values(status="dead", last_error="webhook supprimé")
        )
        session.execute(update(OutboxMessage).where(mine).values(webhook_id=None))
        session.delete(webhook)
        session.commit()
