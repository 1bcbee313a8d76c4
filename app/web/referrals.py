"""A referral's page, shared by the sending agent and the receiving médiateur: its status,
the place, the person's contact while the privacy rules show it (each read logged), the
handoff log, and the transitions the lifecycle offers the reader's role."""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import ValidationError
from sqlmodel import Session
from starlette.responses import RedirectResponse, Response

from app.deps import db_of
from app.errors import validation_errors
from app.models import Principal, ReferralStatus
from app.models.referral import TransitionIn
from app.problems import InvalidData, Problem
from app.services import lifecycle, personal_data
from app.services import referrals as service
from app.triage import words
from app.triage.lifecycle import targets
from app.triage.words import what_to_bring
from app.web.render import page, problem_words
from app.web.session import AgentOrMediateurUser, Form

router = APIRouter(include_in_schema=False)

# What the page says once done: each step's words (app.triage.lifecycle), and the page's own.
DONE = {
    **{status.value: done for status, done in words.DONE.items()},
    "efface": "Coordonnées de la personne effacées.",
    "reorientation": "Nouvelle orientation envoyée au lieu suivant.",
}


def _prefix(principal: Principal) -> str:
    return f"/{principal.role.value}/orientations"


async def referral_page(
    request: Request,
    principal: Principal,
    referral_id: str,
    *,
    done: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    def read(session: Any) -> tuple[Any, list[Any]]:
        # The handoff log first, in the same transaction as the referral: readable_referral
        # ends it when it logs a read of the contact data.
        events = lifecycle.referral_events(session, principal, referral_id)
        found, _ = service.readable_referral(
            session, principal, referral_id, f"GET {_prefix(principal)}/{{id}}"
        )
        return found, events

    found, events = await db_of(request).read(read)
    return await page(
        request,
        "referral.html",
        status_code=status_code,
        referral=found,
        events=events,
        actions=targets(found.status, lifecycle.ACTORS[principal.role]),
        bring=what_to_bring(found.procedure.theme),
        prefix=_prefix(principal),
        done=DONE.get(done or ""),
        error=error,
    )


async def list_page(
    request: Request,
    principal: Principal,
    template: str,
    statuses: list[ReferralStatus],
    *,
    urgent_first: bool = False,
    cursor: str | None = None,
    status_code: int = 200,
    **context: Any,
) -> Response:
    """The referrals of the reader's place (sent, or received), 50 a page, with the counts."""
    listing, summary = await db_of(request).read(
        lambda session: (
            service.list_referrals(
                session,
                principal,
                statuses=statuses,
                urgent_first=urgent_first,
                limit=50,
                cursor=cursor,
            ),
            service.referral_summary(session, principal),
        )
    )
    return await page(
        request,
        template,
        status_code=status_code,
        listing=listing,
        summary=summary,
        chosen=[s.value for s in statuses],
        urgent_first=urgent_first,
        prefix=_prefix(principal),
        **context,
    )


async def show(
    request: Request,
    referral_id: str,
    principal: AgentOrMediateurUser,
    fait: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    if not request.url.path.startswith(_prefix(principal)):
        return RedirectResponse(f"{_prefix(principal)}/{referral_id}", status_code=303)
    return await referral_page(request, principal, referral_id, done=fait)


async def act(
    request: Request,
    principal: Principal,
    referral_id: str,
    use_case: Callable[[Session], Any],
    then: Callable[[Any], str],
) -> Response:
    """A step taken from a referral's page: on to the page `then` names, or back to the
    referral's page saying, in the API's words, why not (409 from this status, 412 changed
    meanwhile, 403 not for this role, 422 a reason missing). Out of scope: the 404 page."""
    try:
        done = await db_of(request).write(use_case)
    except Problem as problem:
        if problem.status == 404:
            raise
        said = (
            "Cette étape ne revient pas à votre rôle pour cette orientation."
            if problem.status == 403
            else problem_words(problem)
        )
        return await referral_page(
            request, principal, referral_id, error=said, status_code=problem.status
        )
    return RedirectResponse(then(done), status_code=303)


def step_of(form: dict[str, str], referral_id: str) -> tuple[TransitionIn, str | None]:
    """A step's form as the API takes it: the transition, and the version the page was read
    at as If-Match (it guards against a change made meanwhile, and a button pressed twice).
    A wrong form: the 422 problem the pages say in words (problem_words)."""
    try:
        change = TransitionIn(
            status=form.get("status", ""),
            reason=form.get("reason") or None,
            note=form.get("note") or None,
        )
    except ValidationError as exc:
        raise InvalidData(
            "Données invalides.",
            errors=validation_errors(list(exc.errors())),
        ) from None
    version = form.get("version", "")
    return change, service.etag_of(referral_id, int(version)) if version.isdigit() else None


async def move(
    request: Request, referral_id: str, principal: AgentOrMediateurUser, form: Form
) -> Response:
    """A transition from the page's buttons (step_of)."""
    ttl = db_of(request).settings.referral_ttl_days

    def use_case(session: Session) -> Any:
        change, if_match = step_of(form, referral_id)
        return lifecycle.move_referral(
            session, principal, referral_id, change, if_match, None, ttl, answered=False
        )

    return await act(
        request,
        principal,
        referral_id,
        use_case,
        lambda moved: f"{_prefix(principal)}/{referral_id}?fait={moved['status']}",
    )


async def erase(
    request: Request, referral_id: str, principal: AgentOrMediateurUser, _csrf: Form
) -> Response:
    return await act(
        request,
        principal,
        referral_id,
        lambda session: personal_data.erase_on_request(session, principal, referral_id),
        lambda _: f"{_prefix(principal)}/{referral_id}?fait=efface",
    )


for role in ("agent", "mediateur"):
    router.add_api_route(f"/{role}/orientations/{{referral_id}}", show, methods=["GET"])
    router.add_api_route(f"/{role}/orientations/{{referral_id}}/statut", move, methods=["POST"])
    router.add_api_route(f"/{role}/orientations/{{referral_id}}/effacer", erase, methods=["POST"])
