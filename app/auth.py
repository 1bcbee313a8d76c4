"""API keys -> Principal(role, scope), and the dependencies that enforce roles.

Authentication reads the in-memory copy of the keys (app.services.cache): no database round
trip and no thread for a known key, and a wrong token costs nothing but a dictionary look-up.
Repeated wrong tokens from one address are slowed down with 429, counted in the database for
every process of a fleet."""

import asyncio
import contextlib
import threading
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer
from sqlalchemy import case, delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool

from app.db import Db, writing
from app.deps import db_of
from app.models import ApiKey, AuthFailure
from app.models.common import utcnow
from app.principal import Principal, Role, hash_token
from app.problems import AccessDenied, Problem, TooManyAttempts, Unauthenticated
from app.services.cache import Cached, cached


def load_principals(session: Session) -> dict[str, Principal]:
    keys = session.exec(select(ApiKey).where(col(ApiKey.revoked_at).is_(None))).all()
    return {k.token_hash: Principal(k.id, Role(k.role), k.place_id, k.territory) for k in keys}


def client_address(request: Request) -> str:
    """The caller's address: the TCP peer's, or the one a trusted proxy forwarded
    (Settings.trusted_proxies; uvicorn's ProxyHeadersMiddleware, installed by create_app)."""
    return request.client.host if request.client else "?"


def _count_failure(session: Session, address: str, window: float) -> tuple[datetime, int]:
    """One more wrong token from `address`, counted in the database for the whole fleet: an
    upsert of its row, restarted when its window is over. (window start, failures in it)."""
    now = utcnow()
    table = AuthFailure.__table__  # type: ignore[attr-defined]
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(table).values(address=address, window_start=now, failures=1)
    current = table.c.window_start > now - timedelta(seconds=window)
    upsert = statement.on_conflict_do_update(
        index_elements=["address"],
        set_={
            "failures": case((current, table.c.failures + 1), else_=1),
            "window_start": case(
                (current, table.c.window_start), else_=statement.excluded.window_start
            ),
        },
    ).returning(table.c.window_start, table.c.failures)
    with writing(session):
        started, failures = session.execute(upsert).one()
        session.commit()
    if started.tzinfo is None:
        started = started.replace(tzinfo=UTC)
    return started, int(failures)


def forget_old_failures(session: Session) -> int:
    """Deletes the counts of windows that are over (run with the expiry check)."""
    with writing(session):
        done = session.execute(
            delete(AuthFailure).where(
                col(AuthFailure.window_start) < utcnow() - timedelta(seconds=FailureThrottle.WINDOW)
            )
        )
        session.commit()
    return int(done.rowcount)  # type: ignore[attr-defined]


class FailureThrottle:
    """Counts wrong tokens per client address in one-minute windows; past the limit, the
    address gets 429 until its window ends. The count is the database's, one for every process
    of a fleet (`count`, an upsert per wrong token); each process also keeps what it learnt,
    so that an address over its limit is refused here without a database round trip. Bounded
    memory: old windows are dropped."""

    WINDOW = 60.0
    MAX_ADDRESSES = 10_000

    def __init__(self, limit: int, db: Db | None = None) -> None:
        self.limit = limit
        self.db = db
        self._windows: dict[str, tuple[float, int]] = {}  # address -> (start, epoch s; failures)
        self._lock = threading.Lock()
        self._counting: set[asyncio.Task[int]] = set()

    def retry_after(self, address: str) -> int:
        """Seconds to wait if the address is over its limit as this process knows it, else 0."""
        started, failures = self._windows.get(address, (0.0, 0))
        left = started + self.WINDOW - time.time()
        return int(left) + 1 if failures >= self.limit and left > 0 else 0

    def _learn(self, address: str, started: float, failures: int) -> None:
        now = time.time()
        with self._lock:
            known_start, known = self._windows.get(address, (started, 0))
            if now - known_start >= self.WINDOW or known_start < started:
                known = 0  # that window is over
            if len(self._windows) >= self.MAX_ADDRESSES:
                self._windows = {a: w for a, w in self._windows.items() if now - w[0] < self.WINDOW}
            self._windows[address] = (
                max(started, known_start) if known else started,
                max(known, failures),
            )

    def _local(self, address: str) -> int:
        now = time.time()
        started, failures = self._windows.get(address, (now, 0))
        if now - started >= self.WINDOW:
            started, failures = now, 0
        self._learn(address, started, failures + 1)
        return failures + 1

    async def count(self, address: str) -> int:
        """Counts one wrong token from `address` and returns how many its window holds, for
        the fleet (this process alone while the database cannot be reached)."""
        if self.db is None:
            return self._local(address)
        try:
            started, failures = await self.db.write(
                partial(_count_failure, address=address, window=self.WINDOW)
            )
        except Exception:  # the database is away: this process keeps counting
            return self._local(address)
        self._learn(address, started.timestamp(), failures)
        return failures

    def failed(self, address: str) -> None:
        """Counts a wrong token without waiting (the web pages): here at once, in the
        database for the fleet soon after."""
        self._local(address)
        if self.db is not None:
            with contextlib.suppress(RuntimeError):  # no event loop: this process only
                task = asyncio.get_running_loop().create_task(self.count(address))
                self._counting.add(task)
                task.add_done_callback(self._counting.discard)


def throttled(wait: int, refused: str = "jetons d'accès refusés") -> Problem:
    """429 for an address past its limit of wrong tokens (or keys, or links: `refused`)."""
    return TooManyAttempts(
        f"Trop de {refused} depuis cette adresse : réessayez dans {wait} s.",
        headers={"Retry-After": str(wait)},
    )


def check_throttle(request: Request, refused: str) -> None:
    """Refuses (429) an address past its limit before anything is looked up (the pages)."""
    throttle: FailureThrottle = request.app.state.auth_throttle
    wait = throttle.retry_after(client_address(request))
    if wait:
        raise throttled(wait, refused)


def _unauthorized(detail: str) -> Problem:
    return Unauthenticated(detail, headers={"WWW-Authenticate": "Bearer"})


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
    address = client_address(request)
    wait = throttle.retry_after(address)
    if wait:
        raise throttled(wait)
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
    principal = await principal_by_hash(db_of(request).engine, hash_token(token))
    if principal is None:
        # Counted for the whole fleet: past the limit, 429 whichever process counted before.
        if await throttle.count(address) > throttle.limit:
            raise throttled(max(throttle.retry_after(address), 1))
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
                "Clé d'API créée par « passerelle keys create » : `Authorization: Bearer psl_…`."
            ),
        )
        self.roles = roles
        self.allowed = ", ".join(r.value for r in roles)

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        credentials = await super().__call__(request)  # the header, parsed by HTTPBearer
        principal = await authenticate(request, credentials.credentials if credentials else None)
        if principal.role not in self.roles:
            raise AccessDenied(
                f"Votre rôle « {principal.role.value} » ne permet pas cette action "
                f"(rôles autorisés : {self.allowed}).",
            )
        return principal


AnyRole = Annotated[Principal, Depends(Require(*Role))]
Agent = Annotated[Principal, Depends(Require(Role.AGENT))]
Mediateur = Annotated[Principal, Depends(Require(Role.MEDIATEUR))]
AgentOrMediateur = Annotated[Principal, Depends(Require(Role.AGENT, Role.MEDIATEUR))]
Admin = Annotated[Principal, Depends(Require(Role.ADMIN))]
Coordinator = Annotated[Principal, Depends(Require(Role.COORDINATEUR, Role.ADMIN))]
