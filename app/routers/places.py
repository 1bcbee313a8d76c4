"""HTTP layer of places: nearest-first search for everyone, writes for admins."""

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query

from app.auth import Admin, AnyRole
from app.deps import DbDep
from app.errors import FastJSONResponse, api_problems
from app.models import PlaceKind
from app.models.commune import COMMUNE_PATTERN
from app.places import service
from app.places.models import PlaceIn, PlaceOut
from app.problems import NotFound
from app.services.communes import get_commune

router = APIRouter(
    prefix="/v1/places",
    tags=["lieux"],
    responses=api_problems(NotFound),
)


@router.get("", response_model=list[PlaceOut], summary="Lieux, les plus proches d'abord")
async def list_places(
    _: AnyRole,
    db: DbDep,
    near: Annotated[str | None, Query(pattern=COMMUNE_PATTERN)] = None,
    kind: PlaceKind | None = None,
    service_name: Annotated[str | None, Query(alias="service", max_length=120)] = None,
    max_km: Annotated[float | None, Query(gt=0, le=1000)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 20,
) -> list[PlaceOut]:
    return await db.read(
        lambda session: service.search_places(
            session,
            near=get_commune(session, near, ["query", "near"]) if near else None,
            kind=kind,
            services_any=(service_name,) if service_name else (),
            max_km=max_km,
            limit=limit,
        )
    )


@router.get("/{place_id}", response_model=PlaceOut, summary="Un lieu")
async def get_place(place_id: str, _: AnyRole, db: DbDep) -> PlaceOut:
    return await db.read(lambda session: service.place_out(service.get_place(session, place_id)))


@router.post("", response_model=PlaceOut, status_code=201, summary="Créer un lieu")
async def create_place(
    data: PlaceIn,
    principal: Admin,
    db: DbDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Any:
    body = await db.write(
        lambda session: service.create_place(session, principal.key, data, idempotency_key)
    )
    return FastJSONResponse(body, status_code=201, headers={"Location": f"/v1/places/{body['id']}"})


@router.put("/{place_id}", response_model=PlaceOut, summary="Remplacer un lieu")
async def replace_place(place_id: str, data: PlaceIn, principal: Admin, db: DbDep) -> PlaceOut:
    return await db.write(lambda session: service.replace_place(session, principal, place_id, data))
