"""A referral's and an orientation's columns declared once (app.models.columns): every column
written by the fast inserts and the bench fills, every output field copied or computed, and a
column added but not handled caught before any request."""

import warnings
from datetime import UTC, date, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Column, Integer, MetaData, String, Table, text
from sqlalchemy.engine import Engine

from app.models import Orientation, Referral
from app.models.columns import OutputShape, RowShape, column_names, table_of
from app.models.orientation import OrientationOut, ProcedureOut, ReferralBrief
from app.models.referral import REFERRAL_INHERITS, ReferralOut
from app.services import orientation as orientation_service
from app.services import referrals as referral_service
from app.triage import Profile
from bench import load as bench_load
from bench import stats as bench_stats
from tests.conftest import World, orientation_body

ROW_SHAPES = {
    "orientation": orientation_service.NEW_ORIENTATION,
    "referral": referral_service.NEW_REFERRAL,
    "bench.load orientation": bench_load.ORIENTATION_FILL,
    "bench.load referral": bench_load.REFERRAL_FILL,
    "bench.stats orientation": bench_stats.ORIENTATION_FILL,
    "bench.stats referral": bench_stats.REFERRAL_FILL,
}
OUTPUT_SHAPES = (
    orientation_service.ORIENTATION_OUT,
    orientation_service.REFERRAL_BRIEF,
    orientation_service.PROCEDURE_OF_ORIENTATION,
    referral_service.REFERRAL_OUT,
    referral_service.PROCEDURE_OF_REFERRAL,
)


@pytest.mark.parametrize("name", ROW_SHAPES)
def test_every_insert_writes_every_column(name: str) -> None:
    shape = ROW_SHAPES[name]
    assert sorted(shape.names) == sorted(shape.table.c.keys())
    assert len(set(shape.names)) == len(shape.names)


def _widened(column: Column[object]) -> Table:
    """The referral table as a migration adding `column` would leave it."""
    table = table_of(Referral).to_metadata(MetaData())
    table.append_column(column)
    return table


def test_a_required_column_no_use_case_sets_fails_the_shape() -> None:
    sets = referral_service.NEW_REFERRAL.sets
    with pytest.raises(TypeError, match=r"referral\.outcome required"):
        RowShape(
            _widened(Column("outcome", String, nullable=False)),
            Referral.model_fields,
            sets,
            "new_referral",
        )
    # Forgetting a column the model gives no default fails the same way.
    with pytest.raises(TypeError, match=r"referral\.distance_km required"):
        RowShape.of(Referral, [s for s in sets if s != "distance_km"], "new_referral")
    with pytest.raises(TypeError, match="not a column"):
        RowShape.of(Referral, (*sets, "distance"), "new_referral")


def test_a_column_that_may_be_left_out_is_written_or_left_to_the_database() -> None:
    nullable = RowShape(
        _widened(Column("outcome", String, nullable=True)),
        Referral.model_fields,
        referral_service.NEW_REFERRAL.sets,
        "new_referral",
    )
    assert "outcome" in nullable.names
    assert nullable.row(**dict.fromkeys(nullable.sets))["outcome"] is None
    served = RowShape(
        _widened(Column("outcome", Integer, nullable=False, server_default=text("0"))),
        Referral.model_fields,
        referral_service.NEW_REFERRAL.sets,
        "new_referral",
    )
    assert "outcome" not in served.names


def test_a_row_takes_the_model_defaults_and_the_use_case_wins() -> None:
    now = datetime(2026, 3, 2, 9, tzinfo=UTC)
    row = referral_service.new_referral(
        orientation_id="ori_x",
        place_id="lieu_x",
        distance_km=1.5,
        now=now,
        ttl_days=14,
        origin_place_id="lieu_y",
        profile="autonome",
        theme="caf",
        urgent=False,
        commune="19272",
        day=date(2026, 3, 2),
    )
    assert set(row) == set(column_names(Referral))
    assert row["status"] == "en_attente" and type(row["status"]) is str  # the value, for SQL
    assert row["version"] == 1 and row["accepted_at"] is None
    assert row["id"].startswith("orv_") and row["created_at"] == now
    other = referral_service.new_referral(
        orientation_id="ori_x",
        place_id="lieu_x",
        distance_km=1.5,
        now=now,
        ttl_days=14,
        origin_place_id="lieu_y",
        profile="autonome",
        theme="caf",
        urgent=False,
        commune="19272",
        day=date(2026, 3, 2),
    )
    assert other["id"] != row["id"]  # a factory default is called per row
    fill = bench_load.REFERRAL_FILL
    with pytest.raises(ValueError, match="values for the"):
        fill.fill(("orv_x",))


def test_every_output_field_is_copied_or_computed() -> None:
    for shape in OUTPUT_SHAPES:
        assert sorted((*shape.copied, *shape.computed)) == sorted(shape.out.model_fields)
    computed = referral_service.REFERRAL_OUT.computed
    with pytest.raises(TypeError, match=r"ReferralOut\.person: neither a column"):
        OutputShape(ReferralOut, Referral, [c for c in computed if c != "person"])
    with pytest.raises(TypeError, match="no field"):
        OutputShape(ReferralOut, Referral, (*computed, "persons"))

    class Shown(ReferralOut):  # a column newly shown: copied, nothing else to write
        refusal_reason: str | None

    assert "refusal_reason" in OutputShape(Shown, Referral, computed).copied

    class Invented(ReferralOut):  # a field that is no column must be computed
        colour: str

    with pytest.raises(TypeError, match=r"Invented\.colour"):
        OutputShape(Invented, Referral, computed)


def test_an_enum_field_is_copied_into_its_enum() -> None:
    shape = orientation_service.ORIENTATION_OUT
    written = orientation_service.NEW_ORIENTATION
    row = written.row(**dict.fromkeys(written.sets)) | {
        "profile": "autonome",
        "profile_source": "declared",
        "route": "aucune",
        "created_at": datetime(2026, 3, 2, tzinfo=UTC),
        "reasons": [],
        "alternatives": [],
    }
    out = shape.of_row(
        row,
        procedure=ProcedureOut.model_construct(theme="caf", urgent=False),
        consent=None,
        referral=None,
        alternatives=[],
        nearest_suitable=None,
    )
    assert out.profile is Profile.AUTONOME
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a plain str in an enum field warns when dumped
        assert out.model_dump(mode="json")["profile"] == "autonome"


def test_what_a_referral_inherits_is_the_same_column_on_both_tables() -> None:
    for name in REFERRAL_INHERITS:
        assert name in table_of(Orientation).c and name in table_of(Referral).c
        assert (
            Orientation.model_fields[name].annotation == Referral.model_fields[name].annotation
        ), name


def _inherited(engine: Engine, table: str, row_id: str) -> dict[str, object]:
    with engine.connect() as connection:
        found = connection.execute(
            text(f"SELECT {', '.join(REFERRAL_INHERITS)} FROM {table} WHERE id = :id"),
            {"id": row_id},
        ).one()
    return dict(found._mapping)


def test_answers_carry_every_field_and_referrals_inherit_their_orientation(
    client: TestClient, world: World, engine: Engine
) -> None:
    agent = world.auth("agent_tulle")
    created = client.post("/v1/orientations", json=orientation_body(), headers=agent)
    assert created.status_code == 201, created.text
    document = created.json()
    assert set(document) == set(OrientationOut.model_fields)
    assert set(document["referral"]) == set(ReferralBrief.model_fields)
    again = client.get(f"/v1/orientations/{document['id']}", headers=agent).json()
    assert again == document
    first = document["referral"]["id"]
    referral = client.get(f"/v1/referrals/{first}", headers=agent).json()
    assert set(referral) == set(ReferralOut.model_fields)
    assert _inherited(engine, "referral", first) == _inherited(
        engine, "orientation", document["id"]
    )

    refused = client.post(
        f"/v1/referrals/{first}/events",
        json={"status": "refusee", "reason": "pas_de_capacite"},
        headers=world.auth("med_tulle"),
    )
    assert refused.status_code == 200, refused.text
    moved = client.post(f"/v1/referrals/{first}/reorient", headers=agent)
    assert moved.status_code == 201, moved.text
    second = moved.json()
    assert set(second) == set(ReferralOut.model_fields)
    assert second["previous_referral_id"] == first
    assert _inherited(engine, "referral", second["id"]) == _inherited(engine, "referral", first)
