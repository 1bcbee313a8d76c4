"""The statistics tallies (migration 0014): orientations and referrals counted by month and by
day, by département of the person's commune and by what statistics group them by. Triggers keep
them in every transaction that writes a row; this module names them for app.services.stats and
rebuilds them when the départements of communes may have changed (a commune reference import).

Tables of their own outside SQLModel.metadata, like referral_tally: nothing but the triggers
and the rebuild writes them."""

from sqlalchemy import Boolean, Date, Integer, String, column, table, text
from sqlmodel import Session

from app.db import engine_of

# A commune missing from the commune table counts under this département (statistics by
# département then leave it out, as a join on the commune table would).
NO_DEPARTEMENT = ""
GRAINS = ("month", "day")

orientation_tally = table(
    "orientation_stats_tally",
    column("grain", String),
    column("period_start", Date),  # the day, or a month's first day
    column("departement", String),
    column("profile", String),
    column("route", String),
    column("theme", String),
    column("n", Integer),
)
referral_tally = table(
    "referral_stats_tally",
    column("grain", String),
    column("period_start", Date),
    column("departement", String),
    column("profile", String),
    column("theme", String),
    column("status", String),  # as stored: an open one past due shows `expiree`
    column("accepted", Boolean),  # accepted_at is set
    column("refusal_reason", String),  # "" unless refused
    column("n", Integer),
    column("reoriented", Integer),  # previous_referral_id is set
    column("contacted", Integer),  # first_contact_hours is set
)


def _period(grain: str, postgresql: bool) -> str:
    if grain == "day":
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
    session.execute(text("DELETE FROM orientation_stats_tally"))
    session.execute(text("DELETE FROM referral_stats_tally"))
    department = f"coalesce(c.departement, '{NO_DEPARTEMENT}')"
    for grain in GRAINS:
        period = _period(grain, postgresql)
        session.execute(
            text(
                "INSERT INTO orientation_stats_tally "
                "(grain, period_start, departement, profile, route, theme, n) "
                f"SELECT '{grain}', {period}, {department}, r.profile, r.route, r.theme, count(*) "
                "FROM orientation r LEFT JOIN commune c ON c.code = r.commune "
                "GROUP BY 2, 3, 4, 5, 6"
            )
        )
        session.execute(
            text(
                "INSERT INTO referral_stats_tally (grain, period_start, departement, profile, "
                "theme, status, accepted, refusal_reason, n, reoriented, contacted) "
                f"SELECT '{grain}', {period}, {department}, r.profile, r.theme, r.status, "
                "r.accepted_at IS NOT NULL, CASE WHEN r.status = 'refusee' "
                "THEN coalesce(r.refusal_reason, '') ELSE '' END, count(*), "
                "count(r.previous_referral_id), count(r.first_contact_hours) "
                "FROM referral r LEFT JOIN commune c ON c.code = r.commune "
                "GROUP BY 2, 3, 4, 5, 6, 7, 8"
            )
        )
