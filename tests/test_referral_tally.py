"""The inbox's counts (GET /v1/referrals/summary) read the referral tally kept by triggers
(migration 0012): whatever referrals are written, changed or deleted, and by whom, they are
the counts made here from the rows themselves. On both databases."""

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from app.db import insert_row, writing
from app.models import Orientation, Referral
from app.models.common import new_id
from app.services.referrals import new_referral
from app.triage.lifecycle import OPEN, ReferralStatus, shown_status
from tests.conftest import World

STATUSES = [s.value for s in ReferralStatus]
# A referral: (index of its place, of its desk, status, urgent, past its deadline)
ROW = st.tuples(
    st.integers(0, 1), st.integers(0, 1), st.sampled_from(STATUSES), st.booleans(), st.booleans()
)
# A change after the insert: (index of the row, new status or None to delete it, urgent)
CHANGE = st.tuples(st.integers(0, 40), st.sampled_from([*STATUSES, None]), st.booleans())


def plain_summary(rows: list[dict[str, Any]], side: str, place: str) -> dict[str, Any]:
    """What the summary says, counted from every row (the computation before the tally)."""
    now = datetime.now(UTC)
    by_status = Counter(dict.fromkeys(STATUSES, 0))
    urgent_open = 0
    for row in rows:
        if row[side] != place:
            continue
        shown = shown_status(ReferralStatus(row["status"]), row["expires_at"] <= now)
        by_status[shown.value] += 1
        urgent_open += 1 if row["urgent"] and shown in OPEN else 0
    return {
        "by_status": dict(by_status),
        "open": sum(by_status[s.value] for s in OPEN),
        "urgent_open": urgent_open,
    }


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(made=st.lists(ROW, max_size=40), changes=st.lists(CHANGE, max_size=15))
def test_summary_is_the_count_of_the_rows(
    engine: Engine,
    world: World,
    client: TestClient,
    made: list[tuple[int, int, str, bool, bool]],
    changes: list[tuple[int, str | None, bool]],
) -> None:
    mediation = [world.places["demo-med-tulle"], world.places["demo-med-ussel"]]
    desks = [world.places["demo-fs-tulle"], world.places["demo-fs-ussel"]]
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    with Session(engine) as session:
        # As the service's writers do (app.db.writing): SQLite's write lock from the start,
        # never a read upgraded to a write that another writer got in between (locked).
        with writing(session):
            key_id = session.execute(text("SELECT id FROM api_key LIMIT 1")).scalar_one()
            session.execute(text("DELETE FROM referral"))
            session.execute(text("DELETE FROM orientation"))
            for place, desk, status, urgent, past in made:
                oid = new_id("ori")
                insert_row(
                    session,
                    Orientation,
                    {
                        "id": oid,
                        "created_at": now,
                        "day": now.date(),
                        "api_key_id": key_id,
                        "origin_place_id": desks[desk],
                        "profile": "partiellement_autonome",
                        "profile_source": "declared",
                        "route": "mediateur",
                        "do_now_at_france_services": False,
                        "reasons": [],
                        "rules_version": "test",
                        "theme": "caf",
                        "urgent": urgent,
                        "already_followed": False,
                        "commune": "19272",
                        "consent": False,
                        "alternatives": [],
                    },
                )
                row = new_referral(
                    orientation_id=oid,
                    place_id=mediation[place],
                    origin_place_id=desks[desk],
                    distance_km=1.0,
                    profile="partiellement_autonome",
                    theme="caf",
                    urgent=urgent,
                    commune="19272",
                    day=now.date(),
                    now=now,
                    ttl_days=14,
                )
                row["status"] = status
                row["expires_at"] = now + timedelta(days=-1 if past else 14)
                insert_row(session, Referral, row)
                rows.append(row)
            session.commit()
        with writing(session):
            # Changes as any writer makes them (the lifecycle, expiry, a purge, an operator).
            for index, new_status, new_urgent in changes:
                if not rows:
                    break
                row = rows[index % len(rows)]
                if new_status is None:
                    session.execute(text("DELETE FROM referral WHERE id = :id"), {"id": row["id"]})
                    rows.remove(row)
                else:
                    session.execute(
                        text("UPDATE referral SET status = :s, urgent = :u WHERE id = :id"),
                        {"s": new_status, "u": new_urgent, "id": row["id"]},
                    )
                    row["status"], row["urgent"] = new_status, new_urgent
            session.commit()

    for name, side, place_id in (
        ("med_tulle", "place_id", mediation[0]),
        ("med_ussel", "place_id", mediation[1]),
        ("agent_tulle", "origin_place_id", desks[0]),
        ("agent_ussel", "origin_place_id", desks[1]),
    ):
        answer = client.get("/v1/referrals/summary", headers=world.auth(name))
        assert answer.status_code == 200, answer.text
        assert answer.json() == plain_summary(rows, side, place_id), name
