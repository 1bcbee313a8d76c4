"""Liveness and readiness probes."""

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.db import DbDep, migrations_current
from app.errors import problem_response

router = APIRouter(tags=["santé"])


@router.get("/healthz", summary="Le processus répond")
async def healthz() -> dict[str, str]:
    # Async: it answers from the event loop even when every thread is busy.
    return {"status": "ok"}


@router.get("/readyz", response_model=None, summary="La base répond et est à jour")
def readyz(db: DbDep) -> Any:
    engine = db.engine
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        current = migrations_current(engine)
    except Exception:
        return problem_response(503, "Base de données injoignable.", slug="indisponible")
    if not current:
        return problem_response(
            503, "Migrations non appliquées : lancez « passerelle migrate ».", slug="indisponible"
        )
    return JSONResponse({"status": "ok"})
