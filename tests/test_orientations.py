"""The front-desk orientation through HTTP, on SQLite and PostgreSQL."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from app.config import Settings
from app.models import HandoffEvent
from tests.conftest import World, count, orientation_body


def orient(client: TestClient, world: World, who: str = "agent_tulle", **changes: object):  # type: ignore[no-untyped-def]
    return client.post(
        "/v1/orientations", json=orientation_body(**changes), headers=world.auth(who)
    )


@pytest.mark.parametrize(
    ("profile", "urgent", "followed", "route", "do_now", "referred"),
    [
        ("non_autonome_sans_envie", True, False, "france_services", True, False),
        ("non_autonome_non_refractaire", True, False, "mediateur", True, True),
        ("non_autonome_non_refractaire", False, False, "mediateur", False, True),
        ("partiellement_autonome", False, False, "mediateur", False, True),
        ("partiellement_autonome", True, True, "mediateur", True, False),
        ("autonome", True, False, "aucune", False, False),
    ],
)
def test_typology_rules(
    client: TestClient,
    world: World,
    engine: Engine,
    profile: str,
    urgent: bool,
    followed: bool,
    route: str,
    do_now: bool,
    referred: bool,
) -> None:
    response = orient(
        client,
        world,
        assessment={"profile": profile},
        procedure={"theme": "impots", "urgent": urgent},
        already_followed=followed,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["profile"] == profile and body["profile_source"] == "declared"
    assert (body["route"], body["do_now_at_france_services"]) == (route, do_now)
    assert (body["referral"] is not None) == referred
    assert body["rules_version"]
    assert response.headers["location"] == f"/v1/orientations/{body['id']}"
    assert count(engine, "referral") == int(referred)
    if followed:
        assert "deja_suivi_par_un_mediateur" in body["reasons"]


def test_referral_goes_to_nearest_suitable_place_with_code(
    client: TestClient, world: World
) -> None:
    body = orient(client, world).json()
    referral = body["referral"]
    assert referral["status"] == "en_attente"
    assert referral["place"]["id"] == world.places["demo-med-tulle"]
    assert referral["place"]["address"] == "Quai Baluze"
    assert referral["place"]["hours_text"] == "Du mardi au samedi : 10h00–12h30 et 14h00–18h00"
    code = referral["code"]
    assert len(code) == 7 and code[3] == "-" and not set(code) & set("0O1IL5S8BZ2UV")
    distances = [a["distance_km"] for a in body["alternatives"]]
    assert distances == sorted(distances) and len(distances) == 3
    assert all(d >= referral["place"]["distance_km"] for d in distances)


@pytest.mark.parametrize(
    ("commune", "theme", "expected"),
    [
        ("19275", "caf", "demo-med-ussel"),  # Ussel: its own conseiller numérique
        ("19028", "caf", "demo-med-bort"),  # Bort-les-Orgues
        # Lubersac's place takes no referrals: Uzerche (~13 km) before Objat (~20 km).
        ("19121", "caf", "demo-med-uzerche"),
        # Treignac's only place offers creative workshops, not procedures: on to Uzerche.
        ("19269", "retraite", "demo-med-uzerche"),
        ("19269", "numerique_quotidien", "demo-med-uzerche"),
        # Brive: its own EPN offers procedures and professional integration.
        ("19031", "france_travail", "demo-med-brive"),
    ],
)
def test_nearest_place_on_real_coordinates(
    client: TestClient, world: World, commune: str, theme: str, expected: str
) -> None:
    person = {"commune": commune, "consent": False}
    body = orient(client, world, person=person, procedure={"theme": theme, "urgent": False}).json()
    assert body["referral"]["place"]["id"] == world.places[expected], body
    assert world.places["demo-med-lubersac"] not in [a["id"] for a in body["alternatives"]]


def test_no_place_within_distance_still_answers(
    client: TestClient, world: World, settings: Settings, engine: Engine
) -> None:
    settings.max_referral_distance_km = 3
    response = orient(client, world, person={"commune": "19255", "consent": False})  # Seilhac
    assert response.status_code == 201
    body = response.json()
    assert body["route"] == "mediateur" and body["referral"] is None
    assert "aucun_lieu_de_mediation_a_proximite" in body["reasons"]
    assert count(engine, "orientation") == 1 and count(engine, "referral") == 0


def test_diagnostic_answers_compute_the_profile(client: TestClient, world: World) -> None:
    questions = client.get("/v1/diagnostic").json()["questions"]
    assert {q["id"] for q in questions} >= {"usage_appareil", "courriel", "envie_apprendre"}
    lowest = {q["id"]: q["answers"][0]["id"] for q in questions}
    willing = {**lowest, "envie_apprendre": "oui"}
    body = orient(client, world, assessment={"answers": willing}).json()
    assert (body["profile"], body["profile_source"]) == (
        "non_autonome_non_refractaire",
        "diagnostic",
    )
    unwilling = orient(client, world, assessment={"answers": lowest}).json()
    assert (unwilling["profile"], unwilling["route"]) == (
        "non_autonome_sans_envie",
        "france_services",
    )


def test_handoff_event_written_with_the_orientation(
    client: TestClient, world: World, engine: Engine
) -> None:
    body = orient(client, world).json()
    orient(client, world, assessment={"profile": "non_autonome_sans_envie"})
    with Session(engine) as session:
        events = session.exec(select(HandoffEvent).order_by(col(HandoffEvent.id))).all()
    assert len(events) == 2
    first, second = events
    assert (first.orientation_id, first.referral_id) == (body["id"], body["referral"]["id"])
    assert (first.kind, first.actor_role, first.to_status, first.route) == (
        "orientation",
        "agent",
        "en_attente",
        "mediateur",
    )
    assert first.actor_place_id == world.places["demo-fs-tulle"]
    assert (second.referral_id, second.route) == (None, "france_services")


def test_get_orientation_returns_the_same_document(client: TestClient, world: World) -> None:
    created = orient(client, world).json()
    again = client.get(f"/v1/orientations/{created['id']}", headers=world.auth("agent_tulle"))
    assert again.status_code == 200 and again.json() == created


def test_contact_needs_consent(client: TestClient, world: World, engine: Engine) -> None:
    person = {"commune": "19272", "consent": False, "phone": "0601020304"}
    response = orient(client, world, person=person)
    assert response.status_code == 422
    problem = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert "consentement" in problem["errors"][0]["msg"]
    assert count(engine, "orientation") == 0 and count(engine, "contact") == 0


def test_contact_shown_only_with_consent(client: TestClient, world: World) -> None:
    with_consent = orient(client, world).json()["referral"]["id"]
    without = orient(client, world, person={"commune": "19272", "consent": False}).json()
    seen = client.get(f"/v1/referrals/{with_consent}", headers=world.auth("med_tulle")).json()
    consent_at = seen["person"].pop("consent_at")
    assert consent_at.startswith(seen["created_at"][:10])
    assert seen["person"] == {
        "consent": True,
        "consent_text_version": "2026-11-v1",  # the current wording, when none is named
        "erased_at": None,
        "first_name": "Jeanne",
        "phone": "0601020304",
        "email": None,
        "availability": "mardi matin",
    }
    hidden = client.get(
        f"/v1/referrals/{without['referral']['id']}", headers=world.auth("med_tulle")
    ).json()
    assert hidden["person"] == {
        "consent": False,
        "consent_at": None,
        "consent_text_version": None,
        "erased_at": None,
        "first_name": None,
        "phone": None,
        "email": None,
        "availability": None,
    }


def test_idempotent_retry(client: TestClient, world: World, engine: Engine) -> None:
    headers = {**world.auth("agent_tulle"), "Idempotency-Key": "guichet-42"}
    first = client.post("/v1/orientations", json=orientation_body(), headers=headers)
    retry = client.post("/v1/orientations", json=orientation_body(), headers=headers)
    assert first.status_code == retry.status_code == 201
    assert retry.json() == first.json()
    assert count(engine, "orientation") == 1 and count(engine, "referral") == 1
    other = client.post(
        "/v1/orientations", headers=headers, json=orientation_body(already_followed=True)
    )
    assert other.status_code == 422 and other.json()["type"].endswith("idempotence")
    assert count(engine, "orientation") == 1


def test_concurrent_retries_make_one_orientation(
    client: TestClient, world: World, engine: Engine
) -> None:
    headers = {**world.auth("agent_tulle"), "Idempotency-Key": "double-clic"}
    start = threading.Barrier(4)

    def post() -> dict[str, object]:
        start.wait()
        response = client.post("/v1/orientations", json=orientation_body(), headers=headers)
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: post(), range(4)))
    assert all(a == answers[0] for a in answers)
    assert count(engine, "orientation") == 1 and count(engine, "handoff_event") == 1


def test_crash_mid_request_leaves_nothing(
    client: TestClient, world: World, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.db import insert_row as real_insert
    from app.services import orientation

    written: list[str] = []

    def insert(session: Session, model: type, row: dict[str, object]) -> None:
        real_insert(session, model, row)
        written.append(model.__name__)

    def crash(*_: object, **__: object) -> None:  # the orientation, contact, referral are in
        raise RuntimeError("disk full while writing the handoff log")

    monkeypatch.setattr(orientation, "insert_row", insert)
    monkeypatch.setattr(orientation, "record_handoff", crash)
    response = orient(client, world)
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "disk" not in response.text
    assert written == ["Orientation", "Contact", "Referral"]
    for table in ("orientation", "referral", "contact", "handoff_event"):
        assert count(engine, table) == 0, table


def test_orientations_arriving_together_commit_together_and_each_stands_alone(
    client: TestClient, world: World, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite the orientations of one turn of the event loop share a transaction (app.db,
    group commit), each in a savepoint: one whose attempt fails half-way (its referral's code
    taken, after its orientation was written) is undone alone and drawn again, and every
    answer is committed, once."""
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL writes in the thread pool, a transaction each")
    from app.services import referrals

    first = orient(client, world)
    assert first.status_code == 201, first.text
    taken = first.json()["referral"]["code"]
    draws = iter(range(10_000))
    real_code = referrals.new_code

    def every_third_taken() -> str:
        return taken if next(draws) % 3 == 0 else real_code()

    monkeypatch.setattr(referrals, "new_code", every_third_taken)
    commits: list[object] = []

    def committed(connection: object) -> None:
        commits.append(connection)

    event.listen(engine, "commit", committed)
    start = threading.Barrier(8)

    def post(i: int) -> list[dict[str, object]]:
        start.wait()
        answers = []
        for _ in range(5):
            response = orient(client, world, procedure={"theme": "caf", "urgent": i % 2 == 0})
            assert response.status_code == 201, response.text
            answers.append(response.json())
        return answers

    try:
        with ThreadPoolExecutor(8) as pool:
            answers = [a for batch in pool.map(post, range(8)) for a in batch]
    finally:
        event.remove(engine, "commit", committed)
    assert len(commits) < len(answers) == 40  # some of them shared a commit
    assert count(engine, "orientation") == count(engine, "referral") == 41
    assert count(engine, "handoff_event") == 41
    codes = [a["referral"]["code"] for a in answers]  # type: ignore[index]
    assert taken not in codes and len(set(codes)) == 40
    for answer in answers[::7]:
        again = client.get(f"/v1/orientations/{answer['id']}", headers=world.auth("agent_tulle"))
        assert again.json() == answer


BAD_INPUTS: list[tuple[str, bytes | None, dict[str, object] | None]] = [
    ("malformed JSON", b'{"assessment": ', None),
    ("not an object", b"[1, 2]", None),
    ("unknown profile", None, {"assessment": {"profile": "expert"}}),
    (
        "both profile and answers",
        None,
        {"assessment": {"profile": "autonome", "answers": {"courriel": "oui"}}},
    ),
    ("neither", None, {"assessment": {}}),
    ("incomplete diagnostic", None, {"assessment": {"answers": {"courriel": "oui"}}}),
    ("unknown theme", None, {"procedure": {"theme": "cuisine", "urgent": True}}),
    ("urgent as a string", None, {"procedure": {"theme": "caf", "urgent": "oui"}}),
    ("unknown commune", None, {"person": {"commune": "99999", "consent": False}}),
    ("malformed commune", None, {"person": {"commune": "Tulle", "consent": False}}),
    ("bad phone", None, {"person": {"commune": "19272", "consent": True, "phone": "12"}}),
    ("bad email", None, {"person": {"commune": "19272", "consent": True, "email": "jeanne@"}}),
    ("unknown field", None, {"secu": "1 80 01 19 272 001 42"}),
    (
        "NUL character",
        None,
        {"person": {"commune": "19272", "consent": True, "first_name": "Jea\u0000nne"}},
    ),
    ("NaN literal", b'{"assessment": {"profile": NaN}}', None),
    ("oversized", b'{"x": "' + b"a" * 70_000 + b'"}', None),
]


@pytest.mark.parametrize(
    ("raw", "changes"), [pytest.param(raw, changes, id=label) for label, raw, changes in BAD_INPUTS]
)
def test_bad_input_is_a_french_problem_and_stores_nothing(
    client: TestClient,
    world: World,
    engine: Engine,
    raw: bytes | None,
    changes: dict[str, object] | None,
) -> None:
    headers = {**world.auth("agent_tulle"), "Content-Type": "application/json"}
    if raw is not None:
        response = client.post("/v1/orientations", content=raw, headers=headers)
    else:
        response = client.post(
            "/v1/orientations", json=orientation_body(**changes or {}), headers=headers
        )
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == response.status_code and problem["title"] and problem["type"]
    assert problem["detail"] and "Field required" not in response.text
    if response.status_code == 422:
        assert problem["errors"] and all(e["msg"] and e["loc"] for e in problem["errors"])
    assert count(engine, "orientation") == 0 and count(engine, "handoff_event") == 0


def test_error_messages_say_what_to_fix(client: TestClient, world: World) -> None:
    person = {"commune": "19272", "consent": True, "email": "jeanne@", "first_name": "x" * 81}
    problem = orient(client, world, person=person).json()
    messages = {tuple(e["loc"]): e["msg"] for e in problem["errors"]}
    assert messages[("body", "person", "email")].startswith("Adresse électronique invalide")
    assert messages[("body", "person", "first_name")] == (
        "Texte trop long : 80 caractères au maximum."
    )
    assert "person.email" in problem["detail"] and "person.first_name" in problem["detail"]
