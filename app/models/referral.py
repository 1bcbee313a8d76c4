"""Referrals to a médiation place, and the append-only handoff log."""

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict
from pydantic import Field as PydField
from sqlalchemy import Index, text
from sqlmodel import Field, SQLModel

from app.models.common import InputModel, UtcDatetime, new_id, utcnow
from app.models.orientation import ProcedureOut
from app.places.models import PlaceSummary
from app.triage.lifecycle import ReferralStatus


class Referral(SQLModel, table=True):
    # Match the scoped, newest-first lists (see migration 0002).
    __table_args__ = (
        *(
            Index(f"ix_referral_{side}{suffix}", side, *columns, "created_at", "id")
            for side in ("place_id", "origin_place_id")
            for suffix, columns in (("_created", ()), ("_status_created", ("status",)))
        ),
        Index("ix_referral_commune_day", "commune", "day"),  # statistics (migration 0005)
        # The median hours to first contact read in order (migration 0013).
        Index(
            "ix_referral_first_contact_day",
            "first_contact_hours",
            "day",
            sqlite_where=text("first_contact_hours IS NOT NULL"),
            postgresql_where=text("first_contact_hours IS NOT NULL"),
        ),
        # The open referrals past their deadline, which statistics read live (migration 0014).
        Index(
            "ix_referral_open_expires",
            "expires_at",
            sqlite_where=text("status IN ('en_attente', 'acceptee')"),
            postgresql_where=text("status IN ('en_attente', 'acceptee')"),
        ),
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
    # The orientation's day (Europe/Paris), for statistics without a join: a re-orientation
    # keeps it.
    day: date
    created_at: datetime = Field(default_factory=utcnow, index=True)
    updated_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    version: int = 1
    # Kept by the transitions (app.services.lifecycle._apply) for statistics: whether and when
    # the place accepted, how long the first contact took, why it refused.
    accepted_at: datetime | None = None
    first_contact_hours: float | None = None
    refusal_reason: str | None = None
    # When its place was reminded of its deadline (app.notifications.notify).
    reminded_at: datetime | None = None


# What a referral takes from its orientation, and a re-orientation from the referral it
# follows: the same columns on both tables, so a new one is added here once.
REFERRAL_INHERITS = ("origin_place_id", "profile", "theme", "urgent", "commune", "day")


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
    actor_via: str | None = None  # "lien_email": the place acted from its e-mail's link
    # The person who acted, signed in, and the membership they acted in (None: a key did).
    actor_user_id: str | None = Field(default=None, foreign_key="user_account.id")
    actor_membership_id: str | None = Field(default=None, foreign_key="membership.id")
    from_status: str | None = None
    to_status: str | None = None
    reason: str | None = None
    note: str | None = None


class PersonOut(BaseModel):
    consent: bool
    consent_at: UtcDatetime | None = None
    consent_text_version: str | None = None
    erased_at: UtcDatetime | None = PydField(
        default=None,
        description="Coordonnées effacées (à la demande de la personne ou au terme de leur "
        "durée de conservation) : plus rien à afficher.",
    )
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
    version: int = PydField(description="Changes at every transition; the ETag carries it.")
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


class TransitionIn(InputModel):
    """A step of the referral's lifecycle: the new status, and why."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"status": "acceptee"},
                {"status": "refusee", "reason": "pas_de_capacite", "note": "Complet en mars."},
                {"status": "terminee", "reason": "autonome sur ameli.fr"},
            ]
        },
    )

    status: ReferralStatus
    reason: str | None = PydField(
        default=None,
        max_length=200,
        description=(
            "Obligatoire pour « refusee » : hors_territoire, releve_de_france_services, "
            "pas_de_capacite ou autre. Libre ailleurs (l'issue, pour « terminee »)."
        ),
    )
    note: str | None = PydField(default=None, max_length=1000)


class ReorientIn(InputModel):
    place_id: str | None = PydField(
        default=None,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Le lieu choisi ; sinon le plus proche adapté qui n'a pas refusé.",
    )


class HandoffEventOut(BaseModel):
    """One entry of the append-only log of a referral."""

    at: UtcDatetime
    kind: str
    actor_role: str
    actor_place: PlaceRef | None
    via: str | None = PydField(
        default=None,
        description="« lien_email » : le lieu a agi depuis le lien de son e-mail, sans clé.",
    )
    from_status: ReferralStatus | None
    to_status: ReferralStatus | None
    reason: str | None
    note: str | None


class ReferralPage(BaseModel):
    items: list[ReferralOut]
    next_cursor: str | None


class ReferralSummary(BaseModel):
    by_status: dict[ReferralStatus, int]
    open: int = PydField(description="En attente, acceptées ou contactées.")
    urgent_open: int = PydField(description="Parmi les ouvertes, celles d'une démarche urgente.")
