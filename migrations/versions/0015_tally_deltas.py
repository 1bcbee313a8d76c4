"""Tally deltas on PostgreSQL: the triggers of migrations 0012 and 0014 append what each
statement adds to or takes from the tallies, as rows of their own, instead of updating the
shared cells. Every orientation of a day, a département and a profile updated the same cells
(and every referral of a France Services place its `sent` row), so the orientations of
several processes took turns on those row locks until each commit: on three instances, the
orientation's throughput fell to 0.12x the reference's, 0.19x with no trigger at all. A job
of one process at a time (app.services.stats_tally.fold_tallies) moves the deltas into the
cells in one statement; readers add the deltas not yet moved (the same sums, in the same
statement's snapshot: exact at every moment).

SQLite has one writer at a time and nothing to wait for: its triggers keep updating the cells,
and its delta tables stay empty.

Revision ID: 0015
Revises: 0014
"""

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import context, op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _revision(number: str) -> Any:
    """An earlier migration's module: the triggers it wrote are rewritten from its own parts."""
    return context.script.get_revision(number).module


def _tallies() -> dict[str, tuple[Sequence[str], Sequence[str]]]:
    """Migration 0014's tallies: their key columns and their sums (the deltas have both, no key:
    each row is one statement's part)."""
    m0014 = _revision("0014")
    return {
        "orientation_stats": (m0014.ORIENTATION_KEY, ("n",)),
        "referral_stats": (m0014.REFERRAL_KEY, ("n", "reoriented", "contacted")),
    }


def _columns(keys: Sequence[str], sums: Sequence[str]) -> list[sa.Column[object]]:
    types = {"period_start": sa.Date(), "accepted": sa.Boolean(), "urgent": sa.Boolean()}
    return [
        *(sa.Column(k, types.get(k, sa.String()), nullable=False) for k in keys),
        *(sa.Column(s, sa.Integer(), nullable=False) for s in sums),
    ]


def _pg_stats_function(
    table: str, event: str, pg_rows: Callable[[str, str, str], str] | None = None
) -> str:
    """Migration 0014's statement trigger, appending its grouped sums as delta rows; the rows
    of each cell are 0014's `_pg_rows` unless a later migration gives its own."""
    keys, sums = _tallies()[f"{table}_stats"]
    parts = {
        "insert": [("new_rows", "+")],
        "update": [("old_rows", "-"), ("new_rows", "+")],
        "delete": [("old_rows", "-")],
    }[event]
    pg_rows = pg_rows or _revision("0014")._pg_rows
    columns = ", ".join((*keys, *sums))
    positions = ", ".join(str(i + 1) for i in range(len(keys)))
    union = " UNION ALL ".join(pg_rows(table, rows, sign) for rows, sign in parts)
    return f"""
CREATE OR REPLACE FUNCTION {table}_stats_tally_{event}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {table}_stats_delta ({columns})
    SELECT {", ".join(keys)}, {", ".join(f"sum({s})" for s in sums)}
      FROM ({union}) AS d ({columns})
     GROUP BY {positions}
    HAVING {" OR ".join(f"sum({s}) <> 0" for s in sums)};
    RETURN NULL;
END $$
"""


_PG_REFERRAL_TALLY = """
CREATE OR REPLACE FUNCTION referral_tally_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO referral_tally_delta (side, place_id, status, urgent, count) VALUES
            ('received', OLD.place_id, OLD.status, OLD.urgent, -1),
            ('sent', OLD.origin_place_id, OLD.status, OLD.urgent, -1);
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        INSERT INTO referral_tally_delta (side, place_id, status, urgent, count) VALUES
            ('received', NEW.place_id, NEW.status, NEW.urgent, 1),
            ('sent', NEW.origin_place_id, NEW.status, NEW.urgent, 1);
    END IF;
    RETURN NULL;
END $$
"""


def upgrade() -> None:
    for name, (keys, sums) in _tallies().items():
        op.create_table(f"{name}_delta", *_columns(keys, sums))
    op.create_table(
        "referral_tally_delta", *_columns(("side", "place_id", "status", "urgent"), ("count",))
    )
    if op.get_context().dialect.name != "postgresql":
        return
    for table in ("orientation", "referral"):
        for event in ("insert", "update", "delete"):
            op.execute(_pg_stats_function(table, event))
    op.execute(_PG_REFERRAL_TALLY)


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        # Writers wait: the deltas are moved into the cells, then the triggers update the cells.
        op.execute("LOCK TABLE orientation, referral IN SHARE MODE")
        from app.services.stats_tally import FOLDS

        for statement in FOLDS:
            op.execute(statement)
        m0014 = _revision("0014")
        for table in ("orientation", "referral"):
            for event in ("insert", "update", "delete"):
                op.execute(
                    m0014._pg_function(table, event).replace(
                        "CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"
                    )
                )
        op.execute(
            _revision("0012")._PG_FUNCTION.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")
        )
    for table in ("referral_tally_delta", "referral_stats_delta", "orientation_stats_delta"):
        op.drop_table(table)
