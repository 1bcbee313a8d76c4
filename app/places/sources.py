"""Reading the files that describe places, in the words of the national schema of lieux de
médiation numérique: schema v1 (CSV or JSON, `|` between values), schema v0 (`;`, 15 older
services) and the ANCT list of France Services (hours per weekday). Each row becomes a dict
with the schema v1 field names; nothing here touches the database."""

import csv
import io
import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.triage.vocabulary import (
    SERVICE_ACCES,
    SERVICE_COMPREHENSION,
    SERVICE_DEMARCHES,
    SERVICE_INSERTION,
    SERVICE_LOISIRS,
    SERVICE_MATERIEL,
    SERVICE_PARENTALITE,
    SERVICE_QUOTIDIEN,
    SERVICES,
)

# The official v0 -> v1 mapping (ANCT mednum-cli, quoted in the schema's SCHEMA.md).
SERVICES_V0 = {
    "Devenir autonome dans les démarches administratives": SERVICE_DEMARCHES,
    "Réaliser des démarches administratives avec un accompagnement": SERVICE_DEMARCHES,
    "Accompagner les démarches de santé": SERVICE_DEMARCHES,
    "Prendre en main un smartphone ou une tablette": SERVICE_QUOTIDIEN,
    "Prendre en main un ordinateur": SERVICE_QUOTIDIEN,
    "Utiliser le numérique au quotidien": SERVICE_QUOTIDIEN,
    "Approfondir ma culture numérique": SERVICE_COMPREHENSION,
    "Promouvoir la citoyenneté numérique": SERVICE_COMPREHENSION,
    "Favoriser mon insertion professionnelle": SERVICE_INSERTION,
    "Créer et développer mon entreprise": SERVICE_INSERTION,
    "Accéder à une connexion internet": SERVICE_ACCES,
    "Accéder à du matériel": SERVICE_ACCES,
    "S'équiper en matériel informatique": SERVICE_MATERIEL,
    "Créer avec le numérique": SERVICE_LOISIRS,
    "Soutenir la parentalité et l'éducation avec le numérique": SERVICE_PARENTALITE,
}
# Services that give access or equipment, not accompaniment.
ACCESS_ONLY = {SERVICE_ACCES, SERVICE_MATERIEL}

ACCOMPANIMENT_V1 = (
    "En autonomie",
    "Accompagnement individuel",
    "Dans un atelier collectif",
    "À distance",
)
ACCOMPANIMENT_V0 = {
    "Seul : j'ai accès à du matériel et une connexion": "En autonomie",
    "Avec de l'aide : je suis accompagné seul dans l'usage du numérique": (
        "Accompagnement individuel"
    ),
    "A ma place : une personne habilitée fait les démarches à ma place": (
        "Accompagnement individuel"
    ),
    "Dans un atelier : j'apprends collectivement à utiliser le numérique": (
        "Dans un atelier collectif"
    ),
}
NO_PUBLIC = "Ce lieu n'accueille pas de public"

# Fields that only schema v0 has: a file with any of them is read as v0.
V0_FIELDS = {
    "courriel",
    "conditions_acces",
    "conditions_access",
    "publics_accueillis",
    "labels_nationaux",
    "labels_autres",
    "accessibilite",
    "cle_ban",
}
SCHEMA_REQUIRED = ("nom", "adresse", "code_postal")
FRANCE_SERVICES_COLUMNS = {"id_fs", "lib_fs", "insee_com"}
WEEKDAYS = (("h_lundi", "Mo"), ("h_mardi", "Tu"), ("h_mercredi", "We"), ("h_jeudi", "Th"),
            ("h_vendredi", "Fr"), ("h_samedi", "Sa"), ("h_dimanche", "Su"))  # fmt: skip


class FileRejected(ValueError):
    """The file as a whole cannot be read as places (message in French)."""


@dataclass
class SourceFile:
    format: str  # said in French in the report
    default_source: str  # the `source` of rows that name none
    rows: list[tuple[int, dict[str, Any]]]  # (line, fields in schema v1 names)


# Bounds on what a file of places may hold, far above every real export (the national
# consolidated file: 6.9 MB, 27 columns, its longest cell 682 characters; the JSON exports:
# two levels deep, cells of at most 2,122 characters) and far below what hurts the machine.
MAX_FILE_BYTES = 100 * 1024 * 1024
MAX_COLUMNS = 300
MAX_FIELD_CHARS = 100_000
MAX_DEPTH = 16


def _decode(path: Path) -> str:
    with path.open("rb") as handle:  # read() of a device such as /dev/zero never ends
        raw = handle.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:
        raise FileRejected(
            f"Fichier trop gros : plus de {MAX_FILE_BYTES // (1024 * 1024)} Mo (l'export "
            "national de tous les lieux fait 7 Mo). Découpez-le."
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FileRejected(
            f"Le fichier n'est pas en UTF-8 (octet invalide en position {exc.start}) : "
            "le schéma exige UTF-8. Réenregistrez-le en UTF-8."
        ) from exc
    return text.replace("\x00", "")  # PostgreSQL cannot store NUL; no real file needs it


def _too_long(where: str) -> FileRejected:
    return FileRejected(
        f"{where} : une valeur dépasse {MAX_FIELD_CHARS:,} caractères".replace(",", "\u202f")
        + " (un guillemet non fermé, souvent). Corrigez le fichier."
    )


def _csv_records(text: str, delimiter: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the records (line where each ends, cells) of a CSV text, cut where
    the csv module says a record ends: a line break inside quotes (or a U+2028, a form
    feed…) stays in its cell."""
    limit = csv.field_size_limit()
    csv.field_size_limit(MAX_FIELD_CHARS)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    records: list[tuple[int, list[str]]] = []
    try:
        header = next(reader, [])
        if len(header) > MAX_COLUMNS:
            raise FileRejected(
                f"Trop de colonnes : {len(header)} (au plus {MAX_COLUMNS} ; le schéma en a "
                "une quarantaine). Ce fichier n'est pas un export de lieux."
            )
        for cells in reader:
            if len(cells) > MAX_COLUMNS:
                raise FileRejected(
                    f"Ligne {reader.line_num} : {len(cells)} valeurs (au plus {MAX_COLUMNS}). "
                    "Ce fichier n'est pas un export de lieux."
                )
            if cells:  # a blank line is no record (csv.DictReader skips it too)
                records.append((reader.line_num, cells))
    except csv.Error as exc:
        where = f"Ligne {reader.line_num}"
        if "field larger" in str(exc):
            raise _too_long(where) from exc
        if "unexpected end of data" in str(exc):
            raise FileRejected(
                f"{where} : un guillemet ouvert n'est jamais fermé avant la fin du fichier. "
                "Corrigez le fichier."
            ) from exc
        raise FileRejected(
            f"{where} : CSV illisible (guillemet mal placé dans une valeur). Corrigez le fichier."
        ) from exc
    finally:
        csv.field_size_limit(limit)
    return header, records


def _check_json(data: Any) -> None:
    """Bounds the depth, the keys of an object and the length of a value of parsed JSON."""
    stack = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if len(value) > MAX_FIELD_CHARS:
                raise _too_long("JSON")
            continue
        if depth > MAX_DEPTH:
            raise FileRejected(
                f"JSON imbriqué sur plus de {MAX_DEPTH} niveaux : un lieu n'en a que deux. "
                "Ce fichier n'est pas un export de lieux."
            )
        if isinstance(value, dict):
            if len(value) > MAX_COLUMNS:
                raise FileRejected(
                    f"JSON : un objet a {len(value)} champs (au plus {MAX_COLUMNS}). "
                    "Ce fichier n'est pas un export de lieux."
                )
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)


def _parse_json(text: str) -> Any:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FileRejected(f"JSON invalide (ligne {exc.lineno}) : {exc.msg}.") from exc
    except RecursionError as exc:
        raise FileRejected(
            f"JSON imbriqué sur plus de {MAX_DEPTH} niveaux : un lieu n'en a que deux. "
            "Ce fichier n'est pas un export de lieux."
        ) from exc
    _check_json(data)
    return data


def read_source(path: Path) -> SourceFile:
    """Reads a file of places; FileRejected when it is not one of the known formats, or
    beyond the bounds above."""
    text = _decode(path)
    rows: list[tuple[int, dict[str, Any]]]
    if text.lstrip().startswith(("[", "{")):
        data = _parse_json(text)
        if isinstance(data, dict):
            data = data.get("data") or data.get("lieux") or []
        if not isinstance(data, list):
            raise FileRejected("Le fichier JSON doit contenir une liste de lieux.")
        kind = "JSON"
        rows = [(i, row if isinstance(row, dict) else {}) for i, row in enumerate(data, 1)]
        fields = {key for _, row in rows for key in row}
    else:
        first_line = text.split("\n", 1)[0]
        delimiter = max((";", ",", "\t", "|"), key=first_line.count)
        header, records = _csv_records(text, delimiter)
        fields = set(header)
        # A short record lacks its last columns; cells beyond the header are left out.
        dict_rows = [(line, dict(zip(header, cells, strict=False))) for line, cells in records]
        if fields >= FRANCE_SERVICES_COLUMNS:
            return SourceFile(
                "liste des France Services (ANCT, CSV)",
                "anct-france-services",
                [(line, _france_services_row(row)) for line, row in dict_rows],
            )
        kind = "CSV"
        rows = dict_rows
    _require_schema(fields, kind)
    version = "v0" if _is_v0([row for _, row in rows]) else "v1"
    return SourceFile(
        f"schéma {version} ({kind})",
        path.stem.split(".")[0],
        [(line, _schema_row(row)) for line, row in rows],
    )


def _require_schema(fields: set[str], kind: str) -> None:
    missing = [name for name in SCHEMA_REQUIRED if name not in fields]
    if missing:
        raise FileRejected(
            f"Ce fichier {kind} ne suit pas le schéma des lieux de médiation numérique ni la "
            f"liste des France Services : colonne{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)} absente{'s' if len(missing) > 1 else ''}. Convertissez-le "
            "d'abord au schéma (par exemple avec mednum-cli de l'ANCT)."
        )


def _is_v0(rows: list[dict[str, Any]]) -> bool:
    """v0 when the services speak v0's vocabulary; without a word of either, when v0's own
    fields are there (a v1 export may carry a few of them: its services decide)."""
    votes = [
        value in SERVICES_V0
        for row in rows[:500]
        for value in split_values(row.get("services"))
        if value in SERVICES_V0 or _fold(value) in _V1_BY_FOLD
    ]
    if votes:
        return sum(votes) * 2 > len(votes)
    return any(key in V0_FIELDS for row in rows[:500] for key in row)


def split_values(value: Any) -> list[str]:
    """A multi-valued field: `|` (v1) or `;` (v0) between values, or a JSON list."""
    if value is None:
        return []
    items = [str(v) for v in value] if isinstance(value, list) else re.split(r"[|;]", str(value))
    return [item.strip() for item in items if item.strip()]


def _schema_row(row: dict[str, Any]) -> dict[str, Any]:
    """A v0 or v1 row in v1 names (v0 fields renamed; values mapped later, per value)."""
    out = dict(row)
    for old, new in (
        ("courriel", "courriels"),
        ("conditions_acces", "frais_a_charge"),
        ("conditions_access", "frais_a_charge"),
        ("labels_autres", "autres_formations_labels"),
        ("accessibilite", "fiche_acces_libre"),
    ):
        if old in out and not out.get(new):
            out[new] = out.pop(old)
    labels = split_values(out.get("labels_nationaux"))
    if labels:
        programmes = split_values(out.get("dispositif_programmes_nationaux"))
        for label in labels:
            mapped = "Conseillers numériques" if label == "CNFS" else label
            if mapped not in programmes:
                programmes.append(mapped)
        out["dispositif_programmes_nationaux"] = programmes
    return out


def services_v1(values: list[str]) -> tuple[list[str], list[str]]:
    """(v1 services, values not recognised), v0 values mapped, accents restored."""
    out: list[str] = []
    unknown = []
    for value in values:
        service = SERVICES_V0.get(value) or _V1_BY_FOLD.get(_fold(value))
        if service is None:
            unknown.append(value)
        elif service not in out:
            out.append(service)
    return out, unknown


def accompaniment_v1(values: list[str]) -> list[str]:
    out = []
    for value in values:
        mapped = ACCOMPANIMENT_V0.get(value, value)
        if mapped in ACCOMPANIMENT_V1 and mapped not in out:
            out.append(mapped)
    return out


def offers_accompaniment(row: dict[str, Any], services: list[str]) -> bool:
    """A médiation place accompanies people when it says so (modalités d'accompagnement), or,
    when it says nothing of it, when it offers a service beyond access and equipment."""
    if NO_PUBLIC in split_values(row.get("modalites_acces")):
        return False
    modes = accompaniment_v1(split_values(row.get("modalites_accompagnement")))
    if modes:
        return any(mode != "En autonomie" for mode in modes)
    return any(service not in ACCESS_ONLY for service in services)


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold().strip()


_V1_BY_FOLD = {_fold(s): s for s in SERVICES}


def normalise_name(text: str) -> str:
    """A name for comparison: no accents, case, punctuation or abbreviated saints."""
    words = re.sub(r"[^a-z0-9]+", " ", _fold(text)).split()
    saints = {"st": "saint", "ste": "sainte"}
    return " ".join(saints.get(word, word) for word in words)


_SLOT = re.compile(r"(\d{1,2})\s*[:h]\s*(\d{2})\s*-\s*(\d{1,2})\s*[:h]\s*(\d{2})")


def weekday_hours(row: dict[str, Any]) -> tuple[str | None, list[str]]:
    """ANCT per-day hours ("09:00 - 12:00 / 13:30 - 17:00") as OSM opening_hours, grouping
    consecutive days alike: "Mo-Th 09:00-12:00,13:30-17:00; Fr 09:00-12:00". Also returns the
    cells that said something else (kept out)."""
    days: list[tuple[str, str]] = []
    unread = []
    for column, day in WEEKDAYS:
        cell = str(row.get(column) or "").strip()
        slots = [f"{int(a):02d}:{b}-{int(c):02d}:{d}" for a, b, c, d in _SLOT.findall(cell)]
        if slots:
            days.append((day, ",".join(slots)))
        elif cell and cell not in ("-", "Fermé", "fermé"):
            unread.append(f"{column} : {cell}")
    if not days:
        return None, unread
    rules: list[tuple[list[str], str]] = []
    order = [day for _, day in WEEKDAYS]
    for day, times in days:
        if (
            rules
            and rules[-1][1] == times
            and order.index(rules[-1][0][-1]) + 1 == order.index(day)
        ):
            rules[-1][0].append(day)
        else:
            rules.append(([day], times))
    said = []
    for group, times in rules:
        spec = f"{group[0]}-{group[-1]}" if len(group) > 2 else ",".join(group)
        said.append(f"{spec} {times}")
    return "; ".join(said), unread


def _france_services_row(row: dict[str, Any]) -> dict[str, Any]:
    hours, unread = weekday_hours(row)
    return {
        "id": row.get("id_fs"),
        "source": "anct-france-services",
        "nom": row.get("lib_fs"),
        "adresse": row.get("adresse"),
        "complement_adresse": row.get("complement_adresse"),
        "code_postal": row.get("code_postal"),
        "code_insee": row.get("insee_com"),
        "commune": row.get("lib_com"),
        "latitude": row.get("latitude"),
        "longitude": row.get("longitude"),
        "courriels": row.get("mail"),
        "telephone": row.get("telephone"),
        "horaires": hours,
        "itinerance": "Itinérant" if row.get("itinerance") == "Oui" else "Fixe",
        "type_lieu": "france_services",
        # What every France Services offers (the national charter): help with procedures
        # and free access to a computer and the internet.
        "services": [SERVICE_DEMARCHES, SERVICE_ACCES],
        "_unread_hours": unread,
    }
