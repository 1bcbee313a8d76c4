"""The statistics tallies (migration 0014) say exactly what a scan of the rows says: for
generated orientations and referrals (days on either side of month edges, several départements
and a commune missing from the reference, every status, open ones past their deadline,
accepted or not, refused with or without a reason, re-orientations, first contacts), random
periods, territories and groupings, the document read from the tallies is the scan's, on both
databases. And the triggers keep the tallies equal to a rebuild from the rows through
orientations, transitions, erasures, updates and deletions."""

import sqlite3
import statistics
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, func, or_, select, table, text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from app.config import Settings
from app.db import insert_row
from app.models import Orientation, Referral
from app.models.common import new_id
from app.services import stats
from app.services.commune_reference import Reference
from app.services.communes import import_reference
from app.services.lifecycle import expire_due
from app.services.personal_data import purge
from app.services.referrals import new_referral
from app.services.stats_tally import (
    DELTAS,
    GRAINS,
    fold_tallies,
    orientation_tally,
    rebuild_tallies,
    referral_tally,
)
from app.services.territories import NATIONAL, Territory
from app.triage.lifecycle import ReferralStatus
from tests.conftest import World, orientation_body
from tests.test_stats import parent

# Corrèze (19), Creuse (23), Gironde (33): Nouvelle-Aquitaine (75); Ain (01): another région;
# 99999: in no reference (its rows count nationally, in no département).
COMMUNES = ("19272", "19275", "19031", "23096", "33063", "01053", "99999")
MISSING = COMMUNES[-1]
TERRITORIES = (
    NATIONAL,
    Territory("region", "75", "Nouvelle-Aquitaine"),
    Territory("region", "84", "Auvergne-Rhône-Alpes"),
    Territory("departement", "19", "Corrèze"),
    Territory("departement", "23", "Creuse"),
    Territory("departement", "01", "Ain"),
)
# The département of each commune above, and each territory's.
DEPARTEMENT_OF = {
    "19272": "19",
    "19275": "19",
    "19031": "19",
    "23096": "23",
    "33063": "33",
    "01053": "01",
}
IN_TERRITORY = {
    "national": None,
    "region:75": {"19", "23", "33"},
    "region:84": {"01"},
    "departement:19": {"19"},
    "departement:23": {"23"},
    "departement:01": {"01"},
}
ROUTE_OF = {
    "non_autonome_sans_envie": "france_services",
    "non_autonome_non_refractaire": "mediateur",
    "partiellement_autonome": "mediateur",
    "autonome": "aucune",
}
REASONS = (None, "hors_territoire", "pas_de_capacite", "autre")
FIRST, LAST = date(2025, 11, 20), date(2027, 2, 10)
# Days that sit on the edges of months and years, where a cell ends.
EDGES = tuple(
    d
    for m in ((2025, 12), (2026, 1), (2026, 2), (2026, 3), (2026, 12), (2027, 1))
    for d in (date(*m, 1), date(*m, 1) - timedelta(days=1))
)


def _days() -> st.SearchStrategy[date]:
    return st.one_of(st.sampled_from(EDGES), st.dates(FIRST, LAST))


@st.composite
def _referral(draw: st.DrawFn) -> dict[str, Any]:
    """A referral's stored values, in any combination (the tallies must not depend on the
    lifecycle's: a reason kept on a status other than `refusee` is not counted by reason)."""
    return {
        # Half of them open, whose deadline may have passed.
        "status": draw(
            st.one_of(
                st.sampled_from(("en_attente", "acceptee")),
                st.sampled_from([s.value for s in ReferralStatus]),
            )
        ),
        "past_due": draw(st.booleans()),
        "accepted": draw(st.booleans()),
        # Hours to first contact, in quarters of an hour: a median has values to order.
        "hours": draw(st.one_of(st.none(), st.integers(0, 400).map(lambda q: q / 4))),
        "reason": draw(st.sampled_from(REASONS)),
    }


@st.composite
def _orientation(draw: st.DrawFn) -> dict[str, Any]:
    profile = draw(st.sampled_from(sorted(ROUTE_OF) + ["partiellement_autonome"] * 3))
    chain = (
        draw(st.lists(_referral(), min_size=draw(st.integers(0, 4)) and 1, max_size=3))
        if ROUTE_OF[profile] == "mediateur"
        else []
    )
    return {
        "commune": draw(st.sampled_from((*COMMUNES, MISSING))),
        "day": draw(_days()),
        "profile": profile,
        "theme": draw(st.sampled_from(("caf", "retraite", "impots"))),
        "chain": chain,
    }


@st.composite
def _period(draw: st.DrawFn, days: list[date]) -> stats.Period:
    """Mostly a period about the data's days (a period that holds none proves little)."""
    near = st.tuples(st.sampled_from(days), st.integers(-45, 3)).map(
        lambda drawn: drawn[0] + timedelta(days=drawn[1])
    )
    start = draw(st.one_of(near, _days()))
    length = draw(st.one_of(st.just(0), st.integers(0, 70), st.integers(200, 450)))
    return stats.Period(start, start + timedelta(days=length))


def _keys() -> st.SearchStrategy[tuple[str, ...]]:
    """Up to three keys, in any order (the département among them as often as not)."""
    return st.tuples(st.permutations(sorted(stats.TALLY_KEYS)), st.integers(0, 3)).map(
        lambda drawn: tuple(drawn[0][: drawn[1]])
    )


def _insert(
    session: Session, world: World, made: list[dict[str, Any]], missing: bool = True
) -> None:
    """The rows, as the services write them, in the session's transaction. With `missing`,
    the foreign keys to the commune table are checked only at a commit, which never comes
    (the caller rolls back): the commune missing from the reference can be written."""
    connection = session.connection()
    if missing and connection.dialect.name == "postgresql":
        for table in ("orientation", "referral"):
            name = connection.execute(
                text(
                    "SELECT conname FROM pg_constraint WHERE contype = 'f' "
                    "AND conrelid = CAST(:t AS regclass) AND confrelid = 'commune'::regclass"
                ),
                {"t": table},
            ).scalar_one()
            connection.execute(
                text(f"ALTER TABLE {table} ALTER CONSTRAINT {name} DEFERRABLE INITIALLY DEFERRED")
            )
    elif missing:
        connection.execute(text("PRAGMA defer_foreign_keys = ON"))
    key_id = connection.execute(text("SELECT id FROM api_key LIMIT 1")).scalar_one()
    desk = world.places["demo-fs-tulle"]
    mediation = sorted(v for k, v in world.places.items() if k.startswith("demo-med-"))
    now = datetime.now(UTC)
    for o in made:
        created = datetime.combine(o["day"], datetime.min.time(), UTC) + timedelta(hours=9)
        oid = new_id("ori")
        insert_row(
            session,
            Orientation,
            {
                "id": oid,
                "created_at": created,
                "day": o["day"],
                "api_key_id": key_id,
                "origin_place_id": desk,
                "profile": o["profile"],
                "profile_source": "declared",
                "route": ROUTE_OF[o["profile"]],
                "do_now_at_france_services": False,
                "reasons": [],
                "rules_version": "test",
                "theme": o["theme"],
                "urgent": False,
                "already_followed": False,
                "commune": o["commune"],
                "consent": False,
                "alternatives": [],
            },
        )
        previous = None
        for place, sent in zip(mediation * 3, o["chain"], strict=False):
            row = new_referral(
                orientation_id=oid,
                place_id=place,
                origin_place_id=desk,
                distance_km=1.0,
                profile=o["profile"],
                theme=o["theme"],
                urgent=False,
                commune=o["commune"],
                day=o["day"],
                now=created,
                ttl_days=14,
                previous_referral_id=previous,
            )
            row["status"] = sent["status"]
            row["expires_at"] = now + timedelta(days=-1 if sent["past_due"] else 14)
            row["accepted_at"] = created + timedelta(hours=2) if sent["accepted"] else None
            row["first_contact_hours"] = sent["hours"]
            row["refusal_reason"] = sent["reason"]
            insert_row(session, Referral, row)
            previous = row["id"]


@given(
    made=st.lists(_orientation(), min_size=1, max_size=30),
    data=st.data(),
)
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_the_tallies_count_what_a_scan_counts(
    engine: Engine, world: World, made: list[dict[str, Any]], data: st.DataObject
) -> None:
    asked = data.draw(
        st.lists(
            st.tuples(
                st.sampled_from((NATIONAL, *TERRITORIES)),
                _period([o["day"] for o in made]),
                _keys(),
            ),
            min_size=1,
            max_size=4,
        )
    )
    with Session(engine) as session:
        try:
            _insert(session, world, made)
            for territory, period, keys in asked:
                scanned = stats.referral_stats(session, territory, period, keys, using="scan")
                tallied = stats.referral_stats(session, territory, period, keys, using="tally")
                assert tallied == scanned, (territory, period, keys)
                # The median, against the generated rows themselves; not where a commune
                # missing from the reference (which its foreign key forbids outside this
                # test) has first contacts, since a grouping by département leaves it out.
                inside = IN_TERRITORY[str(territory)]
                hours = [
                    (o["commune"], r["hours"])
                    for o in made
                    for r in o["chain"]
                    if r["hours"] is not None
                    and period.start <= o["day"] <= period.end
                    and (inside is None or DEPARTEMENT_OF.get(o["commune"]) in inside)
                ]
                if all(commune != MISSING for commune, _ in hours):
                    median = round(statistics.median(h for _, h in hours), 1) if hours else None
                    assert scanned["totals"]["median_hours_to_first_contact"] == median
        finally:
            session.rollback()


def test_what_the_tallies_cannot_say_is_scanned(engine: Engine) -> None:
    """Weeks, communes, EPCI, statuses and places, and territories smaller than a
    département: the scan answers, and the tallies refuse to."""
    period = stats.Period(date(2026, 1, 1), date(2026, 12, 31))
    epci = Territory("epci", "200066744", "Haute-Corrèze Communauté")
    with Session(engine) as session:
        for territory, keys in (
            (NATIONAL, ("week",)),
            (NATIONAL, ("status",)),
            (NATIONAL, ("place",)),
            (NATIONAL, ("commune",)),
            (NATIONAL, ("month", "epci")),
            (epci, ()),
            (Territory("commune", "19272", "Tulle"), ("month",)),
        ):
            stats.referral_stats(session, territory, period, keys)  # the scan, by itself
            with pytest.raises(ValueError, match="cannot count"):
                stats.referral_stats(session, territory, period, keys, using="tally")


# --- the triggers keep the tallies exact ----------------------------------------------------


def _cells(session: Session) -> dict[str, set[tuple[Any, ...]]]:
    """Both tallies' cells that count anything (a cell emptied by deletions stays at zero), with
    the deltas not yet folded into them (PostgreSQL)."""
    found = {}
    for tally in (orientation_tally, referral_tally):
        keys = [c for c in tally.c if c.name not in ("n", "reoriented", "contacted")]
        sums = [func.sum(c) for c in tally.c if c.name in ("n", "reoriented", "contacted")]
        query = select(*keys, *sums).group_by(*keys).having(or_(*(s != 0 for s in sums)))
        found[tally.name] = {
            tuple(bool(v) if c.name == "accepted" else v for c, v in zip(tally.c, row, strict=True))
            for row in session.execute(query).all()
        }
    return found


def pending_deltas(session: Session) -> int:
    """The delta rows not yet folded into the cells, of the three tallies."""
    return sum(
        int(session.execute(select(func.count()).select_from(table(name))).scalar_one())
        for name in DELTAS.values()
    )


def _rebuilt(engine: Engine) -> tuple[dict[str, set[tuple[Any, ...]]], dict[str, set[Any]]]:
    """The tallies as the triggers left them, and as a rebuild makes them (rolled back). On
    PostgreSQL the triggers appended deltas since the last call, and the fold moves them into
    the cells without changing a sum."""
    with Session(engine) as session:
        kept = _cells(session)
        assert (pending_deltas(session) > 0) == (engine.dialect.name == "postgresql")
        fold_tallies(session)
        assert _cells(session) == kept
        assert pending_deltas(session) == 0
        rebuild_tallies(session)
        rebuilt = _cells(session)
        session.rollback()
    return kept, rebuilt


def test_the_triggers_keep_what_a_rebuild_makes(
    client: TestClient, world: World, engine: Engine
) -> None:
    def orient(agent: str, profile: str, commune: str) -> dict[str, Any]:
        body = orientation_body(
            assessment={"profile": profile},
            procedure={"theme": "caf", "urgent": False},
            person={
                "commune": commune,
                "consent": True,
                "first_name": "Jeanne",
                "phone": "0601020304",
            },
        )
        answer = client.post("/v1/orientations", json=body, headers=world.auth(agent))
        assert answer.status_code == 201, answer.text
        return answer.json()  # type: ignore[no-any-return]

    def move(who: str, referral: str, status: str, reason: str | None = None) -> Any:
        body = {"status": status, **({"reason": reason} if reason else {})}
        answer = client.post(f"/v1/referrals/{referral}/events", json=body, headers=world.auth(who))
        assert answer.status_code == 200, answer.text
        return answer.json()

    sent = []
    for agent, commune in (("agent_tulle", "19272"), ("agent_ussel", "19275")) * 3:
        made = orient(agent, "non_autonome_non_refractaire", commune)
        sent.append(made["referral"]["id"])
        orient(agent, "autonome", commune)
    kept, rebuilt = _rebuilt(engine)
    assert kept == rebuilt and kept["referral_stats_tally"]

    with Session(engine) as session:  # each referral's place, to act as its médiateur
        place_of = {
            str(r): str(p)
            for r, p in session.execute(text("SELECT id, place_id FROM referral")).all()
        }
    med = {world.places["demo-med-tulle"]: "med_tulle", world.places["demo-med-ussel"]: "med_ussel"}
    who = [med.get(place_of[r]) for r in sent]
    acting = [(r, m) for r, m in zip(sent, who, strict=True) if m]
    assert len(acting) >= 4, who
    (a, ma), (b, mb), (c, mc), (d, md), *_ = acting
    move(ma, a, "refusee", "pas_de_capacite")
    move(mb, b, "acceptee")
    move(mb, b, "contactee")
    move(mb, b, "terminee")
    move(mc, c, "acceptee")
    move(mc, c, "reorientee")  # a new referral of the same orientation
    answer = client.delete(f"/v1/referrals/{d}/person", headers=world.auth(md))
    assert answer.status_code in (200, 204), answer.text
    kept, rebuilt = _rebuilt(engine)
    assert kept == rebuilt

    # The expiry, the retention purge, and writers other than the service: updates of every
    # watched column, then deletions.
    with Session(engine) as session:
        session.execute(
            text(
                "UPDATE referral SET expires_at = :past WHERE status IN ('en_attente', 'acceptee')"
            ),
            {"past": datetime.now(UTC) - timedelta(days=1)},
        )
        session.commit()
    with Session(engine) as session:
        assert expire_due(session) >= 1
    with Session(engine) as session:
        purge(session, Settings(), datetime.now(UTC) + timedelta(days=4000))
    with Session(engine) as session:
        for statement in (
            "UPDATE orientation SET day = :day, commune = '23096' WHERE profile = 'autonome'",
            "UPDATE referral SET day = :day, commune = '23096', profile = 'autonome', "
            "theme = 'retraite' WHERE status = 'terminee'",
            "UPDATE referral SET accepted_at = NULL, first_contact_hours = NULL, "
            "refusal_reason = 'autre' WHERE status = 'terminee'",
            "UPDATE referral SET previous_referral_id = NULL, status = 'refusee' "
            "WHERE previous_referral_id IS NOT NULL",
            "UPDATE referral SET version = version + 1",  # nothing counted changes
        ):
            session.execute(text(statement), {"day": date(2026, 2, 28)})
        session.commit()
    kept, rebuilt = _rebuilt(engine)
    assert kept == rebuilt

    # Deletions (of rows no handoff event names: the log is append-only), a referral before
    # its orientation, one by one and in bulk.
    rows: list[dict[str, Any]] = [
        {
            "commune": commune,
            "day": day,
            "profile": "partiellement_autonome",
            "theme": "caf",
            "chain": [
                {
                    "status": "en_attente",
                    "past_due": False,
                    "accepted": True,
                    "hours": 30.0,
                    "reason": None,
                }
            ]
            * 2,
        }
        for commune in ("19272", "33063")
        for day in (date(2026, 3, 31), date(2026, 4, 1))
    ]
    with Session(engine) as session:
        _insert(session, world, rows, missing=False)
        session.commit()
    kept, rebuilt = _rebuilt(engine)
    assert kept == rebuilt
    unlogged = "NOT IN (SELECT orientation_id FROM handoff_event)"
    with Session(engine) as session:
        one = session.execute(
            text(
                f"SELECT id FROM referral WHERE orientation_id {unlogged} "
                "AND previous_referral_id IS NOT NULL LIMIT 1"
            )
        ).scalar_one()
        session.execute(text("DELETE FROM referral WHERE id = :id"), {"id": one})
        session.commit()
    kept, rebuilt = _rebuilt(engine)
    assert kept == rebuilt
    with Session(engine) as session:
        session.execute(
            text(
                f"DELETE FROM referral WHERE orientation_id {unlogged} "
                "AND previous_referral_id IS NOT NULL"
            )
        )
        session.execute(text(f"DELETE FROM referral WHERE orientation_id {unlogged}"))
        session.execute(text(f"DELETE FROM orientation WHERE id {unlogged}"))
        session.commit()
    kept, rebuilt = _rebuilt(engine)
    assert kept == rebuilt


def test_a_commune_missing_from_the_reference(engine: Engine, world: World) -> None:
    """Its orientations count nationally, and in no département, as the scan counts them."""
    made = [
        {
            "commune": commune,
            "day": date(2026, 1, 31),
            "profile": "partiellement_autonome",
            "theme": "caf",
            "chain": [
                {
                    "status": "acceptee",
                    "past_due": True,
                    "accepted": True,
                    "hours": None,
                    "reason": None,
                }
            ],
        }
        for commune in (MISSING, "19272")
    ] * 5
    period = stats.Period(date(2026, 1, 15), date(2026, 3, 31))
    with Session(engine) as session:
        try:
            _insert(session, world, made)
            for keys in ((), ("departement",), ("month", "departement")):
                scanned = stats.referral_stats(session, NATIONAL, period, keys, using="scan")
                tallied = stats.referral_stats(session, NATIONAL, period, keys, using="tally")
                assert tallied == scanned, keys
                assert [g.get("departement") for g in scanned["groups"]] == (["19"] if keys else [])
                # Grouped by département, the total is that of the départements.
                assert scanned["totals"]["orientations"] == (5 if keys else 10)
        finally:
            session.rollback()


def test_the_migration_backfills_what_the_triggers_keep(tmp_path: Path) -> None:
    """0014 and 0016 on a database with history: their backfills make the cells their triggers
    keep."""
    from alembic import command

    from app.db import alembic_config, make_engine

    path = tmp_path / "old.db"
    engine = make_engine(f"sqlite:///{path}")
    command.upgrade(alembic_config(engine), "head")
    with sqlite3.connect(path) as db:
        for code, department in (("19272", "19"), ("23096", "23")):
            parent(db, "commune", "code", code)
            db.execute("UPDATE commune SET departement = ? WHERE code = ?", (department, code))
        for place in ("p", "m"):
            parent(db, "place", "id", place)
        parent(db, "api_key", "id", "k")
        for i, (commune, day) in enumerate(
            (("19272", "2026-01-31"), ("23096", "2026-02-01"), ("19272", "2026-02-01"))
        ):
            parent(db, "orientation", "id", f"ori_{i}")
            db.execute(
                "UPDATE orientation SET commune = ?, day = ?, api_key_id = 'k', "
                "origin_place_id = 'p', profile = 'autonome', route = 'mediateur', "
                "theme = 'caf' WHERE id = ?",
                (commune, day, f"ori_{i}"),
            )
            for j, status in enumerate(("refusee", "acceptee")):
                parent(db, "referral", "id", f"orv_{i}{j}")
                db.execute(
                    "UPDATE referral SET orientation_id = ?, code = ?, status = ?, "
                    "place_id = 'm', origin_place_id = 'p', commune = ?, day = ?, "
                    "profile = 'autonome', theme = 'caf', refusal_reason = ?, "
                    "accepted_at = ?, previous_referral_id = ? WHERE id = ?",
                    (
                        f"ori_{i}",
                        f"{i}{j}",
                        status,
                        commune,
                        day,
                        "autre" if j == 0 else None,
                        "2026-02-02 10:00:00.000000" if j else None,
                        f"orv_{i}0" if j else None,
                        f"orv_{i}{j}",
                    ),
                )
    with Session(engine) as session:
        kept = _cells(session)
    # 0014's backfill from the rows, then 0016's from 0014's cells (its cells by département
    # alone); and 0016's alone, from the cells its downgrade leaves.
    for before in ("0013", "0015"):
        command.downgrade(alembic_config(engine), before)
        command.upgrade(alembic_config(engine), "head")
        with Session(engine) as session:
            assert _cells(session) == kept
    # By month and by day, in detail and by département alone, three (day, département) cells,
    # two statuses each.
    assert len(kept["referral_stats_tally"]) == 2 * 2 * 3 * 2
    assert {c[0] for c in kept["referral_stats_tally"]} == set(GRAINS)
    engine.dispose()


def test_a_commune_that_changes_departement_moves_its_tallies(
    engine: Engine, world: World, reference: Reference
) -> None:
    """A new commune reference that puts a commune in another département (it happens when
    départements are redrawn) rebuilds the tallies in its transaction: they say what the scan
    says, under the new département."""
    made = [
        {
            "commune": "19272",
            "day": date(2026, 1, 31),
            "profile": "partiellement_autonome",
            "theme": "caf",
            "chain": [
                {
                    "status": "acceptee",
                    "past_due": False,
                    "accepted": True,
                    "hours": 2.0,
                    "reason": None,
                }
            ],
        }
    ] * 6
    period = stats.Period(date(2026, 1, 1), date(2026, 3, 31))
    moved = replace(
        reference,
        communes=[
            {**c, "departement": "23"} if c["code"] == "19272" else c for c in reference.communes
        ],
    )
    with Session(engine) as session:
        _insert(session, world, made, missing=False)
        session.commit()
    try:
        with Session(engine) as session:
            import_reference(session, moved)
        with Session(engine) as session:
            for using in ("scan", "tally"):
                doc = stats.referral_stats(session, NATIONAL, period, ("departement",), using=using)
                assert [(g["departement"], g["orientations"]) for g in doc["groups"]] == [
                    ("23", 6)
                ], using
    finally:
        with Session(engine) as session:
            import_reference(session, reference)  # as the other tests know it
    with Session(engine) as session:
        doc = stats.referral_stats(session, NATIONAL, period, ("departement",), using="tally")
        assert [(g["departement"], g["orientations"]) for g in doc["groups"]] == [("19", 6)]


def test_the_median_of_first_contacts_in_france_and_in_a_territory(
    engine: Engine, world: World
) -> None:
    """The middle value (or the mean of the two middle ones) of the hours to first contact,
    in France (read in the index's order) and in a territory (its rows sorted)."""
    hours = {"19272": [40.0, 1.0, 7.5, 3.0, 90.0], "33063": [2.0, 500.0, 0.25]}
    made = [
        {
            "commune": commune,
            "day": date(2026, 2, 10),
            "profile": "partiellement_autonome",
            "theme": "caf",
            "chain": [
                {
                    "status": "contactee",
                    "past_due": False,
                    "accepted": True,
                    "hours": h,
                    "reason": None,
                }
            ],
        }
        for commune, values in hours.items()
        for h in values
    ]
    period = stats.Period(date(2026, 2, 1), date(2026, 2, 28))
    with Session(engine) as session:
        try:
            _insert(session, world, made, missing=False)
            for territory, values in (
                (NATIONAL, hours["19272"] + hours["33063"]),
                (Territory("region", "75", "Nouvelle-Aquitaine"), hours["19272"] + hours["33063"]),
                (Territory("departement", "19", "Corrèze"), hours["19272"]),
                (Territory("departement", "33", "Gironde"), hours["33063"]),
            ):
                doc = stats.referral_stats(session, territory, period, ())
                assert doc["totals"]["median_hours_to_first_contact"] == round(
                    statistics.median(values), 1
                ), territory
        finally:
            session.rollback()


def test_the_open_referrals_past_due_are_read_through_their_partial_index(
    engine: Engine,
) -> None:
    """SQLite takes migration 0014's partial index on the open referrals' deadlines only for a
    WHERE that writes its terms as the index does (bound parameters are not): the expiry's
    query and the statistics' live read of the past-due ones, joined to the communes, go
    through it (by the commune index instead, national statistics read every referral: 3.8 s
    at 1 M)."""
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL plans a partial index with the parameters' values")
    statements: list[tuple[str, Any]] = []

    def seen(_c: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", seen)
    try:
        with Session(engine) as session:
            expire_due(session)
            period = stats.Period(date(2026, 1, 1), date(2026, 12, 31))
            stats.referral_stats(session, NATIONAL, period, ("departement",))
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    past_due = [(s, p) for s, p in statements if "expires_at <=" in s]
    assert len(past_due) == 2, past_due
    with engine.connect() as connection:
        for statement, parameters in past_due:
            plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            assert "USING INDEX ix_referral_open_expires" in " ".join(
                row[-1] for row in plan.all()
            ), statement
