"""Roles and scopes: 401, 403 and 404 exactly as the contract says."""

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from app.models import ApiKey
from app.services.keys import revoke_key
from tests.conftest import World, orientation_body


@pytest.mark.usefixtures("world")
def test_no_or_unknown_token_is_401(client: TestClient) -> None:
    for headers in ({}, {"Authorization": "Bearer psl_nope"}, {"Authorization": "Basic abc"}):
        response = client.get("/v1/referrals", headers=headers)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"] == "Bearer"


def test_revoked_key_is_401(client: TestClient, world: World, engine) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/v1/referrals", headers=world.auth("agent_tulle")).status_code == 200
    with Session(engine) as session:
        key = session.exec(select(ApiKey).where(ApiKey.name == "agent_tulle")).one()
        revoke_key(session, key.id)
    assert client.get("/v1/referrals", headers=world.auth("agent_tulle")).status_code == 401


def test_wrong_role_is_403(client: TestClient, world: World) -> None:
    for who in ("med_tulle", "coord", "admin"):
        response = client.post("/v1/orientations", json=orientation_body(), headers=world.auth(who))
        assert response.status_code == 403, who
        assert "rôle" in response.json()["detail"]
    assert client.get("/v1/referrals", headers=world.auth("coord")).status_code == 403


def test_other_places_referrals_are_404(client: TestClient, world: World) -> None:
    created = client.post(
        "/v1/orientations", json=orientation_body(), headers=world.auth("agent_tulle")
    ).json()
    referral_id = created["referral"]["id"]
    for who, status in (
        ("agent_tulle", 200),
        ("med_tulle", 200),
        ("agent_ussel", 404),
        ("med_ussel", 404),
    ):
        response = client.get(f"/v1/referrals/{referral_id}", headers=world.auth(who))
        assert response.status_code == status, who
    missing = client.get("/v1/referrals/orv_missing", headers=world.auth("med_ussel"))
    foreign = client.get(f"/v1/referrals/{referral_id}", headers=world.auth("med_ussel"))
    assert missing.json()["detail"] == foreign.json()["detail"]
    assert (
        client.get(
            f"/v1/orientations/{created['id']}", headers=world.auth("agent_ussel")
        ).status_code
        == 404
    )


def test_lists_show_only_own_place(client: TestClient, world: World) -> None:
    tulle = client.post(
        "/v1/orientations", json=orientation_body(), headers=world.auth("agent_tulle")
    ).json()
    ussel_person = {"commune": "19275", "consent": False}
    ussel = client.post(
        "/v1/orientations",
        json=orientation_body(person=ussel_person),
        headers=world.auth("agent_ussel"),
    ).json()

    def ids(who: str) -> list[str]:
        page = client.get("/v1/referrals", headers=world.auth(who)).json()
        return [r["id"] for r in page["items"]]

    assert ids("med_tulle") == [tulle["referral"]["id"]]
    assert ids("med_ussel") == [ussel["referral"]["id"]]
    assert ids("agent_tulle") == [tulle["referral"]["id"]]
    assert ids("agent_ussel") == [ussel["referral"]["id"]]


def test_referral_list_paginates_newest_first(client: TestClient, world: World) -> None:
    made = [
        client.post(
            "/v1/orientations", json=orientation_body(), headers=world.auth("agent_tulle")
        ).json()["referral"]["id"]
        for _ in range(5)
    ]
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/referrals", params=params, headers=world.auth("med_tulle")).json()
        seen += [r["id"] for r in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(made) and len(seen) == 5
    created = [
        client.get(f"/v1/referrals/{i}", headers=world.auth("med_tulle")).json()["created_at"]
        for i in seen
    ]
    assert created == sorted(created, reverse=True)
    filtered = client.get(
        "/v1/referrals", params={"status": "acceptee"}, headers=world.auth("med_tulle")
    ).json()
    assert filtered["items"] == []
    bad = client.get("/v1/referrals", params={"cursor": "%%%"}, headers=world.auth("med_tulle"))
    assert bad.status_code == 400 and bad.headers["content-type"] == "application/problem+json"
    wrong_status = client.get(
        "/v1/referrals", params={"status": "perdue"}, headers=world.auth("med_tulle")
    )
    assert wrong_status.status_code == 422


def test_referral_has_etag(client: TestClient, world: World) -> None:
    created = client.post(
        "/v1/orientations", json=orientation_body(), headers=world.auth("agent_tulle")
    ).json()
    response = client.get(
        f"/v1/referrals/{created['referral']['id']}", headers=world.auth("med_tulle")
    )
    assert response.headers["etag"].startswith('"') and response.json()["status"] == "en_attente"


def test_mediateur_finds_a_referral_by_its_code(client: TestClient, world: World) -> None:
    created = client.post(
        "/v1/orientations", json=orientation_body(), headers=world.auth("agent_tulle")
    ).json()
    code = created["referral"]["code"]
    for typed in (code, code.lower(), code.replace("-", ""), f" {code[:3]} {code[4:]} "):
        response = client.get(f"/v1/referrals/by-code/{typed}", headers=world.auth("med_tulle"))
        assert response.status_code == 200, typed
        assert response.json()["id"] == created["referral"]["id"]
    other_place = client.get(f"/v1/referrals/by-code/{code}", headers=world.auth("med_ussel"))
    assert other_place.status_code == 404
    assert (
        client.get("/v1/referrals/by-code/AAA-AAA", headers=world.auth("med_tulle")).json()[
            "detail"
        ]
        == other_place.json()["detail"]
    )
    agent = client.get(f"/v1/referrals/by-code/{code}", headers=world.auth("agent_tulle"))
    assert agent.status_code == 403
