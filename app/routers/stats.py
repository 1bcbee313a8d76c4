"""HTTP layer of coordinators' statistics: referrals of a territory, and its coverage."""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query
from fastapi.responses import Response

from app.auth import Coordinator
from app.deps import DbDep
from app.errors import FastJSONResponse, api_problems
from app.models.common import Day
from app.models.stats import CoverageOut, ReferralStats
from app.problems import OutOfTerritory
from app.services import coverage as coverage_service
from app.services import stats as service
from app.services.statistics_read import (
    CSV,
    GEOJSON,
    Download,
    coverage_download,
    coverage_geojson,
    referrals_download,
    stats_for,
)
from app.triage.needs import Specific

router = APIRouter(
    prefix="/v1/stats",
    tags=["statistiques"],
    # A territory outside the coordinator's own: 403 hors-territoire.
    responses=api_problems(OutOfTerritory),
)

LOC: list[str | int] = ["query", "territory"]
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


def _download(file: Download) -> Response:
    return Response(file.body, media_type=file.media_type, headers=file.headers)


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

    document = await db.read(
        lambda session: stats_for(session, principal, territory, period, keys, LOC).document
    )
    if _wants(format_, accept) == "csv":
        return _download(referrals_download(document, period))
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

    def read(session: Any) -> tuple[coverage_service.Coverage, Download | None]:
        found = coverage_service.coverage_for(
            session, principal, territory, limit, need.value if need else None, LOC
        )
        return found, coverage_geojson(session, found) if wanted == "geojson" else None

    found, geojson = await db.read(read)
    if geojson is not None:
        return _download(geojson)
    if wanted == "csv":
        return _download(coverage_download(found))
    return FastJSONResponse(coverage_service.coverage_document(found))
