"""Import of places from the national schema of lieux de médiation numérique (CSV or JSON)."""

import csv
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from app.models import Commune, Place, PlaceKind
from app.models.common import utcnow
from app.services.cache import bump

LIST_SEPARATOR = "|"


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)

    @property
    def imported(self) -> int:
        return self.created + self.updated


class RowError(ValueError):
    pass


def read_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """Rows with their line (CSV: line in the file; JSON: position in the list, from 1)."""
    # PostgreSQL cannot store NUL characters; no real file needs them.
    text = path.read_text(encoding="utf-8-sig").replace("\x00", "")
    if path.suffix.lower() == ".json" or text.lstrip().startswith(("[", "{")):
        data = json.loads(text)
        if isinstance(data, dict):
            data = data.get("data") or data.get("lieux") or []
        if not isinstance(data, list):
            raise ValueError("Le fichier JSON doit contenir une liste de lieux.")
        return [(i, row if isinstance(row, dict) else {}) for i, row in enumerate(data, 1)]
    sample = text[:4096]
    delimiter = ";" if sample.count(";") > sample.count(",") else ","
    reader = csv.DictReader(text.splitlines(), delimiter=delimiter)
    return [(reader.line_num, row) for row in reader]


def _text(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if value is None:
        return ""
    if isinstance(value, list):
        return LIST_SEPARATOR.join(str(v) for v in value)
    return str(value).strip()


def _list(row: dict[str, Any], key: str) -> list[str]:
    value = row.get(key)
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return [v.strip() for v in _text(row, key).split(LIST_SEPARATOR) if v.strip()]


def _float(row: dict[str, Any], key: str, low: float, high: float) -> float:
    raw = _text(row, key).replace(",", ".")
    if not raw:
        raise RowError(f"{key} manquante")
    try:
        value = float(raw)
    except ValueError as exc:
        raise RowError(f"{key} n'est pas un nombre : {raw!r}") from exc
    if not low <= value <= high:
        raise RowError(f"{key} hors limites : {raw}")
    return value


def _kind(row: dict[str, Any]) -> PlaceKind:
    explicit = _text(row, "type_lieu")
    if explicit:
        try:
            return PlaceKind(explicit)
        except ValueError as exc:
            raise RowError(
                f"type_lieu inconnu : {explicit!r} (mediation ou france_services)"
            ) from exc
    programmes = " ".join(_list(row, "dispositif_programmes_nationaux")).lower()
    typologie = _text(row, "typologie").upper()
    if "france services" in programmes or "FRANCE_SERVICES" in typologie:
        return PlaceKind.FRANCE_SERVICES
    return PlaceKind.MEDIATION


def _bool(row: dict[str, Any], key: str, default: bool) -> bool:
    raw = _text(row, key).lower()
    if not raw:
        return default
    if raw in ("true", "vrai", "oui", "1", "yes"):
        return True
    if raw in ("false", "faux", "non", "0", "no"):
        return False
    raise RowError(f"{key} doit valoir true ou false : {raw!r}")


def parse_place(row: dict[str, Any], communes_by_postcode: dict[str, list[str]]) -> dict[str, Any]:
    name = _text(row, "nom")
    if not name:
        raise RowError("nom manquant")
    address = " ".join(p for p in (_text(row, "adresse"), _text(row, "complement_adresse")) if p)
    if not address:
        raise RowError("adresse manquante")
    postal_code = _text(row, "code_postal")
    if not re.fullmatch(r"\d{5}", postal_code):
        raise RowError(f"code_postal invalide : {postal_code!r}")
    commune = _text(row, "code_insee")
    if not commune:
        candidates = communes_by_postcode.get(postal_code, [])
        if len(candidates) != 1:
            raise RowError("code_insee manquant et non déductible du code postal")
        commune = candidates[0]
    if not re.fullmatch(r"\d{5}|2[AB]\d{3}", commune):
        raise RowError(f"code_insee invalide : {commune!r}")
    kind = _kind(row)
    emails = _list(row, "courriels")
    websites = _list(row, "site_web")
    source_id = (
        _text(row, "id")
        or hashlib.sha256(f"{name}|{address}|{postal_code}".encode()).hexdigest()[:24]
    )
    return {
        "source_id": source_id,
        "name": name[:200],
        "kind": kind.value,
        "address": address[:300],
        "postal_code": postal_code,
        "commune": commune,
        "commune_name": _text(row, "commune")[:200],
        "latitude": _float(row, "latitude", -90, 90),
        "longitude": _float(row, "longitude", -180, 180),
        "services": _list(row, "services"),
        "phone": _text(row, "telephone") or None,
        "email": emails[0] if emails else None,
        "website": websites[0] if websites else None,
        "hours": _text(row, "horaires") or None,
        "accepts_referrals": _bool(row, "accepte_orientations", kind is PlaceKind.MEDIATION),
    }


def import_places(
    session: Session,
    rows: list[tuple[int, dict[str, Any]]],
    on_row: Callable[[], None] = lambda: None,
) -> ImportReport:
    """Upserts every valid row by its source id in one transaction; reports the others."""
    report = ImportReport()
    by_postcode: dict[str, list[str]] = {}
    for commune in session.exec(select(Commune)).all():
        for postcode in commune.postal_codes.split():
            by_postcode.setdefault(postcode, []).append(commune.code)
    existing = {p.source_id: p for p in session.exec(select(Place)).all() if p.source_id}
    seen: set[str] = set()
    for line, row in rows:
        on_row()
        try:
            values = parse_place(row, by_postcode)
        except RowError as exc:
            report.rejected.append((line, str(exc)))
            continue
        if values["source_id"] in seen:
            report.rejected.append((line, f"identifiant en double : {values['source_id']}"))
            continue
        seen.add(values["source_id"])
        place = existing.get(values["source_id"])
        if place is None:
            session.add(Place(**values))
            report.created += 1
        else:
            for key, value in values.items():
                setattr(place, key, value)
            place.updated_at = utcnow()
            session.add(place)
            report.updated += 1
    bump(session, "place")
    session.commit()
    return report
