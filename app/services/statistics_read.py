"""A coordinator's reads of their territory's figures and coverage, and the files they
download: what /v1/stats and the /coordinateur pages both answer, the territory checked
against the caller's (app.services.territories.readable_territory) every time."""

from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from app.models import Principal
from app.services import coverage as coverage_service
from app.services import stats
from app.services.territories import Territory, readable_territory

CSV = "text/csv; charset=utf-8"
GEOJSON = "application/geo+json"


@dataclass(frozen=True, slots=True)
class Download:
    """A file to download: the HTTP layers send it as is."""

    body: bytes
    filename: str
    media_type: str = CSV

    @property
    def headers(self) -> dict[str, str]:
        return {"Content-Disposition": f'attachment; filename="{self.filename}"'}


@dataclass(frozen=True, slots=True)
class TerritoryStats:
    """The figures of a territory the caller may read: the statistics document and, when
    asked, its groups by month (the pages' charts)."""

    territory: Territory
    document: dict[str, Any]
    by_month: list[dict[str, Any]] | None = None


def stats_for(
    session: Session,
    principal: Principal,
    territory: str | None,
    period: stats.Period,
    keys: tuple[str, ...],
    loc: list[str | int],
    *,
    by_name: bool = False,
    by_month: bool = False,
) -> TerritoryStats:
    """The statistics of `territory` (by default, the caller's), 403 outside the caller's and
    422 unknown (readable_territory, whose `loc` and `by_name` say how the errors speak)."""
    place = readable_territory(session, principal, territory, loc, by_name=by_name)
    document = stats.referral_stats(session, place, period, keys)
    months = None
    if by_month:
        # Grouped by month alone, the groups asked for are the ones the charts need.
        months = (
            document["groups"] if keys == ("month",) else stats.month_groups(session, place, period)
        )
    return TerritoryStats(place, document, months)


def referrals_download(document: dict[str, Any], period: stats.Period) -> Download:
    """The groups of a statistics document as CSV (the API's and the pages')."""
    territory = _slug(document["filters"]["territory"])
    return Download(
        stats.referral_csv(document), f"orientations-{territory}-{period.start}-{period.end}.csv"
    )


def coverage_download(found: coverage_service.Coverage) -> Download:
    """A territory's coverage, a row per commune, as CSV (the API's and the pages')."""
    rows = coverage_service.flat_rows(found)
    return Download(stats.to_csv(rows, coverage_service.COLUMNS), f"{_coverage_name(found)}.csv")


def coverage_geojson(session: Session, found: coverage_service.Coverage) -> Download:
    """A territory's coverage as GeoJSON, the communes' outlines for a map."""
    return Download(
        coverage_service.coverage_geojson(session, found),
        f"{_coverage_name(found)}.geojson",
        GEOJSON,
    )


def _coverage_name(found: coverage_service.Coverage) -> str:
    return f"couverture-{_slug(str(found.territory))}-{found.max_km:g}km"


def _slug(territory: str) -> str:
    return territory.replace(":", "-")
