"""The web pages' session: a person signed in (OpenID Connect or an e-mail link; the session
kept in the database, app.services.accounts), or an API key given once at login (demos and
tests, behind PASSERELLE_WEB_KEY_LOGIN); then a signed cookie.

The cookie (HttpOnly, SameSite=Strict, Secure over HTTPS) carries the key's hash, never the
key, and the session's CSRF token, signed with PASSERELLE_SECRET_KEY and dated: it lasts
`web_session_hours`, and dies at once when its key is revoked (the key is looked up in the
same in-memory copy as the API's). A person's cookie carries a random token instead, whose
session row ends with a logout, the removal of the member or the person's deactivation. Every
form carries the CSRF token; a POST without the session's token is refused before anything is
read or written."""

import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.responses import Response

from app.auth import principal_by_hash
from app.deps import db_of
from app.models import Principal, Role
from app.principal import hash_token
from app.problems import AccessDenied, FormRefused
from app.services.accounts import Account, principal_of_session

COOKIE = "passerelle_session"
# Each role as a page names its people: (« celle d'un … », « réservée aux … »).
ROLE_WORDS = {
    Role.AGENT: ("d'un agent France Services", "agents France Services"),
    Role.MEDIATEUR: ("d'un médiateur numérique", "médiateurs numériques"),
    Role.COORDINATEUR: ("d'un coordinateur", "coordinateurs"),
    Role.ADMIN: ("d'un administrateur", "administrateurs"),
}


@dataclass(frozen=True)
class WebSession:
    principal: Principal | None
    csrf: str
    expired: bool = False  # a cookie was there, but too old, forged or its key revoked
    account: Account | None = None  # a person signed in (None: a key's session, or nobody)
    person: str | None = None  # the token of the person's session, as the cookie holds it


class LoginRequired(Exception):
    """The page needs a logged-in user: the handler sends them to the login page."""

    def __init__(self, next_path: str, expired: bool) -> None:
        self.next_path, self.expired = next_path, expired


def _serializer(request: Request) -> URLSafeTimedSerializer:
    return request.app.state.web_signer  # type: ignore[no-any-return]


async def read_session(request: Request) -> WebSession:
    cached_session: WebSession | None = getattr(request.state, "web_session", None)
    if cached_session is not None:
        return cached_session
    session = WebSession(None, secrets.token_urlsafe(32))
    raw = request.cookies.get(COOKIE)
    if raw:
        max_age = db_of(request).settings.web_session_hours * 3600
        try:
            data = _serializer(request).loads(raw, max_age=int(max_age))
            token_hash, csrf, person = data.get("k"), str(data["c"]), data.get("s")
        except (BadSignature, KeyError, TypeError, AttributeError):
            session = WebSession(None, session.csrf, expired=True)
        else:
            if isinstance(person, str):
                token = person
                found = await db_of(request).read(lambda s: principal_of_session(s, token))
                if found is None:
                    session = WebSession(None, csrf, expired=True)
                else:
                    session = WebSession(found[0], csrf, account=found[1], person=person)
                request.state.web_session = session
                return session
            engine = db_of(request).engine
            principal = await principal_by_hash(engine, token_hash) if token_hash else None
            session = WebSession(principal, csrf, token_hash is not None and principal is None)
    request.state.web_session = session
    return session


async def principal_of_token(request: Request, token: str) -> Principal | None:
    return await principal_by_hash(db_of(request).engine, hash_token(token))


def set_cookie(
    request: Request,
    response: Response,
    token_hash: str | None,
    csrf: str,
    person: str | None = None,
) -> None:
    settings = db_of(request).settings
    value = _serializer(request).dumps(
        {"k": token_hash, "c": csrf, **({"s": person} if person else {})}
    )
    response.set_cookie(
        COOKIE,
        value,
        max_age=int(settings.web_session_hours * 3600),
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https" or settings.public_url.startswith("https:"),
    )


def keep_cookie(request: Request, response: Response, session: WebSession) -> None:
    """An anonymous visitor gets a cookie with a CSRF token, for the login form."""
    if (session.principal is None and request.cookies.get(COOKIE) is None) or session.expired:
        set_cookie(request, response, None, session.csrf)


async def check_csrf(request: Request) -> dict[str, str]:
    """The form's fields, once its CSRF token is the session's."""
    session = await read_session(request)
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    sent = fields.pop("csrf", "")
    if (
        session.expired
        or not request.cookies.get(COOKIE)
        or not secrets.compare_digest(sent.encode(), session.csrf.encode())
    ):
        raise FormRefused(
            "Formulaire refusé : il ne vient pas de cette session (jeton anti-falsification "
            "absent ou périmé). Rechargez la page et recommencez.",
        )
    return fields


def _user(*roles: Role) -> object:
    async def dependency(request: Request) -> Principal:
        session = await read_session(request)
        if session.principal is None:
            if session.account is not None:  # signed in, with no role yet (a request to join)
                raise LoginRequired("/espace", False)
            query = request.url.query
            raise LoginRequired(request.url.path + (f"?{query}" if query else ""), session.expired)
        if session.principal.role not in roles:
            raise AccessDenied(
                "Cette page est réservée aux "
                + " et aux ".join(ROLE_WORDS[r][1] for r in roles)
                + f" ; votre session est celle {ROLE_WORDS[session.principal.role][0]}. "
                + (
                    "Changez d'espace (menu « Mon espace ») si vous y avez un autre rôle."
                    if session.account is not None
                    else "Déconnectez-vous pour changer de rôle."
                ),
            )
        return session.principal

    return dependency


Form = Annotated[dict[str, str], Depends(check_csrf)]
Session = Annotated[WebSession, Depends(read_session)]
AgentUser = Annotated[Principal, Depends(_user(Role.AGENT))]
MediateurUser = Annotated[Principal, Depends(_user(Role.MEDIATEUR))]
CoordinateurUser = Annotated[Principal, Depends(_user(Role.COORDINATEUR, Role.ADMIN))]
AgentOrMediateurUser = Annotated[Principal, Depends(_user(Role.AGENT, Role.MEDIATEUR))]
