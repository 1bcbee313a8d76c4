"""Personal data, proven on both databases: consent on record, contact data only with consent
and only while needed, erasure on request and by retention leaving no trace in any table,
statistics unchanged by a purge, and every read of contact data in the access log."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import JSON, LargeBinary, String, Text, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import SQLModel
from typer.testing import CliRunner

from app.cli import app as cli
from tests.conftest import World, count, orientation_body

FIRST_NAME, PHONE, EMAIL = "Jeanne-Irène", "0601020399", "jeanne.irene@example.org"
AVAILABILITY = "le jeudi après 16 h 30"
NOTE = "Rappelée le 12, préfère l'atelier du samedi"
PERSONAL = (FIRST_NAME, PHONE, EMAIL, AVAILABILITY)


def person(**changes: object) -> dict[str, object]:
    return {
        "commune": "19272",
        "consent": True,
        "consent_text_version": "2026-11-v1",
        "first_name": FIRST_NAME,
        "phone": "06 01 02 03 99",
        "email": EMAIL,
        "availability": AVAILABILITY,
        **changes,
    }


def traces(engine: Engine, *values: str) -> list[str]:
    """Every text column of every table (JSON included) where one of the values appears."""
    found = []
    with engine.connect() as connection:
        for table in SQLModel.metadata.sorted_tables:
            for column in table.columns:
                kind = getattr(column.type, "impl", column.type)  # sqlmodel's AutoString
                if isinstance(kind, LargeBinary) or not isinstance(kind, String | Text | JSON):
                    continue
                for value in values:
                    hits = connection.execute(
                        text(
                            f"SELECT COUNT(*) FROM {table.name} "
                            f"WHERE CAST({column.name} AS TEXT) LIKE :pattern"
                        ),
                        {"pattern": f"%{value}%"},
                    ).scalar_one()
                    if hits:
                        found.append(f"{table.name}.{column.name}: {value}")
    return found


def orient(client: TestClient, world: World, key: str | None = None, **body: object) -> dict:  # type: ignore[type-arg]
    headers = world.auth("agent_tulle")
    if key:
        headers["Idempotency-Key"] = key
    answer = client.post(
        "/v1/orientations", json=orientation_body(person=person(), **body), headers=headers
    )
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]


def move(
    client: TestClient,
    world: World,
    referral: str,
    status: str,
    who: str = "med_tulle",
    key: str | None = None,
    **extra: str,
) -> dict:  # type: ignore[type-arg]
    headers = world.auth(who)
    if key:
        headers["Idempotency-Key"] = key
    answer = client.post(
        f"/v1/referrals/{referral}/events", json={"status": status, **extra}, headers=headers
    )
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def reads(engine: Engine) -> list[tuple[str, str, str]]:
    with engine.connect() as connection:
        return [
            tuple(row)
            for row in connection.execute(
                text("SELECT role, referral_id, via FROM contact_read ORDER BY id")
            )
        ]


def test_consent_is_on_record_with_its_wording(
    client: TestClient, world: World, engine: Engine
) -> None:
    published = client.get("/v1/consent").json()
    assert published["version"] == "2026-11-v1" and "effacées" in published["text"]
    assert [v["version"] for v in published["versions"]] == ["2026-11-v1"]

    doc = orient(client, world)
    assert doc["consent"]["given"] is True
    assert doc["consent"]["text_version"] == "2026-11-v1"
    with engine.connect() as connection:
        row = connection.execute(
            text(
                "SELECT o.consent_at, o.consent_text_version, k.name, o.origin_place_id "
                "FROM orientation o JOIN api_key k ON k.id = o.api_key_id"
            )
        ).one()
    assert row[0] is not None and row[1] == "2026-11-v1"
    assert row[2] == "agent_tulle" and row[3] == world.places["demo-fs-tulle"]

    unknown = client.post(
        "/v1/orientations",
        json=orientation_body(person=person(consent_text_version="1999-v0")),
        headers=world.auth("agent_tulle"),
    )
    assert unknown.status_code == 422 and "GET /v1/consent" in unknown.text
    assert count(engine, "orientation") == 1


def test_no_contact_data_without_consent_anywhere(
    client: TestClient, world: World, engine: Engine
) -> None:
    headers = {**world.auth("agent_tulle"), "Idempotency-Key": "sans-consentement"}
    refused = client.post(
        "/v1/orientations",
        json=orientation_body(person=person(consent=False, consent_text_version=None)),
        headers=headers,
    )
    assert refused.status_code == 422
    without = client.post(
        "/v1/orientations",
        json=orientation_body(person={"commune": "19272", "consent": False}),
        headers=headers,
    )
    assert without.status_code == 201 and without.json()["consent"]["given"] is False
    seen = client.get(
        f"/v1/referrals/{without.json()['referral']['id']}", headers=world.auth("med_tulle")
    ).json()
    assert seen["person"]["consent"] is False and seen["person"]["consent_at"] is None
    assert traces(engine, *PERSONAL) == []
    assert count(engine, "contact") == 0 and reads(engine) == []


def test_erasure_on_request_leaves_no_trace(
    client: TestClient, world: World, engine: Engine
) -> None:
    doc = orient(client, world, key="guichet-1")
    referral = doc["referral"]["id"]
    accepted = move(client, world, referral, "acceptee", key="accept-1")
    assert accepted["person"]["phone"] == PHONE  # the answer carries it, the record does not
    assert set(traces(engine, *PERSONAL)) == {
        f"contact.{field}: {value}"
        for field, value in zip(
            ("first_name", "phone", "email", "availability"), PERSONAL, strict=True
        )
    }
    move(client, world, referral, "contactee", note=f"{NOTE}, ou au {PHONE} le soir")

    other = client.delete(f"/v1/referrals/{referral}/person", headers=world.auth("med_ussel"))
    assert other.status_code == 404
    erased = client.delete(f"/v1/referrals/{referral}/person", headers=world.auth("med_tulle"))
    assert erased.status_code == 204 and erased.content == b""
    assert traces(engine, *PERSONAL) == []
    again = client.delete(f"/v1/referrals/{referral}/person", headers=world.auth("agent_tulle"))
    assert again.status_code == 204

    events = client.get(f"/v1/referrals/{referral}/events", headers=world.auth("agent_tulle"))
    erasures = [e for e in events.json() if e["kind"] == "erasure"]
    assert len(erasures) == 1  # idempotent: the second request erased nothing
    assert erasures[0]["reason"] == "demande_de_la_personne"
    assert erasures[0]["actor_role"] == "mediateur"

    shown = client.get(f"/v1/referrals/{referral}", headers=world.auth("med_tulle")).json()
    assert shown["person"]["consent"] is True and shown["person"]["erased_at"] is not None
    assert not any(shown["person"][f] for f in ("first_name", "phone", "email", "availability"))
    # The idempotency records of the person's requests went with the data: a retry of the
    # orientation is a new request now, refused nowhere, but stores nothing personal again.
    assert count(engine, "idempotency_record") == 0


def test_replay_shows_the_person_as_now(client: TestClient, world: World, engine: Engine) -> None:
    referral = orient(client, world)["referral"]["id"]
    first = move(client, world, referral, "acceptee", key="accept-2")
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT response FROM idempotency_record")).scalar_one()
    assert PHONE not in str(stored) and FIRST_NAME not in str(stored)
    replay = move(client, world, referral, "acceptee", key="accept-2")
    assert replay == first  # the same answer, the contact filled from the current rows
    assert [r[2] for r in reads(engine)] == ["POST /v1/referrals/{id}/events"] * 2


def test_contact_only_while_the_referral_is_open(
    client: TestClient, world: World, engine: Engine
) -> None:
    referral = orient(client, world)["referral"]["id"]
    move(client, world, referral, "acceptee")
    move(client, world, referral, "contactee")
    done = move(client, world, referral, "terminee", reason="autonome sur ameli.fr")
    assert done["person"]["phone"] is None and done["person"]["consent"] is True
    later = client.get(f"/v1/referrals/{referral}", headers=world.auth("agent_tulle")).json()
    assert later["person"]["phone"] is None
    assert count(engine, "contact") == 1  # kept until the retention time, shown to nobody


@pytest.mark.usefixtures("cli_env")
def test_every_read_of_contact_data_is_logged_and_nothing_else(
    client: TestClient, world: World, engine: Engine
) -> None:
    with_contact = orient(client, world)["referral"]
    no_consent = client.post(
        "/v1/orientations",
        json=orientation_body(person={"commune": "19272", "consent": False}),
        headers=world.auth("agent_tulle"),
    ).json()["referral"]["id"]
    assert reads(engine) == []  # the orientation's answer carries no contact data

    rid = with_contact["id"]
    client.get(f"/v1/referrals/{rid}", headers=world.auth("med_tulle"))
    client.get(f"/v1/referrals/by-code/{with_contact['code']}", headers=world.auth("med_tulle"))
    client.get("/v1/referrals", headers=world.auth("med_tulle"))  # both, one with contact
    client.get(f"/v1/referrals/{rid}", headers=world.auth("agent_tulle"))
    client.get(f"/v1/referrals/{no_consent}", headers=world.auth("med_tulle"))
    client.get(f"/v1/referrals/{rid}", headers=world.auth("med_ussel"))  # 404: nothing read
    client.get(f"/v1/referrals/{rid}/events", headers=world.auth("med_tulle"))
    client.get("/v1/stats/referrals", headers=world.auth("coord"))
    move(client, world, rid, "refusee", reason="pas_de_capacite")  # final: no contact shown
    client.get(f"/v1/referrals/{rid}", headers=world.auth("med_tulle"))
    reoriented = client.post(
        f"/v1/referrals/{rid}/reorient", json={}, headers=world.auth("agent_tulle")
    )
    assert reoriented.status_code == 201 and reoriented.json()["person"]["phone"] == PHONE
    assert reads(engine) == [
        ("mediateur", rid, "GET /v1/referrals/{id}"),
        ("mediateur", rid, "GET /v1/referrals/by-code/{code}"),
        ("mediateur", rid, "GET /v1/referrals"),
        ("agent", rid, "GET /v1/referrals/{id}"),
        ("agent", reoriented.json()["id"], "POST /v1/referrals/{id}/reorient"),
    ]

    printed = CliRunner().invoke(cli, ["audit", "--referral", rid])
    assert printed.exit_code == 0
    lines = printed.output.strip().splitlines()
    assert len(lines) == 1 + 4 and lines[0].startswith("quand (UTC)\tclé\trôle")
    assert all(rid in line for line in lines[1:])
    since = CliRunner().invoke(cli, ["audit", "--since", "2999-01-01"])
    assert since.output.strip().count("\n") == 0  # the header alone


def _backdate(engine: Engine, table: str, column: str, days: int, where: str = "1=1") -> None:
    with engine.begin() as connection:
        rows = connection.execute(text(f"SELECT id, {column} FROM {table} WHERE {where}")).all()
        for row_id, value in rows:
            value = value if isinstance(value, datetime) else datetime.fromisoformat(value)
            if value.tzinfo is None:
                value = value.replace(tzinfo=UTC)
            connection.execute(
                text(f"UPDATE {table} SET {column} = :at WHERE id = :id"),
                {"at": value - timedelta(days=days), "id": row_id},
            )


@pytest.mark.usefixtures("cli_env")
def test_retention_purge_and_statistics_unchanged(
    client: TestClient, world: World, engine: Engine
) -> None:
    finished = orient(client, world)["referral"]["id"]
    move(client, world, finished, "acceptee")
    move(client, world, finished, "contactee", note=NOTE)
    move(client, world, finished, "terminee", reason="fait sa déclaration seule, " + NOTE[:8])
    refused_doc = client.post(
        "/v1/orientations",
        json=orientation_body(
            assessment={
                "answers": {
                    "usage_appareil": "jamais",
                    "courriel": "non",
                    "identifiants": "non",
                    "demarches_en_ligne": "jamais",
                    "envie_apprendre": "oui",
                }
            },
            person=person(first_name="Paulette", phone="0611223344", email=None),
        ),
        headers=world.auth("agent_tulle"),
    ).json()
    refused = refused_doc["referral"]["id"]
    move(client, world, refused, "refusee", reason="pas_de_capacite", note=NOTE + " (bis)")
    still_open = orient(client, world)["referral"]["id"]  # en_attente: its contact stays

    def stats() -> tuple[bytes, bytes]:
        query = "/v1/stats/referrals?group_by=month,profile,status,place"
        auth = world.auth("coord")
        return (
            client.get(query, headers=auth).content,
            client.get(query + "&format=csv", headers=auth).content,
        )

    before = stats()
    runner = CliRunner()
    assert "0 coordonnées effacées" in runner.invoke(cli, ["purge"]).output  # nothing due yet

    # 31 days after the end of two accompaniments: their contact data goes, not the open one's.
    _backdate(engine, "referral", "updated_at", 31, f"id IN ('{finished}', '{refused}')")
    _backdate(engine, "orientation", "created_at", 31)
    purged = runner.invoke(cli, ["purge"])
    assert purged.exit_code == 0 and "2 coordonnées effacées" in purged.output, purged.output
    assert traces(engine, "Paulette", "0611223344") == []
    with engine.connect() as connection:
        left = connection.execute(text("SELECT orientation_id FROM contact")).scalars().all()
    open_orientation = client.get(
        f"/v1/referrals/{still_open}", headers=world.auth("med_tulle")
    ).json()["orientation_id"]
    assert left == [open_orientation]
    events = client.get(f"/v1/referrals/{finished}/events", headers=world.auth("agent_tulle"))
    assert events.json()[-1]["kind"] == "erasure"
    assert events.json()[-1]["reason"] == "duree_de_conservation"
    assert events.json()[-1]["actor_role"] == "service"

    # Two years on: every record is stripped of what is personal; the refusal's code stays.
    _backdate(engine, "orientation", "created_at", 731)
    assert "3 dossiers anonymisés" in runner.invoke(cli, ["purge"]).output
    assert traces(engine, *PERSONAL, "Paulette", "0611223344", NOTE[:20], "jamais") == []
    with engine.connect() as connection:
        assert (
            connection.execute(
                text(
                    "SELECT COUNT(*) FROM orientation "
                    "WHERE answers IS NOT NULL AND CAST(answers AS TEXT) <> 'null'"
                )
            ).scalar_one()
            == 0
        )
        reasons = connection.execute(
            text(
                "SELECT to_status, reason FROM handoff_event WHERE reason IS NOT NULL "
                "AND kind = 'transition'"
            )
        ).all()
    assert [tuple(r) for r in reasons] == [("refusee", "pas_de_capacite")]
    assert stats() == before  # byte for byte, JSON and CSV
    last = runner.invoke(cli, ["purge"]).output
    assert "0 coordonnées effacées" in last and "0 dossiers anonymisés" in last


def test_the_logs_are_append_only_on_postgresql(
    client: TestClient, world: World, engine: Engine
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("the triggers are PostgreSQL's; on SQLite no code path changes the logs")
    rid = orient(client, world)["referral"]["id"]
    move(client, world, rid, "acceptee", note=NOTE)
    client.get(f"/v1/referrals/{rid}", headers=world.auth("med_tulle"))
    for statement in (
        "UPDATE contact_read SET role = 'admin'",
        "DELETE FROM contact_read",
        "UPDATE handoff_event SET to_status = 'terminee' WHERE to_status = 'acceptee'",
        "UPDATE handoff_event SET note = 'autre chose' WHERE note IS NOT NULL",
        "DELETE FROM handoff_event",
    ):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
            connection.execute(text(statement))
    # The one change allowed: erasing free text.
    with engine.begin() as connection:
        erased = connection.execute(
            text("UPDATE handoff_event SET note = NULL WHERE note IS NOT NULL")
        )
    assert erased.rowcount == 1


def test_migration_drops_contact_data_from_stored_answers(tmp_path: Path) -> None:
    """Answers of transitions stored by the previous release carried the contact data: 0006
    removes it and ties each record to its orientation (erased with the person's data)."""
    import json
    import sqlite3

    from alembic import command

    from app.db import alembic_config, make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    command.upgrade(alembic_config(engine), "0005")
    answer = {
        "id": "orv_1",
        "orientation_id": "ori_1",
        "status": "acceptee",
        "person": {
            "consent": True,
            "first_name": FIRST_NAME,
            "phone": PHONE,
            "email": EMAIL,
            "availability": AVAILABILITY,
        },
    }
    with sqlite3.connect(tmp_path / "old.db") as db:
        db.execute(
            "INSERT INTO api_key (id, name, role, token_hash, prefix, created_at) "
            "VALUES ('k', '', 'mediateur', 'h', 'p', '2026-01-01 00:00:00')"
        )
        for i, body in enumerate((answer, {"id": "ori_2", "referral": None})):
            db.execute(
                "INSERT INTO idempotency_record (api_key_id, key, request_hash, status_code, "
                "response, created_at) VALUES ('k', ?, 'h', 200, ?, '2026-01-01 00:00:00')",
                (f"k{i}", json.dumps(body)),
            )
    command.upgrade(alembic_config(engine), "head")
    assert traces(engine, *PERSONAL) == []
    with engine.connect() as connection:
        tied = (
            connection.execute(text("SELECT orientation_id FROM idempotency_record ORDER BY id"))
            .scalars()
            .all()
        )
    assert tied == ["ori_1", "ori_2"]
    engine.dispose()
