"""Referrals to a médiation place, and the append-only handoff log."""

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel
from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from app.models.common import UtcDatetime, new_id, utcnow
from app.models.orientation import ProcedureOut
from app.models.place import PlaceSummary


class ReferralStatus(StrEnum):
    EN_ATTENTE = "en_attente"
    ACCEPTEE = "acceptee"
    REFUSEE = "refusee"
    ANNULEE = "annulee"
    EXPIREE = "expiree"
    CONTACTEE = "contactee"
    NON_VENUE = "non_venue"
    TERMINEE = "terminee"
    REORIENTEE = "reorientee"


class Referral(SQLModel, table=True):
    # Match the scoped, newest-first lists (see migration 0002).
    __table_args__ = tuple(
        Index(f"ix_referral_{side}{suffix}", side, *columns, "created_at", "id")
        for side in ("place_id", "origin_place_id")
        for suffix, columns in (("_created", ()), ("_status_created", ("status",)))
    )

    id: str = Field(default_factory=lambda: new_id("orv"), primary_key=True)
    orientation_id: str = Field(foreign_key="orientation.id", index=True)
    previous_referral_id: str | None = Field(default=None, foreign_key="referral.id")
    code: str = Field(unique=True, index=True, max_length=7)
    status: str = Field(default=ReferralStatus.EN_ATTENTE, index=True)
    place_id: str = Field(foreign_key="place.id")
    origin_place_id: str = Field(foreign_key="place.id")
    distance_km: float
    profile: str
    theme: str
    urgent: bool
    commune: str = Field(foreign_key="commune.code")
    created_at: datetime = Field(default_factory=utcnow, index=True)
    updated_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    version: int = 1


class HandoffEvent(SQLModel, table=True):
    __tablename__ = "handoff_event"

    id: int | None = Field(default=None, primary_key=True)
    orientation_id: str = Field(foreign_key="orientation.id", index=True)
    referral_id: str | None = Field(default=None, foreign_key="referral.id", index=True)
    at: datetime = Field(default_factory=utcnow)
    kind: str  # "orientation" or "transition"
    route: str | None = None
    actor_key_id: str | None = Field(default=None, foreign_key="api_key.id")
    actor_role: str
    actor_place_id: str | None = None
    from_status: str | None = None
    to_status: str | None = None
    reason: str | None = None
    note: str | None = None


class PersonOut(BaseModel):
    consent: bool
    first_name: str | None = None
    phone: str | None = None
    email: str | None = None
    availability: str | None = None


class PlaceRef(BaseModel):
    id: str
    name: str


class ReferralOut(BaseModel):
    id: str
    code: str
    status: ReferralStatus
    orientation_id: str
    previous_referral_id: str | None
    place: PlaceSummary
    origin_place: PlaceRef
    profile: str
    procedure: ProcedureOut
    commune: str
    distance_km: float
    created_at: UtcDatetime
    updated_at: UtcDatetime
    expires_at: UtcDatetime
    person: PersonOut


class ReferralPage(BaseModel):
    items: list[ReferralOut]
    next_cursor: str | None
