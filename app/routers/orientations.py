"""HTTP layer of the front-desk orientation."""

from typing import Annotated, Any

from fastapi import APIRouter, Header

from app.auth import Agent
from app.db import EngineDep, SessionDep, SettingsDep, run_write
from app.errors import FastJSONResponse
from app.models.orientation import OrientationIn, OrientationOut
from app.services import orientation as service

router = APIRouter(prefix="/v1/orientations", tags=["orientations"])


@router.post(
    "",
    status_code=201,
    response_model=OrientationOut,
    summary="Orienter une personne depuis l'accueil France Services",
)
async def create_orientation(
    payload: OrientationIn,
    principal: Agent,
    engine: EngineDep,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Any:
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
