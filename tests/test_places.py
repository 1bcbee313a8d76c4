"""Places: nearest-first search, admin writes, and the import command."""

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session
from typer.testing import CliRunner

from app.cli import app as cli
from app.models import Commune
from app.services.cache import invalidate
from tests.conftest import World, count

PLACE = {
    "name": "Espace numérique de Lapleau",
    "kind": "mediation",
    "address": "Place de la Mairie",
    "postal_code": "19550",
    "commune": "19106",
    "latitude": 45.2995,
    "longitude": 2.1515,
    "services": ["Aide aux démarches administratives"],
    "phone": "05 55 00 30 01",
    "email": "numerique.lapleau@example.org",
    "hours": "Mo 09:00-12:00",
}


def test_places_near_a_commune_nearest_first(client: TestClient, world: World) -> None:
    response = client.get(
        "/v1/places", params={"near": "19275", "kind": "mediation"}, headers=world.auth("med_tulle")
    )
    assert response.status_code == 200
    places = response.json()
    assert places[0]["id"] == world.places["demo-med-ussel"]
    distances = [p["distance_km"] for p in places]
    assert distances == sorted(distances)
    assert {p["kind"] for p in places} == {"mediation"}
    within = client.get(
        "/v1/places", params={"near": "19275", "max_km": 15}, headers=world.auth("agent_tulle")
    ).json()
    assert within and all(p["distance_km"] <= 15 for p in within)
    service = "Insertion professionnelle via le numérique"
    pro = client.get(
        "/v1/places",
        params={"near": "19275", "service": service},
        headers=world.auth("agent_tulle"),
    ).json()
    assert pro and all(service in p["services"] for p in pro)


def test_places_without_commune_by_name(client: TestClient, world: World) -> None:
    headers = world.auth("coord")
    listed = client.get("/v1/places", params={"kind": "france_services"}, headers=headers).json()
    names = [p["name"] for p in listed]
    assert len(names) == 4 and names == sorted(names)
    assert all(p["distance_km"] is None for p in listed)
    loisirs = "Loisirs et créations numériques"
    only = client.get("/v1/places", params={"service": loisirs}, headers=headers).json()
    assert [p["id"] for p in only] == [world.places["demo-med-treignac"]]
    assert len(client.get("/v1/places", params={"limit": 3}, headers=headers).json()) == 3
    pointless = client.get("/v1/places", params={"max_km": 10}, headers=headers)
    assert pointless.status_code == 422
    assert pointless.json()["errors"][0]["loc"] == ["query", "max_km"]


def test_places_errors(client: TestClient, world: World) -> None:
    assert client.get("/v1/places", params={"near": "19275"}).status_code == 401
    unknown = client.get("/v1/places", params={"near": "99999"}, headers=world.auth("coord"))
    assert unknown.status_code == 422 and "99999" in unknown.json()["detail"]
    missing = client.get("/v1/places/lieu_missing", headers=world.auth("coord"))
    assert missing.status_code == 404


def test_admin_creates_and_replaces_places(client: TestClient, world: World, engine) -> None:  # type: ignore[no-untyped-def]
    denied = client.post("/v1/places", json=PLACE, headers=world.auth("agent_tulle"))
    assert denied.status_code == 403
    once = {**world.auth("admin"), "Idempotency-Key": "lapleau"}
    created = client.post("/v1/places", json=PLACE, headers=once)
    assert created.status_code == 201, created.text
    retried = client.post("/v1/places", json=PLACE, headers=once)
    assert retried.status_code == 201 and retried.json() == created.json()
    assert count(engine, "place") == len(world.places) + 1
    reused = client.post("/v1/places", json={**PLACE, "name": "Autre"}, headers=once)
    assert reused.status_code == 422
    assert client.get(f"/v1/places/{created.json()['id']}", headers=once).status_code == 200
    place_id = created.json()["id"]
    replaced = client.put(
        f"/v1/places/{place_id}",
        json={**PLACE, "accepts_referrals": False},
        headers=world.auth("admin"),
    )
    assert replaced.status_code == 200 and replaced.json()["accepts_referrals"] is False
    bad = client.post("/v1/places", json={**PLACE, "latitude": 123}, headers=world.auth("admin"))
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["body", "latitude"]


def test_place_coordinates_must_be_numbers(client: TestClient, world: World) -> None:
    headers = {**world.auth("admin"), "Content-Type": "application/json"}
    # NaN is not JSON (RFC 8259): refused as such, before any field is read.
    raw = json.dumps(PLACE).replace("45.2995", "NaN").encode()
    response = client.post("/v1/places", content=raw, headers=headers)
    assert response.status_code == 400 and "JSON valide" in response.json()["detail"]
    as_text = client.post("/v1/places", json={**PLACE, "latitude": "45,2995"}, headers=headers)
    assert as_text.status_code == 422
    assert as_text.json()["errors"][0]["loc"][-1] == "latitude"


@pytest.mark.usefixtures("cli_env")
def test_communes_import_from_a_file(tmp_path: Path, engine: Engine) -> None:
    before = count(engine, "commune")
    source = tmp_path / "communes.csv"
    source.write_text(
        "code_insee,nom,departement,latitude,longitude,codes_postaux,epci_siren,population\n"
        "99001,Essai-sur-Fichier,99,45.1,1.5,99100|99101,,12\n"
        "99002,Autre-Essai,99,45.2,1.6,99200,,\n",
        encoding="utf-8",
    )
    try:
        runner = CliRunner()
        result = runner.invoke(cli, ["communes", "import", str(source)])
        assert result.exit_code == 0, result.output
        assert "2 communes : 2 ajoutées, 0 mises à jour, 0 inchangées" in result.output
        again = runner.invoke(cli, ["communes", "import", str(source)])
        assert "0 ajoutées, 0 mises à jour, 2 inchangées" in again.output
        with Session(engine) as session:
            commune = session.get(Commune, "99001")
            assert commune is not None
            assert (commune.postal_codes, commune.population) == ("99100 99101", 12)
            assert commune.point_source == "fichier"
        broken = tmp_path / "broken.csv"
        lines = source.read_text(encoding="utf-8").splitlines()
        broken.write_text("\n".join([lines[0], lines[1].replace("99001", "99003"),
                                      lines[2].replace("45.2", "nord")]) + "\n")  # fmt: skip
        refused = runner.invoke(cli, ["communes", "import", str(broken)])
        assert refused.exit_code == 1 and "ligne 3" in refused.output, refused.output
        assert count(engine, "commune") == before + 2  # nothing of the broken file
    finally:
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM commune WHERE code LIKE '990%'"))
        invalidate(engine, "commune")
