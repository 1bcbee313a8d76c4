"""Places: nearest-first search, matching for referrals, admin writes."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select

from app.errors import invalid
from app.models import Commune, Place, PlaceKind
from app.models.common import utcnow
from app.models.place import PlaceIn, PlaceOut, PlaceSummary
from app.services import idempotency
from app.services.lookup import first_or_404
from app.triage.geo import bounding_box, distance_km


@dataclass(frozen=True)
class Located:
    place: Place
    distance_km: float


def places_near(
    session: Session,
    origin: Commune,
    *,
    kind: PlaceKind | None = None,
    services_any: tuple[str, ...] = (),
    accepting_referrals: bool | None = None,
    max_km: float | None = None,
    limit: int | None = None,
) -> list[Located]:
    """Places nearest first from the commune's centroid, filtered; ties broken by id."""
    query = select(Place)
    if kind is not None:
        query = query.where(Place.kind == kind.value)
    if accepting_referrals is not None:
        query = query.where(Place.accepts_referrals == accepting_referrals)
    if max_km is not None:
        lat_min, lat_max, lon_min, lon_max = bounding_box(origin.latitude, origin.longitude, max_km)
        query = query.where(
            col(Place.latitude).between(lat_min, lat_max),
            col(Place.longitude).between(lon_min, lon_max),
        )
    found = []
    for place in _offering(session.exec(query).all(), services_any):
        d = distance_km(origin.latitude, origin.longitude, place.latitude, place.longitude)
        if max_km is None or d <= max_km:
            found.append(Located(place, round(d, 1)))
    found.sort(key=lambda located: (located.distance_km, located.place.id))
    return found[:limit] if limit is not None else found


def _offering(places: Sequence[Place], services_any: tuple[str, ...]) -> list[Place]:
    """Services are a JSON list, compared here the same way on SQLite and PostgreSQL."""
    wanted = set(services_any)
    return [p for p in places if not wanted or wanted.intersection(p.services)]


def search_places(
    session: Session,
    *,
    near: Commune | None,
    kind: PlaceKind | None,
    services_any: tuple[str, ...],
    max_km: float | None,
    limit: int,
) -> list[PlaceOut]:
    """GET /v1/places: nearest first from a commune, or by name when no commune is given."""
    if near is not None:
        found = places_near(
            session, near, kind=kind, services_any=services_any, max_km=max_km, limit=limit
        )
        return [place_out(f.place, f.distance_km) for f in found]
    if max_km is not None:
        raise invalid(
            ["query", "max_km"],
            "max_km n'a de sens qu'avec near (le code INSEE d'où mesurer).",
        )
    query = select(Place).order_by(col(Place.name), col(Place.id))
    if kind is not None:
        query = query.where(Place.kind == kind.value)
    return [place_out(p) for p in _offering(session.exec(query).all(), services_any)[:limit]]


def get_place(session: Session, place_id: str) -> Place:
    return first_or_404(
        session,
        select(Place).where(Place.id == place_id),
        place_id,
        "Aucun lieu avec cet identifiant.",
    )


def create_place(
    session: Session, api_key_id: str, data: PlaceIn, idempotency_key: str | None
) -> dict[str, Any]:
    def write() -> dict[str, Any]:
        place = Place(**data.model_dump(mode="json"))
        session.add(place)
        session.flush()
        return place_out(place).model_dump(mode="json")

    return idempotency.commit_once(
        session, api_key_id, idempotency_key, "/v1/places", data.model_dump(mode="json"), write
    )


def replace_place(session: Session, place_id: str, data: PlaceIn) -> Place:
    place = get_place(session, place_id)
    for field, value in data.model_dump(mode="json").items():
        setattr(place, field, value)
    place.updated_at = utcnow()
    session.add(place)
    session.commit()
    session.refresh(place)
    return place


def place_out(place: Place, distance: float | None = None) -> PlaceOut:
    return PlaceOut.model_validate(place, from_attributes=True).model_copy(
        update={"distance_km": distance}
    )


def place_summary(place: Place, distance: float | None) -> PlaceSummary:
    return PlaceSummary(
        id=place.id,
        name=place.name,
        address=place.address,
        postal_code=place.postal_code,
        commune=place.commune,
        commune_name=place.commune_name,
        distance_km=distance,
        phone=place.phone,
        email=place.email,
        hours=place.hours,
    )
