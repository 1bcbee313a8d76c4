"""Coordinators' statistics: the orientations and referrals of a territory over a period,
grouped, with small groups withheld (the coverage of a territory: app.services.coverage).

What is counted (the OpenAPI description of the routes says the same to users):
- An orientation belongs to the day (Europe/Paris) it was made and to the person's commune;
  `from` and `to` select orientations, and their referrals are counted with them, whenever
  the place acted (a cohort: "of March's orientations, how many were accepted").
- A referral counts under its status as shown (past its deadline, an open one is `expiree`).
  A re-orientation makes a second referral of the same orientation: both count as referrals.
- Rates are over referrals; a rate with nothing to count is null."""

import csv
import io
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    distinct,
    func,
    literal,
    literal_column,
    null,
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
from app.services.territories import Territory, members
from app.triage.lifecycle import FINAL, shown_status
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


Model = type[Orientation] | type[Referral]
TIME_KEYS = frozenset({"month", "week"})


def _sql_keys(keys: Sequence[str], *, status: bool = True) -> list[str]:
    """The keys as the database groups them: by day for months and weeks (a date groups
    faster than a formatted string, and either database then agrees on ISO weeks), labelled
    by _labels; without `status` when the query groups by the stored status anyway."""
    grouped = [k for k in keys if k not in TIME_KEYS and (status or k != "status")]
    return ["day", *grouped] if TIME_KEYS & set(keys) else grouped


@lru_cache(maxsize=4096)
def _period_label(key: str, day: date) -> str:
    """The month (`2026-01`) or ISO 8601 week (`2026-W03`) of a day."""
    if key == "month":
        return f"{day.year}-{day.month:02d}"
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def _labels(keys: Sequence[str], sql_keys: Sequence[str]) -> Callable[..., tuple[Any, ...]]:
    """What makes a group's key, in the order asked, from the values of a database group
    (and the status as shown, when the database grouped by the stored one)."""
    at = {k: i for i, k in enumerate(sql_keys)}
    day = at.get("day", -1)
    parts = [
        (key, day) if key in TIME_KEYS else (key, at.get(key, -1))
        for key in keys
    ]

    def label(values: Sequence[Any], status: str | None = None) -> tuple[Any, ...]:
        return tuple(
            _period_label(key, values[i]) if key in TIME_KEYS
            else status if i < 0
            else values[i]
            for key, i in parts
        )

    return label


def _key_columns(model: Model, sql_keys: Sequence[str]) -> list[Any]:
    """The SQL expression of each group key over orientations or over referrals (which carry
    their orientation's day, profile, theme and commune)."""
    columns: list[Any] = []
    for key in sql_keys:
        expression: Any
        if key in ("epci", "departement"):
            expression = getattr(Commune, key)
        elif model is Referral:
            expression = {
                "status": shown_status_column(utcnow()),
                "place": col(Referral.place_id),
                # Only an orientation to a médiateur makes referrals.
                "route": literal(Route.MEDIATEUR.value),
            }.get(key, getattr(Referral, key, None))
        elif key in REFERRAL_KEYS:
            expression = null()  # the orientations that made no referral
        else:  # day, profile, route, theme, commune
            expression = getattr(Orientation, key)
        columns.append(expression.label(f"k_{key}"))
    return columns


@dataclass(frozen=True, slots=True)
class _Scope:
    territory: Territory
    period: Period
    communes: tuple[str, ...] | None  # None: all of France


def _scoped(query: Any, model: Model, scope: _Scope, keys: Iterable[str]) -> Any:
    """The query restricted to the period's rows of the territory's communes. A territory is
    its list of communes (from the reference's in-memory copy): the index on (commune, day)
    then reads only its rows, where a join on the commune table would scan every row."""
    if {"epci", "departement"} & set(keys):
        query = query.join(Commune, col(Commune.code) == col(model.commune))
    if scope.communes is not None:
        query = query.where(col(model.commune).in_(scope.communes))
    period = scope.period
    return query.where(col(model.day) >= period.start, col(model.day) <= period.end)


def _grouped(query: Any, keys: int, extra: int = 0) -> Any:
    """GROUP BY the first `keys` + `extra` columns, by position: an expression carrying bound
    parameters would not be recognised by PostgreSQL as the same expression twice."""
    width = keys + extra
    return query.group_by(*(literal_column(str(i + 1)) for i in range(width))) if width else query


@dataclass
class _Cell:
    """The counts of one group, as the queries add them up."""

    orientations: int = 0
    referrals: int = 0
    accepted: int = 0
    answered: int = 0
    closed: int = 0
    contacted: int = 0
    statuses: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))

    def add_referrals(self, status: str, accepted: bool, n: int, contacted: int) -> None:
        self.referrals += n
        self.statuses[status] += n
        self.contacted += contacted
        if accepted:
            self.accepted += n
            self.closed += n if status in FINAL_STATUSES else 0
        self.answered += n if accepted or status in ("refusee", "expiree") else 0

    def figures(self) -> dict[str, Any]:
        return {
            "orientations": self.orientations,
            "referrals": self.referrals,
            **self.statuses,
            "acceptance_rate": _rate(self.accepted, self.answered),
            "completion_rate": _rate(self.statuses["terminee"], self.closed),
            "no_show_rate": _rate(self.statuses["non_venue"], self.closed),
        }


def _rate(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def _median_hours(session: Session, scope: _Scope, n: int) -> float | None:
    """The median of the hours to first contact, by the database on either one: the middle
    one or two values in order."""
    if not n:
        return None
    hours = col(Referral.first_contact_hours)
    query = _scoped(select(hours), Referral, scope, ()).where(hours.is_not(None))
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
    """GET /v1/stats/referrals: the groups, small ones withheld, and the exact totals.

    Two grouped scans, one per table, with no join between them (referrals carry what their
    orientation is grouped by): a national year of a million referrals stays within the
    second. Statuses, acceptance, refusal reasons and first contacts come from the referrals
    query, grouped by its keys and those few values, and are pivoted here."""
    engine = engine_of(session)
    scope = _Scope(
        territory,
        period,
        None
        if territory.kind == "national"
        else tuple(c.code for c in members(territory, communes(engine))),
    )
    per_referral = bool(REFERRAL_KEYS & set(keys))
    cells: defaultdict[tuple[Any, ...], _Cell] = defaultdict(_Cell)
    total = _Cell()
    by_route = dict.fromkeys((r.value for r in Route), 0)

    sql_keys = _sql_keys(keys)
    width, label = len(sql_keys), _labels(keys, sql_keys)
    route = col(Orientation.route)
    query = select(*_key_columns(Orientation, sql_keys), route, func.count())
    query = _scoped(query.select_from(Orientation), Orientation, scope, keys)
    if per_referral:  # the group of orientations with no referral at all
        made = select(col(Referral.id)).where(
            col(Referral.orientation_id) == col(Orientation.id)
        )
        query = query.add_columns(func.count().filter(~made.exists()))
    for row in session.execute(_grouped(query, width, 1)).all():
        route_value, n = row[width], row[width + 1]
        by_route[route_value] += n
        total.orientations += n
        if per_referral:
            n = row[width + 2]
        if n:
            cells[label(row)].orientations += n

    # The stored status and whether the deadline passed, rather than the status as shown: a
    # CASE on every row costs a third of the scan. app.triage.lifecycle.shown_status maps.
    sql_keys = _sql_keys(keys, status=False)
    width, label = len(sql_keys), _labels(keys, sql_keys)
    query = select(
        *_key_columns(Referral, sql_keys),
        col(Referral.status),
        col(Referral.expires_at) <= utcnow(),
        col(Referral.accepted_at).is_not(None),
        col(Referral.refusal_reason),
        func.count(),
        func.count(col(Referral.first_contact_hours)),
    ).select_from(Referral)
    query = _scoped(query, Referral, scope, keys)
    refusals: dict[str, int] = {}
    for row in session.execute(_grouped(query, width, 4)).all():
        stored, past, accepted, why, n, contacted = row[width:]
        status = shown_status(ReferralStatus(stored), bool(past)).value
        for cell in (cells[label(row, status)], total):
            cell.add_referrals(status, bool(accepted), n, contacted)
        if status == ReferralStatus.REFUSEE.value:
            refusals[why or "non_precise"] = refusals.get(why or "non_precise", 0) + n
    if per_referral:
        # An orientation re-oriented to a second place counts once in each place's group;
        # twice in one group, once.
        distinct_orientations: dict[tuple[Any, ...], int] = {}
        sql_keys = _sql_keys(keys)
        width, label = len(sql_keys), _labels(keys, sql_keys)
        query = select(
            *_key_columns(Referral, sql_keys),
            func.count(distinct(col(Referral.orientation_id))),
        ).select_from(Referral)
        query = _scoped(query, Referral, scope, keys)
        for row in session.execute(_grouped(query, width)).all():
            key = label(row)
            distinct_orientations[key] = distinct_orientations.get(key, 0) + row[width]
        for key, n in distinct_orientations.items():
            cells[key].orientations = n

    groups = []
    order = sorted(cells.items(), key=lambda kv: [(v is not None, v or "") for v in kv[0]])
    for key, cell in order if keys else ():
        group: dict[str, Any] = dict(zip(keys, key, strict=True))
        group["masked"] = masked = cell.orientations < SMALL_GROUP
        figures = cell.figures()
        group.update(dict.fromkeys(figures) if masked else figures)
        groups.append(group)
    _names(session, keys, groups)

    figures = total.figures()
    totals = {
        "orientations": total.orientations,
        "referrals": total.referrals,
        "by_route": by_route,
        "by_status": total.statuses,
        **{rate: figures[rate] for rate in RATES},
        "median_hours_to_first_contact": _median_hours(session, scope, total.contacted),
        "refusal_reasons": dict(sorted(refusals.items())),
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
