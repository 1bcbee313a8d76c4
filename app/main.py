"""create_app(): routers, error handlers, the request guard, compression, and the background
work of a serving process (thread pool size, cache polling)."""

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from sqlalchemy.engine import Engine
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from app import docs, errors, web
from app.auth import FailureThrottle, forget_old_failures
from app.compression import Compression
from app.config import Settings, get_settings
from app.db import Db, exclusive, get_engine
from app.guard import RequestGuard
from app.notifications import notify, outbox
from app.routers import health, orientations, places, reference, referrals, stats, webhooks
from app.services import cache, lifecycle, personal_data, stats_tally
from app.services.communes import communes

logger = logging.getLogger("passerelle")

GC_YOUNGEST = 10_000  # allocations between two collections of the youngest generation

DESCRIPTION = """\
Orientation des personnes depuis l'accueil France Services vers la médiation numérique, selon
la typologie d'autonomie numérique.

Authentification : `Authorization: Bearer <clé>` (clés créées par `passerelle keys create`).
Les erreurs sont des *problem details* (RFC 9457, `application/problem+json`) dont le champ
`detail` dit en français quoi corriger. Les `POST` acceptent un en-tête `Idempotency-Key`.
"""


async def _repeat(
    every: float, what: str, job: Callable[[], Awaitable[str | None]], stop: asyncio.Event
) -> None:
    """Runs `job` now and then every `every` seconds until `stop` is set (a run under way is
    finished, not cut), logs what it says it did, and keeps serving when it fails (the
    database may be down for a while)."""
    while not stop.is_set():
        try:
            said = await job()
            if said:
                logger.info(said)
        except Exception as exc:
            logger.warning("%s impossible : %s", what, type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every)


def _one_at_a_time(
    db: Db, name: str, job: Callable[[], Awaitable[str | None]]
) -> Callable[[], Awaitable[str | None]]:
    """`job`, run by one process of a fleet at a time (an advisory lock, app.db.exclusive):
    the others skip their turn instead of waiting on its row locks to redo the same work."""

    async def guarded() -> str | None:
        lock = exclusive(db.engine, name)
        held = await anyio.to_thread.run_sync(lock.__enter__)
        try:
            return await job() if held else None
        finally:
            await anyio.to_thread.run_sync(lock.__exit__, None, None, None)

    return guarded


def _background_jobs(db: Db, stop: asyncio.Event) -> list[Coroutine[Any, Any, None]]:
    """Expiry and reminders, the purge of personal data, the fold of the tallies' deltas (each
    in one process of a fleet at a time), the delivery of the outbox (in every process, on
    disjoint batches)."""
    settings = db.settings

    async def expire() -> str | None:
        expired = await db.in_background(lifecycle.expire_due)
        days = settings.reminder_days_before
        reminded = await db.in_background(lambda s: notify.remind_due(s, days))
        await db.in_background(forget_old_failures)
        said = [f"{expired} orientations expirées."] if expired else []
        said += [f"{reminded} rappels avant expiration."] if reminded else []
        return " ".join(said)

    async def purge() -> str | None:
        done = await db.in_background(lambda s: personal_data.purge(s, settings))
        if done.contacts_erased or done.records_stripped:
            return (
                f"Données personnelles : {done.contacts_erased} coordonnées effacées, "
                f"{done.records_stripped} dossiers anonymisés."
            )
        return None

    async def deliver() -> str | None:
        done = await outbox.deliver_due(db, stop=stop)
        if done.sent or done.failed or done.dead:
            return (
                f"Notifications : {done.sent} envoyées, {done.failed} à réessayer, "
                f"{done.dead} abandonnées."
            )
        return None

    async def fold() -> str | None:
        await db.in_background(stats_tally.fold_tallies)
        return None

    jobs = [
        _repeat(
            settings.expiry_check_seconds,
            "Expiration des orientations",
            _one_at_a_time(db, "expiry", expire),
            stop,
        ),
        _repeat(
            settings.purge_check_seconds,
            "Purge des données personnelles",
            _one_at_a_time(db, "purge", purge),
            stop,
        ),
        _repeat(settings.outbox_check_seconds, "Envoi des notifications", deliver, stop),
    ]
    if db.engine.dialect.name == "postgresql":  # SQLite's triggers update the cells themselves
        jobs.append(
            _repeat(
                stats_tally.FOLD_EVERY_SECONDS,
                "Cumul des statistiques",
                _one_at_a_time(db, "fold-tallies", fold),
                stop,
            )
        )
    return jobs


def create_app(engine: Engine | None = None, settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    engine = engine or get_engine()

    db = Db(engine, settings)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # As many threads as database connections (see Settings.threads).
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threads
        # The communes of all France, loaded before the first request instead of by it: a
        # burst would wait for them (on the event loop, for a SQLite write). Keys and places,
        # small and often changed, load on first use.
        try:
            await anyio.to_thread.run_sync(communes, engine)
        except Exception as exc:  # not migrated yet, or down: /readyz says so; loaded later
            logger.warning("Référentiel des communes non chargé : %s", type(exc).__name__)
        # What start-up made (the libraries, the communes: ~217,000 objects) lives as long as
        # the process: out of the cycle collector's sight. Each full collection walked it all,
        # ~110 ms every ~1,000 orientations under load; now ~4 ms. And the youngest
        # generation collected every 10,000 allocations instead of 700: most of a request's
        # objects are gone by then, instead of being walked, and those of the requests in
        # flight climb to the older generations 14 times less often. Both undone at shutdown (many
        # apps, one process: the tests).
        thresholds = gc.get_threshold()
        gc.freeze()
        gc.set_threshold(GC_YOUNGEST, *thresholds[1:])
        stop = asyncio.Event()

        async def poll() -> None:
            await anyio.to_thread.run_sync(cache.poll, engine)

        jobs = [
            asyncio.create_task(job)
            for job in (
                _repeat(settings.cache_check_seconds, "Vérification des caches", poll, stop),
                *_background_jobs(db, stop),
            )
        ]
        try:
            yield
        finally:
            # A graceful stop (SIGTERM): the jobs start nothing new, finish what they hold
            # (the outbox marks what it sent and gives back what it did not try), then end;
            # past shutdown_seconds they are cut, and leases give back what they held.
            stop.set()
            _done, late = await asyncio.wait(jobs, timeout=settings.shutdown_seconds)
            for task in late:
                task.cancel()
            gc.set_threshold(*thresholds)
            gc.unfreeze()

    app = FastAPIOffline(
        title="Passerelle",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # app.docs: the same page, with a Content-Security-Policy
        redoc_url=None,
    )
    docs.install(app)
    app.state.db = db
    app.state.auth_throttle = FailureThrottle(settings.auth_failures_per_minute, db)
    errors.install(app)
    for module in (health, reference, orientations, referrals, places, stats, webhooks):
        app.include_router(module.router)
    web.install(app, settings)
    # The guard outermost: it sees every answer as sent, compressed or not.
    app.add_middleware(Compression)
    app.add_middleware(RequestGuard, max_body_bytes=settings.max_body_bytes)
    if settings.trusted_proxies:
        # Outermost: every layer sees the client's address, never the proxy's. Only these
        # peers' X-Forwarded-For is believed (uvicorn's own handling is off, app.server).
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
    _errors_as_problems_only(app)
    return app


def _errors_as_problems_only(app: FastAPI) -> None:
    """FastAPI lists a response model under application/json too; errors here are only ever
    application/problem+json, and the document says so."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            for operations in schema["paths"].values():
                for operation in operations.values():
                    for status, response in operation.get("responses", {}).items():
                        content = response.get("content", {})
                        is_error = status.isdigit() and int(status) >= 400
                        if is_error and errors.PROBLEM_JSON in content:
                            content.pop("application/json", None)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
