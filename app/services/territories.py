"""Territories a coordinator answers for: `national`, `region:<code>`, `departement:<code>`,
`epci:<SIREN>`, named and checked against the commune reference."""

import re
import threading
from dataclasses import dataclass

from sqlmodel import Session

from app.db import engine_of
from app.errors import Problem, invalid
from app.models import Departement, Epci, Principal, Region, Role
from app.services.communes import CommuneRef, communes

SYNTAX = {
    "region": re.compile(r"\d{2}"),
    "departement": re.compile(r"\d{2,3}|2[AB]"),
    "epci": re.compile(r"\d{9}"),
}
EXAMPLES = "national, region:75, departement:19 ou epci:<SIREN à 9 chiffres>"


@dataclass(frozen=True, slots=True)
class Territory:
    kind: str  # national, region, departement, epci
    code: str  # "" for national
    name: str

    def __str__(self) -> str:
        return self.kind if self.kind == "national" else f"{self.kind}:{self.code}"


def parse_territory(session: Session, value: str, loc: list[str | int]) -> Territory:
    """The territory written `value`; a 422 problem when it is malformed or unknown."""
    if value == "national":
        return Territory("national", "", "France entière")
    kind, _, code = value.partition(":")
    if kind not in SYNTAX or not SYNTAX[kind].fullmatch(code):
        raise invalid(loc, f"Territoire mal écrit : {value!r}. Exemples : {EXAMPLES}.")
    row: Region | Departement | Epci | None
    if kind == "region":
        row = session.get(Region, code)
    elif kind == "departement":
        row = session.get(Departement, code)
    else:
        row = session.get(Epci, code)
    if row is None:
        raise invalid(loc, f"Territoire inconnu : {value}. Il n'est pas dans le référentiel.")
    return Territory(kind, code, row.name)


def covers(territory: Territory, commune: CommuneRef) -> bool:
    """Whether the commune lies in the territory (an ARM, COMD or COMA carries its parent's
    territories)."""
    if territory.kind == "national":
        return True
    attribute = "epci" if territory.kind == "epci" else territory.kind
    return bool(getattr(commune, attribute) == territory.code)


# The communes of each territory, for the last copy of the reference seen (a new copy, after
# an import, is a new dict and replaces it).
_grouped: tuple[dict[str, CommuneRef], dict[tuple[str, str], list[CommuneRef]]] | None = None
_grouping = threading.Lock()


def members(territory: Territory, every: dict[str, CommuneRef]) -> list[CommuneRef]:
    """The communes of the territory, from the reference's in-memory copy (grouped once per
    copy: a statistics request must not walk 37,000 communes)."""
    global _grouped
    if territory.kind == "national":
        return list(every.values())
    with _grouping:
        if _grouped is None or _grouped[0] is not every:
            index: dict[tuple[str, str], list[CommuneRef]] = {}
            for commune in every.values():
                for kind in ("region", "departement", "epci"):
                    index.setdefault((kind, getattr(commune, kind)), []).append(commune)
            _grouped = (every, index)
        return _grouped[1].get((territory.kind, territory.code), [])


def within(territory: Territory, scope: Territory, every: dict[str, CommuneRef]) -> bool:
    """Whether the territory lies wholly inside the scope: an EPCI astride two départements
    lies in neither."""
    if scope.kind == "national" or territory == scope:
        return True
    if territory.kind == "national":
        return False
    inside = members(territory, every)
    return bool(inside) and all(covers(scope, c) for c in inside)


def readable_territory(
    session: Session, principal: Principal, value: str | None, loc: list[str | int]
) -> Territory:
    """The territory whose statistics the caller asks for (by default, their own scope): the
    one place that says which territories a coordinator may read. 422 if `value` is malformed
    or unknown, 403 if it reaches outside the caller's territory."""
    if principal.role is Role.ADMIN:
        scope = Territory("national", "", "France entière")
    elif principal.role is Role.COORDINATEUR and principal.territory:
        scope = parse_territory(session, principal.territory, ["key", "territory"])
    else:
        raise Problem(
            403, "Ces statistiques sont réservées aux coordinateurs.", slug="acces-refuse"
        )
    if value is None:
        return scope
    territory = parse_territory(session, value, loc)
    if not within(territory, scope, communes(engine_of(session))):
        raise Problem(
            403,
            f"Le territoire {territory} ({territory.name}) sort du vôtre ({scope}, "
            f"{scope.name}) : demandez un territoire qui y est compris, ou omettez « territory ».",
            slug="hors-territoire",
        )
    return territory
