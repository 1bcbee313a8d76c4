"""`/lien/{token}`: the page a place opens from its e-mail, with no account and no key. It
shows that one referral and offers the steps the lifecycle allows the receiving place; the
person's contact data only on request (a POST: mail scanners open every link, and must not
read it), each read in the access log. `/lien/{token}/lieu`: the place's own page (a pause,
its e-mail, phone and hours).

A GET never changes anything; every step is a POST carrying a token bound to the link
(app.services.links.csrf_of) and the version read. A link that was not signed here is a 404,
counted like a wrong API key."""

import hmac
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import ValidationError
from sqlmodel import Session
from starlette.responses import RedirectResponse, Response

from app.auth import FailureThrottle
from app.deps import db_of as _db
from app.errors import validation_errors
from app.models import Place, Referral
from app.models.common import utcnow
from app.places.models import PlaceContact
from app.places.service import place_by_id, place_history, update_place
from app.problems import FormRefused, Problem, TooManyAttempts, UnknownLink
from app.services import contact, lifecycle, links
from app.services import referrals as service
from app.triage.lifecycle import Actor, targets
from app.web.referrals import DONE, step_of
from app.web.render import page, problem_words

router = APIRouter(prefix="/lien", include_in_schema=False)

Token = Annotated[str, Path(max_length=400)]
# Every answer here: never cached, never indexed, and the link never sent on as a Referer.
HEADERS = {
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex, nofollow",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class Opened:
    link: links.Link
    secret: str
    referral: Referral
    state: links.LinkState


def _not_found(request: Request) -> Problem:
    throttle: FailureThrottle = request.app.state.auth_throttle
    throttle.failed(request.client.host if request.client else "?")
    return UnknownLink(
        "Ce lien ne correspond à aucune orientation : il est incomplet ou a été modifié. "
        "Ouvrez-le depuis l'e-mail reçu, sans le retaper.",
    )


async def _open(request: Request, token: str) -> Opened:
    """The link and its referral, or the French 404 (429 after too many wrong links)."""
    throttle: FailureThrottle = request.app.state.auth_throttle
    wait = throttle.retry_after(request.client.host if request.client else "?")
    if wait:
        raise TooManyAttempts(
            f"Trop de liens erronés depuis cette adresse : réessayez dans {wait} secondes.",
            headers={"Retry-After": str(wait)},
        )
    db = _db(request)

    def read(session: Session) -> tuple[str, links.Link | None, Referral | None]:
        secret = links.link_secret(session)
        link = links.read_link(secret, token)
        return secret, link, links.referral_of(session, link) if link else None

    secret, link, referral = await db.read(read)
    if link is None or referral is None:
        raise _not_found(request)
    return Opened(link, secret, referral, links.state_of(link, referral, db.settings, utcnow()))


async def _answer(response: Response) -> Response:
    response.headers.update(HEADERS)
    return response


async def _show(
    request: Request,
    opened: Opened,
    *,
    done: str | None = None,
    error: str | None = None,
    with_contact: bool = False,
    status_code: int = 200,
) -> Response:
    db = _db(request)
    link = opened.link
    if opened.state is not links.LinkState.OPEN:
        return await _closed(request, opened)
    principal = links.link_principal(link)

    def read(session: Session) -> tuple[Any, list[Any], bool]:
        # The log first: read with the referral, before its read of the contact data is
        # logged (app.services.referrals.readable_referral, as the other pages do).
        events = lifecycle.referral_events(session, principal, link.referral_id)
        if with_contact:
            found, _ = service.readable_referral(
                session, principal, link.referral_id, "POST /lien/{id}"
            )
            return found, events, contact.carries_contact(found.person)
        found, _ = service.read_referral(
            session, service.get_referral(session, principal, link.referral_id)
        )
        hidden = dict.fromkeys(contact.CONTACT_FIELDS)
        shown = found.model_copy(update={"person": found.person.model_copy(update=hidden)})
        return shown, events, contact.carries_contact(found.person)

    found, events, has_contact = await db.read(read)
    return await _answer(
        await page(
            request,
            "link/referral.html",
            status_code=status_code,
            referral=found,
            events=events,
            actions=targets(found.status, Actor.MEDIATEUR),
            base=f"/lien/{link.token}",
            link_csrf=links.csrf_of(opened.secret, link),
            has_contact=has_contact,
            with_contact=with_contact,
            done=DONE.get(done or ""),
            error=error,
        )
    )


async def _closed(request: Request, opened: Opened, *, sent: bool | None = None) -> Response:
    """A link too old (a fresh one can be sent to the place) or of a referral long over."""
    db = _db(request)
    place = await db.read(lambda session: place_by_id(session, opened.link.place_id))
    ended = links.final_since(opened.referral, utcnow())
    renewable = opened.state is links.LinkState.RENEWABLE
    return await _answer(
        await page(
            request,
            "link/expired.html",
            status_code=200 if renewable else 410,
            code=opened.referral.code,
            renewable=renewable,
            ended=ended,
            place=place,
            masked_email=_masked(place.email),
            base=f"/lien/{opened.link.token}",
            link_csrf=links.csrf_of(opened.secret, opened.link),
            sent=sent,
        )
    )


def _masked(email: str | None) -> str | None:
    """« m…@mediatheque-tulle.fr »: enough for the reader to know where to look."""
    if not email or "@" not in email:
        return None
    name, domain = email.split("@", 1)
    return f"{name[:1]}…@{domain}"


def _checked(opened: Opened, form: dict[str, str]) -> None:
    """A step's form carries the token of its link, or it comes from elsewhere."""
    expected = links.csrf_of(opened.secret, opened.link)
    if not hmac.compare_digest(form.get("csrf", "").encode(), expected.encode()):
        raise FormRefused(
            "Formulaire refusé : il ne vient pas de cette page. Rouvrez le lien de l'e-mail "
            "et recommencez.",
        )


async def _form(request: Request) -> dict[str, str]:
    return {k: v for k, v in (await request.form()).items() if isinstance(v, str)}


@router.get("/{token}")
async def show(
    request: Request, token: Token, fait: Annotated[str | None, Query(max_length=40)] = None
) -> Response:
    return await _show(request, await _open(request, token), done=fait)


@router.post("/{token}/coordonnees")
async def show_contact(request: Request, token: Token) -> Response:
    opened = await _open(request, token)
    _checked(opened, await _form(request))
    return await _show(request, opened, with_contact=True)


@router.post("/{token}/statut")
async def move(request: Request, token: Token) -> Response:
    opened = await _open(request, token)
    form = await _form(request)
    _checked(opened, form)
    if opened.state is not links.LinkState.OPEN:
        return await _closed(request, opened)
    referral_id = opened.link.referral_id
    principal = links.link_principal(opened.link)
    db = _db(request)
    try:
        change, if_match = step_of(form, referral_id)
        await db.write(
            lambda session: lifecycle.move_referral(
                session,
                principal,
                referral_id,
                change,
                if_match,
                None,
                db.settings.referral_ttl_days,
                answered=False,
            )
        )
    except Problem as problem:
        if problem.status == 404:
            raise
        return await _show(
            request, opened, error=problem_words(problem), status_code=problem.status
        )
    return RedirectResponse(
        f"/lien/{token}?fait={change.status.value}", status_code=303, headers=HEADERS
    )


@router.post("/{token}/nouveau-lien")
async def new_link(request: Request, token: Token) -> Response:
    opened = await _open(request, token)
    _checked(opened, await _form(request))
    if opened.state is not links.LinkState.RENEWABLE:
        return await _show(request, opened)
    sent = await _db(request).write(lambda session: links.send_new_link(session, opened.link))
    return await _closed(request, opened, sent=sent)


# --- the place's own page -----------------------------------------------------------------


async def _place_page(
    request: Request,
    opened: Opened,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    done: bool = False,
    status_code: int = 200,
) -> Response:
    if opened.state is not links.LinkState.OPEN:
        return await _closed(request, opened)
    place_id = opened.link.place_id

    def read(session: Session) -> tuple[Place, list[Any]]:
        return session.get_one(Place, place_id), place_history(session, place_id)

    place, history = await _db(request).read(read)
    return await _answer(
        await page(
            request,
            "link/place.html",
            status_code=status_code,
            place=place,
            history=history,
            values=values,
            errors=errors or {},
            done=done,
            today=utcnow().date(),
            base=f"/lien/{opened.link.token}",
            link_csrf=links.csrf_of(opened.secret, opened.link),
        )
    )


@router.get("/{token}/lieu")
async def place_page(
    request: Request, token: Token, fait: Annotated[str | None, Query(max_length=10)] = None
) -> Response:
    return await _place_page(request, await _open(request, token), done=fait == "lieu")


@router.post("/{token}/lieu")
async def place_update(request: Request, token: Token) -> Response:
    opened = await _open(request, token)
    form = await _form(request)
    _checked(opened, form)
    errors: dict[str, str] = {}
    changes: dict[str, str | date | int | None] = {}
    pause = form.get("paused_until", "").strip()
    if form.get("pause") == "non" or not pause:
        changes["paused_until"] = None
    else:
        try:
            until = date.fromisoformat(pause)
        except ValueError:
            errors["paused_until"] = "Date invalide : choisissez un jour dans le calendrier."
        else:
            if until < utcnow().date():
                errors["paused_until"] = "Ce jour est passé : choisissez aujourd'hui ou après."
            else:
                changes["paused_until"] = until
    try:
        checked = PlaceContact.model_validate(
            {f: form.get(f, "").strip() or None for f in ("email", "phone", "hours", "capacity")}
        )
    except ValidationError as exc:
        for error in validation_errors(list(exc.errors())):
            errors[str(error["loc"][-1])] = str(error["msg"])
    else:
        changes.update(checked.model_dump())
    if errors:
        return await _place_page(request, opened, values=form, errors=errors, status_code=422)
    principal = links.link_principal(opened.link)
    await _db(request).write(
        lambda session: update_place(session, principal, opened.link.place_id, changes)
    )
    return RedirectResponse(f"/lien/{token}/lieu?fait=lieu", status_code=303, headers=HEADERS)
