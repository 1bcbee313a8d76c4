"""Import of places from the files that exist (see place_sources): every row checked and
located, the same place from two sources imported once, every rejection reported with its
line, field and reason in French. Re-importing a file changes nothing."""

import hashlib
import math
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import insert, update
from sqlmodel import Session, col, select

from app.db import engine_of, writing
from app.models import Place, PlaceKind
from app.models.common import new_id, utcnow
from app.places.sources import (
    SourceFile,
    normalise_name,
    offers_accompaniment,
    services_v1,
    split_values,
)
from app.services.cache import bump
from app.services.communes import CommuneRef, communes
from app.triage.geo import distance_km as haversine_km
from app.triage.needs import FEES, MODALITIES, PUBLIC, SPECIFIC, from_schema
from app.triage.opening import readable

# A place this close to another of the same name is the same place.
SAME_PLACE_KM = 0.1
# A point farther than this from its commune's town hall is wrong (swapped, or another town).
FAR_FROM_COMMUNE_KM = 40.0
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
UNKNOWN_PIVOT = re.compile(r"^0*$")

# Columns a source decides; the others (id, source identity, created_at) stay the place's own.
CONTENT = (
    "name",
    "kind",
    "address",
    "postal_code",
    "commune",
    "commune_name",
    "latitude",
    "longitude",
    "approximate_location",
    "services",
    "phone",
    "email",
    "website",
    "hours",
    "accepts_referrals",
    "specific",
    "publics",
    "fees",
    "modalities",
    "pivot",
    "source_date",
)


@dataclass(frozen=True)
class RowIssue:
    line: int
    field: str
    reason: str


@dataclass
class ImportReport:
    format: str = ""
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    merged: int = 0  # rows describing a place already there (other source, or twice in file)
    rejected: list[RowIssue] = field(default_factory=list)
    notes: list[RowIssue] = field(default_factory=list)  # imported, with a correction
    approximate: int = 0  # located at their commune's town hall
    deduced_insee: int = 0
    dry_run: bool = False

    @property
    def imported(self) -> int:
        return self.created + self.updated + self.unchanged


class RowError(ValueError):
    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field_name
        self.reason = reason


class _Reference:
    """The communes an import needs: by code, and by postal code and département for rows
    without a known code. Built from this process's copy of the reference."""

    def __init__(self, communes: dict[str, CommuneRef]) -> None:
        self.by_code = communes
        self.by_postcode: dict[str, list[CommuneRef]] = defaultdict(list)
        self.by_departement: dict[str, list[CommuneRef]] = defaultdict(list)
        for commune in communes.values():
            for postcode in commune.postal_codes.split():
                self.by_postcode[postcode].append(commune)
            self.by_departement[commune.departement].append(commune)

    def deduce(self, postal_code: str, name: str) -> CommuneRef | None:
        """The commune of a postal code, told apart by its name if need be (a former commune's
        name names it; a unique commune whose name starts with the given one will do); for a
        CEDEX or unknown postal code, the commune of that name in the postal code's
        département."""
        candidates = self.by_postcode.get(postal_code, [])
        current = [c for c in candidates if c.kind in ("COM", "ARM")]
        if len(current) == 1:
            return current[0]
        departement = postal_code[:3] if postal_code >= "97" else postal_code[:2]
        departements = ["2A", "2B"] if departement == "20" else [departement]
        around = [c for d in departements for c in self.by_departement.get(d, [])]
        wanted = re.sub(r" cedex(?: \d+)?$", "", normalise_name(name))
        bare = re.sub(r"^(?:le|la|les|l) ", "", wanted)
        for pool, test in (
            (current, lambda n: n == wanted),
            (candidates, lambda n: n == wanted),
            (current, lambda n: n.startswith(wanted + " ")),
            # a postal code that is wrong or a CEDEX: the name in the département
            (around, lambda n: n == wanted),
            (around, lambda n: re.sub(r"^(?:le|la|les|l) ", "", n) == bare),
        ):
            named = [c for c in pool if test(normalise_name(c.name))]
            if len(named) == 1:
                return named[0]
        # "MARSEILLE 11" for "Marseille 11e Arrondissement"
        current = current or [c for c in around if c.kind == "ARM"]
        numbered = re.fullmatch(r"(.*?) ?(\d{1,2})(?: ?e| ?er)?(?: arrondissement)?", wanted)
        if numbered:
            base, number = numbered.groups()
            pattern = re.compile(rf"{re.escape(base)} {int(number)}(?:e|er) arrondissement")
            named = [c for c in current if pattern.fullmatch(normalise_name(c.name))]
            if len(named) == 1:
                return named[0]
        return None


def _text(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if value is None:
        return ""
    if isinstance(value, list):
        return "|".join(str(v) for v in value)
    return str(value).strip()


def _coordinate(row: dict[str, Any], key: str, limit: float) -> float | None:
    raw = _text(row, key).replace(",", ".")
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError as exc:
        raise RowError(key, f"n'est pas un nombre : {raw!r}") from exc
    if not math.isfinite(value) or not -limit <= value <= limit:
        raise RowError(key, f"hors limites : {raw}")
    return value


def _date(raw: str) -> date | None:
    raw = raw.strip()
    for pattern in ("%Y-%m-%d", "%d/%m/%Y"):
        try:
            return datetime.strptime(raw[:10], pattern).date()
        except ValueError:
            continue
    return None


def _bool(raw: str, field_name: str) -> bool | None:
    raw = raw.strip().lower()
    if not raw:
        return None
    if raw in ("true", "vrai", "oui", "1", "yes"):
        return True
    if raw in ("false", "faux", "non", "0", "no"):
        return False
    raise RowError(field_name, f"doit valoir true ou false : {raw!r}")


def _kind(row: dict[str, Any]) -> PlaceKind:
    explicit = _text(row, "type_lieu")
    if explicit:
        try:
            return PlaceKind(explicit)
        except ValueError as exc:
            raise RowError(
                "type_lieu", f"valeur inconnue : {explicit!r} (mediation ou france_services)"
            ) from exc
    programmes = {p.casefold() for p in split_values(row.get("dispositif_programmes_nationaux"))}
    typologie = split_values(row.get("typologie"))
    if "france services" in programmes or "RFS" in typologie:
        return PlaceKind.FRANCE_SERVICES
    return PlaceKind.MEDIATION


def parse_place(
    line: int,
    row: dict[str, Any],
    reference: _Reference,
    default_source: str,
    accepts_referrals: bool | None,
    notes: list[RowIssue],
) -> dict[str, Any]:
    """A row as the place's columns; RowError names the field and the reason."""
    name = _text(row, "nom")
    if not name:
        raise RowError("nom", "manquant")
    address = " ".join(p for p in (_text(row, "adresse"), _text(row, "complement_adresse")) if p)
    if not address:
        raise RowError("adresse", "manquante")
    postal_code = _text(row, "code_postal")
    if re.fullmatch(r"\d{4}", postal_code):  # a spreadsheet dropped the leading zero
        postal_code = "0" + postal_code
    if postal_code and not re.fullmatch(r"\d{5}", postal_code):
        raise RowError("code_postal", f"invalide : {postal_code!r}")
    commune_name = _text(row, "commune")
    code = _text(row, "code_insee")
    commune = reference.by_code.get(code) if code else None
    if commune is None:
        if not postal_code:
            raise RowError("code_postal", "manquant, et pas de code_insee connu")
        commune = reference.deduce(postal_code, commune_name)
        if commune is None:
            what = f"inconnu du référentiel ({code})" if code else "manquant"
            raise RowError(
                "code_insee",
                f"{what}, et non déductible : aucune commune unique pour le code postal "
                f"{postal_code} et le nom « {commune_name} »",
            )
        notes.append(
            RowIssue(line, "code_insee", f"déduit du code postal et de la commune : {commune.code}")
        )
    if not postal_code:
        raise RowError("code_postal", "manquant")

    latitude = _coordinate(row, "latitude", 90)
    longitude = _coordinate(row, "longitude", 180)
    approximate = False
    if latitude is None or longitude is None or (latitude == 0 and longitude == 0):
        latitude, longitude, approximate = commune.latitude, commune.longitude, True
    else:
        off = haversine_km(latitude, longitude, commune.latitude, commune.longitude)
        if off > FAR_FROM_COMMUNE_KM:
            swapped = haversine_km(longitude, latitude, commune.latitude, commune.longitude)
            if swapped <= FAR_FROM_COMMUNE_KM:
                latitude, longitude = longitude, latitude
                notes.append(RowIssue(line, "latitude", "latitude et longitude inversées"))
            else:
                notes.append(
                    RowIssue(
                        line,
                        "latitude",
                        f"position à {off:.0f} km de la commune {commune.code} : "
                        "remplacée par celle de sa mairie",
                    )
                )
                latitude, longitude, approximate = commune.latitude, commune.longitude, True

    services, unknown = services_v1(split_values(row.get("services")))
    if unknown:
        notes.append(
            RowIssue(line, "services", f"valeurs inconnues ignorées : {', '.join(unknown)}")
        )
    kind = _kind(row)
    explicit = _bool(_text(row, "accepte_orientations"), "accepte_orientations")
    if accepts_referrals is None:
        accepts_referrals = explicit
    if accepts_referrals is None:
        accepts_referrals = kind is PlaceKind.MEDIATION and offers_accompaniment(row, services)
    emails = [e for e in split_values(row.get("courriels")) if EMAIL.match(e)]
    websites = split_values(row.get("site_web"))
    unread_hours = row.get("_unread_hours")
    if unread_hours:
        notes.append(RowIssue(line, "horaires", "non lus : " + " ; ".join(unread_hours)))
    hours = _text(row, "horaires")[:500] or None
    if not readable(hours):
        notes.append(
            RowIssue(line, "horaires", "illisibles (syntaxe OpenStreetMap attendue) : inconnus")
        )
    publics_v0 = split_values(row.get("publics_accueillis"))
    specific = from_schema(
        split_values(row.get("prise_en_charge_specifique")) + publics_v0, SPECIFIC
    )
    publics = from_schema(
        split_values(row.get("publics_specifiquement_adresses")) + publics_v0, PUBLIC
    )
    fees = from_schema(split_values(row.get("frais_a_charge")), FEES)
    modalities = from_schema(split_values(row.get("modalites_accompagnement")), MODALITIES)
    source_id = (
        _text(row, "id")
        or hashlib.sha256(f"{name}|{address}|{postal_code}".encode()).hexdigest()[:24]
    )
    pivot = _text(row, "pivot")
    return {
        "source": (_text(row, "source") or default_source)[:100],
        "source_id": source_id[:200],
        "pivot": None if UNKNOWN_PIVOT.match(pivot) else pivot[:20],
        "source_date": _date(_text(row, "date_maj")),
        "name": name[:200],
        "kind": kind.value,
        "address": address[:300],
        "postal_code": postal_code,
        "commune": commune.code,
        "commune_name": (commune_name or commune.name)[:200],
        "latitude": round(latitude, 6),
        "longitude": round(longitude, 6),
        "approximate_location": approximate,
        "services": services,
        "phone": _text(row, "telephone")[:30] or None,
        "email": emails[0][:200] if emails else None,
        "website": websites[0][:300] if websites else None,
        "hours": hours,
        "accepts_referrals": accepts_referrals,
        "specific": specific,
        "publics": publics,
        # Several fees given (free for some, paying for others): the dearest says it all.
        "fees": fees[-1] if fees else None,
        "modalities": modalities,
    }


def _content(values: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(values[c] for c in CONTENT)


@dataclass(eq=False)  # compared by identity
class _Known:
    values: dict[str, Any]
    # An existing place's content and merged records before the import; None: created by it.
    before: tuple[tuple[Any, ...], list[list[str]]] | None = None
    own_row: bool = False  # a row of this file was its own record (or created it)

    @property
    def new(self) -> bool:
        return self.before is None


class _Places:
    """Places already there and those of this file so far, found by identity (source and id,
    of the place or of a record merged into it), by structure (SIRET and name) or by name
    within SAME_PLACE_KM (the nearest)."""

    def __init__(self, session: Session) -> None:
        self.all: list[_Known] = []
        self.by_identity: dict[tuple[str, str], _Known] = {}
        self.by_pivot: dict[tuple[str, str], _Known] = {}
        self.by_name: dict[str, list[_Known]] = defaultdict(list)
        for place in session.exec(select(Place)).all():
            values = place.model_dump()
            self.add(_Known(values, before=(_content(values), values["merged_ids"])))

    def add(self, known: _Known) -> None:
        self.all.append(known)
        self.index(known)

    def index(self, known: _Known) -> None:
        v = known.values
        self.by_identity.setdefault((v["source"], v["source_id"] or ""), known)
        for source, source_id in v["merged_ids"]:
            self.by_identity.setdefault((source, source_id), known)
        name = normalise_name(v["name"])
        if v["pivot"]:
            self.by_pivot.setdefault((v["pivot"], name), known)
        if known not in self.by_name[name]:
            self.by_name[name].append(known)

    def same(self, v: dict[str, Any]) -> tuple[_Known | None, bool]:
        """The place `v` describes, and whether `v` is that place's own record."""
        found = self.by_identity.get((v["source"], v["source_id"]))
        if found is not None:
            k = found.values
            return found, (k["source"], k["source_id"]) == (v["source"], v["source_id"])
        name = normalise_name(v["name"])
        if v["pivot"] and (v["pivot"], name) in self.by_pivot:
            return self.by_pivot[(v["pivot"], name)], False
        nearest, best = None, SAME_PLACE_KM
        for known in self.by_name.get(name, ()):
            k = known.values
            km = haversine_km(v["latitude"], v["longitude"], k["latitude"], k["longitude"])
            if km <= best:
                nearest, best = known, km
        return nearest, False


def _newer(incoming: date | None, current: date | None) -> bool:
    return incoming is not None and (current is None or incoming > current)


def import_places(
    session: Session,
    source: SourceFile,
    *,
    accepts_referrals: bool | None = None,
    dry_run: bool = False,
    on_row: Callable[[], None] = lambda: None,
) -> ImportReport:
    """Imports every valid row in one transaction (none with dry_run); reports the others.

    A row that describes a place already known (by identity, structure, or name within 100 m)
    is merged into it: its values win when it is the place's own record and not older than the
    stored one, or, from another source, when it is more recent (`date_maj`). Counts: places
    created, existing places updated or left unchanged by their own record, and rows merged
    (a place another source or another row of the file already describes)."""
    report = ImportReport(format=source.format, rows=len(source.rows), dry_run=dry_run)
    reference = _Reference(communes(engine_of(session)))
    parsed = []
    for line, row in source.rows:
        on_row()
        try:
            parsed.append(
                parse_place(
                    line, row, reference, source.default_source, accepts_referrals, report.notes
                )
            )
        except RowError as exc:
            report.rejected.append(RowIssue(line, exc.field, exc.reason))
    report.approximate = sum(values["approximate_location"] for values in parsed)
    report.deduced_insee = sum(1 for n in report.notes if n.field == "code_insee")
    if dry_run:
        with session.begin():  # a read, ended here
            _merge(session, parsed, report)
        return report
    # The places are read in the write transaction: a place another import adds meanwhile
    # cannot be created twice.
    with writing(session):
        now = utcnow()
        known = _merge(session, parsed, report)
        created = [
            k.values | {"id": new_id("lieu"), "created_at": now, "updated_at": now}
            for k in known.all
            if k.new
        ]
        updates = [
            {c: k.values[c] for c in ("id", *CONTENT, "merged_ids")} | {"updated_at": now}
            for k in known.all
            if k.before is not None and k.before != (_content(k.values), k.values["merged_ids"])
        ]
        if created:
            session.execute(insert(Place), created)
        if updates:
            session.execute(update(Place), updates)
        bump(session, "place")
        session.commit()
    return report


def _merge(session: Session, parsed: list[dict[str, Any]], report: ImportReport) -> _Places:
    """Matches the rows with the places there and with each other; counts in `report`."""
    known = _Places(session)
    for values in parsed:
        target, own = known.same(values)
        if target is None:
            known.add(_Known({**values, "merged_ids": []}, own_row=True))
            report.created += 1
            continue
        current = target.values
        if own:  # its own record: taken unless older than what the place holds
            takes = not (values["source_date"] and current["source_date"]) or (
                values["source_date"] >= current["source_date"]
            )
        else:  # the same place from another source: the most recent record wins
            takes = _newer(values["source_date"], current["source_date"])
            identity = [values["source"], values["source_id"]]
            if identity not in current["merged_ids"]:
                current["merged_ids"] = [*current["merged_ids"], identity]
        if takes:
            current.update({c: values[c] for c in CONTENT})
        known.index(target)  # found by its new name and identities too
        if own and not target.own_row:
            target.own_row = True
        else:
            report.merged += 1
    # Updated: existing places whose content changed (not only their list of merged records).
    for k in known.all:
        if k.before is not None and k.before[0] != _content(k.values):
            report.updated += 1
        elif k.before is not None and k.own_row:
            report.unchanged += 1
    return known


def place_ids_by_source_id(session: Session) -> dict[str, str]:
    """Source id -> place id (the demo's and the tests' places, whose ids are unique)."""
    rows = session.exec(select(Place.source_id, Place.id).where(col(Place.source_id).is_not(None)))
    return {source_id or "": place_id for source_id, place_id in rows}
