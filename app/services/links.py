"""The link of an e-mail, with which a place acts on one referral without an account or key.

A link is signed with a secret the service draws once and keeps in its database (every
instance signs and checks alike; nothing per link is stored), and names one referral and its
receiving place. It opens that referral only, as long as the referral is open and for a grace
period once it is final (`link_grace_days`); an older link (`link_days`) of a referral still
open offers to send a fresh one to the place's e-mail on record, a few times an hour at most."""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from itsdangerous import BadData, URLSafeTimedSerializer
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from app.config import Settings
from app.db import engine_of, writing
from app.models import (
    OutboxMessage,
    Place,
    Principal,
    Referral,
    Role,
    ServerSecret,
)
from app.models.common import utcnow
from app.notifications import notify
from app.services.cache import cached
from app.triage.lifecycle import FINAL, ReferralStatus, effective_status

VIA = "lien_email"
NEW_LINKS_PER_HOUR = 3
_SALT = "passerelle-lien-email"


def _draw_secret(session: Session) -> str:
    """The links' secret, drawn by the first instance to need it (its own transaction: the
    cache's session only reads)."""
    engine: Engine = engine_of(session)
    table = ServerSecret.__table__  # type: ignore[attr-defined]
    insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
    with engine.begin() as connection:
        connection.execute(
            insert(table)
            .values(name="links", value=secrets.token_urlsafe(48), created_at=utcnow())
            .on_conflict_do_nothing(index_elements=["name"])
        )
        return str(
            connection.execute(select(table.c.value).where(table.c.name == "links")).scalar_one()
        )


def link_secret(session: Session) -> str:
    """The secret every instance signs links with (this process's copy: app.services.cache;
    it never changes)."""
    return cached(engine_of(session), "server_secret", _draw_secret).get()


@dataclass(frozen=True, slots=True)
class Link:
    token: str
    referral_id: str
    place_id: str
    issued_at: datetime


class LinkState(StrEnum):
    OPEN = "open"  # the page, and its steps
    RENEWABLE = "renewable"  # too old: a fresh one can be sent to the place
    CLOSED = "closed"  # the referral is over: nothing left to do with it


def make_link(secret: str, referral_id: str, place_id: str) -> str:
    return str(URLSafeTimedSerializer(secret, salt=_SALT).dumps([referral_id, place_id]))


def read_link(secret: str, token: str) -> Link | None:
    """The link a token is, or None when it was not signed here (mistyped, tampered)."""
    try:
        (referral_id, place_id), issued = URLSafeTimedSerializer(secret, salt=_SALT).loads(
            token, return_timestamp=True
        )
    except (BadData, ValueError, TypeError):
        return None
    if not isinstance(referral_id, str) or not isinstance(place_id, str):
        return None
    return Link(token, referral_id, place_id, issued.astimezone(UTC))


def csrf_of(secret: str, link: Link) -> str:
    """The token a step's form carries: bound to the link, so that no other page can post
    one (the link itself is in the address, never in a cookie)."""
    return hmac.new(secret.encode(), b"csrf:" + link.token.encode(), hashlib.sha256).hexdigest()


def link_principal(link: Link) -> Principal:
    """Who acts through the link: the receiving place, as its médiateurs would."""
    return Principal(None, Role.MEDIATEUR, link.place_id, None, via=VIA)


def final_since(referral: Referral, now: datetime) -> datetime | None:
    """When the referral became final (None while open)."""
    status = effective_status(ReferralStatus(referral.status), referral.expires_at, now)
    if status not in FINAL:
        return None
    if ReferralStatus(referral.status) in FINAL:
        return referral.updated_at
    return referral.expires_at


def state_of(link: Link, referral: Referral, settings: Settings, now: datetime) -> LinkState:
    ended = final_since(referral, now)
    if ended is not None and now > ended + timedelta(days=settings.link_grace_days):
        return LinkState.CLOSED
    if now > link.issued_at + timedelta(days=settings.link_days):
        return LinkState.RENEWABLE if ended is None else LinkState.CLOSED
    return LinkState.OPEN


def referral_of(session: Session, link: Link) -> Referral | None:
    """The referral the link names, if it still goes to the place the link was sent to."""
    referral = session.get(Referral, link.referral_id)
    return referral if referral is not None and referral.place_id == link.place_id else None


def send_new_link(session: Session, link: Link, now: datetime | None = None) -> bool:
    """Queues an e-mail with a fresh link to the place's address on record (never one typed
    on the page); False when the place has no address or had its few links this hour."""
    now = now or utcnow()
    with writing(session):
        referral = referral_of(session, link)
        place = session.get(Place, link.place_id)
        if referral is None or place is None or not place.email:
            return False
        sent = session.execute(
            select(func.count())
            .select_from(OutboxMessage)
            .where(
                col(OutboxMessage.referral_id) == referral.id,
                col(OutboxMessage.event) == notify.NEW_LINK,
                col(OutboxMessage.created_at) > now - timedelta(hours=1),
            )
        ).scalar_one()
        if sent >= NEW_LINKS_PER_HOUR:
            return False
        notify.queue(session, referral, None, now, event=notify.NEW_LINK)
        session.commit()
    return True
