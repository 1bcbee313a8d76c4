"""HTTP layer of the front-desk orientation."""

from typing import Annotated, Any

from fastapi import APIRouter, Header

from app.auth import Agent
from app.deps import DbDep
from app.errors import FastJSONResponse, api_problems
from app.models.orientation import OrientationIn, OrientationOut
from app.problems import IdempotencyKeyReused, NotFound
from app.services import orientation as service

router = APIRouter(
    prefix="/v1/orientations",
    tags=["orientations"],
    responses=api_problems(NotFound),
)


@router.post(
    "",
    status_code=201,
    response_model=OrientationOut,
    summary="Orienter une personne depuis l'accueil France Services",
    responses=api_problems(NotFound, IdempotencyKeyReused),
)
async def create_orientation(
    payload: OrientationIn,
    principal: Agent,
    db: DbDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Any:
    body = await db.write(
        lambda session: service.create_orientation(
            session, principal, payload, db.settings, idempotency_key
        ),
        grouped=True,
    )
    return FastJSONResponse(
        body, status_code=201, headers={"Location": f"/v1/orientations/{body['id']}"}
    )


@router.get("/{orientation_id}", response_model=OrientationOut, summary="Relire une orientation")
async def get_orientation(orientation_id: str, principal: Agent, db: DbDep) -> OrientationOut:
    return await db.read(
        lambda session: service.get_orientation(session, principal, orientation_id)
    )
