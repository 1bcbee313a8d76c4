"""The referral lifecycle through HTTP, on SQLite and PostgreSQL: every row of the contract's
table, the refusals, If-Match and ETag, the log, idempotency and concurrent transitions."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from app.cli import app as cli
from app.config import Settings
from app.db import _on_loop
from app.main import create_app
from tests.conftest import World, count, orientation_body

PROBLEM = "application/problem+json"


def _referral(client: TestClient, world: World) -> str:
    created = client.post(
        "/v1/orientations", json=orientation_body(), headers=world.auth("agent_tulle")
    )
    assert created.status_code == 201, created.text
    return str(created.json()["referral"]["id"])


def _move(
    client: TestClient,
    world: World,
    referral: str,
    who: str,
    status: str,
    headers: dict[str, str] | None = None,
    **extra: object,
) -> httpx.Response:
    # TestClient's methods come from httpx.Client through starlette, which mypy reads as Any.
    response: httpx.Response = client.post(
        f"/v1/referrals/{referral}/events",
        json={"status": status, **extra},
        headers={**world.auth(who), **(headers or {})},
    )
    return response


Step = tuple[str, str, str | None]  # who, status, reason

# Paths through the table: (who, status, reason) steps from en_attente. Together they take
# every row of the contract's table at least once.
PATHS: dict[str, list[Step]] = {
    "accepted, contacted, done": [
        ("med_tulle", "acceptee", None),
        ("med_tulle", "contactee", None),
        ("med_tulle", "terminee", "autonome pour ses démarches CAF"),
    ],
    "refused": [("med_tulle", "refusee", "releve_de_france_services")],
    "cancelled by the agent while waiting": [("agent_tulle", "annulee", None)],
    "cancelled by the médiateur once accepted": [
        ("med_tulle", "acceptee", None),
        ("med_tulle", "annulee", None),
    ],
    "cancelled by the agent once accepted": [
        ("med_tulle", "acceptee", None),
        ("agent_tulle", "annulee", None),
    ],
    "cancelled by the médiateur while waiting": [("med_tulle", "annulee", None)],
    "no-show after acceptance": [("med_tulle", "acceptee", None), ("med_tulle", "non_venue", None)],
    "no-show after contact": [
        ("med_tulle", "acceptee", None),
        ("med_tulle", "contactee", None),
        ("med_tulle", "non_venue", None),
    ],
    "handed back after acceptance": [
        ("med_tulle", "acceptee", None),
        ("med_tulle", "reorientee", "à voir avec France Services"),
    ],
    "handed back after contact": [
        ("med_tulle", "acceptee", None),
        ("med_tulle", "contactee", None),
        ("med_tulle", "reorientee", None),
    ],
}


@pytest.mark.parametrize("path", list(PATHS), ids=list(PATHS))
def test_every_row_of_the_table(client: TestClient, world: World, path: str) -> None:
    referral = _referral(client, world)
    seen = client.get(f"/v1/referrals/{referral}", headers=world.auth("med_tulle"))
    tag = seen.headers["etag"]
    previous = "en_attente"
    for who, status, reason in PATHS[path]:
        body = {"reason": reason} if reason else {}
        moved = _move(client, world, referral, who, status, headers={"If-Match": tag}, **body)
        assert moved.status_code == 200, moved.text
        assert moved.json()["status"] == status
        assert moved.headers["etag"] != tag
        tag = moved.headers["etag"]
        again = client.get(f"/v1/referrals/{referral}", headers=world.auth("agent_tulle"))
        assert again.json()["status"] == status and again.headers["etag"] == tag
        previous = status
    log = client.get(f"/v1/referrals/{referral}/events", headers=world.auth("agent_tulle"))
    assert log.status_code == 200
    events = log.json()
    assert events[0]["kind"] == "orientation" and events[0]["to_status"] == "en_attente"
    steps = [(e["actor_role"], e["from_status"], e["to_status"], e["reason"]) for e in events[1:]]
    expected, before = [], "en_attente"
    for who, status, reason in PATHS[path]:
        expected.append((who.split("_")[0].replace("med", "mediateur"), before, status, reason))
        before = status
    assert steps == expected
    assert events == sorted(events, key=lambda e: e["at"])
    assert events[-1]["actor_place"]["name"]
    # A final status is final: nothing moves it any more.
    final = _move(client, world, referral, "med_tulle", "acceptee")
    assert final.status_code == 409
    assert final.json()["current_status"] == previous
    assert final.headers["content-type"] == PROBLEM


def test_refused_transitions_store_nothing(
    client: TestClient, world: World, engine: Engine
) -> None:
    referral = _referral(client, world)
    before = count(engine, "handoff_event")
    cases = [
        ("agent_tulle", {"status": "acceptee"}, 403),  # not the agent's to accept
        ("med_tulle", {"status": "terminee"}, 409),  # not from en_attente
        ("med_tulle", {"status": "expiree"}, 403),  # the service's alone
        ("med_tulle", {"status": "refusee"}, 422),  # no reason
        ("med_tulle", {"status": "refusee", "reason": "trop loin"}, 422),  # not a listed reason
        ("med_tulle", {"status": "perdue"}, 422),  # not a status
        ("med_tulle", {"status": "acceptee", "extra": 1}, 422),
        ("med_ussel", {"status": "acceptee"}, 404),  # another place's referral
        ("agent_ussel", {"status": "annulee"}, 404),  # another place sent it
        ("coord", {"status": "acceptee"}, 403),
    ]
    for who, body, status in cases:
        response = client.post(
            f"/v1/referrals/{referral}/events", json=body, headers=world.auth(who)
        )
        assert response.status_code == status, (who, body, response.text)
        assert response.headers["content-type"] == PROBLEM
    wrong_status = client.post(
        f"/v1/referrals/{referral}/events",
        json={"status": "contactee"},
        headers=world.auth("med_tulle"),
    ).json()
    assert wrong_status["status"] == 409 and wrong_status["current_status"] == "en_attente"
    assert "acceptee" in wrong_status["detail"]  # says what is possible
    assert count(engine, "handoff_event") == before
    state = client.get(f"/v1/referrals/{referral}", headers=world.auth("med_tulle")).json()
    assert state["status"] == "en_attente" and state["version"] == 1


def test_if_match(client: TestClient, world: World) -> None:
    referral = _referral(client, world)
    old = client.get(f"/v1/referrals/{referral}", headers=world.auth("med_tulle")).headers["etag"]
    assert _move(client, world, referral, "med_tulle", "acceptee").status_code == 200
    stale = _move(client, world, referral, "med_tulle", "contactee", headers={"If-Match": old})
    assert stale.status_code == 412 and stale.json()["current_status"] == "acceptee"
    anyone = _move(client, world, referral, "med_tulle", "contactee", headers={"If-Match": "*"})
    assert anyone.status_code == 200


def test_a_retry_with_the_same_key_moves_once(
    client: TestClient, world: World, engine: Engine
) -> None:
    referral = _referral(client, world)
    headers = {**world.auth("med_tulle"), "Idempotency-Key": "accept-1"}
    url = f"/v1/referrals/{referral}/events"
    first = client.post(url, json={"status": "acceptee"}, headers=headers)
    retry = client.post(url, json={"status": "acceptee"}, headers=headers)
    assert first.status_code == retry.status_code == 200
    assert first.json() == retry.json() and first.headers["etag"] == retry.headers["etag"]
    assert count(engine, "handoff_event") == 2  # the orientation's and one transition
    other = client.post(url, json={"status": "contactee"}, headers=headers)
    assert other.status_code == 422


def test_twenty_concurrent_conflicting_transitions(
    client: TestClient, world: World, engine: Engine
) -> None:
    referral = _referral(client, world)
    tag = client.get(f"/v1/referrals/{referral}", headers=world.auth("med_tulle")).headers["etag"]
    start = threading.Barrier(20)

    def attempt(i: int) -> int:
        body = (
            {"status": "acceptee"} if i % 2 else {"status": "refusee", "reason": "pas_de_capacite"}
        )
        headers = {**world.auth("med_tulle"), **({"If-Match": tag} if i % 4 < 2 else {})}
        start.wait()
        response = client.post(f"/v1/referrals/{referral}/events", json=body, headers=headers)
        status: int = response.status_code
        return status

    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(attempt, range(20)))
    assert statuses.count(200) == 1, statuses
    assert set(statuses) <= {200, 409, 412}, statuses
    assert count(engine, "handoff_event") == 2
    final = client.get(f"/v1/referrals/{referral}", headers=world.auth("med_tulle")).json()
    assert final["version"] == 2


def test_the_log_is_only_for_the_two_places(client: TestClient, world: World) -> None:
    referral = _referral(client, world)
    for who, status in (
        ("agent_tulle", 200),
        ("med_tulle", 200),
        ("med_ussel", 404),
        ("agent_ussel", 404),
        ("coord", 403),
    ):
        response = client.get(f"/v1/referrals/{referral}/events", headers=world.auth(who))
        assert response.status_code == status, who


def test_postgresql_refuses_to_rewrite_the_log(
    client: TestClient, world: World, engine: Engine, database_url: str
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("the trigger is PostgreSQL's; on SQLite no code path updates the log")
    _referral(client, world)
    for statement in ("UPDATE handoff_event SET note = 'x'", "DELETE FROM handoff_event"):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
            connection.execute(text(statement))
    assert count(engine, "handoff_event") == 1


# --- expiry ----------------------------------------------------------------------------------


def _age(engine: Engine, referral: str, days: int) -> None:
    """Moves a referral's deadline into the past, as time would."""
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE referral SET expires_at = :at WHERE id = :id"),
            {"at": datetime.now(UTC) - timedelta(days=days), "id": referral},
        )


@pytest.mark.usefixtures("cli_env")
def test_past_due_is_expired_at_once_then_written(
    client: TestClient, world: World, engine: Engine
) -> None:
    waiting, accepted, done = (_referral(client, world) for _ in range(3))
    assert _move(client, world, accepted, "med_tulle", "acceptee").status_code == 200
    assert _move(client, world, done, "med_tulle", "acceptee").status_code == 200
    assert _move(client, world, done, "med_tulle", "contactee").status_code == 200
    for referral in (waiting, accepted, done):
        _age(engine, referral, 1)
    med = world.auth("med_tulle")
    # Never shown as waiting once past due, even before the service writes it.
    assert client.get(f"/v1/referrals/{waiting}", headers=med).json()["status"] == "expiree"
    listed = client.get("/v1/referrals?status=en_attente&status=acceptee", headers=med).json()
    assert listed["items"] == []
    expired = client.get("/v1/referrals?status=expiree", headers=med).json()["items"]
    assert {r["id"] for r in expired} == {waiting, accepted}
    late = _move(client, world, accepted, "med_tulle", "contactee")
    assert late.status_code == 409 and late.json()["current_status"] == "expiree"
    # The command line writes it, with the service's event; contactee has no deadline.
    result = CliRunner().invoke(cli, ["referrals", "expire"])
    assert result.exit_code == 0 and "2 orientations expirées" in result.output
    assert CliRunner().invoke(cli, ["referrals", "expire"]).output.startswith("0 ")
    log = client.get(f"/v1/referrals/{waiting}/events", headers=med).json()
    assert (log[-1]["actor_role"], log[-1]["from_status"], log[-1]["to_status"]) == (
        "service",
        "en_attente",
        "expiree",
    )
    assert client.get(f"/v1/referrals/{done}", headers=med).json()["status"] == "contactee"


def test_the_running_service_expires_on_its_own(
    engine: Engine, world: World, settings: Settings
) -> None:
    settings.expiry_check_seconds = 0.2
    with TestClient(create_app(engine, settings)) as client:
        referral = _referral(client, world)
        _age(engine, referral, 1)
        for _ in range(50):
            with engine.connect() as connection:
                status = connection.execute(
                    text("SELECT status FROM referral WHERE id = :id"), {"id": referral}
                ).scalar_one()
            if status == "expiree":
                break
            time.sleep(0.1)
    assert status == "expiree"


def test_a_backlog_expires_off_the_event_loop(
    engine: Engine, world: World, settings: Settings
) -> None:
    """The running service's expiry writes in a worker thread, SQLite included (where a
    request's write runs on the loop): a backlog of past-due referrals never holds the
    requests. Each expiry UPDATE says whether it ran as an on-loop write (app.db.Db.write)."""
    settings.expiry_check_seconds = 0.2
    on_loop: list[bool] = []

    def seen(*args: Any) -> None:
        statement, params = args[2], args[3]
        if statement.startswith("UPDATE referral") and "expiree" in str(params):
            on_loop.append(_on_loop.get())

    event.listen(engine, "before_cursor_execute", seen)
    try:
        with TestClient(create_app(engine, settings)) as client:
            backlog = [_referral(client, world) for _ in range(3)]
            for referral in backlog:
                _age(engine, referral, 2)
            for _ in range(50):
                if len(on_loop) >= len(backlog):
                    break
                time.sleep(0.1)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert len(on_loop) == len(backlog) and not any(on_loop), on_loop


def test_acceptance_gives_the_place_its_time_again(
    client: TestClient, world: World, engine: Engine
) -> None:
    referral = _referral(client, world)
    _age(engine, referral, -1)  # one day left
    before = client.get(f"/v1/referrals/{referral}", headers=world.auth("med_tulle")).json()
    accepted = _move(client, world, referral, "med_tulle", "acceptee").json()
    assert accepted["expires_at"] > before["expires_at"]


# --- the médiateur's inbox -----------------------------------------------------------------


def test_inbox_filters_sorts_and_counts(client: TestClient, world: World) -> None:
    made = []
    for i in range(5):
        body = orientation_body(procedure={"theme": "caf", "urgent": i in (1, 3)})
        made.append(
            client.post("/v1/orientations", json=body, headers=world.auth("agent_tulle")).json()[
                "referral"
            ]["id"]
        )
    _move(client, world, made[0], "med_tulle", "acceptee")
    _move(client, world, made[4], "med_tulle", "refusee", reason="pas_de_capacite")
    med = world.auth("med_tulle")
    urgent = client.get("/v1/referrals?urgent=true", headers=med).json()["items"]
    assert {r["id"] for r in urgent} == {made[1], made[3]}
    several = client.get("/v1/referrals?status=en_attente&status=acceptee", headers=med).json()
    assert {r["id"] for r in several["items"]} == set(made[:4])
    first = client.get("/v1/referrals?sort=urgent&limit=2", headers=med).json()
    assert [r["id"] for r in first["items"]] == [made[3], made[1]]
    rest = client.get(
        f"/v1/referrals?sort=urgent&limit=2&cursor={first['next_cursor']}", headers=med
    ).json()
    assert [r["id"] for r in rest["items"]] == [made[4], made[2]]
    summary = client.get("/v1/referrals/summary", headers=med).json()
    assert summary["by_status"]["en_attente"] == 3 and summary["by_status"]["acceptee"] == 1
    assert summary["by_status"]["refusee"] == 1
    assert summary["open"] == 4 and summary["urgent_open"] == 2
    other = client.get("/v1/referrals/summary", headers=world.auth("med_ussel")).json()
    assert other["open"] == 0


# --- re-orientation ------------------------------------------------------------------------


def test_a_refused_referral_is_reoriented_elsewhere(
    client: TestClient, world: World, engine: Engine
) -> None:
    created = client.post(
        "/v1/orientations", json=orientation_body(), headers=world.auth("agent_tulle")
    ).json()
    first = created["referral"]
    agent = world.auth("agent_tulle")
    early = client.post(f"/v1/referrals/{first['id']}/reorient", headers=agent)
    assert early.status_code == 409 and early.json()["current_status"] == "en_attente"
    _move(client, world, first["id"], "med_tulle", "refusee", reason="pas_de_capacite")
    assert (
        client.post(
            f"/v1/referrals/{first['id']}/reorient", headers=world.auth("med_tulle")
        ).status_code
        == 403
    )
    again = client.post(f"/v1/referrals/{first['id']}/reorient", headers=agent)
    assert again.status_code == 201, again.text
    second = again.json()
    assert second["previous_referral_id"] == first["id"] and second["status"] == "en_attente"
    assert second["place"]["id"] != first["place"]["id"] and second["code"] != first["code"]
    assert client.post(f"/v1/referrals/{first['id']}/reorient", headers=agent).status_code == 409
    # The orientation shows its current referral; the new one has its own log.
    document = client.get(f"/v1/orientations/{created['id']}", headers=agent).json()
    assert document["referral"]["id"] == second["id"]
    log = client.get(f"/v1/referrals/{second['id']}/events", headers=agent).json()
    assert [e["kind"] for e in log] == ["orientation", "reorientation"]
    # Refused again: never back to a place that refused; a named place is honoured.
    other = client.get(f"/v1/referrals/{second['id']}", headers=agent).json()["place"]["id"]
    with engine.begin() as connection:  # the second place refuses (no key for it here)
        connection.execute(
            text("UPDATE referral SET status = 'refusee' WHERE id = :id"), {"id": second["id"]}
        )
    refused_place = client.post(
        f"/v1/referrals/{second['id']}/reorient",
        json={"place_id": first["place"]["id"]},
        headers=agent,
    )
    assert refused_place.status_code == 422
    third = client.post(f"/v1/referrals/{second['id']}/reorient", headers=agent)
    assert third.status_code == 201, third.text
    assert third.json()["place"]["id"] not in (first["place"]["id"], other)
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE referral SET status = 'refusee' WHERE previous_referral_id = :id"),
            {"id": second["id"]},
        )
    # A named place beyond the distance of any referral (Ussel, 47 km from Tulle) is refused.
    too_far = client.post(
        f"/v1/referrals/{third.json()['id']}/reorient",
        json={"place_id": world.places["demo-med-ussel"]},
        headers=agent,
    )
    assert too_far.status_code == 422 and "au-delà des 30 km" in too_far.text
    taken = {first["place"]["id"], other, third.json()["place"]["id"]}
    named = next(
        world.places[f"demo-med-{name}"]
        for name in ("egletons", "uzerche", "brive", "argentat")  # all within 30 km of Tulle
        if world.places[f"demo-med-{name}"] not in taken
    )
    chosen = client.post(
        f"/v1/referrals/{third.json()['id']}/reorient", json={"place_id": named}, headers=agent
    )
    assert chosen.status_code == 201 and chosen.json()["place"]["id"] == named


# --- every status × every target × both roles, through HTTP ---------------------------------

REACH: dict[str, list[Step] | Literal["aged"]] = {  # how a fresh referral gets to each status
    "en_attente": [],
    "acceptee": [("med_tulle", "acceptee", None)],
    "contactee": [("med_tulle", "acceptee", None), ("med_tulle", "contactee", None)],
    "refusee": [("med_tulle", "refusee", "autre")],
    "annulee": [("agent_tulle", "annulee", None)],
    "non_venue": [("med_tulle", "acceptee", None), ("med_tulle", "non_venue", None)],
    "terminee": [
        ("med_tulle", "acceptee", None),
        ("med_tulle", "contactee", None),
        ("med_tulle", "terminee", None),
    ],
    "reorientee": [("med_tulle", "acceptee", None), ("med_tulle", "reorientee", None)],
    "expiree": "aged",
}
ALLOWED = {  # the contract's table: (from, to) -> roles, as HTTP callers
    ("en_attente", "acceptee"): {"mediateur"},
    ("en_attente", "refusee"): {"mediateur"},
    ("en_attente", "annulee"): {"agent", "mediateur"},
    ("acceptee", "annulee"): {"agent", "mediateur"},
    ("acceptee", "contactee"): {"mediateur"},
    ("acceptee", "non_venue"): {"mediateur"},
    ("contactee", "non_venue"): {"mediateur"},
    ("contactee", "terminee"): {"mediateur"},
    ("acceptee", "reorientee"): {"mediateur"},
    ("contactee", "reorientee"): {"mediateur"},
    ("en_attente", "expiree"): set(),  # the service's: 403 for both
    ("acceptee", "expiree"): set(),
}
STATUSES = list(REACH)


@pytest.mark.parametrize("source", STATUSES)
def test_every_transition_through_http(
    client: TestClient, world: World, engine: Engine, source: str
) -> None:
    outcomes = {}
    for target in STATUSES:
        for who in ("agent_tulle", "med_tulle"):
            referral = _referral(client, world)
            steps = REACH[source]
            if steps == "aged":
                _age(engine, referral, 1)
            else:
                for step_who, status, reason in steps:
                    reached = _move(client, world, referral, step_who, status, reason=reason)
                    assert reached.status_code == 200, reached.text
            reason = "pas_de_capacite" if target == "refusee" else None
            response = _move(client, world, referral, who, target, reason=reason)
            outcomes[(target, who)] = response.status_code
            role = "agent" if who.startswith("agent") else "mediateur"
            roles = ALLOWED.get((source, target))
            expected = 409 if roles is None else 200 if role in roles else 403
            assert response.status_code == expected, (source, target, who, response.text)
            if expected == 409:
                assert response.json()["current_status"] == source
    assert len(outcomes) == 2 * len(STATUSES)
