"""`/coordinateur`: the figures of the territory (period and grouping chosen on the page),
charts per month, the coverage map and the "zones blanches", and the CSV downloads. The same
services as `/v1/stats` (app.services.stats, app.services.coverage): aggregates only, groups
of fewer than five orientations withheld."""

from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from app.errors import Problem
from app.models import Principal
from app.routers.stats import coverage_csv, referrals_csv
from app.services import coverage as coverage_service
from app.services import stats as service
from app.services.territories import readable_territory
from app.web import charts
from app.web.render import page
from app.web.session import CoordinateurUser

router = APIRouter(prefix="/coordinateur", include_in_schema=False)

GROUP_LABELS = {
    "month": "Mois",
    "week": "Semaine",
    "profile": "Profil",
    "route": "Suite donnée",
    "theme": "Démarche",
    "status": "Statut",
    "place": "Lieu de médiation",
    "commune": "Commune",
    "epci": "Intercommunalité",
    "departement": "Département",
}
LOC: list[str | int] = ["query", "territoire"]


def _months(period: service.Period) -> list[str]:
    months, year, month = [], period.start.year, period.start.month
    while (year, month) <= (period.end.year, period.end.month):
        months.append(f"{year}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


@dataclass
class StatsQuery:
    """What the figures page asks: period, territory (the key's by default), groupings."""

    du: Annotated[date | None, Query()] = None
    au: Annotated[date | None, Query()] = None
    territoire: Annotated[str | None, Query(max_length=30)] = None
    par: Annotated[list[str] | None, Query(max_length=10)] = None

    @property
    def chosen(self) -> list[str]:
        return self.par if self.par is not None else ["month"]

    def parsed(self) -> tuple[service.Period, tuple[str, ...]]:
        """The period and the keys; a 422 problem, in French, when they are wrong."""
        return service.parse_period(self.du, self.au), service.parse_group_by(
            ",".join(self.chosen)
        )

    def read(
        self, session: Any, principal: Principal, period: service.Period, keys: tuple[str, ...]
    ) -> dict[str, Any]:
        place = readable_territory(session, principal, self.territoire or None, LOC)
        return service.referral_stats(session, place, period, keys)


Asked = Annotated[StatsQuery, Depends()]


@router.get("")
async def statistics(request: Request, principal: CoordinateurUser, asked: Asked) -> Response:
    db = request.app.state.db
    try:
        period, keys = asked.parsed()
        # The groups asked for, and the months of the period for the charts.
        document, months = await db.read(
            lambda session: (
                asked.read(session, principal, period, keys),
                asked.read(session, principal, period, ("month",)) if keys != ("month",) else None,
            )
        )
    except Problem as problem:
        return await page(
            request,
            "coordinateur/stats.html",
            status_code=problem.status,
            error=problem.detail,
            form={
                "du": asked.du,
                "au": asked.au,
                "territoire": asked.territoire or "",
                "par": asked.chosen,
            },
            labels=GROUP_LABELS,
        )
    # Every month of the period on the axis, those without any orientation at zero.
    by_month = {g["month"]: g for g in (months or document)["groups"]}
    labels = _months(period)
    empty = {"orientations": 0, "referrals": 0, "masked": False}
    groups = [by_month.get(m, {**empty, **dict.fromkeys(service.RATES)}) for m in labels]
    volumes = charts.bar_chart(
        labels,
        [
            ("Orientations", charts.BLUE, [g["orientations"] for g in groups]),
            ("Vers un médiateur", charts.BLUE_LIGHT, [g["referrals"] for g in groups]),
        ],
        "Orientations par mois",
        "Nombre d'orientations faites chaque mois, et parmi elles celles envoyées à un lieu de "
        "médiation. Un mois de moins de cinq orientations est masqué.",
    )
    rates = charts.line_chart(
        labels,
        [
            ("Acceptation", charts.BLUE, [g["acceptance_rate"] for g in groups]),
            ("Accompagnements terminés", "#18753c", [g["completion_rate"] for g in groups]),
            ("Personnes non venues", charts.RED, [g["no_show_rate"] for g in groups]),
        ],
        "Taux par mois",
        "Taux d'acceptation, d'accompagnements terminés et de personnes non venues, par mois "
        "d'orientation.",
    )
    return await page(
        request,
        "coordinateur/stats.html",
        document=document,
        keys=keys,
        volumes=volumes,
        rates=rates,
        form={
            "du": period.start,
            "au": period.end,
            "territoire": document["filters"]["territory"],
            "par": list(keys),
        },
        labels=GROUP_LABELS,
        query=request.url.query,
    )


@router.get("/statistiques.csv")
async def statistics_download(
    request: Request, principal: CoordinateurUser, asked: Asked
) -> Response:
    period, keys = asked.parsed()
    document = await request.app.state.db.read(
        lambda session: asked.read(session, principal, period, keys)
    )
    return referrals_csv(document, period, keys)


@dataclass
class CoverageQuery:
    """What the coverage page asks: territory (the key's by default), the distance beyond which
    a commune is a zone blanche (by default, the farthest a referral may go)."""

    territoire: Annotated[str | None, Query(max_length=30)] = None
    km: Annotated[float | None, Query(gt=0, le=500)] = None

    def limit(self, request: Request) -> float:
        default: float = request.app.state.db.settings.max_referral_distance_km
        return self.km if self.km is not None else default

    def read(self, session: Any, principal: Principal, limit: float) -> coverage_service.Coverage:
        place = readable_territory(session, principal, self.territoire or None, LOC)
        return coverage_service.coverage(session, place, limit)


@router.get("/couverture")
async def coverage(
    request: Request, principal: CoordinateurUser, asked: Annotated[CoverageQuery, Depends()]
) -> Response:
    limit = asked.limit(request)

    def read(session: Any) -> tuple[coverage_service.Coverage, str]:
        found = asked.read(session, principal, limit)
        rows, shapes = found.rows, coverage_service.commune_shapes(session, found)
        if found.territory.kind == "national":  # mainland France; overseas in the table
            mainland = [i for i, r in enumerate(rows) if not r["departement"].startswith("97")]
            rows, shapes = [rows[i] for i in mainland], shapes[mainland]
        title = f"Distance au lieu de médiation le plus proche — {found.territory.name}"
        return found, charts.coverage_map(shapes, rows, limit, title)

    try:
        found, drawn = await request.app.state.db.read(read)
    except Problem as problem:
        return await page(
            request,
            "coordinateur/coverage.html",
            status_code=problem.status,
            error=problem.detail,
            form={"territoire": asked.territoire or "", "km": limit},
        )
    white = sorted(
        (r for r in found.rows if r["beyond"]), key=lambda r: -(r["population"] or 0)
    )
    return await page(
        request,
        "coordinateur/coverage.html",
        found=found,
        white=white,
        bands=charts.bands(limit),
        drawn=drawn,
        form={"territoire": str(found.territory), "km": limit},
        query=request.url.query,
    )


@router.get("/couverture.csv")
async def coverage_download(
    request: Request, principal: CoordinateurUser, asked: Annotated[CoverageQuery, Depends()]
) -> Response:
    limit = asked.limit(request)
    found = await request.app.state.db.read(
        lambda session: asked.read(session, principal, limit)
    )
    return coverage_csv(found)
