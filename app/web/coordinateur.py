"""`/coordinateur`: the figures of the territory (period and grouping chosen on the page),
charts per month, the coverage map and the "zones blanches", and the CSV downloads. The same
services as `/v1/stats` (app.services.stats, app.services.coverage): aggregates only, groups
of fewer than five orientations withheld."""

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from app.errors import Problem
from app.models import Principal
from app.routers.stats import csv_response
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


def _query(request: Request) -> str:
    return request.url.query.replace("&", "&amp;")


def _stats(
    session: Any,
    principal: Principal,
    territory: str | None,
    period: service.Period,
    keys: tuple[str, ...],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The groups asked for, and the months of the period for the charts."""
    place = readable_territory(session, principal, territory or None, LOC)
    document = service.referral_stats(session, place, period, keys)
    months = document if keys == ("month",) else service.referral_stats(
        session, place, period, ("month",)
    )
    return document, months


def _months(period: service.Period) -> list[str]:
    months, year, month = [], period.start.year, period.start.month
    while (year, month) <= (period.end.year, period.end.month):
        months.append(f"{year}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


@router.get("")
async def statistics(
    request: Request,
    principal: CoordinateurUser,
    du: Annotated[date | None, Query()] = None,
    au: Annotated[date | None, Query()] = None,
    territoire: Annotated[str | None, Query(max_length=30)] = None,
    par: Annotated[list[str] | None, Query(max_length=10)] = None,
) -> Response:
    db = request.app.state.db
    chosen = par if par is not None else ["month"]
    try:
        period = service.parse_period(du, au)
        keys = service.parse_group_by(",".join(chosen))
        document, months = await db.read(
            lambda session: _stats(session, principal, territoire, period, keys)
        )
    except Problem as problem:
        return await page(
            request,
            "coordinateur/stats.html",
            status_code=problem.status,
            error=problem.detail,
            form={"du": du, "au": au, "territoire": territoire or "", "par": chosen},
            labels=GROUP_LABELS,
        )
    # Every month of the period on the axis, those without any orientation at zero.
    by_month = {g["month"]: g for g in months["groups"]}
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
        query=_query(request),
    )


@router.get("/statistiques.csv")
async def statistics_csv(
    request: Request,
    principal: CoordinateurUser,
    du: Annotated[date | None, Query()] = None,
    au: Annotated[date | None, Query()] = None,
    territoire: Annotated[str | None, Query(max_length=30)] = None,
    par: Annotated[list[str] | None, Query(max_length=10)] = None,
) -> Response:
    period = service.parse_period(du, au)
    keys = service.parse_group_by(",".join(par if par is not None else ["month"]))

    def read(session: Any) -> dict[str, Any]:
        place = readable_territory(session, principal, territoire or None, LOC)
        return service.referral_stats(session, place, period, keys)

    document = await request.app.state.db.read(read)
    territory = document["filters"]["territory"].replace(":", "-")
    name = f"orientations-{territory}-{period.start}-{period.end}"
    return csv_response(service.to_csv(document["groups"], service.referral_columns(keys)), name)


def _max_km(request: Request, value: float | None) -> float:
    return value if value is not None else request.app.state.db.settings.max_referral_distance_km


@router.get("/couverture")
async def coverage(
    request: Request,
    principal: CoordinateurUser,
    territoire: Annotated[str | None, Query(max_length=30)] = None,
    km: Annotated[float | None, Query(gt=0, le=500)] = None,
) -> Response:
    limit = _max_km(request, km)

    def read(session: Any) -> tuple[coverage_service.Coverage, str]:
        place = readable_territory(session, principal, territoire or None, LOC)
        found = coverage_service.coverage(session, place, limit)
        rows, shapes = found.rows, coverage_service.commune_shapes(session, found)
        if place.kind == "national":  # the map of mainland France; overseas in the table
            mainland = [i for i, r in enumerate(rows) if not r["departement"].startswith("97")]
            rows, shapes = [rows[i] for i in mainland], shapes[mainland]
        title = f"Distance au lieu de médiation le plus proche — {place.name}"
        return found, charts.coverage_map(shapes, rows, limit, title)

    try:
        found, drawn = await request.app.state.db.read(read)
    except Problem as problem:
        return await page(
            request,
            "coordinateur/coverage.html",
            status_code=problem.status,
            error=problem.detail,
            form={"territoire": territoire or "", "km": km or limit},
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
        query=_query(request),
    )


@router.get("/couverture.csv")
async def coverage_csv(
    request: Request,
    principal: CoordinateurUser,
    territoire: Annotated[str | None, Query(max_length=30)] = None,
    km: Annotated[float | None, Query(gt=0, le=500)] = None,
) -> Response:
    limit = _max_km(request, km)

    def read(session: Any) -> coverage_service.Coverage:
        place = readable_territory(session, principal, territoire or None, LOC)
        return coverage_service.coverage(session, place, limit)

    found = await request.app.state.db.read(read)
    name = f"couverture-{str(found.territory).replace(':', '-')}-{limit:g}km"
    rows = coverage_service.flat_rows(found)
    return csv_response(service.to_csv(rows, coverage_service.COLUMNS), name)
