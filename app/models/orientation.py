"""Orientations: the front-desk decision for one person, and the consent-bound contact."""

import re
from datetime import date, datetime
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    StrictBool,
    field_validator,
    model_validator,
)
from pydantic import Field as PydField
from sqlalchemy import JSON, Column, Index, text
from sqlmodel import Field, SQLModel

from app.models.common import InputModel, UtcDatetime, new_id, utcnow
from app.models.commune import COMMUNE_PATTERN
from app.places.models import PlaceAlternative, PlaceSummary
from app.triage import PROCEDURE_THEMES, Profile, ProfileSource, Route
from app.triage.consent import CONSENT_VERSIONS
from app.triage.needs import Day, Half, Modality, Needs, slot
from app.triage.needs import Public as PublicNeed
from app.triage.needs import Specific as SpecificNeed


class Orientation(SQLModel, table=True):
    # Statistics of a territory over a period (see migration 0005).
    __table_args__ = (
        Index("ix_orientation_commune_day", "commune", "day"),
        # The few orientations that state needs, for the coordinators' totals (migration 0013).
        Index(
            "ix_orientation_needs_day",
            "day",
            sqlite_where=text("needs IS NOT NULL"),
            postgresql_where=text("needs IS NOT NULL"),
        ),
    )

    id: str = Field(default_factory=lambda: new_id("ori"), primary_key=True)
    created_at: datetime = Field(default_factory=utcnow, index=True)
    # created_at's day in Europe/Paris: statistics count by the people's days, months, weeks.
    day: date
    api_key_id: str = Field(foreign_key="api_key.id")
    origin_place_id: str = Field(foreign_key="place.id", index=True)
    profile: str
    profile_source: str
    answers: dict[str, str] | None = Field(default=None, sa_column=Column(JSON))
    route: str
    do_now_at_france_services: bool
    reasons: list[str] = Field(sa_column=Column(JSON, nullable=False))
    rules_version: str
    theme: str
    urgent: bool
    already_followed: bool
    # Found by ix_orientation_commune_day, which begins with it (migration 0017).
    commune: str = Field(foreign_key="commune.code")
    consent: bool
    # Consent on record: when, and which wording was shown (app.triage.consent); by the key and
    # place of the orientation (api_key_id, origin_place_id).
    consent_at: datetime | None = None
    consent_text_version: str | None = None
    # When the contact data was erased (at the person's request or after the retention time),
    # and when the record was stripped of everything personal (app.services.personal_data).
    contact_erased_at: datetime | None = None
    purged_at: datetime | None = None
    alternatives: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    # What the agent said of the person's needs (NeedsIn), and the matching rules applied.
    # None is SQL's NULL (not JSON's null), so that an index leaves out the many without.
    needs: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON(none_as_null=True)))
    matching_version: str | None = None
    # When no place within the distance met the needs: the nearest that does (id, name, km).
    nearest_suitable: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))


class Contact(SQLModel, table=True):
    """Personal data, kept apart so that erasing it touches one row and nothing else."""

    orientation_id: str = Field(foreign_key="orientation.id", primary_key=True)
    first_name: str | None = None
    phone: str | None = None
    email: str | None = None
    availability: str | None = None


# --- API schemas -------------------------------------------------------------------------


class AssessmentIn(InputModel):
    profile: Profile | None = None
    answers: dict[str, str] | None = PydField(default=None, max_length=20)

    @model_validator(mode="after")
    def _one_of(self) -> "AssessmentIn":
        if self.profile is None and self.answers is None:
            raise ValueError(
                "Indiquez le profil de la personne (« profile ») ou ses réponses au diagnostic "
                "(« answers »)."
            )
        if self.profile is not None and self.answers is not None:
            raise ValueError(
                "Indiquez le profil de la personne (« profile ») ou ses réponses au diagnostic "
                "(« answers »), pas les deux."
            )
        return self


class ProcedureIn(InputModel):
    theme: str = PydField(
        description="Thème de la démarche (GET /v1/procedure-themes).",
        json_schema_extra={"enum": list(PROCEDURE_THEMES)},
    )
    urgent: StrictBool = False

    @field_validator("theme")
    @classmethod
    def _known_theme(cls, value: str) -> str:
        if value not in PROCEDURE_THEMES:
            raise ValueError(
                "Thème de démarche inconnu. Thèmes possibles : "
                + ", ".join(PROCEDURE_THEMES)
                + " (voir GET /v1/procedure-themes)."
            )
        return value


_PHONE_SEPARATORS = re.compile(r"[\s.\-()]")


class PersonIn(InputModel):
    commune: str = PydField(pattern=COMMUNE_PATTERN)
    consent: StrictBool = False
    consent_text_version: str | None = PydField(
        default=None,
        max_length=40,
        description="Version du texte de consentement montré (GET /v1/consent) ; par défaut "
        "la version en vigueur.",
    )
    first_name: str | None = PydField(default=None, min_length=1, max_length=80)
    phone: str | None = PydField(default=None, max_length=30)
    email: EmailStr | None = PydField(default=None, max_length=254)
    availability: str | None = PydField(default=None, max_length=200)

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        digits = _PHONE_SEPARATORS.sub("", value)
        if re.fullmatch(r"\+33[1-9]\d{8}", digits):
            return "0" + digits[3:]
        if re.fullmatch(r"0[1-9]\d{8}|\+\d{8,15}", digits):
            return digits
        raise ValueError("Numéro de téléphone invalide (exemple : 06 01 02 03 04).")

    @field_validator("consent_text_version")
    @classmethod
    def _known_wording(cls, value: str | None) -> str | None:
        if value is not None and value not in CONSENT_VERSIONS:
            raise ValueError(
                "Version du texte de consentement inconnue ; versions publiées : "
                + ", ".join(CONSENT_VERSIONS)
                + " (voir GET /v1/consent)."
            )
        return value

    @model_validator(mode="after")
    def _contact_needs_consent(self) -> "PersonIn":
        if not self.consent and self.has_contact:
            raise ValueError(
                "Coordonnées transmises sans le consentement de la personne : retirez-les, "
                "ou indiquez son accord (« consent » : true) après lui avoir lu le texte de "
                "consentement (GET /v1/consent)."
            )
        return self

    @property
    def has_contact(self) -> bool:
        return any(
            v is not None for v in (self.first_name, self.phone, self.email, self.availability)
        )


class SlotIn(InputModel):
    day: Day
    half: Half


class NeedsIn(InputModel):
    """What the agent chose to record of the person's needs (GET /v1/needs): matching then
    sends the referral to a place that meets them, or says none does within the distance."""

    specific: list[SpecificNeed] = PydField(
        default_factory=list, max_length=10, description="Prises en charge spécifiques."
    )
    public: list[PublicNeed] = PydField(
        default_factory=list, max_length=10, description="Public de la personne."
    )
    free_only: StrictBool = PydField(default=False, description="Seulement un lieu gratuit.")
    modality: Modality | None = PydField(default=None, description="Forme d'accompagnement.")
    availability: list[SlotIn] = PydField(
        default_factory=list,
        max_length=14,
        description="Les demi-journées où la personne peut venir.",
    )

    def as_needs(self) -> Needs:
        mask = 0
        for chosen in self.availability:
            mask |= slot(chosen.day, chosen.half)
        return Needs(
            frozenset(self.specific),
            frozenset(self.public),
            self.free_only,
            self.modality,
            mask,
        )

    def stored(self) -> dict[str, Any] | None:
        """As the orientation keeps it; None when nothing was said."""
        data = self.model_dump(mode="json")
        return data if self.as_needs().any else None


class OrientationIn(InputModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "assessment": {"profile": "non_autonome_non_refractaire"},
                    "procedure": {"theme": "caf", "urgent": True},
                    "already_followed": False,
                    "person": {
                        "commune": "19272",
                        "consent": True,
                        "first_name": "Jeanne",
                        "phone": "0601020304",
                        "availability": "mardi matin",
                    },
                },
                {
                    "assessment": {
                        "answers": {
                            "usage_appareil": "jamais",
                            "courriel": "non",
                            "identifiants": "non",
                            "demarches_en_ligne": "jamais",
                            "envie_apprendre": "oui",
                        }
                    },
                    "procedure": {"theme": "retraite", "urgent": False},
                    "person": {"commune": "19031", "consent": False},
                },
            ]
        },
    )

    assessment: AssessmentIn
    procedure: ProcedureIn
    already_followed: StrictBool = False
    person: PersonIn
    needs: NeedsIn | None = None


class ProcedureOut(BaseModel):
    theme: str
    urgent: bool


class ReferralBrief(BaseModel):
    id: str
    code: str
    status: str
    place: PlaceSummary
    expires_at: UtcDatetime


class ConsentOut(BaseModel):
    given: bool
    at: UtcDatetime | None
    text_version: str | None


class OrientationOut(BaseModel):
    id: str
    created_at: UtcDatetime
    profile: Profile
    profile_source: ProfileSource
    route: Route
    do_now_at_france_services: bool
    reasons: list[str]
    rules_version: str
    procedure: ProcedureOut
    commune: str
    consent: ConsentOut
    referral: ReferralBrief | None
    alternatives: list[PlaceAlternative]
    needs: dict[str, Any] | None = PydField(
        default=None, description="Les besoins indiqués par l'agent, tels qu'enregistrés."
    )
    nearest_suitable: PlaceAlternative | None = PydField(
        default=None,
        description="Quand aucun lieu à distance ne répond aux besoins : le plus proche qui y "
        "répond, au-delà de la distance, pour que l'agent décide.",
    )
