"""Liveness and readiness probes."""

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.db import DbDep, migrations_current, storage_fault, storage_health
from app.errors import problem_response

router = APIRouter(tags=["santé"])


@router.get("/healthz", summary="Le processus répond")
async def healthz() -> dict[str, str]:
    # Async: it answers from the event loop even when every thread is busy.
    return {"status": "ok"}


@router.get(
    "/readyz", response_model=None, summary="La base répond, est à jour et peut être écrite"
)
def readyz(db: DbDep) -> Any:
    engine = db.engine
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        current = migrations_current(engine)
    except Exception as exc:
        why = storage_fault(exc) or "La base de données est injoignable."
        return problem_response(503, why, slug="indisponible")
    if not current:
        return problem_response(
            503, "Migrations non appliquées : lancez « passerelle migrate ».", slug="indisponible"
        )
    # A write that rolls back, at most once a second, and the faults requests met just now:
    # a full disk answers reads and refuses writes, and then this is not ready.
    try:
        reason = storage_health(engine).unwritable()
    except Exception:
        reason = "La base de données refuse l'écriture."
    if reason is not None:
        return problem_response(503, reason, slug="indisponible")
    return JSONResponse({"status": "ok"})
