"""The commune reference: lookup and import of the INSEE list with centroids."""

import csv
from pathlib import Path

from sqlmodel import Session, select

from app.errors import invalid
from app.models import Commune

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
DEMO_COMMUNES = DATA_DIR / "communes-19.csv"


def get_commune(session: Session, code: str, loc: list[str | int]) -> Commune:
    commune = session.get(Commune, code)
    if commune is None:
        raise invalid(
            loc,
            f"Code commune INSEE inconnu : {code}.",
            f"La commune {code} n'est pas dans le référentiel des communes de ce service.",
        )
    return commune


def import_communes(session: Session, path: Path) -> int:
    """Upserts communes from the CSV format of app/data/communes-19.csv; returns the count."""
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    existing = {c.code: c for c in session.exec(select(Commune)).all()}
    for row in rows:
        commune = existing.get(row["code_insee"]) or Commune(
            code=row["code_insee"], name="", departement="", latitude=0, longitude=0
        )
        commune.name = row["nom"]
        commune.postal_codes = row["codes_postaux"]
        commune.departement = row["departement"]
        commune.region = row.get("region", "")
        commune.epci = row.get("epci_siren", "")
        commune.epci_name = row.get("epci_nom", "")
        commune.population = int(row["population"]) if row.get("population") else None
        commune.latitude = float(row["latitude"])
        commune.longitude = float(row["longitude"])
        commune.centroid_precision = row.get("precision_centroide") or "commune"
        session.add(commune)
    session.commit()
    return len(rows)
