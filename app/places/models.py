"""Places: France Services and lieux de médiation numérique, in the national schema's terms."""

from datetime import date, datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import (
    BaseModel,
    EmailStr,
    StrictBool,
    StrictFloat,
    StrictInt,
    computed_field,
    field_validator,
)
from pydantic import Field as PydField
from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from app.models.common import Day, InputModel, UtcDatetime, new_id, utcnow
from app.models.commune import COMMUNE_PATTERN
from app.places.hours import hours_in_french
from app.triage.needs import Fees, Modality
from app.triage.needs import Public as PublicNeed
from app.triage.needs import Specific as SpecificNeed


class PlaceKind(StrEnum):
    MEDIATION = "mediation"
    FRANCE_SERVICES = "france_services"


class Place(SQLModel, table=True):
    # A place is known in its source by (source, source_id): the schema's `source` (who
    # collected it) and `id` (unique within that source only: one export numbers from 0).
    __table_args__ = (UniqueConstraint("source", "source_id", name="uq_place_source"),)

    id: str = Field(default_factory=lambda: new_id("lieu"), primary_key=True)
    source: str = ""
    source_id: str | None = Field(default=None, index=True)
    pivot: str | None = None  # SIRET, RNA or RIDET of the structure
    source_date: date | None = None  # the source's `date_maj`
    # [source, id] of the records of other sources (or repeats) merged into this place.
    merged_ids: list[list[str]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False, default=list)
    )
    name: str
    kind: str = Field(index=True)
    address: str = ""
    postal_code: str = ""
    commune: str = Field(default="", index=True)  # INSEE code
    commune_name: str = ""
    latitude: float = Field(index=True)
    longitude: float
    # True when the source gave no usable point and the commune's routing point stands in.
    approximate_location: bool = False
    services: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    phone: str | None = None
    email: str | None = None
    website: str | None = None
    hours: str | None = None
    accepts_referrals: bool = True
    # No new referral until this day (included): holidays, no one to receive.
    paused_until: date | None = None
    # The most open referrals it takes at once (None: no limit).
    capacity: int | None = None
    # What the national schema says the place offers, as slugs of app.triage.needs.
    specific: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    publics: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    fees: str | None = None
    modalities: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class PlaceEvent(SQLModel, table=True):
    """The history of a place's own changes (pause, e-mail, phone, hours): who, how, when,
    what before and after."""

    __tablename__ = "place_event"

    id: int | None = Field(default=None, primary_key=True)
    place_id: str = Field(foreign_key="place.id", index=True)
    at: datetime = Field(default_factory=utcnow)
    actor_role: str
    actor_key_id: str | None = Field(default=None, foreign_key="api_key.id")
    actor_via: str | None = None
    field: str
    old_value: str | None = None
    new_value: str | None = None


class PlaceIn(InputModel):
    """What an admin sends to create or replace a place."""

    name: str = PydField(min_length=1, max_length=200)
    kind: PlaceKind
    address: str = PydField(default="", max_length=300)
    postal_code: str = PydField(default="", pattern=r"^(\d{5})?$")
    commune: str = PydField(pattern=COMMUNE_PATTERN)
    commune_name: str = PydField(default="", max_length=200)
    # Strict (as accepts_referrals and capacity): false is not 0, nor « 45 » a number.
    latitude: StrictFloat = PydField(ge=-90, le=90)
    longitude: StrictFloat = PydField(ge=-180, le=180)
    services: list[str] = PydField(default_factory=list, max_length=30)
    phone: str | None = PydField(default=None, max_length=30)
    email: EmailStr | None = None
    website: str | None = PydField(default=None, max_length=300)
    hours: str | None = PydField(default=None, max_length=500)
    accepts_referrals: StrictBool = True
    paused_until: Day | None = PydField(
        default=None,
        description="Aucune nouvelle orientation jusqu'à ce jour inclus (congés, pas de "
        "capacité d'accueil) ; null : le lieu reçoit.",
    )
    capacity: StrictInt | None = PydField(
        default=None,
        ge=0,
        le=100_000,
        description="Le plus d'orientations ouvertes que le lieu prend à la fois ; null : "
        "pas de limite.",
    )
    specific: list[SpecificNeed] = PydField(
        default_factory=list,
        max_length=20,
        description="Prises en charge spécifiques (prise_en_charge_specifique du schéma).",
    )
    publics: list[PublicNeed] = PydField(
        default_factory=list,
        max_length=20,
        description="Publics spécifiquement adressés (publics_specifiquement_adresses).",
    )
    fees: Fees | None = PydField(default=None, description="Frais à charge (frais_a_charge).")
    modalities: list[Modality] = PydField(
        default_factory=list,
        max_length=10,
        description="Modalités d'accompagnement (modalites_accompagnement).",
    )

    @field_validator("services")
    @classmethod
    def _services_short(cls, value: list[str]) -> list[str]:
        if any(len(s) > 120 or not s.strip() for s in value):
            raise ValueError(
                "Chaque service doit être un texte non vide de 120 caractères au plus."
            )
        return value


class PlaceContact(InputModel):
    """How a place is reached, as the place itself corrects it (the same bounds as PlaceIn)."""

    email: EmailStr | None = None
    phone: str | None = PydField(default=None, max_length=30)
    hours: str | None = PydField(default=None, max_length=500)
    capacity: int | None = PydField(default=None, ge=0, le=100_000)


class _SaysHours(BaseModel):
    if TYPE_CHECKING:  # declared by each subclass, so that it keeps its place in the JSON
        hours: str | None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def hours_text(self) -> str | None:
        """The hours in French, as printed on the slip."""
        return hours_in_french(self.hours)


class PlaceOut(_SaysHours):
    id: str
    name: str
    kind: str
    address: str
    postal_code: str
    commune: str
    commune_name: str
    latitude: float
    longitude: float
    services: list[str]
    phone: str | None
    email: str | None
    website: str | None
    hours: str | None
    accepts_referrals: bool
    paused_until: date | None = None
    capacity: int | None = None
    specific: list[str] = []
    publics: list[str] = []
    fees: str | None = None
    modalities: list[str] = []
    approximate_location: bool = PydField(
        default=False,
        description="Vrai quand la source ne donnait pas de position : celle de la mairie "
        "de la commune la remplace.",
    )
    distance_km: float | None = None
    updated_at: UtcDatetime


class PlaceSummary(_SaysHours):
    """A place as the front desk hands it to a person: where, when, how to reach it."""

    id: str
    name: str
    address: str
    postal_code: str
    commune: str
    commune_name: str
    distance_km: float | None
    phone: str | None
    email: str | None
    hours: str | None


class PlaceAlternative(BaseModel):
    id: str
    name: str
    distance_km: float
