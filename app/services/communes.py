"""The commune reference: lookup and import of the INSEE list with centroids."""

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from app.errors import invalid
from app.models import Commune
from app.services.cache import bump, cached

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
DEMO_COMMUNES = DATA_DIR / "communes-19.csv"


@dataclass(frozen=True, slots=True)
class CommuneRef:
    """What a request needs of a commune: where it is and which territories it belongs to."""

    code: str
    name: str
    departement: str
    region: str
    epci: str
    latitude: float
    longitude: float


def load_communes(session: Session) -> dict[str, CommuneRef]:
    rows = session.exec(
        select(  # type: ignore[call-overload]
            Commune.code,
            Commune.name,
            Commune.departement,
            Commune.region,
            Commune.epci,
            Commune.latitude,
            Commune.longitude,
        )
    ).all()
    return {row[0]: CommuneRef(*row) for row in rows}


def communes(engine: Engine) -> dict[str, CommuneRef]:
    """Every commune of the reference, from this process's in-memory copy."""
    return cached(engine, "commune", load_communes).get()


def get_commune(session: Session, code: str, loc: list[str | int]) -> CommuneRef:
    engine = session.get_bind()
    assert isinstance(engine, Engine)
    commune = communes(engine).get(code)
    if commune is None:
        raise invalid(
            loc,
            f"Code commune INSEE inconnu : {code}.",
            f"La commune {code} n'est pas dans le référentiel des communes de ce service.",
        )
    return commune


def import_communes(session: Session, path: Path) -> int:
    """Upserts communes from the CSV format of app/data/communes-19.csv; returns the count.
    A file with a missing column or a malformed number raises ValueError, naming the line."""
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = [(reader.line_num, row) for row in reader]
    existing = {c.code: c for c in session.exec(select(Commune)).all()}
    for line, row in rows:
        try:
            code = row["code_insee"]
            if not re.fullmatch(r"\d{5}|2[AB]\d{3}", code or ""):
                raise ValueError(f"code_insee invalide : {code!r}")
            values: dict[str, Any] = {
                "name": row["nom"],
                "postal_codes": row["codes_postaux"],
                "departement": row["departement"],
                "region": row.get("region") or "",
                "epci": row.get("epci_siren") or "",
                "epci_name": row.get("epci_nom") or "",
                "population": int(row["population"]) if row.get("population") else None,
                "latitude": float(row["latitude"]),
                "longitude": float(row["longitude"]),
                "centroid_precision": row.get("precision_centroide") or "commune",
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"ligne {line} : colonne manquante ou valeur invalide ({exc})"
            ) from exc
        commune = existing.get(code)
        if commune is None:
            session.add(Commune(code=code, **values))
        else:
            for key, value in values.items():
                setattr(commune, key, value)
    bump(session, "commune")
    session.commit()
    return len(rows)
