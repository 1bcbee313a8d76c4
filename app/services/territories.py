"""Territories a coordinator answers for: `national`, `region:<code>`, `departement:<code>`,
`epci:<SIREN>`, named and checked against the commune reference."""

import re
from dataclasses import dataclass

from sqlmodel import Session

from app.errors import invalid
from app.models import Departement, Epci, Region

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
