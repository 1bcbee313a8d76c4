"""API keys -> Principal(role, scope), and the dependencies that enforce roles.

Authentication reads the in-memory copy of the keys (app.services.cache): no database round
trip and no thread for a known key, and a wrong token costs nothing but a dictionary look-up.
Repeated wrong tokens from one address are slowed down with 429."""

import hashlib
import secrets
import threading
import time
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool

from app.errors import Problem
from app.models import ApiKey, Principal, Role
from app.services.cache import Cached, cached

TOKEN_PREFIX = "psl_"

__all__ = ["Principal", "Role", "hash_token", "new_token"]

def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    # Tokens carry 256 random bits: a plain SHA-256 cannot be brute-forced, and lookups stay O(1).
    return hashlib.sha256(token.encode()).hexdigest()


def load_principals(session: Session) -> dict[str, Principal]:
    keys = session.exec(select(ApiKey).where(col(ApiKey.revoked_at).is_(None))).all()
    return {k.token_hash: Principal(k.id, Role(k.role), k.place_id, k.territory) for k in keys}


class FailureThrottle:
    """Counts wrong tokens per client address in one-minute windows; past the limit, the
    address gets 429 until its window ends. Bounded memory: old windows are dropped."""

    WINDOW = 60.0
    MAX_ADDRESSES = 10_000

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._windows: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def retry_after(self, address: str) -> int:
        """Seconds to wait if the address is over its limit, else 0."""
        started, failures = self._windows.get(address, (0.0, 0))
        left = started + self.WINDOW - time.monotonic()
        return int(left) + 1 if failures >= self.limit and left > 0 else 0

    def failed(self, address: str) -> None:
        now = time.monotonic()
        with self._lock:
            started, failures = self._windows.get(address, (now, 0))
            if now - started >= self.WINDOW:
                started, failures = now, 0
            if len(self._windows) >= self.MAX_ADDRESSES:
                self._windows = {a: w for a, w in self._windows.items() if now - w[0] < self.WINDOW}
            self._windows[address] = (started, failures + 1)


def _unauthorized(detail: str) -> Problem:
    return Problem(401, detail, slug="authentification", headers={"WWW-Authenticate": "Bearer"})


async def principal_by_hash(engine: Engine, token_hash: str) -> Principal | None:
    """The key with that hash, from the in-memory copy (a thread only if it is stale): the API's
    bearer tokens and the web pages' sessions are looked up here."""
    keys: Cached[dict[str, Principal]] = cached(engine, "api_key", load_principals)
    principals = keys.fresh()
    if principals is None:
        principals = await run_in_threadpool(keys.get)
    return principals.get(token_hash)


async def authenticate(request: Request, token: str | None) -> Principal:
    """The caller's key, from the in-memory copy (a thread only if that copy is stale)."""
    throttle: FailureThrottle = request.app.state.auth_throttle
    address = request.client.host if request.client else "?"
    wait = throttle.retry_after(address)
    if wait:
        raise Problem(
            429,
            f"Trop de jetons d'accès refusés depuis cette adresse : réessayez dans {wait} s.",
            slug="trop-de-tentatives",
            headers={"Retry-After": str(wait)},
        )
    if not token:
        hint = (
            " Le jeton ne se met jamais dans l'adresse (access_token) : elle finit dans les "
            "journaux."
            if "access_token" in request.query_params
            else ""
        )
        raise _unauthorized(
            "Jeton d'accès manquant : ajoutez l'en-tête « Authorization: Bearer <jeton> »." + hint
        )
    principal = await principal_by_hash(request.app.state.db.engine, hash_token(token))
    if principal is None:
        throttle.failed(address)
        raise _unauthorized("Jeton d'accès inconnu ou révoqué.")
    return principal


class Require(HTTPBearer):
    """The dependency that authenticates and checks the role. An HTTPBearer, so that the
    OpenAPI document declares the scheme on every route that uses it; one node for FastAPI
    to solve per request."""

    def __init__(self, *roles: Role) -> None:
        super().__init__(
            auto_error=False,
            scheme_name="cle_api",
            description=(
                "Clé d'API créée par « passerelle keys create » : "
                "`Authorization: Bearer psl_…`."
            ),
        )
        self.roles = roles
        self.allowed = ", ".join(r.value for r in roles)

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        credentials = await super().__call__(request)  # the header, parsed by HTTPBearer
        principal = await authenticate(request, credentials.credentials if credentials else None)
        if principal.role not in self.roles:
            raise Problem(
                403,
                f"Votre rôle « {principal.role.value} » ne permet pas cette action "
                f"(rôles autorisés : {self.allowed}).",
                slug="acces-refuse",
            )
        return principal


AnyRole = Annotated[Principal, Depends(Require(*Role))]
Agent = Annotated[Principal, Depends(Require(Role.AGENT))]
Mediateur = Annotated[Principal, Depends(Require(Role.MEDIATEUR))]
AgentOrMediateur = Annotated[Principal, Depends(Require(Role.AGENT, Role.MEDIATEUR))]
Admin = Annotated[Principal, Depends(Require(Role.ADMIN))]
Coordinator = Annotated[Principal, Depends(Require(Role.COORDINATEUR, Role.ADMIN))]
