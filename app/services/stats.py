"""Coordinators' statistics: the orientations and referrals of a territory over a period,
grouped, with small groups withheld; and how far each commune is from a médiation place.

What is counted (the OpenAPI description of the routes says the same to users):
- An orientation belongs to the day (Europe/Paris) it was made and to the person's commune;
  `from` and `to` select orientations, and their referrals are counted with them, whenever
  the place acted (a cohort: "of March's orientations, how many were accepted").
- A referral counts under its status as shown (past its deadline, an open one is `expiree`).
  A re-orientation makes a second referral of the same orientation: both count as referrals.
- Rates are over referrals; a rate with nothing to count is null."""

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    and_,
    cast,
    distinct,
    func,
    literal_column,
    or_,
    select,
)
from sqlmodel import Session, col

from app.db import engine_of
from app.errors import invalid
from app.models import Commune, Departement, Epci, Orientation, Referral, ReferralStatus
from app.models.common import local_day, utcnow
from app.services.communes import communes
from app.services.places import place_index
from app.services.referrals import shown_status_column
from app.services.territories import Territory
from app.triage.lifecycle import FINAL
from app.triage.vocabulary import Route

GROUP_KEYS = (
    "month",
    "week",
    "profile",
    "route",
    "theme",
    "status",
    "place",
    "commune",
    "epci",
    "departement",
)
# Keys that belong to a referral, not to the orientation: an orientation re-oriented to a
# second place appears in the groups of both referrals.
REFERRAL_KEYS = frozenset({"status", "place"})
# A group of fewer orientations than this is withheld: too few people to show.
SMALL_GROUP = 5
STATUSES = tuple(s.value for s in ReferralStatus)
FINAL_STATUSES = tuple(s.value for s in FINAL)
RATES = ("acceptance_rate", "completion_rate", "no_show_rate")

RATE_DEFINITIONS = (
    "`acceptance_rate` : orientations vers un lieu acceptées par le lieu, parmi celles qui ont "
    "eu une réponse (acceptées, refusées, ou expirées sans réponse) ; "
    "`completion_rate` : accompagnements terminés (`terminee`), parmi les orientations "
    "acceptées arrivées à un statut final ; `no_show_rate` : personnes non venues "
    "(`non_venue`), parmi ces mêmes orientations acceptées et closes ; "
    "`median_hours_to_first_contact` : médiane des heures entre l'envoi de l'orientation et "
    "son passage à `contactee`."
)


@dataclass(frozen=True, slots=True)
class Period:
    start: date
    end: date  # inclusive


def parse_period(start: date | None, end: date | None) -> Period:
    """The period asked for, days inclusive; by default the 365 days up to today (Paris)."""
    end = end or (local_day(utcnow()) if start is None else start + timedelta(days=364))
    start = start or end - timedelta(days=364)
    if start > end:
        raise invalid(
            ["query", "from"],
            f"La période commence ({start}) après sa fin ({end}) : inversez « from » et « to ».",
        )
    return Period(start, end)


def parse_group_by(value: str | None) -> tuple[str, ...]:
    """`month,profile` -> ("month", "profile"); unknown keys are a 422."""
    if not value:
        return ()
    keys: list[str] = []
    for raw in value.split(","):
        key = raw.strip()
        if key not in GROUP_KEYS:
            raise invalid(
                ["query", "group_by"],
                f"Regroupement inconnu : {key!r}. Valeurs possibles, séparées par des virgules : "
                + ", ".join(GROUP_KEYS)
                + ".",
            )
        if key not in keys:
            keys.append(key)
    return tuple(keys)


# --- SQL ---------------------------------------------------------------------------------


def _week_label(dialect: str, day: Any) -> Any:
    """The ISO 8601 week of a date, `2026-W03`, computed by either database."""
    if dialect == "postgresql":
        return func.to_char(day, 'IYYY-"W"IW')
    # SQLite has no ISO week: a week is the one of its Thursday, whose year is the week's
    # year and whose day of the year, divided by seven, its number.
    thursday = func.date(day, "-3 days", "weekday 4")
    number = cast(func.strftime("%j", thursday), Integer)
    return func.printf("%s-W%02d", func.strftime("%Y", thursday), (number - 1) / 7 + 1)


def _key_columns(dialect: str, keys: Sequence[str]) -> list[ColumnElement[Any]]:
    """The SQL expression of each group key. Weeks are ISO 8601 (`2026-W03`)."""
    day = col(Orientation.day)
    columns: list[ColumnElement[Any]] = []
    for key in keys:
        expression: Any
        if key == "month":
            expression = (
                func.to_char(day, "YYYY-MM")
                if dialect == "postgresql"
                else func.strftime("%Y-%m", day)
            )
        elif key == "week":
            expression = _week_label(dialect, day)
        elif key == "status":
            expression = shown_status_column(utcnow())
        elif key == "place":
            expression = col(Referral.place_id)
        elif key in ("epci", "departement"):
            expression = getattr(Commune, key)
        else:  # profile, route, theme, commune
            expression = getattr(Orientation, key)
        columns.append(expression.label(key))
    return columns


def _figures(by_orientation: bool) -> list[ColumnElement[Any]]:
    """The counts of a group. `by_orientation`: every row is an orientation and its first
    referral, or a later one, so the first rows count orientations without DISTINCT."""
    referral = col(Referral.id)
    status = shown_status_column(utcnow())
    accepted = col(Referral.accepted_at).is_not(None)
    first_row = or_(referral.is_(None), col(Referral.previous_referral_id).is_(None))
    orientations = (
        func.count().filter(first_row)
        if by_orientation
        else func.count(distinct(col(Orientation.id)))
    )
    return [
        orientations.label("orientations"),
        func.count(referral).label("referrals"),
        *(func.count(referral).filter(status == s).label(s) for s in STATUSES),
        func.count(referral).filter(accepted).label("accepted"),
        func.count(referral)
        .filter(or_(accepted, status.in_(["refusee", "expiree"])))
        .label("answered"),
        func.count(referral).filter(and_(accepted, status.in_(FINAL_STATUSES))).label("closed"),
        func.count(col(Referral.first_contact_hours)).label("contacted"),
        *(
            func.count().filter(and_(first_row, col(Orientation.route) == r.value)).label(r.value)
            for r in Route
        ),
    ]


def _scoped(query: Any, territory: Territory, period: Period, keys: Iterable[str]) -> Any:
    """The query over the territory's orientations of the period and their referrals."""
    query = query.select_from(Orientation).outerjoin(
        Referral, col(Referral.orientation_id) == col(Orientation.id)
    )
    if territory.kind != "national" or {"epci", "departement"} & set(keys):
        query = query.join(Commune, col(Commune.code) == col(Orientation.commune))
    if territory.kind != "national":
        query = query.where(getattr(Commune, territory.kind) == territory.code)
    return query.where(col(Orientation.day) >= period.start, col(Orientation.day) <= period.end)


def _rate(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def _rates(row: dict[str, Any]) -> dict[str, float | None]:
    return {
        "acceptance_rate": _rate(row["accepted"], row["answered"]),
        "completion_rate": _rate(row["terminee"], row["closed"]),
        "no_show_rate": _rate(row["non_venue"], row["closed"]),
    }


def _median_hours(session: Session, territory: Territory, period: Period, n: int) -> float | None:
    """The median of the hours to first contact, by the database on either one: the middle
    one or two values in order."""
    if not n:
        return None
    hours = col(Referral.first_contact_hours)
    query = _scoped(select(hours), territory, period, ()).where(hours.is_not(None))
    middle = [
        float(h)
        for h in session.execute(
            query.order_by(hours).offset((n - 1) // 2).limit(2 - n % 2)
        ).scalars()
    ]
    return round(sum(middle) / len(middle), 1) if middle else None


def _names(session: Session, keys: Sequence[str], groups: list[dict[str, Any]]) -> None:
    """Adds the name beside each place, commune, EPCI and département code."""
    if not groups:
        return
    lookups: dict[str, dict[str, str]] = {}
    if "place" in keys:
        lookups["place"] = {p.id: p.name for p in place_index(session).places}
    if "commune" in keys:
        lookups["commune"] = {c.code: c.name for c in communes(engine_of(session)).values()}
    if "epci" in keys:
        codes = {g["epci"] for g in groups}
        lookups["epci"] = dict(
            session.execute(
                select(col(Epci.siren), col(Epci.name)).where(col(Epci.siren).in_(codes))
            ).all()
        )
    if "departement" in keys:
        lookups["departement"] = dict(
            session.execute(select(col(Departement.code), col(Departement.name))).all()
        )
    for group in groups:
        for key, names in lookups.items():
            code = group[key]
            group[f"{key}_name"] = names.get(code) if code is not None else None


def referral_stats(
    session: Session, territory: Territory, period: Period, keys: Sequence[str]
) -> dict[str, Any]:
    """GET /v1/stats/referrals: the groups, small ones withheld, and the exact totals."""
    dialect = engine_of(session).dialect.name
    by_orientation = not (REFERRAL_KEYS & set(keys))
    key_columns = _key_columns(dialect, keys)
    query = _scoped(select(*key_columns, *_figures(by_orientation)), territory, period, keys)
    if keys:
        # By position: a key's expression carries bound parameters that PostgreSQL would not
        # recognise as the same expression twice.
        query = query.group_by(*(literal_column(str(i + 1)) for i in range(len(keys))))
    rows = [dict(r) for r in session.execute(query).mappings()]
    totals_row = (
        rows[0]
        if not keys
        else dict(
            session.execute(
                _scoped(select(*_figures(True)), territory, period, ())
            ).mappings().one()
        )
    )
    groups = []
    for row in sorted(rows, key=lambda r: [(r[k] is not None, r[k] or "") for k in keys]):
        if not keys:
            break
        group: dict[str, Any] = {k: row[k] for k in keys}
        masked = row["orientations"] < SMALL_GROUP
        group["masked"] = masked
        figures: dict[str, Any] = {
            "orientations": row["orientations"],
            "referrals": row["referrals"],
            **{s: row[s] for s in STATUSES},
            **_rates(row),
        }
        group.update(dict.fromkeys(figures) if masked else figures)
        groups.append(group)
    _names(session, keys, groups)

    reasons = session.execute(
        _scoped(
            select(col(Referral.refusal_reason), func.count()), territory, period, ()
        )
        .where(col(Referral.status) == ReferralStatus.REFUSEE.value)
        .group_by(col(Referral.refusal_reason))
    ).all()
    totals = {
        "orientations": totals_row["orientations"],
        "referrals": totals_row["referrals"],
        "by_route": {r.value: totals_row[r.value] for r in Route},
        "by_status": {s: totals_row[s] for s in STATUSES},
        **_rates(totals_row),
        "median_hours_to_first_contact": _median_hours(
            session, territory, period, totals_row["contacted"]
        ),
        "refusal_reasons": {reason or "non_precise": n for reason, n in sorted(
            reasons, key=lambda t: t[0] or ""
        )},
    }
    return {
        "filters": {
            "from": period.start.isoformat(),
            "to": period.end.isoformat(),
            "territory": str(territory),
            "territory_name": territory.name,
            "group_by": list(keys),
        },
        "groups": groups,
        "totals": totals,
    }


# --- CSV ---------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    """A value as French spreadsheets read it: decimal comma, oui/non, empty for null."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "oui" if value else "non"
    if isinstance(value, float):
        return repr(value).replace(".", ",")
    return str(value)


def to_csv(rows: list[dict[str, Any]], columns: Sequence[str]) -> bytes:
    """Rows as CSV that a spreadsheet in France opens as is: UTF-8 with a byte-order mark,
    `;` between cells, decimal comma, CRLF line ends."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def referral_columns(keys: Sequence[str]) -> list[str]:
    columns: list[str] = []
    for key in keys:
        columns.append(key)
        if key in ("place", "commune", "epci", "departement"):
            columns.append(f"{key}_name")
    return [*columns, "masked", "orientations", "referrals", *STATUSES, *RATES]
