"""The request guard: what every request goes through before the application sees it, and every
answer after. It refuses, as French problem details, bodies too large (413), of a type other
than JSON (415; the web pages' url-encoded forms, outside /v1, excepted), malformed or not UTF-8
or nested too deep (400), or carrying a NUL character (422); it adds the security headers (and
Retry-After to a 503); and it turns an unexpected error into a 500 that closes the connection
cleanly, logged without the exception's message (which may hold personal data)."""

import logging
import traceback
from typing import Any

import orjson
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import errors
from app.db import RETRY_AFTER_SECONDS
from app.problems import (
    INTERNAL_ERROR,
    BodyTooLarge,
    InvalidData,
    InvalidJson,
    Problem,
    UnsupportedContentType,
)

logger = logging.getLogger("passerelle")

MAX_DEPTH = 32
_BODY_METHODS = {"POST", "PUT", "PATCH"}
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
# Answers are per caller and may carry personal data: no cache keeps them, unless the route
# said otherwise (the documentation's own assets).
_DOCS_ASSETS = ("/static-offline-docs/", "/static/")  # and the web pages' (app.web)
_CACHE_DOCS = b"public, max-age=86400"
_RETRY_AFTER = str(RETRY_AFTER_SECONDS).encode()


class BadBody(Exception):
    """A body refused before the application reads it; its status says which Problem."""

    def __init__(self, status: int, detail: str, loc: list[Any] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.loc = status, detail, loc


_BAD_BODY: dict[int, type[Problem]] = {
    400: InvalidJson,
    413: BodyTooLarge,
    415: UnsupportedContentType,
    422: InvalidData,
}


def _json_error(message: str) -> str:
    if "UTF-8" in message:
        return "Le corps de la requête n'est pas un texte UTF-8 valide."
    if "depth" in message:
        return f"JSON trop imbriqué : {MAX_DEPTH} niveaux au plus."
    if "number" in message:
        return "Nombre trop grand ou mal écrit dans le corps de la requête."
    position = message.rpartition(": ")[2]
    where = position.replace("line", "ligne").replace("column", "colonne").split(" (")[0]
    return f"Le corps de la requête n'est pas un JSON valide ({where})."


def check_json(body: bytes) -> None:
    """Raises BadBody unless `body` is JSON that the application can read and store: UTF-8,
    well formed, at most MAX_DEPTH deep, no NUL character (PostgreSQL cannot store it).
    Iterative: no input can exhaust the interpreter's stack."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadBody(400, _json_error(str(exc))) from None
    stack: list[tuple[Any, list[Any]]] = [(data, ["body"])]
    while stack:
        value, loc = stack.pop()
        if len(loc) > MAX_DEPTH + 1:
            raise BadBody(400, f"JSON trop imbriqué : {MAX_DEPTH} niveaux au plus.")
        if isinstance(value, str):
            if "\x00" in value:
                raise BadBody(422, "Le caractère nul (\\u0000) n'est pas accepté.", loc)
        elif isinstance(value, dict):
            for key, item in value.items():
                if "\x00" in key:
                    raise BadBody(422, "Le caractère nul (\\u0000) n'est pas accepté.", loc)
                stack.append((item, [*loc, key]))
        elif isinstance(value, list):
            stack.extend((item, [*loc, i]) for i, item in enumerate(value))


def _is_form(content_type: str | None) -> bool:
    return (content_type or "").split(";")[0].strip().lower() == (
        "application/x-www-form-urlencoded"
    )


def check_form(body: bytes) -> None:
    """A web form's body: no NUL character, encoded or not (PostgreSQL cannot store it)."""
    if b"\x00" in body or b"%00" in body:
        raise BadBody(422, "Le caractère nul n'est pas accepté.", ["body"])


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return True  # lenient, as FastAPI is: a body without a type is read as JSON
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


class RequestGuard:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = message.setdefault("headers", [])
                if not isinstance(headers, list):
                    headers = message["headers"] = list(headers)
                names = {name.lower() for name, _ in headers}
                headers.extend(h for h in _SECURITY_HEADERS if h[0] not in names)
                if b"cache-control" not in names:
                    docs = scope["path"].startswith(_DOCS_ASSETS)
                    headers.append((b"cache-control", _CACHE_DOCS if docs else b"no-store"))
                if message["status"] >= 500 and b"connection" not in names:
                    headers.append((b"connection", b"close"))
                if message["status"] == 503 and b"retry-after" not in names:
                    headers.append((b"retry-after", _RETRY_AFTER))  # pages' too: one rule
            await send(message)

        try:
            body = await self._read_body(receive)
            if body is None:
                return  # the client left
            if body and scope["method"] in _BODY_METHODS:
                content_type = Headers(scope=scope).get("content-type")
                if _is_form(content_type) and not scope["path"].startswith("/v1/"):
                    check_form(body)  # a web page's form (app.web)
                elif _is_json(content_type):
                    check_json(body)
                else:
                    raise BadBody(
                        415,
                        "Type de contenu non pris en charge : envoyez du JSON avec l'en-tête "
                        "« Content-Type: application/json ».",
                    )
        except BadBody as bad:
            problem = _BAD_BODY[bad.status]
            response = errors.problem_answer(
                problem(
                    bad.detail,
                    errors=[{"loc": bad.loc, "msg": bad.detail}] if bad.loc else None,
                )
            )
            await response(scope, receive, send_with_headers)
            return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        try:
            await self.app(scope, replay, send_with_headers)
        except Exception as exc:
            if started:
                raise  # too late for an answer: the server closes the connection
            logger.error(
                "Erreur interne sur %s %s : %s\n%s",
                scope["method"],
                scope["path"],
                type(exc).__name__,
                "".join(traceback.format_tb(exc.__traceback__)),
            )
            response = errors.problem_response(500, INTERNAL_ERROR)
            await response(scope, receive, send_with_headers)

    async def _read_body(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                raise BadBody(
                    413, f"Corps de requête trop volumineux : {self.limit} octets au maximum."
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
