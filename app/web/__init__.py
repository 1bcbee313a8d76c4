"""The web pages of the three users, in French and in the State's design system (DSFR):
`/agent`, `/mediateur`, `/coordinateur`, behind a login with an API key.

Pages call the same services as the API (no second copy of any rule) and render their answers
with Jinja2 templates; forms post back to the page and redirect (POST, redirect, GET)."""

import inspect
import logging
import secrets
from collections.abc import Awaitable
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from app.config import Settings
from app.db import storage_fault
from app.errors import validation_errors
from app.problems import Problem, unavailable
from app.web import accounts, agent, coordinateur, home, link, mediateur, referrals
from app.web.render import error_words, page
from app.web.session import LoginRequired, WebSession

logger = logging.getLogger("passerelle")

STATIC = Path(__file__).parent / "static"
DSFR = STATIC / "dsfr"

PAGE_HTTP_ERRORS = {
    404: "Aucune page à cette adresse. Vérifiez le lien, ou repartez de l'accueil.",
    405: "Cette adresse ne s'ouvre pas ainsi : repartez de l'accueil.",
}

# The API and its documentation answer problem details; everything else here is a page.
_NOT_PAGES = ("/v1/", "/docs", "/openapi.json", "/healthz", "/readyz", "/static")


async def _answer(response: Response | Awaitable[Response]) -> Response:
    return await response if inspect.isawaitable(response) else response


def is_page(request: Request) -> bool:
    return not request.url.path.startswith(_NOT_PAGES)


def install(app: FastAPI, settings: Settings) -> None:
    secret = settings.secret_key
    if secret is None:
        logger.warning(
            "PASSERELLE_SECRET_KEY n'est pas défini : les sessions des pages web ne survivent "
            "pas au redémarrage de ce processus."
        )
        secret = secrets.token_urlsafe(32)
    app.state.web_signer = URLSafeTimedSerializer(secret, salt="passerelle-web-session")
    if not (DSFR / "dsfr.min.css").exists():
        logger.warning(
            "Le système de design de l'État n'est pas installé (%s) : lancez « make install ».",
            DSFR,
        )
    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")
    for module in (home, accounts, agent, mediateur, coordinateur, referrals, link):
        app.include_router(module.router)

    api_problem = app.exception_handlers[Problem]

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> Response:
        if not is_page(request):
            return await _answer(api_problem(request, exc))
        try:
            answer = await page(
                request,
                "error.html",
                status_code=exc.status,
                status=exc.status,
                detail=exc.detail,
            )
            answer.headers.update(exc.headers or {})  # a 429's Retry-After, as the API's
            return answer
        except (DBAPIError, PoolTimeout) as fault:
            # A person's session is read from the database: when that is what failed, the
            # page says so, shown signed out (the cookie is left as it is).
            reason = storage_fault(fault)
            if reason is None:
                raise
            request.state.web_session = WebSession(None, secrets.token_urlsafe(32))
            shown = exc if exc.status == 503 else unavailable(reason)
            return await page(
                request, "error.html", status_code=503, status=503, detail=shown.detail
            )

    api_invalid = app.exception_handlers[RequestValidationError]

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        if not is_page(request):
            return await _answer(api_invalid(request, exc))
        detail = (
            "Cette adresse de page contient une valeur que la page ne connaît pas. "
            + error_words(validation_errors(list(exc.errors())))
        )
        return await page(request, "error.html", status_code=422, status=422, detail=detail)

    api_http = app.exception_handlers[StarletteHTTPException]

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        # A browser at an unknown address gets a page, not the API's JSON.
        if not is_page(request) or request.method not in ("GET", "HEAD", "POST"):
            return await _answer(api_http(request, exc))
        detail = PAGE_HTTP_ERRORS.get(exc.status_code, "Cette adresse ne répond pas.")
        status = exc.status_code
        answer = await page(request, "error.html", status_code=status, status=status, detail=detail)
        answer.headers.update(getattr(exc, "headers", None) or {})
        return answer

    @app.exception_handler(LoginRequired)
    async def _login(_: Request, exc: LoginRequired) -> Response:
        if exc.next_path == "/espace":  # signed in, with no role to act in yet
            return RedirectResponse("/espace", status_code=303)
        target = f"/connexion?suite={quote(exc.next_path)}" + ("&expiree=1" if exc.expired else "")
        return RedirectResponse(target, status_code=303)
