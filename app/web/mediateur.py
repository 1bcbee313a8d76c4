"""`/mediateur`: the referrals the place received (open ones, urgent first, with counts), the
look-up by the code the person carries, and each referral's page (app.web.referrals)."""

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import RedirectResponse, Response

from app.deps import db_of
from app.models import ReferralStatus
from app.problems import Problem
from app.services import referrals as service
from app.triage.lifecycle import OPEN
from app.web.referrals import list_page
from app.web.session import MediateurUser

router = APIRouter(prefix="/mediateur", include_in_schema=False)


@router.get("")
async def inbox(
    request: Request,
    principal: MediateurUser,
    statut: Annotated[list[ReferralStatus] | None, Query(max_length=9)] = None,
    suite: Annotated[str | None, Query(max_length=200)] = None,
    code: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    db = db_of(request)
    not_found = None
    if code:
        try:
            found = await db.read(
                lambda session: service.get_referral_by_code(session, principal, code).id
            )
        except Problem as problem:
            if problem.status != 404:
                raise
            not_found = problem.detail
        else:
            return RedirectResponse(f"/mediateur/orientations/{found}", status_code=303)
    # By default the open ones, urgent first: what needs an answer.
    return await list_page(
        request,
        principal,
        "mediateur/inbox.html",
        statut or sorted(OPEN, key=list(ReferralStatus).index),
        urgent_first=not statut,
        cursor=suite,
        status_code=404 if not_found else 200,
        title="Orientations reçues",
        code=code or "",
        not_found=not_found,
    )
