"""HTTP layer of referrals: the sender's and the receiver's views."""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Response

from app.auth import Agent, AgentOrMediateur, Mediateur
from app.deps import DbDep
from app.errors import FastJSONResponse, api_problems
from app.models import ReferralStatus
from app.models.referral import (
    HandoffEventOut,
    ReferralOut,
    ReferralPage,
    ReferralSummary,
    ReorientIn,
    TransitionIn,
)
from app.problems import (
    AlreadyReoriented,
    IdempotencyKeyReused,
    InvalidCursor,
    NoPlaceNearby,
    NotFound,
    TransitionRefused,
    VersionMismatch,
)
from app.services import lifecycle, personal_data
from app.services import referrals as service

router = APIRouter(
    prefix="/v1/referrals",
    tags=["orientations vers un médiateur"],
    responses=api_problems(NotFound, InvalidCursor),
)


@router.get("", response_model=ReferralPage, summary="Orientations reçues ou envoyées par mon lieu")
async def list_referrals(
    principal: AgentOrMediateur,
    db: DbDep,
    status: Annotated[
        list[ReferralStatus] | None,
        Query(description="Un ou plusieurs statuts (répéter le paramètre).", max_length=9),
    ] = None,
    urgent: Annotated[bool | None, Query(description="Seulement les démarches urgentes.")] = None,
    sort: Annotated[
        Literal["recent", "urgent"],
        Query(description="« urgent » : les urgentes d'abord, puis les plus récentes."),
    ] = "recent",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Any:
    page = await db.read(
        lambda session: service.readable_referrals(
            session,
            principal,
            "GET /v1/referrals",
            statuses=status or [],
            urgent=urgent,
            urgent_first=sort == "urgent",
            limit=limit,
            cursor=cursor,
        )
    )
    return FastJSONResponse(page)  # built from stored rows: no second validation


@router.get(
    "/summary",
    response_model=ReferralSummary,
    summary="Compteurs de mon lieu : par statut, ouvertes, urgentes",
)
async def referral_summary(principal: AgentOrMediateur, db: DbDep) -> ReferralSummary:
    return ReferralSummary(
        **await db.read(lambda session: service.referral_summary(session, principal))
    )


@router.get(
    "/by-code/{code}",
    response_model=ReferralOut,
    summary="Retrouver une orientation reçue par le code du coupon",
)
async def get_referral_by_code(
    code: Annotated[str, Path(max_length=20)],
    principal: Mediateur,
    db: DbDep,
    response: Response,
) -> ReferralOut:
    found, response.headers["ETag"] = await db.read(
        lambda session: service.readable_referral_by_code(
            session, principal, code, "GET /v1/referrals/by-code/{code}"
        )
    )
    return found


@router.get(
    "/{referral_id}", response_model=ReferralOut, summary="Une orientation vers un médiateur"
)
async def get_referral(
    referral_id: str,
    principal: AgentOrMediateur,
    db: DbDep,
    response: Response,
) -> ReferralOut:
    found, response.headers["ETag"] = await db.read(
        lambda session: service.readable_referral(
            session, principal, referral_id, "GET /v1/referrals/{id}"
        )
    )
    return found


@router.post(
    "/{referral_id}/events",
    response_model=ReferralOut,
    summary="Faire avancer une orientation (accepter, refuser, contact, fin…)",
    description=(
        "Change le statut selon le cycle de vie du contrat et ajoute une entrée au journal des "
        "passages de relais, dans la même transaction. `If-Match` (l'ETag lu) : 412 si "
        "l'orientation a changé depuis. 409 si le statut actuel ne le permet pas "
        "(`current_status` dans le problème), 403 si votre rôle ne le peut pas, 422 pour un "
        "refus sans motif valable."
    ),
    responses=api_problems(NotFound, TransitionRefused, VersionMismatch, IdempotencyKeyReused),
)
async def move_referral(
    referral_id: str,
    change: TransitionIn,
    principal: AgentOrMediateur,
    db: DbDep,
    if_match: Annotated[str | None, Header(max_length=200)] = None,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Any:
    body = await db.write(
        lambda session: lifecycle.move_referral(
            session,
            principal,
            referral_id,
            change,
            if_match,
            idempotency_key,
            db.settings.referral_ttl_days,
        )
    )
    return FastJSONResponse(body, headers={"ETag": service.etag_of(body["id"], body["version"])})


@router.get(
    "/{referral_id}/events",
    response_model=list[HandoffEventOut],
    summary="Journal des passages de relais d'une orientation, du plus ancien au plus récent",
)
async def referral_events(
    referral_id: str, principal: AgentOrMediateur, db: DbDep
) -> list[HandoffEventOut]:
    return await db.read(lambda session: lifecycle.referral_events(session, principal, referral_id))


@router.post(
    "/{referral_id}/reorient",
    response_model=ReferralOut,
    status_code=201,
    summary="Réorienter une orientation refusée vers un autre lieu",
    description=(
        "Pour l'agent du lieu qui l'a envoyée, seulement depuis « refusee » : une nouvelle "
        "orientation, liée à la première (`previous_referral_id`), vers le lieu donné ou le "
        "plus proche adapté qui ne l'a pas déjà refusée."
    ),
    responses=api_problems(
        NotFound, TransitionRefused, AlreadyReoriented, NoPlaceNearby, IdempotencyKeyReused
    ),
)
async def reorient(
    referral_id: str,
    principal: Agent,
    db: DbDep,
    body: ReorientIn | None = None,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Any:
    created = await db.write(
        lambda session: lifecycle.reorient(
            session,
            principal,
            referral_id,
            body.place_id if body else None,
            db.settings,
            idempotency_key,
        )
    )
    return FastJSONResponse(
        created,
        status_code=201,
        headers={
            "Location": f"/v1/referrals/{created['id']}",
            "ETag": service.etag_of(created["id"], created["version"]),
        },
    )


@router.delete(
    "/{referral_id}/person",
    status_code=204,
    summary="Effacer les coordonnées de la personne, à sa demande",
    description=(
        "L'agent qui a orienté ou le médiateur qui a reçu l'orientation efface les coordonnées "
        "de la personne (prénom, téléphone, courriel, disponibilités) partout où elles sont "
        "enregistrées ; une entrée du journal des passages de relais le dit. Idempotent : "
        "204 aussi quand il n'y a plus rien à effacer."
    ),
)
async def erase_person(referral_id: str, principal: AgentOrMediateur, db: DbDep) -> Response:
    await db.write(lambda session: personal_data.erase_on_request(session, principal, referral_id))
    return Response(status_code=204)
