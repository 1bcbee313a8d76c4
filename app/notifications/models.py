"""The outbox of notifications (e-mails, webhook deliveries) and webhook subscriptions."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic import Field as PydField
from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel

from app.models.common import InputModel, UtcDatetime, new_id, utcnow
from app.triage.lifecycle import NOTICES


class OutboxMessage(SQLModel, table=True):
    """One message to deliver, written in the transaction of the handoff event that causes
    it: nothing is sent that did not happen, nothing that happened goes unsent. Its id is the
    message's identity for receivers (`webhook-id`, the e-mail's Message-ID)."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)

    id: str = Field(default_factory=lambda: new_id("msg"), primary_key=True)
    created_at: datetime = Field(default_factory=utcnow)
    channel: str  # "email" or "webhook"
    event: str  # referral.created, referral.refused, referral.reminder, …
    # None for an e-mail to a person about their account (invitation, sign-in link).
    referral_id: str | None = Field(default=None, foreign_key="referral.id", index=True)
    recipient: str  # an e-mail address, or the webhook's URL
    webhook_id: str | None = Field(default=None, foreign_key="webhook.id")
    # E-mail: subject, text, html. Webhook: the JSON body as sent (signed as is).
    content: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    status: str = "pending"  # pending, sent, dead
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow)
    # The lease of the delivery that claimed it (a random token): a message is marked only by
    # the delivery that holds its lease, so a lease lost to another process marks nothing.
    claim: str | None = None
    last_error: str | None = None
    sent_at: datetime | None = None


class Webhook(SQLModel, table=True):
    id: str = Field(default_factory=lambda: new_id("whk"), primary_key=True)
    created_at: datetime = Field(default_factory=utcnow)
    api_key_id: str = Field(foreign_key="api_key.id")
    # The place whose referrals (sent or received) it follows; None: an admin's, every referral.
    place_id: str | None = Field(default=None, foreign_key="place.id", index=True)
    url: str
    events: list[str] = Field(sa_column=Column(JSON, nullable=False))
    secret: str  # whsec_…: needed to sign every delivery, shown once at creation


# The events a webhook may follow, in the order the API documents them (app.triage.lifecycle).
WEBHOOK_EVENTS = tuple(event for event, notice in NOTICES.items() if notice.webhook)


class WebhookIn(InputModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://guichet.example.org/passerelle/webhooks",
                    "events": ["referral.created", "referral.refused"],
                }
            ]
        },
    )

    url: str = PydField(
        max_length=2000, description="https:// (http:// : boucle locale seulement)."
    )
    events: list[str] = PydField(
        min_length=1,
        max_length=len(WEBHOOK_EVENTS),
        description="Événements suivis : " + ", ".join(WEBHOOK_EVENTS) + ".",
        json_schema_extra={"items": {"enum": list(WEBHOOK_EVENTS)}},
    )


class WebhookOut(BaseModel):
    id: str
    url: str
    events: list[str]
    place_id: str | None
    created_at: UtcDatetime


class WebhookCreated(WebhookOut):
    secret: str = PydField(
        description="Clé de signature (Standard Webhooks), affichée cette seule fois."
    )
