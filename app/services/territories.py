"""Territories a coordinator answers for: `national`, `region:<code>`, `departement:<code>`,
`epci:<SIREN>`, `commune:<code INSEE>`, named and checked against the commune reference; and
the same territories found by their name, as a person types it on the coordinator's pages."""

import re
import threading
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session, col, select

from app.db import engine_of
from app.models import Departement, Epci, Principal, Region, Role
from app.problems import AccessDenied, InvalidData, OutOfTerritory, Problem, invalid
from app.services.communes import CommuneRef, communes, fold

SYNTAX = {
    "region": re.compile(r"\d{2}"),
    "departement": re.compile(r"\d{2,3}|2[AB]"),
    "epci": re.compile(r"\d{9}"),
    "commune": re.compile(r"\d{5}|2[AB]\d{3}"),
}
EXAMPLES = "national, region:75, departement:19, epci:<SIREN à 9 chiffres> ou commune:<code INSEE>"
# How the pages name each kind, and in which order they list them (the largest first).
KIND_WORDS = {
    "national": "France entière",
    "region": "région",
    "departement": "département",
    "epci": "intercommunalité",
    "commune": "commune",
}
_RANK = {kind: rank for rank, kind in enumerate(KIND_WORDS)}
# An EPCI's name that says what it is needs no « (intercommunalité) » after it.
_NAMES_ITS_KIND = re.compile(r"communaute|metropole|agglo")
# The legal form before an EPCI's own name: « Haute-Corrèze Communauté » is how people say it.
_LEGAL_FORM = re.compile(
    r"^(communaute (de communes|d agglomeration|urbaine)|metropole|eurometropole)"
    r"( (du|de la|des|de l|de|d))? "
)


@dataclass(frozen=True, slots=True)
class Territory:
    kind: str  # national, region, departement, epci, commune
    code: str  # "" for national
    name: str
    # An EPCI's départements (« 19, 23 »), for its label: two EPCI may share a name.
    where: str = field(default="", compare=False)

    def __str__(self) -> str:
        return self.kind if self.kind == "national" else f"{self.kind}:{self.code}"

    @property
    def label(self) -> str:
        """How a page names it, one label per territory: « Corrèze (département 19) »,
        « Corrèze (commune, 19) », « Nouvelle-Aquitaine (région) »."""
        return self.name + self.qualifier

    @property
    def qualifier(self) -> str:
        """What follows the name in the label."""
        if self.kind == "national":
            return ""
        if self.kind == "departement":
            return f" (département {self.code})"
        if self.kind == "commune":
            return f" (commune, {departement_of(self.code)})"
        if self.kind == "region":
            return " (région)"
        said = [] if _NAMES_ITS_KIND.search(fold(self.name)) else [KIND_WORDS["epci"]]
        said += [self.where] if self.where else []
        return f" ({', '.join(said)})" if said else ""


NATIONAL = Territory("national", "", KIND_WORDS["national"])


def departement_of(commune_code: str) -> str:
    """The département of an INSEE commune code: its first two characters, three overseas."""
    return commune_code[:3] if commune_code.startswith("97") else commune_code[:2]


def is_code(value: str) -> bool:
    """Whether `value` is written as a territory's code (`departement:19`), not a name."""
    kind, _, code = value.partition(":")
    return value == "national" or (kind in SYNTAX and bool(SYNTAX[kind].fullmatch(code)))


def parse_territory(session: Session, value: str, loc: list[str | int]) -> Territory:
    """The territory written `value`; a 422 problem when it is malformed or unknown."""
    if value == "national":
        return NATIONAL
    if not is_code(value):
        raise invalid(loc, f"Territoire mal écrit : {value!r}. Exemples : {EXAMPLES}.")
    kind, _, code = value.partition(":")
    name: str | None = None
    if kind == "commune":
        commune = communes(engine_of(session)).get(code)
        name = commune.name if commune and commune.kind in ("COM", "ARM") else None
    else:
        row: Region | Departement | Epci | None
        if kind == "region":
            row = session.get(Region, code)
        elif kind == "departement":
            row = session.get(Departement, code)
        else:
            row = session.get(Epci, code)
        name = row.name if row is not None else None
    if name is None:
        raise invalid(loc, f"Territoire inconnu : {value}. Il n'est pas dans le référentiel.")
    return placed(Territory(kind, code, name), communes(engine_of(session)))


def placed(territory: Territory, every: dict[str, CommuneRef]) -> Territory:
    """The territory with its `where` (an EPCI's départements)."""
    if territory.kind != "epci":
        return territory
    where = ", ".join(sorted({c.departement for c in members(territory, every)}))
    return Territory(territory.kind, territory.code, territory.name, where)


def covers(territory: Territory, commune: CommuneRef) -> bool:
    """Whether the commune lies in the territory (an ARM, COMD or COMA carries its parent's
    territories, and belongs to its parent commune)."""
    if territory.kind == "national":
        return True
    if territory.kind == "commune":
        return territory.code in (commune.code, commune.parent)
    attribute = "epci" if territory.kind == "epci" else territory.kind
    return bool(getattr(commune, attribute) == territory.code)


# The communes of each territory, for the last copy of the reference seen (a new copy, after
# an import, is a new dict and replaces it).
_grouped: tuple[dict[str, CommuneRef], dict[tuple[str, str], list[CommuneRef]]] | None = None
_grouping = threading.Lock()


def members(territory: Territory, every: dict[str, CommuneRef]) -> list[CommuneRef]:
    """The communes of the territory, from the reference's in-memory copy (grouped once per
    copy: a statistics request must not walk 37,000 communes). A commune's are itself and the
    arrondissements, communes déléguées or associées that belong to it."""
    global _grouped
    if territory.kind == "national":
        return list(every.values())
    with _grouping:
        if _grouped is None or _grouped[0] is not every:
            index: dict[tuple[str, str], list[CommuneRef]] = {}
            for commune in every.values():
                for kind in ("region", "departement", "epci"):
                    index.setdefault((kind, getattr(commune, kind)), []).append(commune)
                index.setdefault(("commune", commune.code), []).append(commune)
                if commune.parent:
                    index.setdefault(("commune", commune.parent), []).append(commune)
            _grouped = (every, index)
        return _grouped[1].get((territory.kind, territory.code), [])


def counted(inside: list[CommuneRef]) -> list[CommuneRef]:
    """The communes as people count them (and a coverage map shows them): Paris, Lyon and
    Marseille by arrondissement, former communes (déléguées, associées) within theirs, not
    counted twice."""
    split = {c.parent for c in inside if c.kind == "ARM"}
    return [c for c in inside if c.kind == "ARM" or (c.kind == "COM" and c.code not in split)]


def within(territory: Territory, scope: Territory, every: dict[str, CommuneRef]) -> bool:
    """Whether the territory lies wholly inside the scope: an EPCI astride two départements
    lies in neither."""
    if scope.kind == "national" or territory == scope:
        return True
    if territory.kind == "national":
        return False
    inside = members(territory, every)
    return bool(inside) and all(covers(scope, c) for c in inside)


def scope_of(session: Session, principal: Principal) -> Territory:
    """The territory whose figures the caller may read: France for an admin, the key's own
    territory for a coordinator; 403 for anyone else."""
    if principal.role is Role.ADMIN:
        return NATIONAL
    if principal.role is Role.COORDINATEUR and principal.territory:
        return parse_territory(session, principal.territory, ["key", "territory"])
    raise AccessDenied("Ces statistiques sont réservées aux coordinateurs.")


def readable_territory(
    session: Session,
    principal: Principal,
    value: str | None,
    loc: list[str | int],
    *,
    by_name: bool = False,
) -> Territory:
    """The territory whose statistics the caller asks for (by default, their own scope): the
    one place that says which territories a coordinator may read. 422 if `value` is malformed
    or unknown, 403 if it reaches outside the caller's territory.

    `by_name` is the pages' way: `value` is a name as a person types it (« Correze »,
    « Haute-Corrèze Communauté ») or a code, and the errors speak of the « Territoire » field;
    the API takes codes only and its errors name its `territory` parameter."""
    scope = scope_of(session, principal)
    if value is None or (by_name and not value.strip()):
        return scope
    if by_name and not is_code(value.strip()):
        territory = _by_name(session, scope, value.strip(), loc)
    else:
        territory = parse_territory(session, value.strip() if by_name else value, loc)
    every = communes(engine_of(session))
    if not within(territory, scope, every):
        raise _outside(territory, scope, every, loc, by_name)
    return territory


def _outside(
    territory: Territory,
    scope: Territory,
    every: dict[str, CommuneRef],
    loc: list[str | int],
    by_name: bool,
) -> Problem:
    """403: the territory reaches outside the caller's; how much, when it straddles both."""
    inside = counted(members(territory, every))
    out = sum(not covers(scope, c) for c in inside)
    straddles = (
        f" : {out:,} de ses {len(inside):,} communes n'en font pas partie".replace(",", "\u202f")
        if out < len(inside)
        else ""
    )
    if by_name:
        detail = (
            f"Le territoire {territory.label} sort du vôtre ({scope.name}){straddles}. "
            "Choisissez dans le champ « Territoire » un territoire compris dans le vôtre, ou "
            "videz ce champ pour voir tout votre territoire."
        )
    else:
        detail = (
            f"Le territoire {territory} ({territory.name}) sort du vôtre ({scope}, "
            f"{scope.name}){straddles} : demandez un territoire qui y est compris, ou omettez "
            "« territory »."
        )
    return OutOfTerritory(detail, errors=[{"loc": loc, "msg": detail}])


# --- territories by name --------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class _Entry:
    territory: Territory
    names: tuple[str, ...]  # folded, each with a leading space (word starts are " " + word)
    population: int
    commune: CommuneRef | None = None  # a commune carries its own territories
    # Any other territory: the codes of each kind its communes belong to.
    spans: dict[str, frozenset[str]] = field(default_factory=dict)

    def inside(self, scope: Territory) -> bool:
        """Whether the territory lies wholly in `scope` (what `within` says, without walking
        its communes)."""
        if scope.kind == "national" or self.territory == scope:
            return True
        if self.territory.kind == "national":
            return False
        if self.commune is not None:
            return covers(scope, self.commune)
        return self.spans[scope.kind] == {scope.code}


@dataclass
class _Index:
    entries: list[_Entry]
    by_label: dict[str, _Entry]  # folded label
    by_code: dict[str, list[_Entry]]  # what one may type instead of a name


_named: tuple[dict[str, CommuneRef], _Index] | None = None
_naming = threading.Lock()


def _index(session: Session) -> _Index:
    """Every territory of the reference with the names people call it by, built once per
    copy of the reference (régions, départements and EPCI change with it only)."""
    global _named
    every = communes(engine_of(session))
    with _naming:
        if _named is None or _named[0] is not every:
            _named = (every, _build_index(session, every))
        return _named[1]


def _spans(inside: list[CommuneRef]) -> dict[str, frozenset[str]]:
    parents = frozenset(c.parent or c.code for c in inside)
    return {
        "region": frozenset(c.region for c in inside),
        "departement": frozenset(c.departement for c in inside),
        "epci": frozenset(c.epci for c in inside),
        "commune": parents if len(parents) == 1 else frozenset(),
    }


def _build_index(session: Session, every: dict[str, CommuneRef]) -> _Index:
    entries: list[_Entry] = []
    by_code: dict[str, list[_Entry]] = {}

    def add(entry: _Entry, *codes: str) -> None:
        entries.append(entry)
        for code in codes:
            by_code.setdefault(code, []).append(entry)

    def with_population(territory: Territory) -> tuple[list[CommuneRef], int]:
        inside = members(territory, every)
        return inside, sum(c.population or 0 for c in counted(inside))

    add(_Entry(NATIONAL, (" france entiere", " france", " national"), 0), "national")
    tables: list[tuple[str, Any, Any]] = [
        ("region", col(Region.code), col(Region.name)),
        ("departement", col(Departement.code), col(Departement.name)),
        ("epci", col(Epci.siren), col(Epci.name)),
    ]
    for kind, code_column, name_column in tables:
        for code, name in session.execute(select(code_column, name_column)).all():
            territory = placed(Territory(kind, code, name), every)
            inside, population = with_population(territory)
            if not inside:  # nothing to show for it
                continue
            folded = fold(name)
            names = [folded]
            if kind == "epci":
                own = _LEGAL_FORM.sub("", folded)
                names += [own] if own != folded else []
            codes = [str(territory)] + ([code] if kind != "region" else [])
            spans = _spans(inside)
            add(_Entry(territory, tuple(" " + n for n in names), population, spans=spans), *codes)
    for commune in every.values():
        if commune.kind not in ("COM", "ARM"):
            continue
        territory = Territory("commune", commune.code, commune.name)
        add(
            _Entry(territory, (" " + fold(commune.name),), commune.population or 0, commune),
            str(territory),
            commune.code,
            *commune.postal_codes.split(),
        )
    # A label folded is its name folded and its qualifier folded (few distinct ones).
    by_label = {(e.names[0][1:] + " " + fold(e.territory.qualifier)).strip(): e for e in entries}
    return _Index(entries, by_label, by_code)


def _sorted(found: list[_Entry]) -> list[_Entry]:
    """The largest kinds first (a département before its communes), then by population."""
    return sorted(found, key=lambda e: (_RANK[e.territory.kind], -e.population, e.territory.label))


def _search(index: _Index, text: str) -> tuple[list[_Entry], list[_Entry]]:
    """The territories `text` names exactly (a label, a name, a code), and those whose name
    or one of its words starts with it. One pass over the entries, names folded once."""
    text = text.strip()
    if (label := index.by_label.get(fold(text))) is not None:
        return [label], []
    coded = index.by_code.get(text) or index.by_code.get(text.upper(), [])
    wanted = " " + fold(text)
    if wanted == " ":
        return coded, []
    exact: list[_Entry] = list(coded)
    partial: list[_Entry] = []
    for entry in index.entries:
        best = 2
        for name in entry.names:
            if wanted in name:  # a word of the name starts with it (names start with a space)
                best = min(best, 0 if name == wanted else 1)
        if best == 0:
            exact.append(entry)
        elif best == 1:
            partial.append(entry)
    return list(dict.fromkeys(exact)), partial  # a code may also be a name


def suggest_territories(
    session: Session, principal: Principal, text: str, limit: int = 10
) -> list[Territory]:
    """What a coordinator may mean by `text` among the territories inside theirs, as they
    type it: exact names first, then names with a word that starts with it."""
    scope = scope_of(session, principal)
    exact, partial = _search(_index(session), text)
    exact = _sorted([e for e in exact if e.inside(scope)])
    seen = {e.territory for e in exact}
    partial = _sorted([e for e in partial if e.inside(scope) and e.territory not in seen])
    return [e.territory for e in (exact + partial)[:limit]]


def _by_name(session: Session, scope: Territory, text: str, loc: list[str | int]) -> Territory:
    """The territory a coordinator typed: the one of that name inside theirs. Several of
    that name, or only names that start with it: they choose (422, with the choices); a name
    outside theirs: readable_territory says so (403)."""
    exact, partial = _search(_index(session), text)
    inside = _sorted([e for e in exact if e.inside(scope)])
    if len(inside) == 1:
        return inside[0].territory
    if not inside:
        inside = _sorted([e for e in partial if e.inside(scope)])
        if not inside and len(exact or partial) == 1:
            return (exact or partial)[0].territory  # outside: readable_territory says so
    if inside:
        detail = (
            f"Plusieurs territoires correspondent à « {text} » : choisissez le bon sous le "
            "champ « Territoire »."
            if len(inside) > 1
            else f"Aucun territoire ne s'appelle exactement « {text} » : confirmez celui qui "
            "est proposé sous le champ « Territoire », ou corrigez ce champ."
        )
        raise InvalidData(
            detail,
            errors=[{"loc": loc, "msg": detail}],
            choices=[e.territory.label for e in inside[:10]],
        )
    if exact or partial:
        detail = (
            f"Aucun territoire nommé « {text} » n'est compris dans le vôtre ({scope.name}). "
            "Corrigez le champ « Territoire », ou videz-le pour voir tout votre territoire."
        )
        raise OutOfTerritory(detail, errors=[{"loc": loc, "msg": detail}])
    raise invalid(
        loc,
        f"Aucune commune, intercommunalité, département ou région ne s'appelle « {text} ». "
        "Corrigez le champ « Territoire » (des suggestions s'affichent pendant la saisie), ou "
        "videz-le pour voir tout votre territoire.",
    )
