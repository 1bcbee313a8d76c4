"""HTTP layer of referrals: the sender's and the receiver's views."""

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from app.auth import AgentOrMediateur, Mediateur
from app.db import DbDep
from app.errors import AUTH_PROBLEMS, COMMON_PROBLEMS, problem_responses
from app.models import ReferralStatus
from app.models.referral import ReferralOut, ReferralPage
from app.services import referrals as service

router = APIRouter(
    prefix="/v1/referrals",
    tags=["orientations vers un médiateur"],
    responses=problem_responses(*COMMON_PROBLEMS + AUTH_PROBLEMS + (404,)),
)


@router.get("", response_model=ReferralPage, summary="Orientations reçues ou envoyées par mon lieu")
async def list_referrals(
    principal: AgentOrMediateur,
    db: DbDep,
    status: ReferralStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> ReferralPage:
    return await db.read(
        lambda session: service.list_referrals(
            session, principal, status=status, limit=limit, cursor=cursor
        )
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
        lambda session: service.read_referral(
            session, service.get_referral_by_code(session, principal, code)
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
        lambda session: service.read_referral(
            session, service.get_referral(session, principal, referral_id)
        )
    )
    return found
