"""People sign in as themselves: with OpenID Connect (ProConnect), or with a one-time link sent
by e-mail; they choose the membership they act in (`/espace`), and a place's responsable (or
the admin) manages its team (`/equipe`): invitations, removals, requests to join.

Links in e-mails are safe against mail scanners, which open every link: a GET only shows a
page with a button, the POST acts (signs in, accepts a request)."""

import hashlib
import hmac
import secrets
from dataclasses import dataclass, replace
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Request
from itsdangerous import BadData, URLSafeTimedSerializer
from sqlmodel import Session as DbSession
from starlette.responses import HTMLResponse, RedirectResponse, Response

from app.auth import FailureThrottle, check_throttle, client_address
from app.deps import db_of as _db
from app.models import JoinRequest, Place, Principal, Role, User
from app.problems import (
    AccessDenied,
    FormRefused,
    OidcNotConfigured,
    Problem,
    UnknownLink,
    UnknownPlace,
    UnknownRole,
)
from app.services import accounts, oidc
from app.services.links import link_secret
from app.web.home import HOME, _safe_next, login_form
from app.web.render import page
from app.web.session import Form, LoginRequired, Session, WebSession, set_cookie

router = APIRouter(include_in_schema=False)

Token = Annotated[str, Path(max_length=400)]
FLOW_COOKIE = "passerelle_oidc"
FLOW_SECONDS = 600
HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def _signer(request: Request, salt: str) -> URLSafeTimedSerializer:
    key = request.app.state.web_signer.secret_keys[-1]
    return URLSafeTimedSerializer(key, salt=salt)


def _client(request: Request) -> oidc.Oidc:
    settings = _db(request).settings
    if not oidc.configured(settings):
        raise OidcNotConfigured(
            "La connexion avec un fournisseur d'identité n'est pas configurée sur ce service : "
            "recevez un lien de connexion par e-mail.",
        )
    found: oidc.Oidc | None = getattr(request.app.state, "oidc", None)
    if found is None:
        found = request.app.state.oidc = oidc.Oidc(settings)
    return found


async def _refused(request: Request, words: str, status_code: int = 400) -> Response:
    response = await page(
        request, "error.html", status_code=status_code, status=status_code, detail=words
    )
    response.delete_cookie(FLOW_COOKIE, path="/connexion/oidc")
    return response


async def _signed_in(
    request: Request, user_id: str, via: str, next_path: str | None, **context: Any
) -> Response:
    """Opens the person's session and leaves for their page. A page that moves on by itself
    rather than a redirect: after a provider's redirect, a browser sends no SameSite=Strict
    cookie on the redirects that follow."""
    db = _db(request)

    def sign_in(s: DbSession) -> tuple[str, tuple[Principal | None, accounts.Account] | None]:
        token = accounts.open_session(s, user_id, via, db.settings.web_session_hours)
        return token, accounts.principal_of_session(s, token)

    token, found = await db.write(sign_in)
    principal = found[0] if found else None
    target = _safe_next(next_path, principal) if principal else "/espace"
    # A new CSRF token with the new session: one taken before sign-in is worth nothing after.
    csrf = secrets.token_urlsafe(32)
    response: Response
    if context:
        request.state.web_session = WebSession(
            principal, csrf, account=found[1] if found else None, person=token
        )
        response = await page(request, "account/join.html", status_code=200, **context)
        del response.headers["set-cookie"]
        response.headers.update(HEADERS)
    else:
        response = HTMLResponse(
            '<!doctype html><html lang="fr"><head><meta charset="utf-8">'
            f'<meta http-equiv="refresh" content="0;url={quote(target, safe="/?=&")}">'
            "<title>Connexion réussie — Passerelle</title></head><body><main>"
            f'<p>Connexion réussie. <a href="{quote(target, safe="/?=&")}">Continuer</a></p>'
            "</main></body></html>",
            headers=HEADERS,
        )
    set_cookie(request, response, None, csrf, person=token)
    response.delete_cookie(FLOW_COOKIE, path="/connexion/oidc")
    return response


# --- OpenID Connect -----------------------------------------------------------------------


@router.get("/connexion/oidc")
async def oidc_start(
    request: Request, suite: Annotated[str | None, Query(max_length=500)] = None
) -> Response:
    client = _client(request)
    try:
        started = await client.start()
    except oidc.OidcRefused as refused:
        return await _refused(request, refused.words, 503)
    flow = _signer(request, "passerelle-oidc").dumps(
        {"s": started.state, "n": started.nonce, "v": started.code_verifier, "x": suite or ""}
    )
    response = RedirectResponse(started.url, status_code=303, headers=HEADERS)
    # Lax, not Strict: the provider's redirect back is a navigation from another site.
    response.set_cookie(
        FLOW_COOKIE,
        flow,
        max_age=FLOW_SECONDS,
        path="/connexion/oidc",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https"
        or _db(request).settings.public_url.startswith("https:"),
    )
    return response


@router.get(oidc.CALLBACK)
async def oidc_callback(
    request: Request,
    code: Annotated[str | None, Query(max_length=2000)] = None,
    state: Annotated[str | None, Query(max_length=500)] = None,
    error: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    client = _client(request)
    if error:
        words = (
            "Connexion annulée : vous pouvez recommencer, ou recevoir un lien par e-mail."
            if error == "access_denied"
            else "Le fournisseur d'identité n'a pas pu vous connecter : recommencez depuis la "
            "page de connexion."
        )
        return await _refused(request, words)
    try:
        flow = _signer(request, "passerelle-oidc").loads(
            request.cookies.get(FLOW_COOKIE, ""), max_age=FLOW_SECONDS
        )
        expected, nonce, verifier = str(flow["s"]), str(flow["n"]), str(flow["v"])
    except (BadData, KeyError, TypeError):
        return await _refused(
            request,
            "Cette connexion n'a pas été commencée dans ce navigateur, ou il y a plus de dix "
            "minutes : recommencez depuis la page de connexion.",
        )
    if not code or not state or not hmac.compare_digest(state.encode(), expected.encode()):
        return await _refused(
            request,
            "La réponse du fournisseur d'identité ne correspond pas à la connexion demandée "
            "(paramètre « state ») : personne n'a été connecté. Recommencez depuis la page de "
            "connexion.",
        )
    try:
        claims = await client.finish(code, nonce, verifier)
    except oidc.OidcRefused as refused:
        return await _refused(request, refused.words)
    db = _db(request)
    found = await db.write(lambda s: accounts.sign_in_oidc(s, claims))
    if found.user_id is None:
        return await _refused(
            request,
            "Aucune invitation pour ce compte : demandez au responsable de votre lieu (ou à "
            "l'administrateur de Passerelle) de vous inviter à l'adresse e-mail de votre "
            "compte, puis reconnectez-vous.",
            403,
        )
    if found.places:
        proofs = {p.id: _join_proof(request, found.user_id, p.id) for p in found.places}
        return await _signed_in(
            request, found.user_id, "oidc", None, places=found.places, proofs=proofs
        )
    return await _signed_in(request, found.user_id, "oidc", str(flow.get("x") or "") or None)


# --- sign-in by e-mail link ----------------------------------------------------------------


@router.post("/connexion/lien")
async def ask_link(request: Request, form: Form) -> Response:
    email = form.get("email", "").strip()[:254]
    suite = form.get("suite", "")
    if "@" not in email:
        return await login_form(
            request,
            status_code=422,
            suite=suite,
            email=email,
            email_error="Adresse e-mail invalide : elle contient un « @ », par exemple "
            "prenom.nom@mairie-tulle.fr.",
        )
    db = _db(request)
    next_path = suite if suite.startswith("/") and not suite.startswith("//") else None
    await db.write(
        lambda s: accounts.request_login_link(s, email, next_path, db.settings.login_link_minutes)
    )
    # The same answer for every address: the page never tells who has an account.
    return await login_form(request, suite=suite, link_sent=True, email=email)


def _bad_link(request: Request) -> Problem:
    throttle: FailureThrottle = request.app.state.auth_throttle
    throttle.failed(client_address(request))
    return UnknownLink(
        "Ce lien de connexion n'est pas valide : il est incomplet ou a été modifié. Ouvrez-le "
        "depuis l'e-mail reçu, ou demandez-en un nouveau sur la page de connexion.",
    )


async def _link_or_gone(request: Request, token: str) -> Response | None:
    """None when the link can sign in; else the page that says why not."""
    check_throttle(request, "liens erronés")
    state = await _db(request).read(lambda s: accounts.login_link_state(s, token))
    if state == "forged":
        raise _bad_link(request)
    return await _link_gone(request) if state == "gone" else None


async def _link_gone(request: Request) -> Response:
    response = await login_form(request, status_code=410, link_gone=True)
    response.headers.update(HEADERS)
    return response


@router.get("/connexion/lien/{token}")
async def link_page(request: Request, token: Token) -> Response:
    gone = await _link_or_gone(request, token)
    if gone is not None:
        return gone
    response = await page(request, "account/link.html", token=token)
    response.headers.update(HEADERS)
    response.headers["X-Robots-Tag"] = "noindex, nofollow"
    return response


@router.post("/connexion/lien/{token}")
async def link_sign_in(request: Request, token: Token, _csrf: Form) -> Response:
    gone = await _link_or_gone(request, token)
    if gone is not None:
        return gone
    link = await _db(request).write(lambda s: accounts.use_login_link(s, token))
    if link is None:  # used meanwhile, by another click
        return await _link_gone(request)
    try:
        return await _signed_in(request, link[0], "email", link[1])
    except accounts.AccountError as refused:
        return await _refused(request, str(refused), 403)


# --- the person's memberships --------------------------------------------------------------


@router.get("/espace")
async def memberships_page(request: Request, session: Session) -> Response:
    if session.account is None:
        if session.principal is not None:  # a key's session has one role, nothing to choose
            return RedirectResponse(HOME[session.principal.role], status_code=303)
        return RedirectResponse("/connexion?suite=/espace", status_code=303)
    user_id = session.account.user_id

    def read(s: DbSession) -> tuple[list[tuple[str, str]], list[Any]]:
        mine = [
            (m.id, accounts.membership_label(s, m)) for m in accounts.active_memberships(s, user_id)
        ]
        return mine, accounts.pending_joins(s, user_id)

    memberships, pending = await _db(request).read(read)
    return await page(
        request,
        "account/memberships.html",
        memberships=memberships,
        pending=pending,
        current=session.principal.membership_id if session.principal else None,
    )


@router.post("/espace")
async def switch(request: Request, form: Form, session: Session) -> Response:
    if session.person is None:
        return RedirectResponse("/connexion", status_code=303)
    token, membership_id = session.person, form.get("membership", "")
    role = await _db(request).write(lambda s: accounts.switch_membership(s, token, membership_id))
    if role is None:
        raise UnknownRole("Ce rôle n'est plus le vôtre : choisissez-en un autre.")
    return RedirectResponse(HOME[role], status_code=303)


def _join_proof(request: Request, user_id: str, place_id: str) -> str:
    """That the provider gave this person the SIRET of this place (signed, for the form)."""
    return str(_signer(request, "passerelle-rejoindre").dumps([user_id, place_id]))


@router.post("/espace/rejoindre")
async def ask_to_join(request: Request, form: Form, session: Session) -> Response:
    if session.account is None:
        return RedirectResponse("/connexion", status_code=303)
    try:
        user_id, place_id = _signer(request, "passerelle-rejoindre").loads(
            form.get("preuve", ""), max_age=3600
        )
    except (BadData, ValueError, TypeError):
        raise FormRefused(
            "Demande refusée : elle ne vient pas d'une connexion avec ProConnect de moins "
            "d'une heure. Reconnectez-vous pour la faire.",
        ) from None
    if user_id != session.account.user_id:
        raise FormRefused("Demande refusée : elle n'est pas la vôtre.")
    await _db(request).write(lambda s: accounts.request_join(s, user_id, place_id))
    return RedirectResponse("/espace", status_code=303)


# --- the team of a place -------------------------------------------------------------------


def _team_place(
    request: Request, session: WebSession, place_id: str | None
) -> tuple[Principal, str]:
    """The place whose team the reader manages: their own as responsable, any as admin."""
    principal = session.principal
    if principal is None:
        raise LoginRequired(request.url.path, session.expired)
    target = place_id if principal.role is Role.ADMIN and place_id else principal.place_id
    # Whether they are its responsable was read with their session, this request.
    responsable = session.account is not None and session.account.responsable
    if not target or not accounts.manages_team(principal, responsable, target):
        raise AccessDenied(
            "La page « Équipe » est réservée au responsable du lieu et à l'administrateur"
            + (
                " : choisissez un lieu (« ?lieu= » suivi de son identifiant)."
                if principal.role is Role.ADMIN
                else "."
            ),
        )
    return principal, target


async def _team_page(
    request: Request,
    principal: Principal,
    place_id: str,
    *,
    status_code: int = 200,
    **context: Any,
) -> Response:
    def read(s: DbSession) -> tuple[Place | None, list[accounts.Member], list[Any]]:
        return (
            s.get(Place, place_id),
            accounts.team(s, place_id),
            accounts.waiting_joins(s, place_id),
        )

    place, members, waiting = await _db(request).read(read)
    if place is None:
        raise UnknownPlace("Lieu inconnu.")
    return await page(
        request,
        "account/team.html",
        status_code=status_code,
        place=place,
        members=members,
        waiting=waiting,
        role=accounts.ROLE_LABELS[accounts.join_role(place)],
        admin=principal.role is Role.ADMIN,
        me=principal.membership_id,
        **context,
    )


@router.get("/equipe")
async def team_page(
    request: Request, session: Session, lieu: Annotated[str | None, Query(max_length=64)] = None
) -> Response:
    principal, place_id = _team_place(request, session, lieu)
    return await _team_page(request, principal, place_id)


@router.post("/equipe/inviter")
async def team_invite(request: Request, form: Form, session: Session) -> Response:
    principal, place_id = _team_place(request, session, form.get("lieu"))
    email = form.get("email", "").strip()
    db = _db(request)

    def write(s: DbSession) -> str:
        place = s.get_one(Place, place_id)
        membership = accounts.invite(
            s,
            email=email,
            role=accounts.join_role(place),
            place_id=place_id,
            responsable=form.get("responsable") == "oui",
            by=principal,
            link_days=db.settings.invitation_days,
        )
        return membership.id

    try:
        await db.write(write)
    except accounts.AccountError as refused:
        return await _team_page(
            request, principal, place_id, status_code=422, email=email, email_error=str(refused)
        )
    return await _team_page(request, principal, place_id, invited=accounts.normal_email(email))


@router.post("/equipe/retirer")
async def team_remove(request: Request, form: Form, session: Session) -> Response:
    principal, place_id = _team_place(request, session, form.get("lieu"))
    membership_id = form.get("membre", "")

    def write(s: DbSession) -> str:
        return accounts.remove_member(s, membership_id, principal, place_id)

    try:
        name = await _db(request).write(write)
    except accounts.AccountError as refused:
        return await _team_page(request, principal, place_id, status_code=409, error=str(refused))
    return await _team_page(request, principal, place_id, removed=name)


# --- a request to join, answered from the e-mail --------------------------------------------


def _join_csrf(secret: str, token: str) -> str:
    return hmac.new(secret.encode(), b"rejoindre:" + token.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class _JoinLink:
    request: JoinRequest
    user: User
    place: Place
    csrf: str  # what the page's form carries (bound to the link: no session behind it)


async def _join_link(request: Request, token: str) -> _JoinLink:
    check_throttle(request, "liens erronés")

    def read(s: DbSession) -> _JoinLink | None:
        found = accounts.read_join(s, token)
        if found is None:
            return None
        user, place = s.get_one(User, found.user_id), s.get_one(Place, found.place_id)
        return _JoinLink(found, user, place, _join_csrf(link_secret(s), token))

    link = await _db(request).read(read)
    if link is None:
        raise _bad_link(request)
    return link


async def _join_page(request: Request, token: str, link: _JoinLink) -> Response:
    response = await page(
        request,
        "account/request.html",
        request_=link.request,
        who=accounts.display_name(link.user),
        email=link.user.email,
        place=link.place,
        base=f"/equipe/demandes/{token}",
        link_csrf=link.csrf,
    )
    response.headers.update(HEADERS)
    return response


@router.get("/equipe/demandes/{token}")
async def join_page(request: Request, token: Token) -> Response:
    return await _join_page(request, token, await _join_link(request, token))


@router.post("/equipe/demandes/{token}")
async def join_decide(request: Request, token: Token) -> Response:
    link = await _join_link(request, token)
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    if not hmac.compare_digest(form.get("csrf", "").encode(), link.csrf.encode()):
        raise FormRefused(
            "Formulaire refusé : il ne vient pas de cette page. Rouvrez le lien de l'e-mail.",
        )
    accept = form.get("decision") == "accepter"
    decided = await _db(request).write(lambda s: accounts.decide_join(s, token, accept))
    return await _join_page(request, token, replace(link, request=decided or link.request))
