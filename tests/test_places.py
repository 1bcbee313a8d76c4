"""Places: nearest-first search, admin writes, and the import command."""

import json
from pathlib import Path

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from app.cli import app as cli
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


CSV_HEADER = (
    "id,nom,adresse,code_postal,code_insee,commune,latitude,longitude,services,"
    "dispositif_programmes_nationaux\n"
)


def test_import_reports_rejected_rows(tmp_path: Path, world: World, engine, cli_env) -> None:  # type: ignore[no-untyped-def]
    before = count(engine, "place")
    source = tmp_path / "lieux.csv"
    source.write_text(
        CSV_HEADER
        + "a1,EPN de Meyssac,Rue de la Mairie,19500,19138,Meyssac,45.0557,1.6739,"
        + "Aide aux démarches administratives|Maîtrise des outils numériques du quotidien,"
        + "Conseillers numériques\n"
        + "a2,Sans coordonnées,Place,19500,19138,Meyssac,,,,\n"
        + "a3,Code postal faux,Place,195,19138,Meyssac,45.0,1.6,,\n"
        + "a4,France Services de Meyssac,Avenue,19500,19138,Meyssac,45.0557,1.6739,,"
        + "France Services\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(cli, ["places", "import", str(source)])
    assert result.exit_code == 0, result.output
    assert "2 lieux importés" in result.output and "2 lignes rejetées" in result.output
    assert "latitude manquante" in result.output and "code_postal invalide" in result.output
    assert count(engine, "place") == before + 2
    again = CliRunner().invoke(cli, ["places", "import", str(source)])
    assert "0 créés, 2 mis à jour" in again.output
    assert count(engine, "place") == before + 2


def test_import_json(tmp_path: Path, world: World, engine, cli_env) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "lieux.json"
    source.write_text(
        json.dumps(
            [
                {
                    "id": "j1",
                    "nom": "Point numérique de Beynat",
                    "adresse": "Le bourg",
                    "code_postal": "19190",
                    "code_insee": "19023",
                    "commune": "Beynat",
                    "latitude": 45.1242,
                    "longitude": 1.7239,
                    "services": ["Aide aux démarches administratives"],
                    "courriels": ["a@example.org"],
                },
                {"nom": "Incomplet"},
            ]
        ),
        encoding="utf-8",
    )
    result = CliRunner().invoke(cli, ["places", "import", str(source)])
    assert result.exit_code == 0, result.output
    assert "1 lieux importés" in result.output and "adresse manquante" in result.output
    unreadable = tmp_path / "broken.json"
    unreadable.write_text("[{", encoding="utf-8")
    assert CliRunner().invoke(cli, ["places", "import", str(unreadable)]).exit_code == 1


def test_place_coordinates_must_be_numbers(client: TestClient, world: World) -> None:
    headers = {**world.auth("admin"), "Content-Type": "application/json"}
    # NaN is not JSON (RFC 8259): refused as such, before any field is read.
    raw = json.dumps(PLACE).replace("45.2995", "NaN").encode()
    response = client.post("/v1/places", content=raw, headers=headers)
    assert response.status_code == 400 and "JSON valide" in response.json()["detail"]
    as_text = client.post("/v1/places", json={**PLACE, "latitude": "45,2995"}, headers=headers)
    assert as_text.status_code == 422
    assert as_text.json()["errors"][0]["loc"][-1] == "latitude"


def test_communes_import(tmp_path: Path, engine, cli_env) -> None:  # type: ignore[no-untyped-def]
    from app.services.communes import DEMO_COMMUNES

    before = count(engine, "commune")
    lines = DEMO_COMMUNES.read_text(encoding="utf-8").splitlines()
    again = tmp_path / "communes.csv"
    again.write_text("\n".join(lines[:4]) + "\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["communes", "import", str(again)])
    assert result.exit_code == 0 and "3 communes importées" in result.output
    broken = tmp_path / "broken.csv"
    broken.write_text(lines[0] + "\n" + lines[1].replace("19001", "Affieux") + "\n")
    refused = CliRunner().invoke(cli, ["communes", "import", str(broken)])
    assert refused.exit_code == 1 and "ligne 2" in refused.output
    assert count(engine, "commune") == before
