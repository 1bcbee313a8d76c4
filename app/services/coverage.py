"""Coverage of a territory: how far each commune is from the nearest médiation place that
takes referrals, and the communes and people beyond a distance ("zones blanches")."""

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numpy as np
import orjson
import shapely
from sqlmodel import Session, col, select

from app.db import engine_of
from app.models import Commune, PlaceKind, Principal
from app.models.common import local_day, utcnow
from app.places.models import PlaceOut
from app.places.service import full_places, paused, place_index
from app.services.communes import CommuneRef, communes
from app.services.territories import NATIONAL, Territory, counted, members, readable_territory

T = TypeVar("T")

COLUMNS = (
    "commune",
    "name",
    "departement",
    "population",
    "distance_km",
    "place_id",
    "place_name",
    "beyond",
)


@dataclass(frozen=True, slots=True)
class Coverage:
    territory: Territory
    max_km: float
    rows: list[dict[str, Any]]  # one per commune, by code
    totals: dict[str, Any]
    need: str | None = None  # the specific need the places must meet, if one was asked


def coverage_communes(every: dict[str, CommuneRef], territory: Territory) -> list[CommuneRef]:
    """The communes of the territory as a map shows them (territories.counted), by code."""
    return sorted(counted(members(territory, every)), key=lambda c: c.code)


def coverage(
    session: Session, territory: Territory, max_km: float, need: str | None = None
) -> Coverage:
    """GET /v1/stats/coverage; with `need`, the distance to the nearest place that takes care
    of that specific need (app.triage.needs)."""
    chosen = coverage_communes(communes(engine_of(session)), territory)
    index = place_index(session)
    positions, distances = index.nearest_each(
        np.array([c.latitude for c in chosen], dtype=np.float64),
        np.array([c.longitude for c in chosen], dtype=np.float64),
        kind=PlaceKind.MEDIATION,
        accepting_referrals=True,
        need=need,
    )
    receiving = index.candidates(PlaceKind.MEDIATION, (), True)
    rows: list[dict[str, Any]] = []
    population = population_beyond = communes_beyond = 0
    nearest = zip(chosen, positions.tolist(), distances.tolist(), strict=True)
    for commune, position, distance in nearest:
        place = index.places[position] if position >= 0 else None
        km = round(distance, 1) if place is not None else None
        beyond = km is None or km > max_km
        people = commune.population or 0
        population += people
        if beyond:
            population_beyond += people
            communes_beyond += 1
        rows.append(
            {
                "commune": commune.code,
                "name": commune.name,
                "departement": commune.departement,
                "population": commune.population,
                "distance_km": km,
                "place": {"id": place.id, "name": place.name} if place else None,
                "beyond": beyond,
            }
        )
    reached = [r["distance_km"] for r in rows if r["distance_km"] is not None]
    totals = {
        "communes": len(rows),
        "population": population,
        "communes_beyond": communes_beyond,
        "population_beyond": population_beyond,
        "share_beyond": round(population_beyond / population, 4) if population else None,
        "places": len(receiving),
        **_in_territory(session, [index.places[i] for i in receiving], chosen),
        "median_distance_km": round(float(np.median(reached)), 1) if reached else None,
        "max_distance_km": max(reached) if reached else None,
    }
    return Coverage(territory, max_km, rows, totals, need)


def _in_territory(
    session: Session, receiving: list[PlaceOut], chosen: list[CommuneRef]
) -> dict[str, int]:
    """Of the médiation places that receive referrals, those in the territory's communes, and
    those that receive no new one today: paused, or full (as many open referrals as their
    capacity)."""
    codes = {c.code for c in chosen} | {c.parent for c in chosen if c.parent}
    inside = [p for p in receiving if p.commune in codes]
    now = utcnow()
    today = local_day(now)
    return {
        "places_in_territory": len(inside),
        "places_paused": sum(1 for p in inside if paused(p, today)),
        "places_full": len(full_places(session, inside, now)),
    }


def coverage_document(found: Coverage) -> dict[str, Any]:
    return {
        "filters": {
            "territory": str(found.territory),
            "territory_name": found.territory.name,
            "max_km": found.max_km,
            "need": found.need,
        },
        "communes": found.rows,
        "totals": found.totals,
    }


def flat_rows(found: Coverage) -> list[dict[str, Any]]:
    """The rows with the place's id and name as columns, for CSV."""
    return [
        {
            **row,
            "place_id": row["place"]["id"] if row["place"] else None,
            "place_name": row["place"]["name"] if row["place"] else None,
        }
        for row in found.rows
    ]


def commune_shapes(session: Session, found: Coverage) -> np.ndarray:
    """The shapely geometry of each row's commune, in the rows' order: its outline, or its
    routing point when the reference has none (WGS 84 longitude, latitude)."""
    codes = [row["commune"] for row in found.rows]
    shapes: dict[str, bytes | None] = {}
    for start in range(0, len(codes), 5000):  # bounded IN lists
        chunk = codes[start : start + 5000]
        shapes.update(
            session.execute(
                select(col(Commune.code), col(Commune.shape)).where(col(Commune.code).in_(chunk))
            ).all()
        )
    geometries = shapely.from_wkb(np.array([shapes.get(code) for code in codes], dtype=object))
    missing = np.flatnonzero(shapely.is_missing(geometries))
    if len(missing):  # no outline in the reference: the routing point
        every = communes(engine_of(session))
        geometries[missing] = shapely.points(
            [(every[codes[i]].longitude, every[codes[i]].latitude) for i in missing]
        )
    return cast(np.ndarray, geometries)


def map_of(
    session: Session, found: Coverage, draw: Callable[[np.ndarray], T]
) -> tuple[list[dict[str, Any]], T]:
    """The rows a map of the coverage shows (mainland France on the national map: overseas in
    the table) and `draw` of their communes' shapes, made once per territory and copy of the
    reference (outlines change only with it: app.services.cache makes a new copy then), so
    that a map's request only colours them."""
    shown = [
        i
        for i, row in enumerate(found.rows)
        if found.territory.kind != "national" or not row["departement"].startswith("97")
    ]
    rows = [found.rows[i] for i in shown]
    every = communes(engine_of(session))
    key = (str(found.territory), draw)
    with _drawing:
        kept = _drawn.get(key)
        if kept is not None and kept[0] is every:
            _drawn.move_to_end(key)
            return rows, kept[1]
    drawn = draw(commune_shapes(session, found)[shown])
    with _drawing:
        _drawn[key] = (every, drawn)
        while len(_drawn) > _DRAWN_KEPT:
            _drawn.popitem(last=False)
    return rows, drawn


# What map_of drew, by territory, with the copy of the reference it was drawn from; the last
# few territories asked for (a national map's outlines are a few megabytes).
_DRAWN_KEPT = 32
_drawn: OrderedDict[tuple[str, Any], tuple[dict[str, CommuneRef], Any]] = OrderedDict()
_drawing = threading.Lock()

# The national GeoJSON's outlines: simplified to about 500 m and rounded to 4 decimals (10 m),
# what a map of France shows (the stored ones, ~100 m, make 28 MB); once per copy.
NATIONAL_TOLERANCE = 0.005
_national: tuple[dict[str, CommuneRef], list[str]] | None = None
_nationalising = threading.Lock()


def _geometry_texts(session: Session, found: Coverage) -> list[str]:
    """The GeoJSON geometry of each row's commune: the stored outline rounded to 5 decimals
    (about a metre: a third of the size, nothing a map can show lost); for all of France,
    simplified for its scale and kept for the next request."""
    global _national
    if found.territory != NATIONAL:
        geometries = shapely.transform(commune_shapes(session, found), lambda xy: np.round(xy, 5))
        texts: list[str] = shapely.to_geojson(geometries).tolist()
        return texts
    every = communes(engine_of(session))
    with _nationalising:
        if _national is None or _national[0] is not every or len(_national[1]) != len(found.rows):
            geometries = shapely.simplify(
                commune_shapes(session, found), NATIONAL_TOLERANCE, preserve_topology=True
            )
            geometries = shapely.transform(geometries, lambda xy: np.round(xy, 4))
            _national = (every, shapely.to_geojson(geometries).tolist())
        return _national[1]


def coverage_geojson(session: Session, found: Coverage) -> bytes:
    """A GeoJSON FeatureCollection (RFC 7946) of the communes: outline (or routing point when
    the reference has none), with the row's figures as properties. Coordinates in WGS 84,
    5 decimals (about a metre); all of France: simplified to about 500 m, 4 decimals."""
    texts = _geometry_texts(session, found)
    features = [
        {
            "type": "Feature",
            "id": flat["commune"],
            "geometry": orjson.Fragment(text),
            "properties": flat,
        }
        for flat, text in zip(flat_rows(found), texts, strict=True)
    ]
    for feature in features:
        del feature["properties"]["place"]
    document = {
        "type": "FeatureCollection",
        "name": f"couverture {found.territory} ({found.territory.name}), {found.max_km} km",
        "features": features,
        "totals": found.totals,
    }
    return orjson.dumps(document)


def coverage_for(
    session: Session,
    principal: Principal,
    territory: str | None,
    max_km: float,
    need: str | None,
    loc: list[str | int],
    *,
    by_name: bool = False,
) -> Coverage:
    """The coverage of `territory` (by default, the caller's), 403 outside the caller's and
    422 unknown (readable_territory, whose `loc` and `by_name` say how the errors speak): what
    /v1/stats/coverage and the coverage page both read."""
    place = readable_territory(session, principal, territory, loc, by_name=by_name)
    return coverage(session, place, max_km, need)
