"""The tallies: the statistics' (migration 0014: orientations and referrals counted by month and
by day, by département of the person's commune and by what statistics group them by) and the
inbox's (migration 0012: referrals by place, side, status and urgency). Triggers keep them in
every transaction that writes a row; this module names them for their readers, moves the
deltas into the cells (PostgreSQL, migration 0015), and rebuilds the statistics' when the
départements of communes may have changed (a commune reference import).

On PostgreSQL the triggers append deltas (rows of their own: no two transactions wait on a
shared cell) and `fold_tallies`, a job of one process at a time, moves them into the cells in
one statement each. A reader reads the cells and the deltas not yet moved together (`_cells`:
a UNION ALL that every query sums over), so it is exact whenever it reads. On SQLite the
triggers update the cells and the deltas stay empty.

Tables of their own outside SQLModel.metadata: nothing but the triggers, the fold and the
rebuild write them."""

from typing import Any

from sqlalchemy import Boolean, Date, Integer, String, column, select, table, text, union_all
from sqlmodel import Session

from app.db import engine_of

# A commune missing from the commune table counts under this département (statistics by
# département then leave it out, as a join on the commune table would).
NO_DEPARTEMENT = ""
# Each grain: its period, and whether its cells keep the profile and the theme (migration
# 0016: the `departement_*` cells leave both out, '', for what groups by month, département
# or route alone: fewer cells to sum).
GRAINS = {
    "month": ("month", True),
    "day": ("day", True),
    "departement_month": ("month", False),
    "departement_day": ("day", False),
}

_COLUMNS: dict[str, tuple[tuple[str, Any], ...]] = {
    "orientation_stats_tally": (
        ("grain", String),
        ("period_start", Date),  # the day, or a month's first day
        ("departement", String),
        ("profile", String),
        ("route", String),
        ("theme", String),
        ("n", Integer),
    ),
    "referral_stats_tally": (
        ("grain", String),
        ("period_start", Date),
        ("departement", String),
        ("profile", String),
        ("theme", String),
        ("status", String),  # as stored: an open one past due shows `expiree`
        ("accepted", Boolean),  # accepted_at is set
        ("refusal_reason", String),  # "" unless refused
        ("n", Integer),
        ("reoriented", Integer),  # previous_referral_id is set
        ("contacted", Integer),  # first_contact_hours is set
    ),
    "referral_tally": (  # the inbox's: referrals received and sent by each place
        ("side", String),  # received (place_id) or sent (origin_place_id)
        ("place_id", String),
        ("status", String),
        ("urgent", Boolean),
        ("count", Integer),
    ),
}
_SUMS = {"n", "reoriented", "contacted", "count"}


# Each tally's deltas (migration 0015): the same columns, no key.
DELTAS = {
    "orientation_stats_tally": "orientation_stats_delta",
    "referral_stats_tally": "referral_stats_delta",
    "referral_tally": "referral_tally_delta",
}


def _cells(name: str) -> Any:
    """The cells and their deltas not yet folded, as one table to sum over (named as the cells)."""
    parts = (table(t, *(column(c, k) for c, k in _COLUMNS[name])) for t in (name, DELTAS[name]))
    return union_all(*(select(part) for part in parts)).subquery(name)


orientation_tally = _cells("orientation_stats_tally")
referral_tally = _cells("referral_stats_tally")
place_tally = _cells("referral_tally")


def _fold(tally: str) -> str:
    names = [c for c, _ in _COLUMNS[tally]]
    delta = DELTAS[tally]
    keys = [c for c in names if c not in _SUMS]
    sums = [c for c in names if c in _SUMS]
    positions = ", ".join(str(i + 1) for i in range(len(keys)))
    return (
        f"WITH moved AS (DELETE FROM {delta} RETURNING {', '.join(names)}) "
        f"INSERT INTO {tally} ({', '.join(names)}) "
        f"SELECT {', '.join(keys)}, {', '.join(f'sum({s})' for s in sums)} FROM moved "
        f"GROUP BY {positions} ORDER BY {positions} "
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET "
        + ", ".join(f"{s} = {tally}.{s} + EXCLUDED.{s}" for s in sums)
    )


# How often the service folds (app.main): the deltas a reader adds stay few (an orientation
# appends six rows).
FOLD_EVERY_SECONDS = 2.0

# PostgreSQL: each tally's deltas moved into its cells, one statement each (a reader's snapshot
# sees them either as deltas or in the cells, never both nor neither).
FOLDS = tuple(_fold(t) for t in _COLUMNS)


def fold_tallies(session: Session) -> int:
    """Moves the deltas into the cells (PostgreSQL; nothing to move on SQLite) and commits:
    how many cells changed. Run by one process of a fleet at a time (two would only
    wait on each other's cells)."""
    if engine_of(session).dialect.name != "postgresql":
        return 0
    moved = 0
    for statement in FOLDS:
        moved += int(session.execute(text(statement)).rowcount)  # type: ignore[attr-defined]
        session.commit()
    return moved


def _period(unit: str, postgresql: bool) -> str:
    if unit == "day":
        return "r.day"
    return (
        "(r.day - (extract(day FROM r.day)::int - 1))"
        if postgresql
        else ("strftime('%Y-%m-01', r.day)")
    )


def rebuild_tallies(session: Session) -> None:
    """Counts both tallies again from every orientation and referral, in the session's
    transaction (the caller commits): what the triggers would have made had each commune
    always been in the département it is in now. On PostgreSQL the writers of orientations and
    referrals wait for its commit (their triggers would add to cells being recounted)."""
    postgresql = engine_of(session).dialect.name == "postgresql"
    if postgresql:
        session.execute(text("LOCK TABLE orientation, referral IN SHARE MODE"))
        # A fold under way finishes first; none starts until this commits.
        session.execute(
            text(
                "LOCK TABLE orientation_stats_tally, orientation_stats_delta, "
                "referral_stats_tally, referral_stats_delta IN EXCLUSIVE MODE"
            )
        )
    for name in ("orientation_stats", "referral_stats"):
        session.execute(text(f"DELETE FROM {name}_tally"))
        session.execute(text(f"DELETE FROM {name}_delta"))
    department = f"coalesce(c.departement, '{NO_DEPARTEMENT}')"
    for grain, (unit, detailed) in GRAINS.items():
        period = _period(unit, postgresql)
        profile, theme = ("r.profile", "r.theme") if detailed else ("''", "''")
        session.execute(
            text(
                "INSERT INTO orientation_stats_tally "
                "(grain, period_start, departement, profile, route, theme, n) "
                f"SELECT '{grain}', {period}, {department}, {profile}, r.route, {theme}, "
                "count(*) FROM orientation r LEFT JOIN commune c ON c.code = r.commune "
                "GROUP BY 2, 3, 4, 5, 6"
            )
        )
        session.execute(
            text(
                "INSERT INTO referral_stats_tally (grain, period_start, departement, profile, "
                "theme, status, accepted, refusal_reason, n, reoriented, contacted) "
                f"SELECT '{grain}', {period}, {department}, {profile}, {theme}, r.status, "
                "r.accepted_at IS NOT NULL, CASE WHEN r.status = 'refusee' "
                "THEN coalesce(r.refusal_reason, '') ELSE '' END, count(*), "
                "count(r.previous_referral_id), count(r.first_contact_hours) "
                "FROM referral r LEFT JOIN commune c ON c.code = r.commune "
                "GROUP BY 2, 3, 4, 5, 6, 7, 8"
            )
        )
