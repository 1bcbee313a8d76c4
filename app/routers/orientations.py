"""HTTP layer of the front-desk orientation."""

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request

from app.auth import Agent
from app.db import SessionDep, run_write
from app.errors import (
    AUTH_PROBLEMS,
    COMMON_PROBLEMS,
    FastJSONResponse,
    problem_responses,
)
from app.models.orientation import OrientationIn, OrientationOut
from app.services import orientation as service

router = APIRouter(
    prefix="/v1/orientations", tags=["orientations"],
    responses=problem_responses(*COMMON_PROBLEMS + AUTH_PROBLEMS + (404,)),
)


@router.post(
    "",
    status_code=201,
    response_model=OrientationOut,
    summary="Orienter une personne depuis l'accueil France Services",
)
async def create_orientation(
    payload: OrientationIn,
    principal: Agent,
    request: Request,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Any:
    # The engine and settings straight from the app: this is the hottest route, and each
    # dependency costs FastAPI some work per request.
    engine, settings = request.app.state.engine, request.app.state.settings
    body = await run_write(
        engine,
        lambda session: service.create_orientation(
            session, principal, payload, settings, idempotency_key
        ),
    )
    return FastJSONResponse(
        body, status_code=201, headers={"Location": f"/v1/orientations/{body['id']}"}
    )


@router.get("/{orientation_id}", response_model=OrientationOut, summary="Relire une orientation")
def get_orientation(orientation_id: str, principal: Agent, session: SessionDep) -> OrientationOut:
    return service.get_orientation(session, principal, orientation_id)
