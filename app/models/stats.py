"""Answers of the statistics routes (aggregates only: nothing in them names a person)."""

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic import Field as PydField


class ReferralStatsFilters(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: str = PydField(alias="from", description="Premier jour compris (Europe/Paris).")
    to: str = PydField(description="Dernier jour compris (Europe/Paris).")
    territory: str
    territory_name: str
    group_by: list[str]


class ReferralStatsTotals(BaseModel):
    orientations: int
    referrals: int
    by_route: dict[str, int]
    by_status: dict[str, int]
    acceptance_rate: float | None
    completion_rate: float | None
    no_show_rate: float | None
    median_hours_to_first_contact: float | None
    refusal_reasons: dict[str, int]


class ReferralStats(BaseModel):
    filters: ReferralStatsFilters
    groups: list[dict[str, Any]] = PydField(
        description=(
            "Un groupe par combinaison des clés de `group_by` (month `2026-01`, week ISO "
            "`2026-W03`, profile, route, theme, status, place, commune, epci, departement, "
            "avec `<clé>_name` pour les lieux et territoires) et ses chiffres : orientations, "
            "referrals, un compte par statut, acceptance_rate, completion_rate, no_show_rate. "
            "Moins de 5 orientations : chiffres à null et `masked: true`."
        )
    )
    totals: ReferralStatsTotals


class CoverageFilters(BaseModel):
    territory: str
    territory_name: str
    max_km: float


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
    median_distance_km: float | None
    max_distance_km: float | None


class CoverageOut(BaseModel):
    filters: CoverageFilters
    communes: list[CoverageRow]
    totals: CoverageTotals
