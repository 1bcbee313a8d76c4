"""`/agent`: the front-desk form (profile or diagnostic, procedure, commune, consent then
contact), the result with its reasons in words and the printable slip, and the referrals the
place sent, with cancel and re-orient."""

import ipaddress
import math
import secrets
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Request
from pydantic import ValidationError
from sqlmodel import Session
from starlette.responses import JSONResponse, RedirectResponse, Response

from app.db import engine_of
from app.deps import db_of
from app.errors import validation_errors
from app.models import Principal, ReferralStatus
from app.models.orientation import OrientationIn
from app.places.service import Located, place_by_id, suitable_places
from app.problems import IdempotencyKeyReused, InvalidData, Problem
from app.services import lifecycle
from app.services import orientation as service
from app.services.communes import CommuneRef, communes, search_communes
from app.triage import DIAGNOSTIC, PROCEDURE_THEMES, Profile
from app.triage.consent import CURRENT_CONSENT
from app.triage.needs import HALVES, MODALITIES, PUBLIC, SPECIFIC, Day, Half
from app.triage.rules import REASON_NO_PLACE_IN_RANGE
from app.triage.words import what_to_bring
from app.web.referrals import act, list_page
from app.web.render import page, templates
from app.web.session import AgentUser, Form

router = APIRouter(prefix="/agent", include_in_schema=False)

# The form's fields that take what the agent types, by their labels on the page.
_CONTACT = {
    "first_name": "Prénom",
    "phone": "Téléphone",
    "email": "Adresse électronique",
    "availability": "Disponibilités",
}
_PROFILES = {p.value for p in Profile}
_NO_CONSENT = (
    "Sans l'accord de la personne, ne notez aucune coordonnée : lisez-lui le texte, cochez "
    "son accord, ou effacez ses coordonnées."
)


def _commune_label(commune: CommuneRef) -> str:
    """« Ussel (19200) »: typed into the commune field, it finds that commune again."""
    postal = commune.postal_codes.split()[0] if commune.postal_codes else commune.departement
    return f"{commune.name} ({postal})"


def _found_by_insee_code(commune: CommuneRef, typed: str) -> bool:
    """Five digits that are this commune's INSEE code and not its postal code."""
    typed = typed.strip().upper()
    return typed == commune.code and typed not in commune.postal_codes.split()


def _desk(session: Session, principal: Principal) -> CommuneRef | None:
    """The commune of the agent's own place: suggestions favour its surroundings."""
    place = place_by_id(session, principal.place_id or "")
    return communes(engine_of(session)).get(place.commune)


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " et " + items[-1]


def _summary(errors: dict[str, str], choices: list[CommuneRef]) -> list[tuple[str, str]]:
    """The alert above the form: each field to correct, by its label, linked to the field
    (its message is beside the field, once)."""
    listed: list[tuple[str, str]] = []
    if "profile" in errors:
        listed.append((f"profil-{next(iter(Profile)).value}", "Profil de la personne"))
    unanswered = [i for i, q in enumerate(DIAGNOSTIC, 1) if f"q_{q.id}" in errors]
    if unanswered:
        first = DIAGNOSTIC[unanswered[0] - 1]
        numbers = _and([str(i) for i in unanswered])
        listed.append(
            (
                f"q-{first.id}-{first.answers[0].id}",
                f"Diagnostic : {'questions' if len(unanswered) > 1 else 'question'} {numbers}"
                " sans réponse",
            )
        )
    if "theme" in errors:
        listed.append(("theme", "Démarche concernée"))
    if "commune" in errors:
        anchor = f"commune-{choices[0].code}" if choices else "commune"
        listed.append((anchor, "Commune où habite la personne"))
    if "consent" in errors:
        listed.append(("consent", "Accord de la personne"))
    listed += [(name, label) for name, label in _CONTACT.items() if name in errors]
    return listed


async def _form(
    request: Request,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    choices: list[CommuneRef] | None = None,
    status_code: int = 200,
    new_key: bool = False,
) -> Response:
    # A new form starts empty: the commune is the person's, never the desk's by default.
    values = values or {}
    errors = errors or {}
    typed = values.get("commune", "")
    return await page(
        request,
        "agent/form.html",
        status_code=status_code,
        values=values,
        errors=errors,
        summary=_summary(errors, choices or []),
        choices=[
            (
                c.code,
                _commune_label(c),
                f"Code INSEE {c.code}" if _found_by_insee_code(c, typed) else None,
            )
            for c in choices or []
        ],
        profiles=list(Profile),
        questions=DIAGNOSTIC,
        themes=PROCEDURE_THEMES.values(),
        consent=CURRENT_CONSENT,
        specific=SPECIFIC,
        publics=PUBLIC,
        modalities=MODALITIES,
        days=list(Day),
        halves=HALVES,
        request_key=(not new_key and values.get("cle_unique")) or secrets.token_urlsafe(16),
    )


@router.get("")
async def new_orientation(request: Request, _principal: AgentUser) -> Response:
    return await _form(request)


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
    person.update({f: form[f].strip() for f in _CONTACT if form.get(f, "").strip()})
    body = {
        "assessment": assessment,
        "procedure": {"theme": form.get("theme", ""), "urgent": form.get("urgent") == "oui"},
        "already_followed": form.get("already_followed") == "oui",
        "person": person,
    }
    needs = _needs(form)
    return {**body, "needs": needs} if needs else body


def _needs(form: dict[str, str]) -> dict[str, Any] | None:
    """The needs the agent ticked (section 4 of the form), as the API's `needs`."""
    needs: dict[str, Any] = {
        "specific": [s for s in SPECIFIC if form.get(f"besoin_{s}") == "oui"],
        "public": [p for p in PUBLIC if form.get(f"public_{p}") == "oui"],
        "free_only": form.get("gratuit") == "oui",
        "modality": form.get("modalite") or None,
        "availability": [
            {"day": d.value, "half": h.value}
            for d in Day
            for h in Half
            if form.get(f"dispo_{d.value}_{h.value}") == "oui"
        ],
    }
    return needs if any(needs.values()) else None


def _checked(form: dict[str, str]) -> dict[str, str]:
    """What the agent left to choose, by field, in the page's words: the profile or each
    unanswered question of the diagnostic, the procedure, the consent before any contact."""
    errors: dict[str, str] = {}
    if form.get("mode") == "diagnostic":
        for q in DIAGNOSTIC:
            if q.answer(form.get(f"q_{q.id}", "")) is None:
                errors[f"q_{q.id}"] = "Choisissez une réponse à cette question."
    elif form.get("profile") not in _PROFILES:
        errors["profile"] = "Choisissez le profil de la personne, ou faites le diagnostic."
    if form.get("theme") not in PROCEDURE_THEMES:
        errors["theme"] = "Choisissez la démarche concernée."
    if form.get("consent") != "oui" and any(form.get(f, "").strip() for f in _CONTACT):
        errors["consent"] = _NO_CONSENT
    return errors


def _on_form(problem: Problem) -> dict[str, str]:
    """The API's errors on what `_checked` cannot see (the contact typed), by field; any other
    one in the alert above the form."""
    errors: dict[str, str] = {}
    for error in problem.errors or []:
        loc = [str(part) for part in error.get("loc") or []]
        field = loc[-1] if loc else ""
        message = str(error.get("msg", ""))
        if field in _CONTACT:
            errors.setdefault(field, message)
        elif field == "person":  # contact without consent
            errors.setdefault("consent", _NO_CONSENT)
        else:
            errors.setdefault("", f"L'orientation n'a pas pu partir : {message}")
    if not errors:
        errors[""] = problem.detail
    return errors


def _commune(db: Any, form: dict[str, str], desk: CommuneRef | None) -> list[CommuneRef]:
    """The commune meant: the one chosen among those offered for the text typed, or what the
    text finds (several: a choice to make)."""
    typed = form.get("commune", "")
    chosen = communes(db.engine).get(form.get("commune_code", ""))
    if chosen and form.get("commune_offerte", typed) == typed:
        return [chosen]
    return search_communes(db.engine, typed, limit=8, near=desk)


@router.post("")
async def create(request: Request, principal: AgentUser, form: Form) -> Response:
    db = db_of(request)
    desk = await db.read(lambda session: _desk(session, principal))
    found = _commune(db, form, desk)
    errors = _checked(form)
    typed = form.get("commune", "").strip()
    if len(found) != 1:
        errors["commune"] = (
            "Indiquez la commune de la personne (nom, code postal ou code INSEE)."
            if not typed
            else f"Aucune commune ne correspond à « {typed} » : vérifiez l'orthographe ou "
            "tapez son code postal."
            if not found
            else "Plusieurs communes correspondent : choisissez celle de la personne."
        )
    if errors:
        choices = found if len(found) > 1 else []  # one found: the text typed stays
        return await _form(request, form, errors, choices, status_code=422)
    try:
        payload = OrientationIn.model_validate(_payload(form, found[0].code))
    except ValidationError as exc:
        problem = InvalidData("", errors=validation_errors(list(exc.errors())))
        return await _form(request, form, _on_form(problem), status_code=422)
    try:
        body = await db.write(
            lambda session: service.create_orientation(
                session, principal, payload, db.settings, form.get("cle_unique") or None
            )
        )
    except Problem as problem:
        # This page sent one already, then was changed.
        if isinstance(problem, IdempotencyKeyReused):
            said = {
                "": "Ce formulaire a déjà envoyé une orientation, puis il a été modifié. "
                "Vérifiez ce qui est ci-dessous : l'envoyer de nouveau fera une autre "
                "orientation."
            }
            return await _form(request, form, said, status_code=422, new_key=True)
        return await _form(request, form, _on_form(problem), status_code=problem.status)
    return RedirectResponse(f"/agent/resultat/{body['id']}", status_code=303)


@router.get("/resultat/{orientation_id}")
async def result(request: Request, orientation_id: str, principal: AgentUser) -> Response:
    db = db_of(request)

    def read(session: Session) -> tuple[Any, Any, Any]:
        found = service.get_orientation(session, principal, orientation_id)
        desk = place_by_id(session, principal.place_id or "")
        nearest = None
        commune = communes(db.engine).get(found.commune)
        named = getattr(found, "nearest_suitable", None)  # the answer's, when needs were said
        if named is not None:
            nearest = Located(place_by_id(session, named.id), named.distance_km)
        elif REASON_NO_PLACE_IN_RANGE in found.reasons and commune is not None:
            # Too far for a referral, said all the same: the person may still go there.
            farther = suitable_places(session, commune, found.procedure.theme, math.inf, 1)
            if farther and farther[0].distance_km > db.settings.max_referral_distance_km:
                nearest = farther[0]
        return found, desk, nearest

    found, desk, nearest = await db.read(read)
    return await page(
        request,
        "agent/result.html",
        orientation=found,
        desk=desk,
        nearest=nearest,
        max_km=db.settings.max_referral_distance_km,
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
    request: Request, referral_id: str, principal: AgentUser, _csrf: Form
) -> Response:
    """To the next suitable place (a second press finds the referral no longer refused)."""
    settings = db_of(request).settings
    return await act(
        request,
        principal,
        referral_id,
        lambda session: lifecycle.reorient(
            session, principal, referral_id, None, settings, None, answered=False
        ),
        lambda created: f"/agent/orientations/{created['id']}?fait=reorientation",
    )


@router.get("/communes")
async def commune_suggestions(
    request: Request, principal: AgentUser, q: Annotated[str, Query(max_length=80)] = ""
) -> Response:
    """Suggestions for the commune field, as the agent types: the desk's surroundings first."""
    db = db_of(request)
    if len(q.strip()) < 2:
        return JSONResponse([])
    found = await db.read(
        lambda session: search_communes(db.engine, q, limit=10, near=_desk(session, principal))
    )
    return JSONResponse(
        [
            {
                "code": c.code,
                "label": _commune_label(c),
                **({"detail": f"code INSEE {c.code}"} if _found_by_insee_code(c, q) else {}),
            }
            for c in found
        ]
    )


_NOWHERE = {"localhost", "0.0.0.0", "::"}


def _reachable(url: str) -> bool:
    """Whether another device can open `url`: not a loopback or unspecified address (what
    `passerelle serve` sets PASSERELLE_PUBLIC_URL to when it is not given)."""
    host = (urlsplit(url).hostname or "").lower()
    if not host or host in _NOWHERE or host.endswith(".localhost"):
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return True  # a name
    return not (address.is_loopback or address.is_unspecified)


def slip_address(request: Request, public_url: str) -> str:
    """Where the slip's QR code leads (the médiation place scans it): PASSERELLE_PUBLIC_URL;
    when that is the serving process's own loopback address, the address the agent's browser
    used, which the médiation place's devices are likelier to reach."""
    if _reachable(public_url):
        return public_url.rstrip("/")
    return str(request.base_url).rstrip("/")


# The slip is printed from the result page and from the referral's page.
templates.env.globals["slip_address"] = slip_address
