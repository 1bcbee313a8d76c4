"""Templates and what every page needs: the session, the words of the field, dates in French."""

from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import segno
from fastapi import Request
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from starlette.responses import HTMLResponse

from app.deps import db_of
from app.problems import NoPlaceNearby, Problem, TransitionRefused, VersionMismatch
from app.services.communes import communes
from app.triage import words
from app.triage.lifecycle import (
    EXPIRABLE,
    FINAL,
    OPEN,
    REORIENTABLE,
    STATUS_TABLE,
    ReferralStatus,
    Tone,
)
from app.web.session import keep_cookie, read_session

HERE = Path(__file__).parent
PARIS = ZoneInfo("Europe/Paris")
MONTHS = [
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
]

templates = Jinja2Templates(directory=HERE / "templates")

# The pages load nothing from elsewhere, and nothing inline runs: an injected script would not.
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; object-src 'none'"
)

# The DSFR badge of each status; the plain one has no modifier of its own.
_BADGES = {
    status: "" if info.tone is Tone.NEUTRAL else info.tone.value
    for status, info in STATUS_TABLE.items()
}
# A step that closes a referral short of its goal is offered as a secondary button.
_SECONDARY_STEPS = frozenset(
    status for status, info in STATUS_TABLE.items() if info.step and info.step.secondary
)


def when(value: datetime | date | str | None, *, time: bool = True) -> str:
    """« 3 mars 2026 à 14 h 05 », in Paris time; a day alone: « 3 mars 2026 »."""
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        return f"{value.day} {MONTHS[value.month - 1]} {value.year}"
    local = value.astimezone(PARIS)
    day = f"{local.day} {MONTHS[local.month - 1]} {local.year}"
    return f"{day} à {local.hour} h {local.minute:02d}" if time else day


def number(value: float | int | None, digits: int = 0) -> str:
    """French figures: « 12 345 », « 3,5 »; a dash for a withheld one."""
    if value is None:
        return "—"
    text = f"{value:,.{digits}f}".replace(",", "\u202f").replace(".", ",")
    return text


def percent(value: float | None) -> str:
    return "—" if value is None else f"{number(100 * value, 0)}\u00a0%"


def qr_svg(text: str) -> str:
    """A QR code of `text`, as inline SVG."""
    return str(segno.make(text, error="m").svg_inline(scale=4, border=2, omitsize=True))


@pass_context
def commune_name(context: Any, code: str) -> str:
    found = communes(db_of(context["request"]).engine).get(code)
    return f"{found.name} ({found.departement})" if found else code


templates.env.filters.update(when=when, number=number, percent=percent)
templates.env.globals.update(
    words=words,
    qr_svg=qr_svg,
    commune_name=commune_name,
    status_badge=lambda status: _BADGES.get(ReferralStatus(status), ""),
    # The lifecycle's sets, for every page: no template writes out a list of statuses.
    open_statuses=OPEN,
    final_statuses=FINAL,
    expirable_statuses=EXPIRABLE,
    reorientable_statuses=REORIENTABLE,
    secondary_steps=_SECONDARY_STEPS,
)


async def page(
    request: Request, template: str, status_code: int = 200, **context: Any
) -> HTMLResponse:
    session = await read_session(request)
    response = templates.TemplateResponse(
        request,
        template,
        {
            "user": session.principal,
            "account": session.account,
            "csrf": session.csrf,
            "public_url": db_of(request).settings.public_url.rstrip("/"),
            **context,
        },
        status_code=status_code,
    )
    keep_cookie(request, response, session)
    response.headers["Content-Security-Policy"] = CSP
    return response


# The pages' query parameters and form fields, as their readers call them.
PARAMETERS = {
    "statut": "Statut",
    "status": "Étape",
    "reason": "Motif du refus",
    "note": "Note",
    "du": "Date de début",
    "au": "Date de fin",
    "par": "Regrouper par",
    "territoire": "Territoire",
    "km": "Distance",
    "besoin": "Besoin",
    "suite": "Page suivante",
    "q": "Recherche",
    "fait": "Étape faite",
    "referral_id": "Orientation",
    "orientation_id": "Orientation",
}


def _status_words(value: Any) -> str:
    try:
        return words.STATUSES[ReferralStatus(value)]
    except ValueError:
        return "inconnu"


def error_words(errors: list[dict[str, Any]]) -> str:
    """Validation errors in the page's words: the field by its label, and no list of the
    API's codes (a page offers its choices itself)."""
    said = []
    for error in errors:
        loc = [str(part) for part in error.get("loc") or []]
        label = PARAMETERS.get(loc[-1] if loc else "", "Valeur")
        msg = str(error.get("msg", ""))
        if msg.startswith("Valeur non autorisée"):
            msg = "choisissez une des valeurs proposées par la page."
        said.append(f"{label} : {msg[:1].lower()}{msg[1:]}")
    return " ".join(dict.fromkeys(said)) or "Données invalides."


def problem_words(problem: Problem) -> str:
    """A problem as the page's reader should read it. The API's details name its statuses
    and fields (`acceptee`, `place_id`, ETag), for the programs that call it."""
    status = _status_words(problem.extra.get("current_status"))
    if isinstance(problem, VersionMismatch):
        return (
            "Cette orientation a changé depuis que vous avez ouvert la page : elle est "
            f"maintenant « {status} ». Rien n'a été enregistré ; vérifiez-la ci-dessous "
            "avant d'agir."
        )
    if isinstance(problem, TransitionRefused):
        return (
            f"Cette étape n'est pas possible : l'orientation est « {status} ». "
            "Les étapes encore possibles sont proposées ci-dessous."
        )
    if isinstance(problem, NoPlaceNearby):
        return (
            "Aucun autre lieu de médiation adapté n'est assez proche de la commune de la "
            "personne : France Services garde la main pour cette démarche."
        )
    if problem.errors and problem.status == 422:
        return error_words(problem.errors)
    return problem.detail


def field_errors(problem: Problem) -> dict[str, str]:
    """A problem's errors by field name (the last part of `loc`), for a form."""
    found: dict[str, str] = {}
    for error in problem.errors or []:
        loc = [str(part) for part in error.get("loc") or []]
        found.setdefault(loc[-1] if loc else "", str(error.get("msg", "")))
    return found
