"""`/agent`: the front-desk form (profile or diagnostic, procedure, commune, consent then
contact), the result with its reasons in words and the printable slip, and the referrals the
place sent, with cancel and re-orient."""

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import ValidationError
from starlette.responses import JSONResponse, RedirectResponse, Response

from app.errors import Problem, validation_errors
from app.models import Principal, ReferralStatus
from app.models.orientation import OrientationIn
from app.services import lifecycle
from app.services import orientation as service
from app.services.communes import CommuneRef, communes, search_communes
from app.services.places import place_by_id
from app.triage import DIAGNOSTIC, PROCEDURE_THEMES, Profile
from app.triage.consent import CURRENT_CONSENT
from app.triage.words import what_to_bring
from app.web.referrals import act, list_page
from app.web.render import field_errors, page
from app.web.session import AgentUser, Form

router = APIRouter(prefix="/agent", include_in_schema=False)

_CONTACT = ("first_name", "phone", "email", "availability")
_SHOWN = {"profile", "diagnostic", "theme", "commune", *_CONTACT}


def _commune_label(commune: CommuneRef) -> str:
    postal = commune.postal_codes.split()[0] if commune.postal_codes else commune.departement
    return f"{commune.name} ({postal})"


async def _form(
    request: Request,
    principal: Principal,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    choices: list[CommuneRef] | None = None,
    status_code: int = 200,
) -> Response:
    db = request.app.state.db
    if values is None:
        place = await db.read(lambda session: place_by_id(session, principal.place_id or ""))
        values = {"commune": f"{place.commune_name} ({place.postal_code})"}
    return await page(
        request,
        "agent/form.html",
        status_code=status_code,
        values=values,
        errors=errors or {},
        choices=[(c.code, _commune_label(c)) for c in choices or []],
        profiles=list(Profile),
        questions=DIAGNOSTIC,
        themes=PROCEDURE_THEMES.values(),
        consent=CURRENT_CONSENT,
        request_key=values.get("cle_unique") or secrets.token_urlsafe(16),
    )


@router.get("")
async def new_orientation(request: Request, principal: AgentUser) -> Response:
    return await _form(request, principal)


def _payload(form: dict[str, str], commune: str) -> dict[str, Any]:
    """The API's body, from the form's fields."""
    if form.get("mode") == "diagnostic":
        assessment: dict[str, Any] = {
            "answers": {q.id: form.get(f"q_{q.id}", "") for q in DIAGNOSTIC}
        }
    else:
        assessment = {"profile": form.get("profile") or None}
    consent = form.get("consent") == "oui"
    person: dict[str, Any] = {"commune": commune, "consent": consent}
    if consent:
        person["consent_text_version"] = form.get("consent_text_version") or None
    # Contact typed without consent is refused by the API's rule, with its French message.
    person.update({f: form[f].strip() for f in _CONTACT if form.get(f, "").strip()})
    return {
        "assessment": assessment,
        "procedure": {"theme": form.get("theme", ""), "urgent": form.get("urgent") == "oui"},
        "already_followed": form.get("already_followed") == "oui",
        "person": person,
    }


def _on_form(problem: Problem, form: dict[str, str]) -> dict[str, str]:
    """The API's errors by form field: the assessment's are the profile's or the
    diagnostic's, as the agent chose."""
    errors = field_errors(problem)
    questions = {q.id for q in DIAGNOSTIC}
    if any(k in ("assessment", "answers", "profile") or k in questions for k in errors):
        if form.get("mode") == "diagnostic":
            errors["diagnostic"] = "Répondez aux cinq questions du diagnostic."
        else:
            errors["profile"] = "Choisissez le profil de la personne, ou faites le diagnostic."
    # What no field of the page shows goes in the alert above the form.
    elsewhere = [m for k, m in errors.items() if k not in _SHOWN]
    if elsewhere or not errors:
        errors[""] = " ".join(elsewhere) or problem.detail
    return errors


@router.post("")
async def create(request: Request, principal: AgentUser, form: Form) -> Response:
    db = request.app.state.db
    chosen = communes(db.engine).get(form.get("commune_code", ""))  # one of the choices
    typed = form.get("commune", "")
    found = [chosen] if chosen else search_communes(db.engine, typed, limit=8)
    if len(found) != 1:
        message = (
            "Indiquez la commune de la personne (nom, code postal ou code INSEE)."
            if not typed.strip()
            else f"Aucune commune ne correspond à « {typed} »."
            if not found
            else "Plusieurs communes correspondent : choisissez la bonne."
        )
        return await _form(
            request, principal, form, {"commune": message}, found, status_code=422
        )
    try:
        payload = OrientationIn.model_validate(_payload(form, found[0].code))
    except ValidationError as exc:
        problem = Problem(422, "", errors=validation_errors(list(exc.errors())))
        return await _form(request, principal, form, _on_form(problem, form), status_code=422)
    try:
        body = await db.write(
            lambda session: service.create_orientation(
                session, principal, payload, db.settings, form.get("cle_unique") or None
            )
        )
    except Problem as problem:
        errors = _on_form(problem, form)
        return await _form(request, principal, form, errors, status_code=problem.status)
    return RedirectResponse(f"/agent/resultat/{body['id']}", status_code=303)


@router.get("/resultat/{orientation_id}")
async def result(request: Request, orientation_id: str, principal: AgentUser) -> Response:
    db = request.app.state.db
    found = await db.read(
        lambda session: service.get_orientation(session, principal, orientation_id)
    )
    return await page(
        request,
        "agent/result.html",
        orientation=found,
        bring=what_to_bring(found.procedure.theme),
    )


@router.get("/orientations")
async def sent(
    request: Request,
    principal: AgentUser,
    statut: Annotated[list[ReferralStatus] | None, Query(max_length=9)] = None,
    suite: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    return await list_page(
        request,
        principal,
        "referral_list.html",
        statut or [],
        cursor=suite,
        title="Orientations envoyées",
    )


@router.post("/orientations/{referral_id}/reorienter")
async def reorient(
    request: Request, referral_id: str, principal: AgentUser, form: Form
) -> Response:
    """To the next suitable place (a second press finds the referral no longer refused)."""
    settings = request.app.state.db.settings
    return await act(
        request,
        principal,
        referral_id,
        lambda session: lifecycle.reorient(session, principal, referral_id, None, settings, None),
        lambda created: f"/agent/orientations/{created['id']}?fait=reorientation",
    )


@router.get("/communes")
async def commune_suggestions(
    request: Request, principal: AgentUser, q: Annotated[str, Query(max_length=80)] = ""
) -> Response:
    """Suggestions for the commune field, as the agent types."""
    found = search_communes(request.app.state.db.engine, q, limit=10) if len(q) >= 2 else []
    return JSONResponse([{"code": c.code, "label": _commune_label(c)} for c in found])
