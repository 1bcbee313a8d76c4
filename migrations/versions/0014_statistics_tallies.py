"""Statistics tallies: the orientations and referrals counted by month and by day, by
département of the person's commune and by what statistics group them by, kept by triggers in
the transaction of every insert, change and delete (so exact with several instances, and for
every writer: the service, the command line, a bulk COPY). National and regional figures read
these few thousand cells instead of scanning every referral (app.services.stats).

A commune not in the commune table counts under the département '' (statistics by
département leave it out, as their join on the commune table does). The month of a cell is
its first day. `refusal_reason` is '' unless the referral is refused: only refusals are
counted by reason. Also a partial index for the open referrals past their deadline, which
statistics read live (they show as `expiree` before the service writes it).

Revision ID: 0014
Revises: 0013
"""

from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ORIENTATION_KEY = ("grain", "period_start", "departement", "profile", "route", "theme")
REFERRAL_KEY = (
    "grain",
    "period_start",
    "departement",
    "profile",
    "theme",
    "status",
    "accepted",
    "refusal_reason",
)
GRAINS = ("month", "day")
OPEN = sa.text("status IN ('en_attente', 'acceptee')")


def _month(day: str, postgresql: bool) -> str:
    return (
        f"({day} - (extract(day FROM {day})::int - 1))"
        if postgresql
        else (f"strftime('%Y-%m-01', {day})")
    )


def _period(grain: str, day: str, postgresql: bool) -> str:
    return _month(day, postgresql) if grain == "month" else day


def _backfill(grain: str, postgresql: bool) -> list[str]:
    period = _period(grain, "r.day", postgresql)
    department = "coalesce(c.departement, '')"
    return [
        f"INSERT INTO orientation_stats_tally ({', '.join(ORIENTATION_KEY)}, n) "
        f"SELECT '{grain}', {period}, {department}, r.profile, r.route, r.theme, count(*) "
        f"FROM orientation r LEFT JOIN commune c ON c.code = r.commune GROUP BY 2, 3, 4, 5, 6",
        f"INSERT INTO referral_stats_tally ({', '.join(REFERRAL_KEY)}, n, reoriented, "
        f"contacted) SELECT '{grain}', {period}, {department}, r.profile, r.theme, r.status, "
        f"r.accepted_at IS NOT NULL, CASE WHEN r.status = 'refusee' "
        f"THEN coalesce(r.refusal_reason, '') ELSE '' END, count(*), "
        f"count(r.previous_referral_id), count(r.first_contact_hours) "
        f"FROM referral r LEFT JOIN commune c ON c.code = r.commune "
        f"GROUP BY 2, 3, 4, 5, 6, 7, 8",
    ]


# --- SQLite: a trigger per row (one writer at a time: no lock order to keep) ----------------


def _sqlite_upserts(table: str, row: str, sign: str) -> str:
    department = f"coalesce((SELECT departement FROM commune WHERE code = {row}.commune), '')"
    statements = []
    for grain in GRAINS:
        period = _period(grain, f"{row}.day", False)
        if table == "orientation":
            key, sums = ORIENTATION_KEY, {"n": f"{sign}1"}
            values = f"'{grain}', {period}, {department}, {row}.profile, {row}.route, {row}.theme"
        else:
            key = REFERRAL_KEY
            sums = {
                "n": f"{sign}1",
                "reoriented": f"{sign}({row}.previous_referral_id IS NOT NULL)",
                "contacted": f"{sign}({row}.first_contact_hours IS NOT NULL)",
            }
            values = (
                f"'{grain}', {period}, {department}, {row}.profile, {row}.theme, {row}.status, "
                f"{row}.accepted_at IS NOT NULL, CASE WHEN {row}.status = 'refusee' "
                f"THEN coalesce({row}.refusal_reason, '') ELSE '' END"
            )
        statements.append(
            f"INSERT INTO {table}_stats_tally ({', '.join(key)}, {', '.join(sums)}) "
            f"VALUES ({values}, {', '.join(sums.values())}) ON CONFLICT ({', '.join(key)}) "
            f"DO UPDATE SET {', '.join(f'{s} = {s} + excluded.{s}' for s in sums)};"
        )
    return "\n".join(statements)


# What a cell depends on: an update that changes none of these leaves the tallies alone.
WATCHED = {
    "orientation": {
        c: f"OLD.{c} IS NOT NEW.{c}" for c in ("day", "commune", "profile", "route", "theme")
    },
    "referral": {
        **{
            c: f"OLD.{c} IS NOT NEW.{c}"
            for c in ("day", "commune", "profile", "theme", "status", "refusal_reason")
        },
        **{
            c: f"(OLD.{c} IS NULL) IS NOT (NEW.{c} IS NULL)"
            for c in ("accepted_at", "previous_referral_id", "first_contact_hours")
        },
    },
}


def _sqlite_triggers(
    table: str, upserts: Callable[[str, str, str], str] | None = None
) -> list[str]:
    """The row triggers of `table`; each writes `upserts(table, row, sign)` (this migration's
    `_sqlite_upserts` unless a later migration gives its own grains)."""
    watched = WATCHED[table]
    upserts = upserts or _sqlite_upserts
    return [
        f"CREATE TRIGGER {table}_stats_tally_insert AFTER INSERT ON {table} BEGIN\n"
        f"{upserts(table, 'NEW', '+')}\nEND",
        f"CREATE TRIGGER {table}_stats_tally_update AFTER UPDATE OF {', '.join(watched)} "
        f"ON {table} WHEN {' OR '.join(watched.values())} BEGIN\n"
        f"{upserts(table, 'OLD', '-')}\n{upserts(table, 'NEW', '+')}\nEND",
        f"CREATE TRIGGER {table}_stats_tally_delete AFTER DELETE ON {table} BEGIN\n"
        f"{upserts(table, 'OLD', '-')}\nEND",
    ]


# --- PostgreSQL: a trigger per statement, over its transition tables -------------------------
# One INSERT … ON CONFLICT per statement that writes the table, whatever its number of rows
# (a bulk COPY or the expiry of many referrals adds its sums once), and the cells in key order:
# two transactions lock the cells they share in the same order, after their own rows, so an
# orientation, a transition and the expiry cannot deadlock on the tallies.


def _pg_rows(table: str, rows: str, sign: str) -> str:
    period = f"CASE g.grain WHEN 'month' THEN {_month('r.day', True)} ELSE r.day END"
    department = "coalesce(c.departement, '')"
    if table == "orientation":
        values = f"g.grain, {period}, {department}, r.profile, r.route, r.theme, {sign}1"
    else:
        values = (
            f"g.grain, {period}, {department}, r.profile, r.theme, r.status, "
            f"r.accepted_at IS NOT NULL, CASE WHEN r.status = 'refusee' "
            f"THEN coalesce(r.refusal_reason, '') ELSE '' END, {sign}1, "
            f"{sign}(r.previous_referral_id IS NOT NULL)::int, "
            f"{sign}(r.first_contact_hours IS NOT NULL)::int"
        )
    return (
        f"SELECT {values} FROM {rows} r LEFT JOIN commune c ON c.code = r.commune "
        f"CROSS JOIN (VALUES ('month'), ('day')) AS g(grain)"
    )


def _pg_function(table: str, event: str) -> str:
    key = ORIENTATION_KEY if table == "orientation" else REFERRAL_KEY
    sums = ("n",) if table == "orientation" else ("n", "reoriented", "contacted")
    parts = {
        "insert": [_pg_rows(table, "new_rows", "+")],
        "update": [_pg_rows(table, "old_rows", "-"), _pg_rows(table, "new_rows", "+")],
        "delete": [_pg_rows(table, "old_rows", "-")],
    }[event]
    columns = ", ".join((*key, *sums))
    positions = ", ".join(str(i + 1) for i in range(len(key)))
    return f"""
CREATE FUNCTION {table}_stats_tally_{event}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {table}_stats_tally ({columns})
    SELECT {", ".join(key)}, {", ".join(f"sum({s})" for s in sums)}
      FROM ({" UNION ALL ".join(parts)}) AS d ({columns})
     GROUP BY {positions}
    HAVING {" OR ".join(f"sum({s}) <> 0" for s in sums)}
     ORDER BY {positions}
    ON CONFLICT ({", ".join(key)}) DO UPDATE SET
        {", ".join(f"{s} = {table}_stats_tally.{s} + EXCLUDED.{s}" for s in sums)};
    RETURN NULL;
END $$
"""


def _pg_trigger(table: str, event: str) -> str:
    referencing = {
        "insert": "NEW TABLE AS new_rows",
        "update": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
        "delete": "OLD TABLE AS old_rows",
    }[event]
    return (
        f"CREATE TRIGGER {table}_stats_tally_{event} AFTER {event.upper()} ON {table} "
        f"REFERENCING {referencing} FOR EACH STATEMENT "
        f"EXECUTE FUNCTION {table}_stats_tally_{event}()"
    )


def upgrade() -> None:
    postgresql = op.get_context().dialect.name == "postgresql"

    def common() -> list[sa.Column[str]]:
        return [
            sa.Column(name, sa.Date() if name == "period_start" else sa.String(), nullable=False)
            for name in ("grain", "period_start", "departement", "profile")
        ]

    op.create_table(
        "orientation_stats_tally",
        *common(),
        sa.Column("route", sa.String(), nullable=False),
        sa.Column("theme", sa.String(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(*ORIENTATION_KEY),
    )
    op.create_table(
        "referral_stats_tally",
        *common(),
        sa.Column("theme", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("accepted", sa.Boolean(), nullable=False),
        sa.Column("refusal_reason", sa.String(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("reoriented", sa.Integer(), nullable=False),
        sa.Column("contacted", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(*REFERRAL_KEY),
    )
    if postgresql:
        # Writers wait until the triggers exist: a row committed between the backfill and the
        # triggers would be in neither.
        op.execute("LOCK TABLE orientation, referral IN SHARE MODE")
    for grain in GRAINS:
        for statement in _backfill(grain, postgresql):
            op.execute(statement)
    for table in ("orientation", "referral"):
        if postgresql:
            for event in ("insert", "update", "delete"):
                op.execute(_pg_function(table, event))
                op.execute(_pg_trigger(table, event))
        else:
            for statement in _sqlite_triggers(table):
                op.execute(statement)
    op.create_index(
        "ix_referral_open_expires",
        "referral",
        ["expires_at"],
        sqlite_where=OPEN,
        postgresql_where=OPEN,
    )


def downgrade() -> None:
    postgresql = op.get_context().dialect.name == "postgresql"
    op.drop_index("ix_referral_open_expires", "referral")
    for table in ("orientation", "referral"):
        for event in ("insert", "update", "delete"):
            name = f"{table}_stats_tally_{event}"
            if postgresql:
                op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
                op.execute(f"DROP FUNCTION IF EXISTS {name}()")
            else:
                op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.drop_table(f"{table}_stats_tally")
