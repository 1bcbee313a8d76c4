"""Home, login and logout. People sign in as themselves (app.web.accounts: OpenID Connect,
an e-mail link); an API key given once opens a session for its role's pages where
PASSERELLE_WEB_KEY_LOGIN allows it (demos, tests)."""

import secrets
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import RedirectResponse, Response

from app.auth import client_address
from app.deps import db_of
from app.models import Principal, Role
from app.principal import hash_token
from app.services import accounts, oidc
from app.web.render import page
from app.web.session import COOKIE, Form, Session, principal_of_token, set_cookie

router = APIRouter(include_in_schema=False)

HOME = {
    Role.AGENT: "/agent",
    Role.MEDIATEUR: "/mediateur",
    Role.COORDINATEUR: "/coordinateur",
    Role.ADMIN: "/coordinateur",
}


def _safe_next(path: str | None, principal: Principal) -> str:
    """Only a path of this site (never //host or a scheme), else the role's home."""
    if path and path.startswith("/") and not path.startswith("//") and "\\" not in path:
        return path
    return HOME[principal.role]


@router.get("/")
async def home(session: Session) -> Response:
    if session.principal is not None:
        return RedirectResponse(HOME[session.principal.role], status_code=303)
    if session.account is not None:
        return RedirectResponse("/espace", status_code=303)
    return RedirectResponse("/connexion", status_code=303)


@router.get("/connexion")
async def login_page(
    request: Request,
    session: Session,
    suite: Annotated[str | None, Query(max_length=500)] = None,
    expiree: Annotated[bool, Query()] = False,
) -> Response:
    if session.principal is not None or session.account is not None:
        target = _safe_next(suite, session.principal) if session.principal else "/espace"
        return RedirectResponse(target, status_code=303)
    return await login_form(request, suite=suite or "", expired=expiree)


async def login_form(request: Request, status_code: int = 200, **context: object) -> Response:
    """The login page: ProConnect when configured, the e-mail link, the key where allowed."""
    settings = db_of(request).settings
    return await page(
        request,
        "login.html",
        status_code=status_code,
        oidc_name=settings.oidc_provider_name if oidc.configured(settings) else None,
        key_login=settings.web_key_login,
        **context,
    )


@router.post("/connexion")
async def login(request: Request, form: Form) -> Response:
    if not db_of(request).settings.web_key_login:
        return await login_form(
            request,
            status_code=403,
            suite=form.get("suite", ""),
            error="La connexion par clé d'accès n'est pas ouverte sur ce service : "
            "connectez-vous avec votre compte.",
        )
    throttle = request.app.state.auth_throttle  # the API's: wrong keys count the same here
    address = client_address(request)
    wait = throttle.retry_after(address)
    token = form.get("cle", "").strip()
    principal = await principal_of_token(request, token) if token and not wait else None
    if principal is None:
        if not wait:
            throttle.failed(address)
        return await login_form(
            request,
            status_code=429 if wait else 401,
            suite=form.get("suite", ""),
            error=(
                f"Trop de clés refusées depuis cette adresse : réessayez dans {wait} s."
                if wait
                else "Clé inconnue ou révoquée : vérifiez-la (elle commence par « psl_ »)."
            ),
        )
    response = RedirectResponse(_safe_next(form.get("suite"), principal), status_code=303)
    # A new CSRF token with the new session: one taken before login is worth nothing after.
    set_cookie(request, response, hash_token(token), secrets.token_urlsafe(32))
    return response


@router.post("/deconnexion")
async def logout(request: Request, _csrf: Form, session: Session) -> Response:
    if session.person is not None:  # a person's session ends server-side, for every copy
        token = session.person
        await db_of(request).write(lambda s: accounts.end_session(s, token))
    response = RedirectResponse("/connexion", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.get("/orientations/{referral_id}")
async def referral_link(referral_id: str, session: Session) -> Response:
    """The link of the e-mails: the referral's page of the reader's role."""
    principal = session.principal
    if principal is None:
        target = f"/connexion?suite=/orientations/{referral_id}"
    elif principal.role in (Role.AGENT, Role.MEDIATEUR):
        target = f"/{principal.role.value}/orientations/{referral_id}"
    else:
        target = HOME[principal.role]
    return RedirectResponse(target, status_code=303)


@router.get("/accessibilite")
async def accessibility(request: Request) -> Response:
    return await page(request, "accessibilite.html")
