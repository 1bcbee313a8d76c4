"""HTTP layer of coordinators' statistics: referrals of a territory, and its coverage."""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query
from fastapi.responses import Response

from app.auth import Coordinator
from app.deps import DbDep
from app.errors import AUTH_PROBLEMS, COMMON_PROBLEMS, FastJSONResponse, problem_responses
from app.models.common import Day
from app.models.stats import CoverageOut, ReferralStats
from app.services import coverage as coverage_service
from app.services import stats as service
from app.services.territories import readable_territory
from app.triage.needs import Specific

router = APIRouter(
    prefix="/v1/stats",
    tags=["statistiques"],
    responses=problem_responses(*COMMON_PROBLEMS + AUTH_PROBLEMS),
)

CSV = "text/csv; charset=utf-8"
GEOJSON = "application/geo+json"
TERRITORY = Query(
    description=(
        "national, region:<code>, departement:<code> ou epci:<SIREN> ; par défaut le territoire "
        "de votre clé. Il doit être compris dans celui-ci (sinon 403)."
    ),
    max_length=30,
)
CSV_NOTE = (
    " CSV (`format=csv` ou `Accept: text/csv`) : UTF-8 avec BOM, séparateur `;`, virgule "
    "décimale, tel que les tableurs l'ouvrent en France."
)


def _wants(format_: str | None, accept: str | None) -> str:
    if format_:
        return format_
    return "csv" if accept and "text/csv" in accept else "json"


def _csv(body: bytes, name: str) -> Response:
    return Response(
        body,
        media_type=CSV,
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


def referrals_csv(document: dict[str, Any], period: service.Period) -> Response:
    """The groups of a statistics document as a CSV download (the API's and the pages')."""
    name = f"orientations-{_slug(document['filters']['territory'])}-{period.start}-{period.end}"
    return _csv(service.referral_csv(document), name)


def coverage_csv(found: coverage_service.Coverage) -> Response:
    """A territory's coverage, a row per commune, as a CSV download."""
    rows = coverage_service.flat_rows(found)
    return _csv(service.to_csv(rows, coverage_service.COLUMNS), _coverage_name(found))


def _coverage_name(found: coverage_service.Coverage) -> str:
    return f"couverture-{_slug(str(found.territory))}-{found.max_km:g}km"


def _slug(territory: str) -> str:
    return territory.replace(":", "-")


@router.get(
    "/referrals",
    response_model=ReferralStats,
    summary="Statistiques des orientations d'un territoire",
    description=(
        "Les orientations faites du `from` au `to` (jours compris, heure de Paris) pour des "
        "personnes des communes du territoire, et leurs envois à un lieu de médiation "
        "(statut actuel, réorientations comprises), regroupés selon `group_by`. "
        + service.DEFINITIONS
        + " Un groupe de moins de 5 orientations est masqué (`masked: true`, chiffres null) ; "
        "les totaux restent exacts."
        + CSV_NOTE
        + " En-têtes en français (les mots de la page), le libellé de chaque code à côté de "
        "celui-ci, taux en pourcentage, et une dernière ligne « Total »."
    ),
    responses={200: {"content": {CSV: {"schema": {"type": "string"}}}}},
)
async def referral_stats(
    principal: Coordinator,
    db: DbDep,
    from_: Annotated[
        Day | None, Query(alias="from", description="Premier jour (AAAA-MM-JJ).")
    ] = None,
    to: Annotated[Day | None, Query(description="Dernier jour compris (AAAA-MM-JJ).")] = None,
    territory: Annotated[str | None, TERRITORY] = None,
    group_by: Annotated[
        str | None,
        Query(
            description="Clés séparées par des virgules : " + ", ".join(service.GROUP_KEYS),
            max_length=200,
        ),
    ] = None,
    format_: Annotated[Literal["json", "csv"] | None, Query(alias="format")] = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Any:
    period = service.parse_period(from_, to)
    keys = service.parse_group_by(group_by)

    def read(session: Any) -> dict[str, Any]:
        place = readable_territory(session, principal, territory, ["query", "territory"])
        return service.referral_stats(session, place, period, keys)

    document = await db.read(read)
    if _wants(format_, accept) == "csv":
        return referrals_csv(document, period)
    return FastJSONResponse(document)


@router.get(
    "/coverage",
    response_model=CoverageOut,
    summary="Couverture d'un territoire : distance de chaque commune au lieu le plus proche",
    description=(
        "Pour chaque commune du territoire (Paris, Lyon et Marseille par arrondissement) : sa "
        "population, la distance de son point (la mairie) au lieu de médiation le plus proche "
        "qui reçoit des orientations, et ce lieu ; au-delà de `max_km`, c'est une zone "
        "blanche. Totaux : population et part de la population au-delà de `max_km`."
        + CSV_NOTE
        + " `format=geojson` : une FeatureCollection des communes (contours) pour une carte."
    ),
    responses={
        200: {
            "content": {
                CSV: {"schema": {"type": "string"}},
                GEOJSON: {"schema": {"type": "object"}},
            }
        }
    },
)
async def coverage(
    principal: Coordinator,
    db: DbDep,
    territory: Annotated[str | None, TERRITORY] = None,
    max_km: Annotated[
        float | None,
        Query(
            gt=0,
            le=500,
            description="Distance au-delà de laquelle une commune est en zone blanche "
            "(par défaut, la distance maximale d'une orientation).",
        ),
    ] = None,
    need: Annotated[
        Specific | None,
        Query(
            description="Un besoin (GET /v1/needs) : la distance au lieu le plus proche qui y "
            "répond, et les communes sans un tel lieu à `max_km`."
        ),
    ] = None,
    format_: Annotated[Literal["json", "csv", "geojson"] | None, Query(alias="format")] = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Any:
    limit = max_km if max_km is not None else db.settings.max_referral_distance_km
    wanted = _wants(format_, accept)

    def read(session: Any) -> tuple[coverage_service.Coverage, bytes | None]:
        place = readable_territory(session, principal, territory, ["query", "territory"])
        found = coverage_service.coverage(session, place, limit, need.value if need else None)
        geojson = coverage_service.coverage_geojson(session, found) if wanted == "geojson" else None
        return found, geojson

    found, geojson = await db.read(read)
    if geojson is not None:
        return Response(
            geojson,
            media_type=GEOJSON,
            headers={
                "Content-Disposition": f'attachment; filename="{_coverage_name(found)}.geojson"'
            },
        )
    if wanted == "csv":
        return coverage_csv(found)
    return FastJSONResponse(coverage_service.coverage_document(found))
