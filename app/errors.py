"""RFC 9457 problem details: the one shape every error takes, with French details."""

import inspect
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from app.db import StorageUnavailable, storage_fault, storage_health
from app.deps import db_of
from app.problems import (
    INTERNAL_ERROR,
    TYPE_BASE,
    AccessDenied,
    BodyTooLarge,
    InternalError,
    InvalidData,
    InvalidJson,
    Problem,
    TooManyAttempts,
    Unauthenticated,
    UnreadableJson,
    UnsupportedContentType,
    title_of,
    unavailable,
)

PROBLEM_JSON = "application/problem+json"


class FastJSONResponse(JSONResponse):
    """JSON rendered by orjson: the answers services build as plain dicts."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class ProblemError(BaseModel):
    loc: list[str | int] = Field(description="Où est l'erreur : body, query, path, header…")
    msg: str = Field(description="Ce qui ne va pas, en français.")


class ProblemOut(BaseModel):
    """RFC 9457 problem details, the shape of every error of this service."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "type": InvalidData.type_uri(),
                    "title": "Données invalides",
                    "status": 422,
                    "detail": "Données invalides : corrigez person.commune.",
                    "errors": [{"loc": ["body", "person", "commune"], "msg": "Format invalide."}],
                }
            ]
        },
    )

    type: str
    title: str
    status: int
    detail: str = Field(description="Ce qu'il faut corriger, en français.")
    errors: list[ProblemError] | None = Field(
        default=None, description="Pour des données invalides : chaque champ en cause."
    )


def problem_responses(*problems: type[Problem]) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route or router: the problems it may answer, grouped by status,
    as problem+json; each status's description names their types (slugs), in French."""
    by_status: dict[int, list[type[Problem]]] = {}
    for problem in problems:
        listed = by_status.setdefault(problem.status, [])
        if problem not in listed:
            listed.append(problem)
    return {
        status: {
            "model": ProblemOut,
            "description": _described(status, listed),
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/ProblemOut"}}},
        }
        for status, listed in sorted(by_status.items())
    }


def _described(status: int, problems: list[type[Problem]]) -> str:
    slugs = list(dict.fromkeys(f"`{p.slug}`" for p in problems if p.slug))
    return title_of(status) + (" ; type : " + ", ".join(slugs) + "." if slugs else "")


# Every route may answer these; routes add their own (NotFound, TransitionRefused, …).
COMMON_PROBLEMS: tuple[type[Problem], ...] = (
    InvalidJson,
    BodyTooLarge,
    UnsupportedContentType,
    InvalidData,
    UnreadableJson,
    InternalError,
)
AUTH_PROBLEMS: tuple[type[Problem], ...] = (Unauthenticated, AccessDenied, TooManyAttempts)


def api_problems(*problems: type[Problem]) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of an API route that needs a key: the common problems and its own.
    FastAPI merges a route's responses over its router's status by status: a route lists
    its router's own problems again, so that a status it shares says all of its types."""
    return problem_responses(*COMMON_PROBLEMS, *AUTH_PROBLEMS, *problems)


def problem_answer(problem: Problem) -> JSONResponse:
    """The response of a Problem the service raised or built."""
    return problem_response(
        problem.status,
        problem.detail,
        slug=problem.slug,
        errors=problem.errors,
        headers=problem.headers,
        **problem.extra,
    )


def problem_response(
    status: int,
    detail: str,
    *,
    slug: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_BASE + (slug or str(status)),
        "title": title_of(status),
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    body.update(extra)
    return FastJSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


# Pydantic error types -> French messages. Anything unlisted falls back to a generic message.
_MESSAGES: dict[str, str] = {
    "missing": "Champ obligatoire.",
    "extra_forbidden": "Champ inconnu.",
    "string_type": "Doit être une chaîne de caractères.",
    "bool_type": "Doit être un booléen (true ou false).",
    "int_type": "Doit être un nombre entier.",
    "int_parsing": "Doit être un nombre entier.",
    "float_type": "Doit être un nombre.",
    "float_parsing": "Doit être un nombre.",
    "dict_type": "Doit être un objet JSON.",
    "model_type": "Doit être un objet JSON.",
    "model_attributes_type": "Doit être un objet JSON.",
    "list_type": "Doit être une liste.",
    "json_invalid": "JSON mal formé.",
    "json_type": "JSON mal formé.",
    "string_too_short": "Texte trop court.",
    "string_too_long": "Texte trop long.",
    "string_pattern_mismatch": "Format invalide.",
    "greater_than_equal": "Valeur trop petite.",
    "less_than_equal": "Valeur trop grande.",
    "greater_than": "Valeur trop petite.",
    "less_than": "Valeur trop grande.",
    "value_error": "Valeur invalide.",
    "date_from_datetime_parsing": "Date invalide (attendu AAAA-MM-JJ).",
    "date_parsing": "Date invalide (attendu AAAA-MM-JJ).",
    "too_long": "Liste trop longue.",
}


def _french(error: dict[str, Any]) -> str:
    kind = error.get("type", "")
    ctx = error.get("ctx") or {}
    if kind in ("enum", "literal_error"):
        expected = str(ctx.get("expected", "")).replace(" or ", ", ").replace("'", "")
        return f"Valeur non autorisée ; valeurs possibles : {expected}."
    if kind == "value_error" and "error" in ctx:
        # Our own validators raise ValueError with a French message.
        return str(ctx["error"])
    if kind == "value_error" and "reason" in ctx:
        return "Adresse électronique invalide (exemple : prenom.nom@exemple.fr)."
    if kind == "string_too_long" and "max_length" in ctx:
        return f"Texte trop long : {ctx['max_length']} caractères au maximum."
    if kind == "too_long" and "max_length" in ctx:
        return f"Trop d'éléments : {ctx['max_length']} au maximum."
    return _MESSAGES.get(kind, "Valeur invalide.")


def validation_errors(raw: list[Any]) -> list[dict[str, Any]]:
    return [{"loc": list(e.get("loc", ())), "msg": _french(e)} for e in raw]


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _allowed(request: Request) -> str:
    """Every method that some route answers at this path: Starlette's 405 names only the
    methods of the first route that matched it (GET, where POST is there too)."""
    routes = request.app.router.routes
    return ", ".join(
        method
        for method in _METHODS
        if any(r.matches({**request.scope, "method": method})[0] is Match.FULL for r in routes)
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> JSONResponse:
        return problem_answer(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_errors(list(exc.errors()))
        if any(e.get("type") in ("json_invalid", "json_type") for e in exc.errors()):
            return problem_answer(
                UnreadableJson(
                    "Le corps de la requête n'est pas un JSON valide.",
                    errors=[{"loc": ["body"], "msg": "JSON mal formé."}],
                )
            )
        fields = ", ".join(".".join(str(p) for p in e["loc"][1:] or e["loc"]) for e in errors)
        detail = f"Données invalides : corrigez {fields}." if fields else "Données invalides."
        return problem_answer(InvalidData(detail, errors=errors))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = {
            404: "Aucune ressource à cette adresse.",
            405: "Méthode non autorisée pour cette adresse.",
            413: "Corps de requête trop volumineux.",
        }.get(exc.status_code, str(exc.detail))
        headers = dict(getattr(exc, "headers", None) or {})
        allowed = _allowed(request) if exc.status_code == 405 else ""
        if allowed:  # (a mounted app's own 405 has its own path: left as it said)
            headers["Allow"] = allowed
        return problem_response(exc.status_code, detail, headers=headers or None)

    @app.exception_handler(DBAPIError)
    @app.exception_handler(PoolTimeout)
    @app.exception_handler(StorageUnavailable)
    async def _storage(request: Request, exc: Exception) -> Response:
        # Wherever the database failed (a use case, the key cache, a page's session): a 503
        # when the storage is at fault, answered as the app answers any Problem (a page for a
        # page); anything else stays the 500 it is.
        reason = storage_fault(exc)
        if reason is None:
            raise exc
        storage_health(db_of(request).engine).fault_seen(reason)
        problem = unavailable(reason)
        try:
            answer = request.app.exception_handlers[Problem](request, problem)
            return await answer if inspect.isawaitable(answer) else answer  # type: ignore[no-any-return]
        except (DBAPIError, PoolTimeout):  # the page itself needed the database
            return await _problem(request, problem)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, _exc: Exception) -> JSONResponse:
        # Last resort (the request guard answers first). Never echo the exception: it may carry
        # personal data. The server drops the connection after an error: say so.
        return problem_response(500, INTERNAL_ERROR, headers={"Connection": "close"})
