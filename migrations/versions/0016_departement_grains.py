"""Tallies by département alone: two more grains of the statistics tallies (migration 0014),
`departement_month` and `departement_day`, whose cells leave the profile and the theme out
('' in both). What national and regional figures group by most (month, département, route)
reads these: a national year at 1,000,000 referrals is 34,199 referral cells (12,287 month
cells, 21,912 day cells for the days around its whole months) instead of 254,810 (184,825 and
69,985), which SQLite took 1.3 s to sum (app.services.stats, `_spans`).

The triggers of 0014 (SQLite) and of 0015 (PostgreSQL, appending deltas) are written again
with the four grains; the new cells are filled from the existing ones (their sums over the
profiles and themes, deltas not yet folded included), in the transaction that installs the
triggers: writers wait on PostgreSQL, and SQLite has one writer.

Revision ID: 0016
Revises: 0015
"""

from collections.abc import Sequence
from typing import Any

from alembic import context, op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# grain: (its period, whether its cells keep the profile and the theme)
GRAINS = {
    "month": ("month", True),
    "day": ("day", True),
    "departement_month": ("month", False),
    "departement_day": ("day", False),
}
COARSE = {g: unit for g, (unit, detailed) in GRAINS.items() if not detailed}


def _revision(number: str) -> Any:
    return context.script.get_revision(number).module


def _key(table: str) -> tuple[str, ...]:
    m0014 = _revision("0014")
    return tuple(m0014.ORIENTATION_KEY if table == "orientation" else m0014.REFERRAL_KEY)


def _sums(table: str) -> tuple[str, ...]:
    return ("n",) if table == "orientation" else ("n", "reoriented", "contacted")


# --- SQLite: 0014's row triggers, with an upsert per grain -----------------------------------


def _sqlite_upserts(table: str, row: str, sign: str) -> str:
    m0014 = _revision("0014")
    department = f"coalesce((SELECT departement FROM commune WHERE code = {row}.commune), '')"
    key, sums = _key(table), _sums(table)
    added = {
        "n": f"{sign}1",
        "reoriented": f"{sign}({row}.previous_referral_id IS NOT NULL)",
        "contacted": f"{sign}({row}.first_contact_hours IS NOT NULL)",
    }
    statements = []
    for grain, (unit, detailed) in GRAINS.items():
        period = m0014._period(unit, f"{row}.day", False)
        profile, theme = (f"{row}.profile", f"{row}.theme") if detailed else ("''", "''")
        if table == "orientation":
            values = f"'{grain}', {period}, {department}, {profile}, {row}.route, {theme}"
        else:
            values = (
                f"'{grain}', {period}, {department}, {profile}, {theme}, {row}.status, "
                f"{row}.accepted_at IS NOT NULL, CASE WHEN {row}.status = 'refusee' "
                f"THEN coalesce({row}.refusal_reason, '') ELSE '' END"
            )
        statements.append(
            f"INSERT INTO {table}_stats_tally ({', '.join(key)}, {', '.join(sums)}) "
            f"VALUES ({values}, {', '.join(added[s] for s in sums)}) "
            f"ON CONFLICT ({', '.join(key)}) "
            f"DO UPDATE SET {', '.join(f'{s} = {s} + excluded.{s}' for s in sums)};"
        )
    return "\n".join(statements)


# --- PostgreSQL: 0015's statement triggers, each row counted in every grain ------------------


def _pg_rows(table: str, rows: str, sign: str) -> str:
    m0014 = _revision("0014")
    period = f"CASE g.unit WHEN 'month' THEN {m0014._month('r.day', True)} ELSE r.day END"
    department = "coalesce(c.departement, '')"
    profile = "CASE WHEN g.detailed THEN r.profile ELSE '' END"
    theme = "CASE WHEN g.detailed THEN r.theme ELSE '' END"
    if table == "orientation":
        values = f"g.grain, {period}, {department}, {profile}, r.route, {theme}, {sign}1"
    else:
        values = (
            f"g.grain, {period}, {department}, {profile}, {theme}, r.status, "
            f"r.accepted_at IS NOT NULL, CASE WHEN r.status = 'refusee' "
            f"THEN coalesce(r.refusal_reason, '') ELSE '' END, {sign}1, "
            f"{sign}(r.previous_referral_id IS NOT NULL)::int, "
            f"{sign}(r.first_contact_hours IS NOT NULL)::int"
        )
    grains = ", ".join(
        f"('{g}', '{unit}', {'true' if detailed else 'false'})"
        for g, (unit, detailed) in GRAINS.items()
    )
    return (
        f"SELECT {values} FROM {rows} r LEFT JOIN commune c ON c.code = r.commune "
        f"CROSS JOIN (VALUES {grains}) AS g(grain, unit, detailed)"
    )


def _backfill(table: str, postgresql: bool) -> str:
    """The coarse cells, summed from the detailed ones (and, on PostgreSQL, their deltas not
    yet folded: the deltas stay as they are, the fold moves them later)."""
    key, sums = _key(table), _sums(table)
    columns = ", ".join((*key, *sums))
    source = f"SELECT {columns} FROM {table}_stats_tally"
    if postgresql:
        source += f" UNION ALL SELECT {columns} FROM {table}_stats_delta"
    grain = "CASE t.grain " + " ".join(f"WHEN '{u}' THEN '{g}'" for g, u in COARSE.items()) + " END"
    values = [
        grain if k == "grain" else "''" if k in ("profile", "theme") else f"t.{k}" for k in key
    ]
    positions = ", ".join(str(i + 1) for i in range(len(key)))
    return (
        f"INSERT INTO {table}_stats_tally ({columns}) "
        f"SELECT {', '.join(values)}, {', '.join(f'sum(t.{s})' for s in sums)} "
        f"FROM ({source}) AS t WHERE t.grain IN ({', '.join(repr(u) for u in COARSE.values())}) "
        f"GROUP BY {positions} HAVING {' OR '.join(f'sum(t.{s}) <> 0' for s in sums)}"
    )


def upgrade() -> None:
    postgresql = op.get_context().dialect.name == "postgresql"
    if postgresql:
        # Writers wait until the triggers count the new grains: a row committed between the
        # backfill and the triggers would be in neither.
        op.execute("LOCK TABLE orientation, referral IN SHARE MODE")
    for table in ("orientation", "referral"):
        op.execute(_backfill(table, postgresql))
        if postgresql:
            m0015 = _revision("0015")
            for event in ("insert", "update", "delete"):
                op.execute(m0015._pg_stats_function(table, event, _pg_rows))
        else:
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER {table}_stats_tally_{event}")
            for statement in _revision("0014")._sqlite_triggers(table, _sqlite_upserts):
                op.execute(statement)


def downgrade() -> None:
    postgresql = op.get_context().dialect.name == "postgresql"
    if postgresql:
        op.execute("LOCK TABLE orientation, referral IN SHARE MODE")
    coarse = ", ".join(repr(g) for g in COARSE)
    for table in ("orientation", "referral"):
        if postgresql:
            m0015 = _revision("0015")
            for event in ("insert", "update", "delete"):
                op.execute(m0015._pg_stats_function(table, event))
            op.execute(f"DELETE FROM {table}_stats_delta WHERE grain IN ({coarse})")
        else:
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER {table}_stats_tally_{event}")
            for statement in _revision("0014")._sqlite_triggers(table):
                op.execute(statement)
        op.execute(f"DELETE FROM {table}_stats_tally WHERE grain IN ({coarse})")
