"""Liveness and readiness probes."""

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.engine import Engine

from app.db import get_engine, migrations_current
from app.errors import problem_response

router = APIRouter(tags=["santé"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
def readyz(engine: Annotated[Engine, Depends(get_engine)]) -> JSONResponse | dict[str, str]:
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
    return {"status": "ok"}
