"""Liveness and readiness probes."""

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.db import not_ready
from app.deps import DbDep
from app.errors import problem_answer, problem_responses
from app.problems import NotReady

router = APIRouter(tags=["santé"])


@router.get("/healthz", summary="Le processus répond")
async def healthz() -> dict[str, str]:
    # Async: it answers from the event loop even when every thread is busy.
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=None,
    summary="La base répond, est à jour et peut être écrite",
    responses=problem_responses(NotReady),
)
def readyz(db: DbDep) -> Any:
    # A full disk answers reads and refuses writes: then this is not ready either.
    reason = not_ready(db.engine)
    if reason is not None:
        return problem_answer(NotReady(reason))
    return JSONResponse({"status": "ok"})
