"""Places: nearest-first search from an in-memory index, matching for referrals, admin writes."""

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import func
from sqlmodel import Session, col, select

from app.db import engine_of, writing
from app.models import Place, PlaceEvent, PlaceKind, Principal, Referral
from app.models.common import local_day, utcnow
from app.places.models import PlaceIn, PlaceOut, PlaceSummary
from app.problems import InvalidData, invalid
from app.services import idempotency
from app.services.cache import bump, cached
from app.services.communes import CommuneRef
from app.services.lookup import first_or_404
from app.services.scope import past_due
from app.triage import PROCEDURE_THEMES
from app.triage.geo import Points, chord_km, unit_vectors
from app.triage.lifecycle import OPEN
from app.triage.matching import Candidate, Match, match, settled
from app.triage.matching import paused as is_paused
from app.triage.needs import Fees, Modality, Needs
from app.triage.opening import open_slots

NO_NEEDS = Needs()


@dataclass(frozen=True)
class Located:
    place: PlaceOut
    distance_km: float


class PlaceIndex:
    """Every place as arrays, for a vectorised nearest-first search (20,000 places: well under a
    millisecond for the distances), and as ready-made answers. Immutable once built: a change
    to the places builds a new one (app.services.cache)."""

    def __init__(self, places: list[PlaceOut]) -> None:
        places = sorted(places, key=lambda p: p.id)  # ties in distance are broken by id
        self.places = places
        self.points = Points(
            np.array([p.latitude for p in places], dtype=np.float64),
            np.array([p.longitude for p in places], dtype=np.float64),
        )
        self.kinds = np.array([p.kind for p in places], dtype=object)
        self.accepting = np.array([p.accepts_referrals for p in places], dtype=bool)
        by_service: dict[str, list[int]] = {}
        for i, place in enumerate(places):
            for service in place.services:
                by_service.setdefault(service, []).append(i)
        self.by_service = {s: np.array(ix, dtype=np.intp) for s, ix in by_service.items()}
        self.by_id = {p.id: p for p in places}
        # The few places paused until a day, or with a capacity: skipped when paused or full,
        # so that matching looks at that many more.
        self.paused = [p.paused_until for p in places if p.paused_until is not None]
        self.limited = sum(1 for p in places if p.capacity is not None)
        # The same few filters come back at every orientation (one per procedure theme).
        self._candidates: dict[tuple[Any, ...], NDArray[np.intp]] = {}
        self._trees: dict[tuple[Any, ...], tuple[Any, NDArray[np.intp]]] = {}
        # Each place as matching sees it, read once (its hours parsed once): by id.
        self._matching: dict[str, Candidate] = {}

    def candidate(self, place: PlaceOut, distance_km: float, full: bool) -> Candidate:
        """The place as the matching rules see it, at this distance (app.triage.matching)."""
        facts = self._matching.get(place.id)
        if facts is None:
            facts = self._matching[place.id] = candidate(place, 0.0, False)
        # Built field by field: dataclasses.replace takes three times as long.
        return Candidate(
            facts.id,
            distance_km,
            facts.paused_until,
            full,
            facts.specific,
            facts.public,
            facts.fees,
            facts.modalities,
            facts.open_slots,
        )

    def candidates(
        self,
        kind: PlaceKind | None,
        services_any: tuple[str, ...],
        accepting_referrals: bool | None,
    ) -> NDArray[np.intp]:
        """Positions of the places that pass the filters, in id order."""
        key = (kind, services_any, accepting_referrals)
        found = self._candidates.get(key)
        if found is None:
            mask = np.ones(len(self.places), dtype=bool)
            if kind is not None:
                mask &= self.kinds == kind.value
            if accepting_referrals is not None:
                mask &= self.accepting == accepting_referrals
            if services_any:
                offering = np.zeros(len(self.places), dtype=bool)
                for service in services_any:
                    offering[self.by_service.get(service, np.empty(0, dtype=np.intp))] = True
                mask &= offering
            found = np.flatnonzero(mask)
            if len(self._candidates) < 1024:
                self._candidates[key] = found
        return found

    def near(
        self,
        origin: CommuneRef,
        *,
        kind: PlaceKind | None = None,
        services_any: tuple[str, ...] = (),
        accepting_referrals: bool | None = None,
        max_km: float | None = None,
        limit: int | None = None,
    ) -> list[Located]:
        """Places nearest first from the commune's routing point, filtered; ties by id."""
        candidates = self.candidates(kind, services_any, accepting_referrals)
        d = self.points.distances_km(origin.latitude, origin.longitude, candidates)
        if max_km is not None:
            within = d <= max_km
            candidates, d = candidates[within], d[within]
        # Candidates are in id order, and a stable sort keeps it among equal distances. With a
        # limit, only the places no farther than the limit-th are sorted (partition: O(n)).
        if limit is not None and limit < len(d):
            kth = np.partition(d, limit - 1)[limit - 1]
            near_enough = np.flatnonzero(d <= kth)
            order = near_enough[np.argsort(d[near_enough], kind="stable")][:limit]
        else:
            order = np.argsort(d, kind="stable")
        return [Located(self.places[candidates[i]], round(float(d[i]), 1)) for i in order]

    def nearest_each(
        self,
        lats: NDArray[np.float64],
        lons: NDArray[np.float64],
        *,
        kind: PlaceKind | None = None,
        accepting_referrals: bool | None = None,
        need: str | None = None,
    ) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
        """For each point, the position (in `places`) of the nearest place that passes the
        filters and its distance in km: a k-d tree over the unit sphere, built once per filter
        (35,000 communes against 10,000 places: a few milliseconds). Position -1 and an
        infinite distance when no place passes. `need`: a specific need the place must take
        care of (app.triage.needs.Specific)."""
        # Imported here: scipy weighs 30 MiB in every serving process, and only coverage
        # statistics need it.
        from scipy.spatial import cKDTree

        key = (kind, accepting_referrals, need)
        tree = self._trees.get(key)
        if tree is None:
            found = self.candidates(kind, (), accepting_referrals)
            if need is not None:  # only the places that take care of that need
                found = found[[need in self.places[i].specific for i in found]]
            vectors = unit_vectors(self.points.lats[found], self.points.lons[found])
            tree = self._trees[key] = (cKDTree(vectors), found)
        kdtree, found = tree
        if not len(found):
            return np.full(len(lats), -1, dtype=np.intp), np.full(len(lats), np.inf)
        chords, nearest = kdtree.query(unit_vectors(lats, lons), k=1)
        return found[nearest], chord_km(chords)


def load_place_index(session: Session) -> PlaceIndex:
    return PlaceIndex([place_out(p) for p in session.exec(select(Place)).all()])


def place_index(session: Session) -> PlaceIndex:
    """This process's index of every place (see app.services.cache)."""
    return cached(engine_of(session), "place", load_place_index).get()


def place_by_id(session: Session, place_id: str) -> PlaceOut:
    """A place as answered, from the index; from the database for one created in another
    process since the index was loaded (it is a second old at most)."""
    return place_index(session).by_id.get(place_id) or place_out(session.get_one(Place, place_id))


def paused(place: PlaceOut, today: date) -> bool:
    """Whether the place receives no new referral today (app.triage.matching.paused)."""
    return is_paused(place.paused_until, today)


def candidate(place: PlaceOut, distance_km: float, full: bool) -> Candidate:
    """A place as the matching rules see it (app.triage.matching)."""
    return Candidate(
        id=place.id,
        distance_km=distance_km,
        paused_until=place.paused_until,
        full=full,
        specific=frozenset(place.specific),
        public=frozenset(place.publics),
        fees=Fees(place.fees) if place.fees in FEES_VALUES else None,
        modalities=frozenset(Modality(m) for m in place.modalities if m in MODALITY_VALUES),
        open_slots=open_slots(place.hours),
    )


MODALITY_VALUES = frozenset(m.value for m in Modality)
FEES_VALUES = frozenset(f.value for f in Fees)
OPEN_STATUSES = tuple(sorted(s.value for s in OPEN))


def full_places(session: Session, places: list[PlaceOut], now: datetime) -> set[str]:
    """The places among these that have as many open referrals as their capacity."""
    limited = {p.id: p.capacity for p in places if p.capacity is not None}
    if not limited:
        return set()
    counts = dict(
        session.execute(
            select(col(Referral.place_id), func.count())
            .where(
                col(Referral.place_id).in_(limited),
                col(Referral.status).in_(OPEN_STATUSES),
                ~past_due(now),
            )
            .group_by(col(Referral.place_id))
        ).all()
    )
    return {pid for pid, capacity in limited.items() if counts.get(pid, 0) >= (capacity or 0)}


@dataclass(frozen=True)
class PlaceMatch:
    chosen: list[Located]
    passed_over: list[Located]
    rules: Match


def match_places(
    session: Session,
    commune: CommuneRef,
    theme: str,
    max_km: float,
    limit: int,
    needs: Needs = NO_NEEDS,
) -> PlaceMatch:
    """Where a referral may go, by the matching rules (app.triage.matching), over the médiation
    places that accept referrals and offer a service of the procedure's theme within `max_km`
    of the person's commune, nearest first."""
    index = place_index(session)
    now = utcnow()
    today = local_day(now)
    # The nearest first, then eight times as many while farther ones could change the match
    # (app.triage.matching.settled): without needs, the first look, enough to pass over every
    # paused or full place, always settles it.
    window = limit + sum(1 for until in index.paused if is_paused(until, today)) + index.limited
    while True:
        found = index.near(
            commune,
            kind=PlaceKind.MEDIATION,
            services_any=PROCEDURE_THEMES[theme].services,
            accepting_referrals=True,
            max_km=max_km,
            limit=window,
        )
        full = full_places(session, [f.place for f in found], now)
        rules = match(
            [index.candidate(f.place, f.distance_km, f.place.id in full) for f in found],
            needs,
            today,
            limit,
        )
        if len(found) < window or settled(rules, needs, limit):
            break
        window *= 8
    by_id = {f.place.id: f for f in found}
    return PlaceMatch(
        [by_id[c.id] for c in rules.chosen],
        [by_id[p.candidate.id] for p in rules.passed_over],
        rules,
    )


def suitable_places(
    session: Session,
    commune: CommuneRef,
    theme: str,
    max_km: float,
    limit: int,
    needs: Needs = NO_NEEDS,
) -> list[Located]:
    """The places a referral may go to, ranked (match_places)."""
    return match_places(session, commune, theme, max_km, limit, needs).chosen


def search_places(
    session: Session,
    *,
    near: CommuneRef | None,
    kind: PlaceKind | None,
    services_any: tuple[str, ...],
    max_km: float | None,
    limit: int,
) -> list[PlaceOut]:
    """GET /v1/places: nearest first from a commune, or by name when no commune is given."""
    if near is not None:
        found = place_index(session).near(
            near, kind=kind, services_any=services_any, max_km=max_km, limit=limit
        )
        return [f.place.model_copy(update={"distance_km": f.distance_km}) for f in found]
    if max_km is not None:
        raise invalid(
            ["query", "max_km"],
            "max_km n'a de sens qu'avec near (le code INSEE d'où mesurer).",
        )
    index = place_index(session)
    chosen = [index.places[i] for i in index.candidates(kind, services_any, None)]
    return sorted(chosen, key=lambda p: (p.name, p.id))[:limit]


def get_place(session: Session, place_id: str) -> Place:
    return first_or_404(
        session,
        select(Place).where(Place.id == place_id),
        place_id,
        "Aucun lieu avec cet identifiant.",
    )


def _columns(data: PlaceIn) -> dict[str, Any]:
    """A place's columns from what an admin sent: JSON values, and the day as a date."""
    return {**data.model_dump(mode="json"), "paused_until": data.paused_until}


def create_place(
    session: Session, api_key_id: str, data: PlaceIn, idempotency_key: str | None
) -> dict[str, Any]:
    def write() -> dict[str, Any]:
        place = Place(**_columns(data))
        session.add(place)
        session.flush()
        bump(session, "place")
        return place_out(place).model_dump(mode="json")

    return idempotency.commit_once(session, api_key_id, idempotency_key, "/v1/places", data, write)


# A place's own facts: every change to one of them goes to the place's history (place_event),
# whoever makes it (the place from its e-mail's link, an admin through the API or the CLI).
PLACE_FIELDS = ("paused_until", "email", "phone", "hours", "capacity")


def _change(
    session: Session, principal: Principal, place: Place, changes: dict[str, Any], now: datetime
) -> list[str]:
    """Sets the place's fields, each change of a PLACE_FIELDS one in its history; returns
    the fields that changed."""
    changed = []
    for field, value in changes.items():
        before = getattr(place, field)
        if before == value:
            continue
        setattr(place, field, value)
        changed.append(field)
        if field in PLACE_FIELDS:
            session.add(
                PlaceEvent(
                    place_id=place.id,
                    at=now,
                    actor_role=principal.role.value,
                    actor_key_id=principal.key_id,
                    actor_via=principal.via,
                    field=field,
                    old_value=None if before is None else str(before),
                    new_value=None if value is None else str(value),
                )
            )
    return changed


def replace_place(session: Session, principal: Principal, place_id: str, data: PlaceIn) -> PlaceOut:
    with writing(session):
        place = get_place(session, place_id)
        now = utcnow()
        _change(session, principal, place, _columns(data), now)
        place.updated_at = now
        session.add(place)
        bump(session, "place")
        session.flush()
        answer = place_out(place)
        session.commit()
    return answer


def update_place(
    session: Session,
    principal: Principal,
    place_id: str,
    changes: dict[str, str | date | int | None],
) -> list[str]:
    """The place's pause, e-mail, phone and hours as the place itself corrects them (and its
    capacity, by an operator). Returns the fields that changed."""
    if set(changes) - set(PLACE_FIELDS):
        raise InvalidData("Champ non modifiable ici.")
    with writing(session):
        place = session.get_one(Place, place_id)
        now = utcnow()
        changed = _change(session, principal, place, changes, now)
        if changed:
            place.updated_at = now
            session.add(place)
            bump(session, "place")
        session.commit()
    return changed


def place_history(session: Session, place_id: str, limit: int = 20) -> list[PlaceEvent]:
    return list(
        session.exec(
            select(PlaceEvent)
            .where(col(PlaceEvent.place_id) == place_id)
            .order_by(col(PlaceEvent.at).desc(), col(PlaceEvent.id).desc())
            .limit(limit)
        ).all()
    )


def place_out(place: Place, distance: float | None = None) -> PlaceOut:
    return PlaceOut.model_validate(place, from_attributes=True).model_copy(
        update={"distance_km": distance}
    )


def place_summary(place: PlaceOut | Place, distance: float | None) -> PlaceSummary:
    return PlaceSummary.model_construct(
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
