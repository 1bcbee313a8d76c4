"""`/coordinateur`: the figures of the territory (period and grouping chosen on the page),
charts per month, the coverage map and the "zones blanches", and the CSV downloads. The same
reads as `/v1/stats` (app.services.statistics_read, app.services.coverage.coverage_for):
aggregates only, groups of fewer than five orientations withheld."""

from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BeforeValidator
from starlette.responses import JSONResponse, Response

from app.deps import db_of
from app.models import Principal
from app.problems import Problem, invalid
from app.services import coverage as coverage_service
from app.services import statistics_read
from app.services import stats as service
from app.services.statistics_read import Download, TerritoryStats, stats_for
from app.services.territories import suggest_territories
from app.triage.needs import SPECIFIC, Specific
from app.triage.words import NEED_LABELS
from app.web import charts
from app.web.render import field_errors, number, page, percent
from app.web.session import CoordinateurUser

router = APIRouter(prefix="/coordinateur", include_in_schema=False)

GROUP_LABELS = service.GROUP_LABELS
# The figures page's fields, as its messages name them (the API names its parameters).
FIELDS = service.Asked(
    start=("du", "« Du »"),
    end=("au", "« Au »"),
    group_by=("par", "« Regrouper par »"),
    choices=GROUP_LABELS,
)
# The detail in three tables, each narrow enough for a desktop: what happened at the desk,
# the places' answers, the ends of the accompaniments accepted.
_CLOSING = ("accepted_closed", "completed", "no_show", "completion_rate", "no_show_rate")
TABLES = (
    ("desk", "À l'accueil de France Services", [service.FIGURE[k] for k in service.AT_THE_DESK]),
    (
        "sent",
        "Envois aux lieux de médiation et leurs réponses",
        [f for f in service.FIGURES if f.key not in (*service.AT_THE_DESK, *_CLOSING)],
    ),
    ("closed", "Suites des accompagnements acceptés", [service.FIGURE[k] for k in _CLOSING]),
)
LOC: list[str | int] = ["query", "territoire"]
# A territory's name as a person types it, or its label (the longest is 92 characters).
TERRITORY = Query(max_length=200)


@dataclass
class StatsQuery:
    """What the figures page asks: period, territory (the key's by default), groupings."""

    du: Annotated[str | None, Query(max_length=30)] = None
    au: Annotated[str | None, Query(max_length=30)] = None
    territoire: Annotated[str | None, TERRITORY] = None
    par: Annotated[list[str] | None, Query(max_length=10)] = None

    @property
    def chosen(self) -> list[str]:
        return self.par if self.par is not None else ["month"]

    def parsed(self) -> tuple[service.Period, tuple[str, ...]]:
        """The period and the keys; a 422 problem, in the page's words and at its field,
        when they are wrong."""
        start, end = _day(self.du, FIELDS.start), _day(self.au, FIELDS.end)
        period = service.parse_period(start, end, FIELDS)
        return period, service.parse_group_by(",".join(self.chosen), FIELDS)

    def read(
        self,
        session: Any,
        principal: Principal,
        period: service.Period,
        keys: tuple[str, ...],
        *,
        by_month: bool = False,
    ) -> TerritoryStats:
        return stats_for(
            session, principal, self.territoire, period, keys, LOC, by_name=True, by_month=by_month
        )


Asked = Annotated[StatsQuery, Depends()]


def _download(file: Download) -> Response:
    return Response(file.body, media_type=file.media_type, headers=file.headers)


def _day(value: str | None, field: tuple[str, str]) -> date | None:
    """A day of the form (an empty field: the default)."""
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise invalid(
            ["query", field[0]], f"{field[1]} n'est pas une date : choisissez un jour."
        ) from None


def _rate_detail(totals: dict[str, Any], key: str) -> str:
    """What a rate divides, in the page's words: « acceptés : 4 sur 7 acceptés, … »."""
    numerator, denominator = service.FIGURE[key].of or ("", "")

    def short(figure: str) -> str:
        label = service.FIGURE[figure].label.removeprefix("dont ")
        return label[:1].lower() + label[1:]

    return (
        f"{short(numerator)} : {number(totals[numerator])} sur {number(totals[denominator])} "
        f"{short(denominator)}"
    )


def _part(totals: dict[str, Any], key: str) -> str:
    """A part of a tile's figure, as the table heads it: « dont sans envoi : 0 »."""
    return f"{service.FIGURE[key].label} : {number(totals[key])}"


def _tiles(totals: dict[str, Any]) -> list[dict[str, str]]:
    """The totals as tiles: the figure, its label, what it is made of, its definition; the
    same labels and definitions as the tables, the charts and the CSV."""
    tiles = []
    for key, detail in (
        ("orientations", ""),
        ("to_mediateur", _part(totals, "not_sent")),
        ("to_france_services", ""),
        ("no_orientation", ""),
        ("referrals", _part(totals, "reoriented")),
        ("acceptance_rate", ""),
        ("completion_rate", ""),
        ("no_show_rate", ""),
    ):
        figure = service.FIGURE[key]
        rated = figure.of is not None
        tiles.append(
            {
                "value": percent(totals[key]) if rated else number(totals[key]),
                "label": figure.label,
                "detail": _rate_detail(totals, key) if rated else detail,
                "definition": figure.definition,
            }
        )
    median = totals["median_hours_to_first_contact"]
    tiles.append(
        {
            "value": "—" if median is None else f"{number(median)} h",
            "label": service.MEDIAN.label,
            "detail": "",
            "definition": service.MEDIAN.definition,
        }
    )
    return tiles


@router.get("")
async def statistics(request: Request, principal: CoordinateurUser, asked: Asked) -> Response:
    db = db_of(request)

    try:
        period, keys = asked.parsed()
        # The groups asked for, and the groups by month for the charts.
        found = await db.read(
            lambda session: asked.read(session, principal, period, keys, by_month=True)
        )
    except Problem as problem:
        # A field of the page's own is marked where it is; the others in the alert.
        at = {"du", "au", "par", "territoire"}
        marked = {name: msg for name, msg in field_errors(problem).items() if name in at}
        return await page(
            request,
            "coordinateur/stats.html",
            status_code=problem.status,
            error=problem.detail,
            field_errors=marked,
            form={
                "du": asked.du or "",
                "au": asked.au or "",
                **territory_field(request, asked.territoire, problem),
                "par": asked.chosen,
            },
            labels=GROUP_LABELS,
        )
    place, document = found.territory, found.document
    labels, groups = service.months(period), service.every_month(period, found.by_month or [])
    figure = service.FIGURE
    volumes = charts.bar_chart(
        labels,
        [
            (figure[key].label, colour, [g[key] for g in groups])
            for key, colour in (("orientations", charts.BLUE), ("to_mediateur", charts.BLUE_LIGHT))
        ],
        "Orientations par mois",
        f"{figure['orientations'].label} et, parmi elles, « {figure['to_mediateur'].label} », "
        "chaque mois. Un mois de moins de cinq orientations est masqué.",
    )
    rates = charts.line_chart(
        labels,
        [
            (figure[key].label, colour, [g[key] for g in groups])
            for key, colour in (
                ("acceptance_rate", charts.BLUE),
                ("completion_rate", "#18753c"),
                ("no_show_rate", charts.RED),
            )
        ],
        "Taux par mois",
        " ".join(
            f"{figure[key].label} : {figure[key].definition}"
            for key in ("acceptance_rate", "completion_rate", "no_show_rate")
        )
        + " Par mois d'orientation.",
    )
    return await page(
        request,
        "coordinateur/stats.html",
        document=document,
        keys=keys,
        tiles=_tiles(document["totals"]),
        figures=service.FIGURES,
        tables=TABLES,
        per_referral=bool(service.REFERRAL_KEYS & set(keys)),
        refusals=service.REFUSAL_LABELS,
        need_labels=NEED_LABELS,
        key_label=service.key_label,
        volumes=volumes,
        rates=rates,
        form={
            "du": period.start,
            "au": period.end,
            "territoire": place.label,
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
    found = await db_of(request).read(lambda session: asked.read(session, principal, period, keys))
    return _download(statistics_read.referrals_download(found.document, period))


@dataclass
class CoverageQuery:
    """What the coverage page asks: territory (the key's by default), the distance beyond which
    a commune is a zone blanche (by default, the farthest a referral may go)."""

    territoire: Annotated[str | None, TERRITORY] = None
    km: Annotated[float | None, Query(gt=0, le=500)] = None
    # The select's « Tous les besoins » sends an empty value: no need.
    besoin: Annotated[Specific | None, BeforeValidator(lambda v: v or None), Query()] = None

    def limit(self, request: Request) -> float:
        default: float = db_of(request).settings.max_referral_distance_km
        return self.km if self.km is not None else default

    def read(self, session: Any, principal: Principal, limit: float) -> coverage_service.Coverage:
        need = self.besoin.value if self.besoin else None
        return coverage_service.coverage_for(
            session, principal, self.territoire, limit, need, LOC, by_name=True
        )


@router.get("/couverture")
async def coverage(
    request: Request, principal: CoordinateurUser, asked: Annotated[CoverageQuery, Depends()]
) -> Response:
    limit = asked.limit(request)

    def read(session: Any) -> tuple[coverage_service.Coverage, str]:
        found = asked.read(session, principal, limit)
        # The outlines projected and simplified once per territory; each request colours them.
        rows, shapes = coverage_service.map_of(session, found, charts.outlines)
        title = f"Distance au lieu de médiation le plus proche — {found.territory.name}"
        return found, charts.coverage_map(shapes, rows, limit, title)

    try:
        found, drawn = await db_of(request).read(read)
    except Problem as problem:
        field = territory_field(request, asked.territoire, problem)
        return await page(
            request,
            "coordinateur/coverage.html",
            status_code=problem.status,
            error=problem.detail,
            field_errors={"territoire": field.pop("territoire_erreur")}
            if "territoire_erreur" in field
            else {},
            form={**field, "km": limit, "besoin": asked.besoin.value if asked.besoin else ""},
            needs=SPECIFIC,
        )
    white = sorted((r for r in found.rows if r["beyond"]), key=lambda r: -(r["population"] or 0))
    return await page(
        request,
        "coordinateur/coverage.html",
        found=found,
        white=white,
        bands=charts.bands(limit),
        drawn=drawn,
        form={"territoire": found.territory.label, "km": limit, "besoin": found.need or ""},
        needs=SPECIFIC,
        query=request.url.query,
    )


@router.get("/couverture.csv")
async def coverage_download(
    request: Request, principal: CoordinateurUser, asked: Annotated[CoverageQuery, Depends()]
) -> Response:
    limit = asked.limit(request)
    found = await db_of(request).read(lambda session: asked.read(session, principal, limit))
    return _download(statistics_read.coverage_download(found))


@router.get("/territoires")
async def territory_suggestions(
    request: Request, principal: CoordinateurUser, q: Annotated[str, Query(max_length=200)] = ""
) -> Response:
    """Suggestions for the « Territoire » field as the coordinator types: the communes, EPCI,
    départements and régions inside theirs whose name (or code) starts with it."""
    if len(q.strip()) < 2:
        return JSONResponse([])
    found = await db_of(request).read(
        lambda session: suggest_territories(session, principal, q, limit=10)
    )
    return JSONResponse([{"code": str(t), "label": t.label} for t in found])


def territory_field(
    request: Request, typed: str | None, problem: Problem | None = None
) -> dict[str, Any]:
    """The « Territoire » field of a page sent back with `problem`: what was typed, the error
    when it is about the territory, and the territories to choose from as links to the same
    page (its other fields kept) when the name was not enough."""
    field: dict[str, Any] = {"territoire": typed or ""}
    if problem is None:
        return field
    about = [e["msg"] for e in problem.errors or [] if e["loc"] == LOC]
    if about:
        field["territoire_erreur"] = about[0]
        field["territoire_choix"] = [
            (label, _with_query(request, territoire=label))
            for label in problem.extra.get("choices", [])
        ]
    return field


def _with_query(request: Request, **changes: str) -> str:
    url = request.url.include_query_params(**changes)
    return f"{url.path}?{url.query}"
