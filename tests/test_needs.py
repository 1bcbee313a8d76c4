"""Routing on the person's needs and the places' capacity, through HTTP on both databases, on
the Corrèze demo places (their schema fields: app/data/lieux-demo-19.csv)."""

import html
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from app.models import Role
from app.places.models import PlaceIn
from app.services.keys import create_key
from tests.conftest import World, count, orientation_body
from tests.test_web import login


def orient(client: TestClient, world: World, needs: dict[str, Any] | None = None) -> Any:
    body = orientation_body(person={"commune": "19272", "consent": False})  # Tulle
    if needs is not None:
        body["needs"] = needs
    answer = client.post("/v1/orientations", json=body, headers=world.auth("agent_tulle"))
    assert answer.status_code == 201, answer.text
    return answer.json()


def place_of(answer: Any) -> str | None:
    return answer["referral"]["place"]["id"] if answer["referral"] else None


def set_place(client: TestClient, world: World, source_id: str, **changes: Any) -> None:
    place_id = world.places[source_id]
    current = client.get(f"/v1/places/{place_id}", headers=world.auth("admin")).json()
    body = {k: v for k, v in current.items() if k in PlaceIn.model_fields} | changes
    answer = client.put(f"/v1/places/{place_id}", json=body, headers=world.auth("admin"))
    assert answer.status_code == 200, answer.text


def test_the_needs_an_orientation_may_state_are_published(client: TestClient) -> None:
    published = client.get("/v1/needs").json()
    assert {"slug": "surdite", "label": "Surdité"} in published["specific"]
    assert {s["slug"] for s in published["public"]} >= {"seniors", "jeunes"}
    assert [m["slug"] for m in published["modality"]] == ["individuel", "collectif", "a_distance"]
    assert published["availability"]["days"][1] == "mardi"


def test_needs_and_availability_change_the_place_chosen_and_say_why(
    client: TestClient, world: World
) -> None:
    tulle, brive = world.places["demo-med-tulle"], world.places["demo-med-brive"]
    plain = orient(client, world)
    assert place_of(plain) == tulle and plain["needs"] is None

    deaf = orient(client, world, {"specific": ["surdite"]})
    assert place_of(deaf) == brive
    assert "besoin_non_couvert:surdite" in deaf["reasons"]
    assert "repond_au_besoin:surdite" in deaf["reasons"]
    assert deaf["needs"]["specific"] == ["surdite"]

    # Tulle's médiathèque opens Tuesday to Saturday: a person free on Monday mornings only.
    monday = orient(client, world, {"availability": [{"day": "lundi", "half": "matin"}]})
    assert place_of(monday) != tulle
    assert "ferme_aux_disponibilites" in monday["reasons"]
    assert "ouvert_aux_disponibilites" in monday["reasons"]
    # Free on Tuesday afternoon: Tulle again.
    tuesday = orient(client, world, {"availability": [{"day": "mardi", "half": "apres_midi"}]})
    assert place_of(tuesday) == tulle

    # Tulle is free under condition: kept for a person who cannot pay.
    assert place_of(orient(client, world, {"free_only": True})) == tulle
    # Tulle gives no help at a distance.
    distant = orient(client, world, {"modality": "a_distance"})
    assert place_of(distant) not in (tulle, None)
    assert "besoin_non_couvert:a_distance" in distant["reasons"]

    # The agent reads back what was recorded.
    again = client.get(f"/v1/orientations/{deaf['id']}", headers=world.auth("agent_tulle"))
    assert again.json()["needs"]["specific"] == ["surdite"]


def test_no_place_meeting_the_needs_within_the_distance_names_the_nearest_that_does(
    client: TestClient, world: World
) -> None:
    # Only Ussel's conseiller (60 km from Tulle) takes care of illettrisme.
    answer = orient(client, world, {"specific": ["illettrisme"]})
    assert answer["referral"] is None
    assert "aucun_lieu_adapte_a_proximite" in answer["reasons"]
    assert answer["nearest_suitable"]["id"] == world.places["demo-med-ussel"]
    assert answer["nearest_suitable"]["distance_km"] > 30
    # Nobody at all: nothing to name.
    none = orient(client, world, {"specific": ["langues_etrangeres_autres"]})
    assert none["referral"] is None and none["nearest_suitable"] is None


def test_unknown_needs_are_refused_in_french_and_store_nothing(
    client: TestClient, world: World
) -> None:
    for needs in (
        {"specific": ["telepathie"]},
        {"modality": "par_pigeon"},
        {"availability": [{"day": "lundi", "half": "soir"}]},
        {"free_only": "oui"},
        {"inconnu": 1},
    ):
        body = orientation_body(needs=needs)
        answer = client.post("/v1/orientations", json=body, headers=world.auth("agent_tulle"))
        assert answer.status_code == 422, needs
        assert answer.headers["content-type"] == "application/problem+json"
        assert "needs" in answer.json()["detail"]
    listed = client.get("/v1/referrals", headers=world.auth("agent_tulle")).json()
    assert listed["items"] == []


def test_a_full_place_and_a_paused_place_are_skipped_then_take_referrals_again(
    client: TestClient, world: World, engine: Engine
) -> None:
    tulle = world.places["demo-med-tulle"]
    set_place(client, world, "demo-med-tulle", capacity=1)
    first = orient(client, world)
    assert place_of(first) == tulle
    second = orient(client, world)
    assert place_of(second) not in (tulle, None) and "lieu_complet" in second["reasons"]
    # The first one closed: room again.
    client.post(
        f"/v1/referrals/{first['referral']['id']}/events",
        json={"status": "refusee", "reason": "pas_de_capacite"},
        headers=world.auth("med_tulle"),
    )
    assert place_of(orient(client, world)) == tulle

    set_place(client, world, "demo-med-tulle", capacity=None)
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    set_place(client, world, "demo-med-tulle", paused_until=tomorrow)
    paused = orient(client, world)
    assert place_of(paused) != tulle and "lieu_en_pause" in paused["reasons"]
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    set_place(client, world, "demo-med-tulle", paused_until=yesterday)
    assert place_of(orient(client, world)) == tulle
    shown = client.get(f"/v1/places/{tulle}", headers=world.auth("admin")).json()
    assert shown["paused_until"] == yesterday and shown["capacity"] is None
    assert shown["modalities"] == ["individuel", "collectif"] and shown["fees"] == (
        "gratuit_sous_condition"
    )
    # An admin's changes go to the place's history as the place's own do; one that changes
    # nothing writes nothing.
    with engine.connect() as connection:
        history = connection.execute(
            text(
                "SELECT field, new_value, actor_role FROM place_event WHERE place_id = :id"
                " ORDER BY id"
            ),
            {"id": tulle},
        ).all()
    assert [tuple(row) for row in history] == [
        ("capacity", "1", "admin"),
        ("capacity", None, "admin"),
        ("paused_until", tomorrow, "admin"),
        ("paused_until", yesterday, "admin"),
    ]
    set_place(client, world, "demo-med-tulle")
    assert count(engine, "place_event") == len(history)


def test_the_coordinators_figures_count_the_needs_stated(client: TestClient, world: World) -> None:
    orient(client, world)
    orient(client, world, {"specific": ["surdite"], "free_only": True})
    orient(client, world, {"specific": ["illettrisme"]})  # none within the distance
    orient(client, world, {"availability": [{"day": "lundi", "half": "matin"}]})
    totals = client.get("/v1/stats/referrals", headers=world.auth("coord")).json()["totals"]
    stated = totals["needs"]
    assert stated["orientations"] == 3 and stated["not_met"] == 1
    assert stated["specific"]["surdite"] == 1 and stated["specific"]["illettrisme"] == 1
    assert stated["free_only"] == 1 and stated["availability"] == 1
    assert totals["orientations"] == 4
    login(client, world, "coord")
    page = html.unescape(client.get("/coordinateur").text)
    assert "Besoins indiqués par l'agent pour 3 orientations, dont 1 sans lieu" in page
    assert "surdité 1" in page and "gratuit seulement 1" in page


def test_coverage_per_need_and_the_places_that_receive_nothing_today(
    client: TestClient, world: World
) -> None:
    auth = world.auth("coord")
    every = client.get("/v1/stats/coverage", headers=auth).json()
    deaf = client.get("/v1/stats/coverage?need=surdite", headers=auth).json()
    assert deaf["filters"]["need"] == "surdite"
    # Only Brive's place takes care of deaf people: farther, more zones blanches.
    assert deaf["totals"]["population_beyond"] > every["totals"]["population_beyond"]
    assert {r["place"]["id"] for r in deaf["communes"] if r["place"]} == {
        world.places["demo-med-brive"]
    }
    assert client.get("/v1/stats/coverage?need=telepathie", headers=auth).status_code == 422
    assert every["totals"]["places_paused"] == 0 and every["totals"]["places_full"] == 0
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    set_place(client, world, "demo-med-tulle", paused_until=tomorrow)
    set_place(client, world, "demo-med-brive", capacity=0)
    totals = client.get("/v1/stats/coverage", headers=auth).json()["totals"]
    assert totals["places_paused"] == 1 and totals["places_full"] == 1
    # The page: the need chosen among its names.
    login(client, world, "coord")
    page = html.unescape(client.get("/coordinateur/couverture?besoin=surdite").text)
    assert "qui répond à ce besoin : surdité" in page
    assert "1 sont en pause et 1 sont complets" in page


@pytest.mark.usefixtures("cli_env")
def test_an_operator_sets_a_capacity_and_a_pause_from_the_command_line(
    client: TestClient, world: World
) -> None:
    from typer.testing import CliRunner

    from app.cli import app as cli

    tulle = world.places["demo-med-tulle"]
    until = (datetime.now(UTC) + timedelta(days=3)).date().isoformat()
    done = CliRunner().invoke(
        cli, ["places", "set", tulle, "--capacity", "2", "--paused-until", until]
    )
    assert done.exit_code == 0, done.output
    assert "capacité" in done.output and "pause" in done.output
    shown = client.get(f"/v1/places/{tulle}", headers=world.auth("admin")).json()
    assert (shown["capacity"], shown["paused_until"]) == (2, until)
    assert "lieu_en_pause" in orient(client, world)["reasons"]
    done = CliRunner().invoke(cli, ["places", "set", tulle, "--no-pause", "--no-capacity"])
    assert done.exit_code == 0, done.output
    assert place_of(orient(client, world)) == tulle
    refused = CliRunner().invoke(cli, ["places", "set", "lieu_inconnu", "--no-pause"])
    assert refused.exit_code == 1 and "Lieu inconnu" in refused.output


def test_the_coverage_page_takes_every_need_or_one(client: TestClient, world: World) -> None:
    login(client, world, "coord")
    every = client.get("/coordinateur/couverture?territoire=&km=30&besoin=")
    assert every.status_code == 200 and "qui répond à ce besoin" not in every.text
    wrong = client.get("/coordinateur/couverture?besoin=telepathie")
    assert wrong.status_code == 422
    assert "Besoin : choisissez une des valeurs proposées" in html.unescape(wrong.text)


def test_a_reorientation_keeps_the_persons_needs(
    client: TestClient, world: World, engine: Engine
) -> None:
    """Refused by the one place within reach that takes care of deaf people, the orientation
    goes to no place that does not (Tulle's is nearer, but does not): none is left."""
    deaf = orient(client, world, {"specific": ["surdite"]})
    assert place_of(deaf) == world.places["demo-med-brive"]
    with Session(engine) as session:
        _, brive = create_key(session, Role.MEDIATEUR, place_id=world.places["demo-med-brive"])
    referral = deaf["referral"]["id"]
    refused = client.post(
        f"/v1/referrals/{referral}/events",
        json={"status": "refusee", "reason": "pas_de_capacite"},
        headers={"Authorization": f"Bearer {brive}"},
    )
    assert refused.status_code == 200, refused.text
    again = client.post(f"/v1/referrals/{referral}/reorient", headers=world.auth("agent_tulle"))
    assert again.status_code == 409, again.text
    assert again.json()["type"].endswith("/aucun-lieu")
