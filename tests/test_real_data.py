"""All of France on real data: the commune reference against an independently derived file, and
every real export of ../shared/data/places imported, counted and used to orient people."""

import csv
import math
import os
from collections import Counter
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from app.cli import app as cli
from app.models import Place, Role
from app.places.importing import import_places
from app.places.sources import FileRejected, read_source
from app.services.commune_reference import Reference
from app.services.keys import create_key
from tests.conftest import orientation_body

# ../shared/data beside the project's root (PASSERELLE_SHARED_DATA for another place).
DATA = Path(
    os.environ.get("PASSERELLE_SHARED_DATA")
    or Path(__file__).resolve().parents[2] / "shared" / "data"
)
PLACES = DATA / "places"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is not there")


def km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine, written again here so that the test does not trust the code it checks."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371.0088 * math.asin(math.sqrt(a))


def independent_communes() -> list[dict[str, str]]:
    with (DATA / "communes" / "communes-france.csv").open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_commune_reference_agrees_with_the_independent_file(reference: Reference) -> None:
    theirs = independent_communes()
    ours = {c["code"]: c for c in reference.communes}
    # Same codes: every commune, arrondissement and former commune, but Marseille's electoral
    # sectors (SRM, codes like 13055SR01), which are not places where someone lives.
    assert {t["code_insee"] for t in theirs if t["type"] != "SRM"} == set(ours)
    assert len(ours) == 36_912
    by_kind = Counter(c["kind"] for c in ours.values())
    assert by_kind["COM"] == 34_875 and by_kind["ARM"] == 45
    assert len(reference.regions) == 18 and len(reference.departements) == 101

    mairies = mismatched = 0
    for t in theirs:
        c = ours.get(t["code_insee"])
        if c is None or c["kind"] != t["type"]:
            continue  # a former commune that kept the code of the commune it joined
        assert c["name"].endswith(t["nom"]), (c["name"], t["nom"])  # ours has the article
        if t["type"] == "COM":
            assert (c["departement"], c["epci"]) == (t["departement"], t["epci_siren"])
        else:  # territories are those of the commune it belongs to (theirs: none, or its own)
            parent = ours[c["parent"]]
            assert (c["departement"], c["epci"]) == (parent["departement"], parent["epci"])
        if t["type"] == "COM":
            assert c["population"] == (int(t["population_municipale"] or 0) or None) or (
                c["population"] == 0 and t["population_municipale"] == "0"
            )
            assert (
                c["postal_codes"].split() == sorted(t["codes_postaux"].split("|"))
                or not t["codes_postaux"]
            )
        if c["point_source"] == "mairie":
            # The town hall: the same point, within two metres (5 decimals in their file).
            assert (
                km(c["latitude"], c["longitude"], float(t["mairie_lat"]), float(t["mairie_lon"]))
                < 0.002
            )
            mairies += 1
        elif t["mairie_lat"] not in ("", "nan"):
            # A town hall we set aside is far from its commune in their file too.
            mismatched += 1
            assert (
                km(
                    float(t["mairie_lat"]),
                    float(t["mairie_lon"]),
                    float(t["centroid_lat"]),
                    float(t["centroid_lon"]),
                )
                > 2
            )
        if t["centroid_lat"]:
            # Every routing point is in its commune, whatever it came from: near the centroid
            # (Guyane's communes are the size of départements).
            assert km(
                c["latitude"],
                c["longitude"],
                float(t["centroid_lat"]),
                float(t["centroid_lon"]),
            ) < (150 if t["departement"] == "973" else 25)
    assert mairies > 34_000 and mismatched < 1_500
    assert all(
        math.isfinite(c["latitude"]) and math.isfinite(c["longitude"]) for c in ours.values()
    )
    assert ours["72181"]["name"] == "Le Mans" and ours["19272"]["name"] == "Tulle"
    # A commune nouvelle without an outline of its own is located inside its former communes.
    assert ours["14581"]["point_source"] == "communes_deleguees"


# file, format, rows, places created, rows merged, rows rejected, placed at the town hall,
# rejection reasons — each file imported alone into an empty table.
REAL_FILES = [
    ("charente-2023-07-11.v0.json", "schéma v0 (JSON)", 188, 175, 9, 4, 1,
     {("code_insee", "manquant"): 4}),
    ("cnfs-2022-12-02.v0.json", "schéma v0 (JSON)", 4930, 4685, 187, 58, 32,
     {("code_insee", "manquant"): 58}),
    ("france-services-2022-12-01.csv", "liste des France Services (ANCT, CSV)", 2683, 2654, 1,
     28, 6, {("code_insee", "inconnu du référentiel"): 2, ("adresse", "manquante"): 26}),
    ("hinaura-2023-07-24.v0.json", "schéma v0 (JSON)", 687, 673, 7, 7, 1,
     {("code_insee", "manquant"): 7}),
    ("lieux-consolides-v1.csv", "schéma v1 (CSV)", 14049, 9631, 4305, 113, 520,
     {("code_insee", "inconnu du référentiel"): 84, ("adresse", "manquante"): 27,
      ("code_insee", "manquant"): 2}),
    ("paca-hub-du-sud-2024-09-12.v1.json", "schéma v1 (JSON)", 646, 637, 0, 9, 6,
     {("code_insee", "manquant"): 9}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "fmt", "rows", "created", "merged", "rejected", "approximate", "reasons"),
    REAL_FILES,
    ids=[f[0] for f in REAL_FILES],
)
def test_each_real_file(
    engine: Engine,
    name: str,
    fmt: str,
    rows: int,
    created: int,
    merged: int,
    rejected: int,
    approximate: int,
    reasons: dict[tuple[str, str], int],
) -> None:
    source = read_source(PLACES / name)
    with Session(engine) as session:
        report = import_places(session, source)
        stored = session.exec(select(Place)).all()
    assert (report.format, report.rows) == (fmt, rows)
    assert (report.created, report.merged, len(report.rejected)) == (created, merged, rejected)
    assert report.approximate == approximate
    assert created + merged + rejected == rows
    said = Counter((r.field, r.reason.split(" (")[0].split(",")[0]) for r in report.rejected)
    assert dict(said) == reasons
    assert len(stored) == created
    assert 0 < sum(p.approximate_location for p in stored) <= approximate
    # Every place is near its commune, as the independent file locates it: a point more than
    # 40 km from its commune was corrected (swapped back, or moved to the town hall).
    communes = {t["code_insee"]: t for t in independent_communes()}
    for place in stored:
        commune = communes[place.commune]
        lat, lon = (
            commune["centroid_lat"] or commune["mairie_lat"],
            commune["centroid_lon"] or (commune["mairie_lon"]),
        )
        if lat and commune["departement"] != "973":  # Guyane's communes are huge
            assert km(place.latitude, place.longitude, float(lat), float(lon)) < 40 + 25, place


@pytest.mark.parametrize(
    ("name", "missing"),
    [
        ("haute-vienne-2023-04-24.raw.json", "colonne nom absente"),
        ("paca-region-sud-2022.raw.csv", "colonnes adresse, code_postal absentes"),
    ],
)
def test_raw_exports_are_refused_whole(name: str, missing: str) -> None:
    with pytest.raises(FileRejected, match=missing):
        read_source(PLACES / name)


@pytest.mark.usefixtures("cli_env")
def test_consolidated_file_then_the_others_then_orientation(
    engine: Engine, client: TestClient
) -> None:
    runner = CliRunner(env={"COLUMNS": "200"})
    first = runner.invoke(cli, ["places", "import", str(PLACES / "lieux-consolides-v1.csv")])
    assert first.exit_code == 0, first.output
    # Numbers are printed the French way: a narrow no-break space between thousands.
    assert "9\u202f631 lieux sont créés" in first.output and "113 lignes rejetées" in first.output
    again = runner.invoke(cli, ["places", "import", str(PLACES / "lieux-consolides-v1.csv")])
    assert "0 lieux sont créés, 0 mis à jour, 9\u202f631 inchangés" in again.output
    # The France Services list is in the consolidated file: every accepted row is merged.
    fs = runner.invoke(cli, ["places", "import", str(PLACES / "france-services-2022-12-01.csv")])
    assert "0 lieux sont créés" in fs.output
    assert "2\u202f655 lignes décrivent un lieu déjà" in fs.output

    with Session(engine) as session:
        places = {p.id: p.model_copy() for p in session.exec(select(Place)).all()}
        agent_place = next(p for p in places.values() if p.kind == "france_services")
        _, token = create_key(session, Role.AGENT, place_id=agent_place.id, name="agent")
    communes = {t["code_insee"]: t for t in independent_communes()}
    headers = {"Authorization": f"Bearer {token}"}
    for code, town in (("49007", "Angers"), ("23096", "Guéret"), ("40192", "Mont-de-Marsan")):
        body = orientation_body(person={"commune": code, "consent": False})
        response = client.post("/v1/orientations", json=body, headers=headers)
        assert response.status_code == 201, response.text
        referral = response.json()["referral"]
        assert referral is not None, (town, response.json())
        place = places[referral["place"]["id"]]
        assert place.kind == "mediation" and place.accepts_referrals
        mairie = communes[code]
        independent = km(
            float(mairie["mairie_lat"]),
            float(mairie["mairie_lon"]),
            place.latitude,
            place.longitude,
        )
        assert referral["place"]["distance_km"] == pytest.approx(independent, abs=0.05)
        assert independent < 15, (town, place.name, independent)
