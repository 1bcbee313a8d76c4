"""Answers of the statistics routes (aggregates only: nothing in them names a person)."""

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic import Field as PydField

from app.services.stats import FIGURE, FIGURES, MEDIAN, STATUSES, Figure


class ReferralStatsFilters(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: str = PydField(alias="from", description="Premier jour compris (Europe/Paris).")
    to: str = PydField(description="Dernier jour compris (Europe/Paris).")
    territory: str
    territory_name: str
    group_by: list[str]


def _described(figure: Figure) -> str:
    return f"{figure.label} : {figure.definition} ({figure.computed})"


def _figure(key: str) -> Any:
    return PydField(description=_described(FIGURE[key]))


class ReferralStatsTotals(BaseModel):
    """The exact totals of the period and territory (nothing withheld). Each figure is
    defined once, in app.services.stats.FIGURES."""

    orientations: int = _figure("orientations")
    to_mediateur: int = _figure("to_mediateur")
    not_sent: int = _figure("not_sent")
    to_france_services: int = _figure("to_france_services")
    no_orientation: int = _figure("no_orientation")
    referrals: int = _figure("referrals")
    reoriented: int = _figure("reoriented")
    answered: int = _figure("answered")
    accepted: int = _figure("accepted")
    refused: int = _figure("refused")
    expired_unanswered: int = _figure("expired_unanswered")
    acceptance_rate: float | None = _figure("acceptance_rate")
    accepted_closed: int = _figure("accepted_closed")
    completed: int = _figure("completed")
    no_show: int = _figure("no_show")
    completion_rate: float | None = _figure("completion_rate")
    no_show_rate: float | None = _figure("no_show_rate")
    by_route: dict[str, int] = PydField(description="Les orientations par route.")
    by_status: dict[str, int] = PydField(description="Les envois par statut actuel.")
    median_hours_to_first_contact: float | None = PydField(description=_described(MEDIAN))
    refusal_reasons: dict[str, int] = PydField(
        description="Les envois refusés par motif (`non_precise` sans motif)."
    )
    needs: dict[str, Any] = PydField(
        description="Les orientations faites avec des besoins indiqués (GET /v1/needs) : "
        "`orientations`, `not_met` (sans lieu assez proche qui y réponde), le compte de "
        "chaque besoin `specific` et `public`, `free_only`, chaque `modality`, "
        "`availability` (disponibilités données). Une orientation compte une fois par "
        "besoin indiqué."
    )


class ReferralStats(BaseModel):
    filters: ReferralStatsFilters
    groups: list[dict[str, Any]] = PydField(
        description=(
            "Un groupe par combinaison des clés de `group_by` (month `2026-01`, week ISO "
            "`2026-W03`, profile, route, theme, status, place, commune, epci, departement, "
            "avec `<clé>_name` pour les lieux et territoires), `masked`, et ses chiffres : "
            + ", ".join(f.key for f in FIGURES)
            + ", et un compte par statut actuel ("
            + ", ".join(STATUSES)
            + "). Moins de 5 orientations : chiffres à null et `masked: true`."
        )
    )
    totals: ReferralStatsTotals


class CoverageFilters(BaseModel):
    territory: str
    territory_name: str
    max_km: float
    need: str | None = PydField(
        default=None, description="Le besoin auquel les lieux comptés répondent, s'il est donné."
    )


class NearestPlace(BaseModel):
    id: str
    name: str


class CoverageRow(BaseModel):
    commune: str
    name: str
    departement: str
    population: int | None
    distance_km: float | None = PydField(
        description="Du point de la commune (sa mairie) au lieu le plus proche ; null sans lieu."
    )
    place: NearestPlace | None
    beyond: bool = PydField(description="Au-delà de max_km (ou sans aucun lieu) : zone blanche.")


class CoverageTotals(BaseModel):
    communes: int
    population: int
    communes_beyond: int
    population_beyond: int
    share_beyond: float | None = PydField(description="Part de la population au-delà de max_km.")
    places: int = PydField(description="Lieux de médiation qui reçoivent des orientations.")
    places_in_territory: int = PydField(
        description="Ceux de ces lieux qui sont dans le territoire."
    )
    places_paused: int = PydField(description="Lieux du territoire en pause aujourd'hui.")
    places_full: int = PydField(
        description="Lieux du territoire complets : autant d'orientations ouvertes que leur "
        "capacité."
    )
    median_distance_km: float | None
    max_distance_km: float | None


class CoverageOut(BaseModel):
    filters: CoverageFilters
    communes: list[CoverageRow]
    totals: CoverageTotals
