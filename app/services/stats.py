"""Coordinators' statistics: the orientations and referrals of a territory over a period,
grouped, with small groups withheld (the coverage of a territory: app.services.coverage).
Counted from tallies that triggers keep (migration 0014) wherever they can say it exactly,
by scanning the rows otherwise (see _tally).

Every figure is defined once, in FIGURES: its field in the API, its label on the page, in the
CSV and on the charts, its definition for a coordinator and how it is computed (the OpenAPI
description is made from it). What is counted:
- An orientation belongs to the day (Europe/Paris) it was made and to the person's commune;
  `from` and `to` select orientations, and their referrals ("envois" to a médiation place)
  are counted with them, whenever the place acted (a cohort: "of March's orientations, how
  many were accepted").
- Each orientation counts once, under its route: orientations = to_mediateur +
  to_france_services + no_orientation. An orientation to a médiateur is sent to a place, or
  not (the person is already followed, or no suitable place is near enough): not_sent.
- A referral counts under its status as shown (past its deadline, an open one is `expiree`).
  A refused referral that the agent re-orients makes another referral of the same orientation
  (reoriented), so that referrals = to_mediateur - not_sent + reoriented.
- What the places did is cumulative, so that each rate agrees with the counts it is computed
  from: `accepted` is every referral its place ever accepted (accepted_at), whatever its status
  since; acceptance_rate = accepted / answered (answered = accepted + refused +
  expired_unanswered); completion_rate = completed / accepted_closed; no_show_rate = no_show /
  accepted_closed. A rate with nothing to count is null.
- Grouped by a referral's status or place, an orientation counts in the group of each of its
  referrals (once per group): the orientations of those groups add up to more than the total
  (by place, by exactly the re-orientations). Every other figure adds up to its total."""

import csv
import io
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from typing import Any, Literal, cast

from sqlalchemy import (
    and_,
    distinct,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
)
from sqlmodel import Session, col

from app.db import engine_of
from app.models import Commune, Departement, Epci, Orientation, Referral, ReferralStatus
from app.models.common import local_day, utcnow
from app.places.service import place_index
from app.problems import invalid
from app.services.communes import communes
from app.services.referrals import shown_status_column
from app.services.scope import by_past_due_index, past_due
from app.services.stats_tally import NO_DEPARTEMENT, orientation_tally, referral_tally
from app.services.territories import Territory, members
from app.triage import words
from app.triage.lifecycle import FINAL, REFUSAL_REASONS, shown_status
from app.triage.matching import NO_SUITABLE_PLACE
from app.triage.needs import PUBLIC, SPECIFIC, Modality
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
# Each key as the page, the CSV and the error messages name it.
GROUP_LABELS = {
    "month": "Mois",
    "week": "Semaine",
    "profile": "Profil",
    "route": "Suite donnée",
    "theme": "Démarche",
    "status": "Statut",
    "place": "Lieu de médiation",
    "commune": "Commune",
    "epci": "Intercommunalité",
    "departement": "Département",
}
# Keys that belong to a referral, not to the orientation: an orientation re-oriented to a
# second place appears in the groups of both referrals.
REFERRAL_KEYS = frozenset({"status", "place"})
# A group of fewer orientations than this is withheld: too few people to show.
SMALL_GROUP = 5
STATUSES = tuple(s.value for s in ReferralStatus)
FINAL_STATUSES = tuple(s.value for s in FINAL)


# --- the figures -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Figure:
    """One figure of the groups and the totals."""

    key: str  # its field in the API's groups and totals
    label: str  # as the page (tiles, tables), the CSV and the charts name it
    definition: str  # one line, for a coordinator
    computed: str  # how, in the API's terms (the OpenAPI description)
    of: tuple[str, str] | None = None  # a rate: the figures it divides

    @property
    def header(self) -> str:
        """Its CSV column: rates in percent."""
        return f"{self.label} (%)" if self.of else self.label


FIGURES = (
    Figure(
        "orientations",
        "Orientations",
        "Personnes orientées à l'accueil de France Services sur la période (une par passage).",
        "orientations faites du `from` au `to` pour une personne d'une commune du territoire",
    ),
    Figure(
        "to_mediateur",
        "Vers un médiateur",
        "Orientations dont la suite donnée est un médiateur numérique.",
        "orientations de route `mediateur` (`by_route.mediateur` dans les totaux)",
    ),
    Figure(
        "not_sent",
        "dont sans envoi",
        "Orientations vers un médiateur parties vers aucun lieu : personne déjà suivie, "
        "ou aucun lieu adapté assez proche.",
        "orientations de route `mediateur` sans aucun envoi",
    ),
    Figure(
        "to_france_services",
        "Faites par France Services",
        "La démarche est faite à France Services, à la place de la personne.",
        "orientations de route `france_services`",
    ),
    Figure(
        "no_orientation",
        "Sans orientation nécessaire",
        "Personnes autonomes : aucune suite n'est utile.",
        "orientations de route `aucune`",
    ),
    Figure(
        "referrals",
        "Envois à un lieu",
        "Orientations envoyées à un lieu de médiation ; une réorientation après un refus "
        "compte un envoi de plus.",
        "envois à un lieu ; dans les totaux et les groupes d'orientations (hors `status` et "
        "`place`), referrals = to_mediateur - not_sent + reoriented",
    ),
    Figure(
        "reoriented",
        "dont réorientations",
        "Envois à un autre lieu après le refus d'un premier.",
        "envois qui suivent un envoi refusé de la même orientation",
    ),
    Figure(
        "answered",
        "Acceptés, refusés ou expirés",
        "Envois que le lieu a acceptés ou refusés, ou laissés sans réponse jusqu'à l'échéance.",
        "accepted + refused + expired_unanswered",
    ),
    Figure(
        "accepted",
        "dont acceptés",
        "Envois que le lieu a acceptés, quoi qu'il soit arrivé depuis (accompagnement "
        "terminé, personne non venue… compris).",
        "envois dont `accepted_at` est renseigné, quel que soit leur statut actuel",
    ),
    Figure(
        "refused",
        "dont refusés",
        "Envois que le lieu a refusés (les motifs sont comptés à part).",
        "envois au statut `refusee`",
    ),
    Figure(
        "expired_unanswered",
        "dont expirés sans réponse",
        "Envois restés sans réponse du lieu jusqu'à leur échéance.",
        "envois au statut `expiree` jamais acceptés",
    ),
    Figure(
        "acceptance_rate",
        "Taux d'acceptation",
        "Part des envois acceptés parmi ceux qui ont été acceptés, refusés ou ont expiré.",
        "accepted / answered",
        ("accepted", "answered"),
    ),
    Figure(
        "accepted_closed",
        "Acceptés et clos",
        "Envois acceptés arrivés à leur fin : accompagnement terminé, personne non venue, "
        "annulation, échéance sans premier contact ou renvoi par le lieu.",
        "envois acceptés dont le statut est final",
    ),
    Figure(
        "completed",
        "dont accompagnements terminés",
        "Envois dont le lieu a mené l'accompagnement à son terme.",
        "envois au statut `terminee`",
    ),
    Figure(
        "no_show",
        "dont personnes non venues",
        "Envois acceptés où la personne ne s'est pas présentée.",
        "envois au statut `non_venue`",
    ),
    Figure(
        "completion_rate",
        "Taux d'accompagnements terminés",
        "Part des accompagnements terminés parmi les envois acceptés et clos.",
        "completed / accepted_closed",
        ("completed", "accepted_closed"),
    ),
    Figure(
        "no_show_rate",
        "Taux de personnes non venues",
        "Part des personnes non venues parmi les envois acceptés et clos.",
        "no_show / accepted_closed",
        ("no_show", "accepted_closed"),
    ),
)
FIGURE = {f.key: f for f in FIGURES}
COUNTS = tuple(f.key for f in FIGURES if f.of is None)
RATES = tuple(f.key for f in FIGURES if f.of is not None)
# The figures of what happened at the front desk, each orientation once; the others count
# referrals.
AT_THE_DESK = ("orientations", "to_mediateur", "not_sent", "to_france_services", "no_orientation")
MEDIAN = Figure(
    "median_hours_to_first_contact",
    "Délai médian du premier contact",
    "Médiane des heures entre l'envoi à un lieu et le premier contact avec la personne.",
    "médiane, en heures, des envois passés au statut `contactee`",
)
REFUSAL_LABELS = {**REFUSAL_REASONS, "non_precise": "Motif non précisé"}
# The label beside an empty key: the orientations that made no referral.
NO_REFERRAL = "Aucun envoi"

DEFINITIONS = (
    "\n\nChiffres de chaque groupe et des totaux (libellé de la page entre parenthèses) :\n\n"
    + "\n".join(f"- `{f.key}` ({f.label}) : {f.definition} Calcul : {f.computed}." for f in FIGURES)
    + "\n- un compte par statut actuel (`by_status` dans les totaux)"
    + f"\n- totaux seulement : `{MEDIAN.key}` ({MEDIAN.label}) : {MEDIAN.definition}"
    + "\n\nRegroupé par `status` ou `place`, une orientation compte dans le groupe de chacun "
    "de ses envois : les orientations des groupes dépassent alors le total. Tous les autres "
    "chiffres des groupes s'additionnent en leur total.\n\n"
)


def rate(figures: Mapping[str, Any], key: str) -> float | None:
    """A rate of FIGURES from the counts it divides; null with nothing to count."""
    numerator, denominator = FIGURE[key].of or ("", "")
    n, d = figures[numerator], figures[denominator]
    return round(n / d, 4) if d else None


# --- what is asked -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Period:
    start: date
    end: date  # inclusive


@dataclass(frozen=True, slots=True)
class Asked:
    """How the caller names what it asks: the API its parameters, a page its fields."""

    start: tuple[str, str] = ("from", "« from »")  # the name in `loc`, the words of a message
    end: tuple[str, str] = ("to", "« to »")
    group_by: tuple[str, str] = ("group_by", "« group_by »")
    choices: Mapping[str, str] | None = None  # the keys as offered; None: their codes


API = Asked()


def _day(value: date) -> str:
    return value.strftime("%d/%m/%Y")


def parse_period(start: date | None, end: date | None, asked: Asked = API) -> Period:
    """The period asked for, days inclusive; by default the 365 days up to today (Paris)."""
    end = end or (local_day(utcnow()) if start is None else start + timedelta(days=364))
    start = start or end - timedelta(days=364)
    if start > end:
        raise invalid(
            ["query", asked.start[0]],
            f"La période commence le {_day(start)}, après sa fin le {_day(end)} : inversez "
            f"{asked.start[1]} et {asked.end[1]}.",
        )
    return Period(start, end)


def parse_group_by(value: str | None, asked: Asked = API) -> tuple[str, ...]:
    """`month,profile` -> ("month", "profile"); unknown keys are a 422."""
    if not value:
        return ()
    keys: list[str] = []
    for raw in value.split(","):
        key = raw.strip()
        if key not in GROUP_KEYS:
            choices = asked.choices
            raise invalid(
                ["query", asked.group_by[0]],
                f"Regroupement inconnu dans {asked.group_by[1]} : « {key} ». "
                + (
                    "Valeurs possibles, séparées par des virgules : " + ", ".join(GROUP_KEYS)
                    if choices is None
                    else "Cochez parmi : " + ", ".join(choices[k] for k in GROUP_KEYS)
                )
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
    parts = [(key, day) if key in TIME_KEYS else (key, at.get(key, -1)) for key in keys]

    def label(values: Sequence[Any], status: str | None = None) -> tuple[Any, ...]:
        return tuple(
            _period_label(key, values[i]) if key in TIME_KEYS else status if i < 0 else values[i]
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


ROUTES = tuple(r.value for r in Route)


@dataclass
class _Cell:
    """The counts of one group, as the queries add them up."""

    orientations: int = 0
    routes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ROUTES, 0))
    sent: int = 0  # orientations with at least one referral
    referrals: int = 0
    reoriented: int = 0
    accepted: int = 0
    accepted_closed: int = 0
    expired_unanswered: int = 0
    contacted: int = 0
    statuses: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))

    def add_orientations(self, route: str, n: int) -> None:
        self.orientations += n
        self.routes[route] += n

    def add_referrals(
        self, status: str, accepted: bool, n: int, reoriented: int, contacted: int
    ) -> None:
        self.referrals += n
        self.reoriented += reoriented
        self.sent += n - reoriented  # each orientation sent has one first referral
        self.statuses[status] += n
        self.contacted += contacted
        if accepted:
            self.accepted += n
            self.accepted_closed += n if status in FINAL_STATUSES else 0
        elif status == ReferralStatus.EXPIREE.value:
            self.expired_unanswered += n

    def figures(self) -> dict[str, Any]:
        """FIGURES, then the count of each status as shown."""
        statuses, to_mediateur = self.statuses, self.routes[Route.MEDIATEUR.value]
        counts = {
            "orientations": self.orientations,
            "to_mediateur": to_mediateur,
            "not_sent": to_mediateur - self.sent,
            "to_france_services": self.routes[Route.FRANCE_SERVICES.value],
            "no_orientation": self.routes[Route.AUCUNE.value],
            "referrals": self.referrals,
            "reoriented": self.reoriented,
            "answered": self.accepted + statuses["refusee"] + self.expired_unanswered,
            "accepted": self.accepted,
            "refused": statuses["refusee"],
            "expired_unanswered": self.expired_unanswered,
            "accepted_closed": self.accepted_closed,
            "completed": statuses["terminee"],
            "no_show": statuses["non_venue"],
        }
        return {f.key: rate(counts, f.key) if f.of else counts[f.key] for f in FIGURES} | statuses


def _median_hours(session: Session, scope: _Scope, n: int) -> float | None:
    """The median of the hours to first contact, by the database on either one: the middle
    one or two values in order."""
    if not n:
        return None
    hours = col(Referral.first_contact_hours)
    query = _scoped(select(hours), Referral, scope, ()).where(hours.is_not(None))
    # In France as a whole, the partial index on the contacted ones, walked in the hours'
    # order, reaches the middle at once (27 ms at 1 M referrals). In a territory, walking it
    # in that order while filtering by commune read most of France's index (PostgreSQL:
    # 0.43 s for a département): sorting by `hours + 0`, which no index serves, makes the
    # database take the territory's rows by commune first, then sort those few.
    order = hours if scope.communes is None else hours + 0
    middle = [
        float(h)
        for h in session.execute(
            query.order_by(order).offset((n - 1) // 2).limit(2 - n % 2)
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


def _needs_stated(session: Session, scope: _Scope) -> dict[str, Any]:
    """The orientations made with needs stated (app.triage.needs), and how many of each: read
    from the few orientations that carry any. An orientation counts once per need it stated;
    `not_met` those whose needs no place within the distance met."""
    needs = col(Orientation.needs)
    query = _scoped(
        select(needs, col(Orientation.reasons)).select_from(Orientation), Orientation, scope, ()
    ).where(needs.is_not(None))
    counted: dict[str, Any] = {
        "orientations": 0,
        "not_met": 0,
        "specific": dict.fromkeys(SPECIFIC, 0),
        "public": dict.fromkeys(PUBLIC, 0),
        "free_only": 0,
        "modality": {m.value: 0 for m in Modality},
        "availability": 0,
    }
    for stated, reasons in session.execute(query).all():
        if not stated:
            continue
        counted["orientations"] += 1
        counted["not_met"] += NO_SUITABLE_PLACE in (reasons or ())
        for kind in ("specific", "public"):
            for slug in stated.get(kind) or ():
                if slug in counted[kind]:
                    counted[kind][slug] += 1
        counted["free_only"] += bool(stated.get("free_only"))
        if stated.get("modality") in counted["modality"]:
            counted["modality"][stated["modality"]] += 1
        counted["availability"] += bool(stated.get("availability"))
    return counted


def _scope(session: Session, territory: Territory, period: Period) -> _Scope:
    if territory.kind == "national":
        return _Scope(territory, period, None)
    inside = members(territory, communes(engine_of(session)))
    return _Scope(territory, period, tuple(c.code for c in inside))


Counted = tuple[dict[tuple[Any, ...], _Cell], _Cell, dict[str, int]]


def _scan(session: Session, scope: _Scope, keys: Sequence[str]) -> Counted:
    """The counts of each group and of the whole, and the refusals by reason, from the rows
    themselves: what any territory and grouping is counted by when the tallies cannot say it
    (and the tallies' oracle in the tests).

    Two grouped scans, one per table, with no join between them (referrals carry what their
    orientation is grouped by): a national year of a million referrals stays within the
    second. Statuses, acceptance, re-orientations, refusal reasons and first contacts come
    from the referrals query, grouped by its keys and those few values, and are pivoted here."""
    per_referral = bool(REFERRAL_KEYS & set(keys))
    cells: defaultdict[tuple[Any, ...], _Cell] = defaultdict(_Cell)
    total = _Cell()

    sql_keys = _sql_keys(keys)
    width, label = len(sql_keys), _labels(keys, sql_keys)
    route = col(Orientation.route)
    query = select(*_key_columns(Orientation, sql_keys), route, func.count())
    query = _scoped(query.select_from(Orientation), Orientation, scope, keys)
    if per_referral:  # the group of orientations with no referral at all
        made = select(col(Referral.id)).where(col(Referral.orientation_id) == col(Orientation.id))
        query = query.add_columns(func.count().filter(~made.exists()))
    for row in session.execute(_grouped(query, width, 1)).all():
        route_value, n = row[width], row[width + 1]
        total.add_orientations(route_value, n)
        if per_referral:
            n = row[width + 2]
        if n:
            cells[label(row)].add_orientations(route_value, n)

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
        func.count(col(Referral.previous_referral_id)),  # re-orientations
        func.count(col(Referral.first_contact_hours)),
    ).select_from(Referral)
    query = _scoped(query, Referral, scope, keys)
    refusals: dict[str, int] = {}
    for row in session.execute(_grouped(query, width, 4)).all():
        stored, past, accepted, why, n, reoriented, contacted = row[width:]
        status = shown_status(ReferralStatus(stored), bool(past)).value
        for cell in (cells[label(row, status)], total):
            cell.add_referrals(status, bool(accepted), n, reoriented, contacted)
        if status == ReferralStatus.REFUSEE.value:
            refusals[why or "non_precise"] = refusals.get(why or "non_precise", 0) + n
    if per_referral:
        # An orientation re-oriented to a second place counts once in each place's group;
        # twice in one group, once. Each was sent to a médiateur, and sent.
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
            cell = cells[key]
            cell.orientations = cell.sent = cell.routes[Route.MEDIATEUR.value] = n

    return cells, total, refusals


# --- the tallies --------------------------------------------------------------------------
# Kept by triggers (migration 0014, app.services.stats_tally): orientations and referrals by
# month and by day, by département of the person's commune, profile, route (orientations),
# theme, and for referrals their stored status, acceptance and refusal reason. They answer
# whole départements (national, a région, a département) grouped by these keys; the others
# (weeks, communes, EPCI, statuses and places, which need distinct orientations) are scanned.
# Every query sums: on PostgreSQL a tally is its cells and the deltas not yet folded into them
# (migration 0015), several rows per key.

TALLY_KEYS = frozenset({"month", "profile", "route", "theme", "departement"})
Using = Literal["auto", "scan", "tally"]


def _whole_departements(
    session: Session, scope: _Scope, keys: Sequence[str]
) -> tuple[str, ...] | Literal[False] | None:
    """The départements whose cells make the territory exactly: None for all of France (the
    communes out of the reference included, as the scan counts them), a tuple of codes, or
    False when the tallies cannot answer (a key they lack, a territory smaller than its
    départements, a région that holds only part of one)."""
    if not TALLY_KEYS.issuperset(keys):
        return False
    territory = scope.territory
    if territory.kind == "national":
        return None
    if territory.kind == "departement":
        return (territory.code,)
    if territory.kind != "region" or scope.communes is None:
        return False
    every = communes(engine_of(session))
    codes = sorted({c.departement for c in members(territory, every)})
    whole = sum(len(members(Territory("departement", d, d), every)) for d in codes)
    return tuple(codes) if whole == len(scope.communes) else False


def _month_after(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


# What the cells by département alone (grains `departement_*`: no profile, no theme) can be
# grouped by; a grouping by another key reads the detailed cells.
COARSE_KEYS = frozenset({"month", "departement", "route"})


def _spans(period: Period, coarse: bool = False) -> list[tuple[str, date, date]]:
    """The period as cells: its whole months as month cells (by their first day), the days
    before and after them as day cells; those by département alone when `coarse`."""
    month, day = ("departement_month", "departement_day") if coarse else ("month", "day")
    first = period.start if period.start.day == 1 else _month_after(period.start)
    end = period.end + timedelta(days=1)
    after = end if end.day == 1 else end.replace(day=1)  # the day after the last whole month
    if first >= after:
        return [(day, period.start, period.end)]
    spans = [(month, first, after - timedelta(days=1))]
    if period.start < first:
        spans.append((day, period.start, first - timedelta(days=1)))
    if after <= period.end:
        spans.append((day, after, period.end))
    return spans


def _cells_of(
    tally: Any, period: Period, departements: tuple[str, ...] | None, keys: Sequence[str]
) -> list[Any]:
    """The WHERE of a tally query: the period's cells, of the territory's départements."""
    grain, start = tally.c.grain, tally.c.period_start
    spans = _spans(period, coarse=COARSE_KEYS.issuperset(keys))
    where = [or_(*(and_(grain == g, start >= lo, start <= hi) for g, lo, hi in spans))]
    if departements is not None:
        where.append(tally.c.departement.in_(departements))
    elif "departement" in keys:  # as the scan's join on the commune table leaves them out
        where.append(tally.c.departement != NO_DEPARTEMENT)
    return where


def _from_tallies(
    session: Session, scope: _Scope, keys: Sequence[str], departements: tuple[str, ...] | None
) -> Counted:
    """What _scan counts, from the tallies' cells (by département alone where the keys allow:
    at 1 M referrals a national year is ~34,000 cells, ~255,000 in detail), where the scan reads
    every row. The open referrals past their deadline are read live (few: the
    service expires them every minute) and moved from their stored status to `expiree`, as
    they show; _Cell.add_referrals is linear, so each group's counts are summed first."""
    cells: defaultdict[tuple[Any, ...], _Cell] = defaultdict(_Cell)
    total = _Cell()
    sql_keys = _sql_keys(keys)
    width, label = len(sql_keys), _labels(keys, sql_keys)

    def key_columns(tally: Any) -> list[Any]:
        return [
            tally.c.period_start
            if key == "day"
            else literal(Route.MEDIATEUR.value)
            if key == "route" and tally is referral_tally
            else tally.c[key]
            for key in sql_keys
        ]

    where = _cells_of(orientation_tally, scope.period, departements, keys)
    route = orientation_tally.c.route
    query = select(*key_columns(orientation_tally), route, func.sum(orientation_tally.c.n))
    for row in session.execute(_grouped(query.where(*where), width, 1)).all():
        route_value, n = row[width], int(row[width + 1])
        if n:
            total.add_orientations(route_value, n)
            cells[label(row)].add_orientations(route_value, n)

    # (group, status, accepted, refusal reason) -> [referrals, re-orientations, contacted]
    sums: defaultdict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0, 0])
    c = referral_tally.c
    where = _cells_of(referral_tally, scope.period, departements, keys)
    query = select(
        *key_columns(referral_tally),
        c.status,
        c.accepted,
        c.refusal_reason,
        func.sum(c.n),
        func.sum(c.reoriented),
        func.sum(c.contacted),
    ).where(*where)
    for row in session.execute(_grouped(query, width, 3)).all():
        stored, accepted, why, *counts = row[width:]
        found = sums[(label(row), stored, bool(accepted), why or "")]
        for i, n in enumerate(counts):
            found[i] += int(n)

    # The past-due ones, scoped as the scan scopes them (their commune, its département).
    query = select(
        *_key_columns(Referral, sql_keys),
        col(Referral.status),
        col(Referral.accepted_at).is_not(None),
        func.count(),
        func.count(col(Referral.previous_referral_id)),
        func.count(col(Referral.first_contact_hours)),
    ).select_from(Referral)
    query = by_past_due_index(_scoped(query, Referral, scope, keys).where(past_due(utcnow())))
    for row in session.execute(_grouped(query, width, 2)).all():
        stored, accepted, *counts = row[width:]
        was, now = (sums[(label(row), s, bool(accepted), "")] for s in (stored, "expiree"))
        for i, n in enumerate(counts):
            was[i] -= n
            now[i] += n

    refusals: dict[str, int] = {}
    for (key, status, accepted, why), (n, reoriented, contacted) in sums.items():
        if not n:
            continue
        for cell in (cells[key], total):
            cell.add_referrals(status, accepted, n, reoriented, contacted)
        if status == ReferralStatus.REFUSEE.value:
            refusals[why or "non_precise"] = refusals.get(why or "non_precise", 0) + n
    return cells, total, refusals


def _tally(session: Session, scope: _Scope, keys: Sequence[str], using: Using = "auto") -> Counted:
    """The counts of each group and of the whole, and the refusals by reason: from the
    tallies when they can say them exactly, by a scan otherwise (`using` forces either: the
    tests compare them; "tally" where it cannot answer is an error)."""
    departements: tuple[str, ...] | Literal[False] | None = (
        False if using == "scan" else _whole_departements(session, scope, keys)
    )
    if departements is False:
        if using == "tally":
            raise ValueError(f"the tallies cannot count {scope.territory} by {keys}")
        return _scan(session, scope, keys)
    return _from_tallies(session, scope, keys, departements)


def _groups(
    session: Session, keys: Sequence[str], cells: dict[tuple[Any, ...], _Cell]
) -> list[dict[str, Any]]:
    """The groups in order, each with its figures, or withheld (`masked`) when small."""
    groups = []
    order = sorted(cells.items(), key=lambda kv: [(v is not None, v or "") for v in kv[0]])
    for key, cell in order if keys else ():
        group: dict[str, Any] = dict(zip(keys, key, strict=True))
        group["masked"] = masked = cell.orientations < SMALL_GROUP
        figures = cell.figures()
        group.update(dict.fromkeys(figures) if masked else figures)
        groups.append(group)
    _names(session, keys, groups)
    return groups


def referral_stats(
    session: Session,
    territory: Territory,
    period: Period,
    keys: Sequence[str],
    using: Using = "auto",
) -> dict[str, Any]:
    """GET /v1/stats/referrals: the groups, small ones withheld, and the exact totals."""
    scope = _scope(session, territory, period)
    cells, total, refusals = _tally(session, scope, keys, using)
    figures = total.figures()
    totals = {
        **{f.key: figures[f.key] for f in FIGURES},
        "by_route": dict(total.routes),
        "by_status": total.statuses,
        "median_hours_to_first_contact": _median_hours(session, scope, total.contacted),
        "refusal_reasons": dict(sorted(refusals.items())),
        "needs": _needs_stated(session, scope),
    }
    return {
        "filters": {
            "from": period.start.isoformat(),
            "to": period.end.isoformat(),
            "territory": str(territory),
            "territory_name": territory.name,
            "group_by": list(keys),
        },
        "groups": _groups(session, keys, cells),
        "totals": totals,
    }


def months(period: Period) -> list[str]:
    """Every month of the period (`2026-01`), in order."""
    found, year, month = [], period.start.year, period.start.month
    while (year, month) <= (period.end.year, period.end.month):
        found.append(f"{year}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return found


def every_month(period: Period, groups: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Groups by month as a series over every month of the period, a month without any
    orientation at zero (a chart's axis)."""
    by_month = {g["month"]: g for g in groups}
    empty = {**dict.fromkeys(COUNTS, 0), **dict.fromkeys(RATES), "masked": False}
    return [by_month.get(m, empty) for m in months(period)]


def month_groups(session: Session, territory: Territory, period: Period) -> list[dict[str, Any]]:
    """The groups of referral_stats by month alone, without its totals' extra reads (the
    median, the needs): what the figures page's charts show beside another grouping."""
    cells, _, _ = _tally(session, _scope(session, territory, period), ("month",))
    return _groups(session, ("month",), cells)


# --- CSV ---------------------------------------------------------------------------------


# A text cell starting with one of these is a formula to a spreadsheet (OWASP, "CSV
# Injection"): `=`, `+`, `-`, `@`, tab and carriage return, plus line feed and the full-width
# forms that LibreOffice and Excel also read as their ASCII twins.
FORMULA_STARTS = frozenset("=+-@\t\r\n\uff1d\uff0b\uff0d\uff20")


def csv_text(text: str) -> str:
    """Text as a spreadsheet shows it, never runs it: a cell that would start a formula gets a
    leading apostrophe, as OWASP advises (the csv writer then quotes what needs quoting)."""
    return "'" + text if text[:1] in FORMULA_STARTS else text


def _cell(value: Any) -> str:
    """A value as French spreadsheets read it: decimal comma, oui/non, empty for null; text
    that could start a formula defused (numbers, negative ones included, stay numbers)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "oui" if value else "non"
    if isinstance(value, float):
        return repr(value).replace(".", ",")
    if isinstance(value, int):
        return str(value)
    return csv_text(str(value))


# The headers of the coverage CSV (app.services.coverage.COLUMNS), as its page names them.
CSV_HEADERS = {
    "commune": "Code INSEE",
    "name": "Commune",
    "departement": "Département",
    "population": "Habitants",
    "distance_km": "Distance au lieu le plus proche (km)",
    "place_id": "Lieu le plus proche (identifiant)",
    "place_name": "Lieu le plus proche",
    "beyond": "Zone blanche",
}
Column = str | tuple[str, str]  # a field, headed by CSV_HEADERS; or a field and its header


def to_csv(rows: Iterable[Mapping[str, Any]], columns: Sequence[Column]) -> bytes:
    """Rows as CSV that a spreadsheet in France opens as is: UTF-8 with a byte-order mark,
    `;` between cells, decimal comma, oui/non, CRLF line ends, French headers."""
    pairs = [c if isinstance(c, tuple) else (c, CSV_HEADERS.get(c, c)) for c in columns]
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow([header for _, header in pairs])
    for row in rows:
        writer.writerow([_cell(row.get(name)) for name, _ in pairs])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


# The code column of each key that has one, beside its label (months and weeks read as is).
CODE_HEADERS = {
    "profile": "Profil (code)",
    "route": "Suite donnée (code)",
    "theme": "Démarche (code)",
    "status": "Statut (code)",
    "place": "Lieu de médiation (identifiant)",
    "commune": "Commune (code INSEE)",
    "epci": "Intercommunalité (SIREN)",
    "departement": "Département (code)",
}
MASKED_HEADER = f"Masqué (moins de {SMALL_GROUP} orientations)"


def key_label(key: str, group: Mapping[str, Any]) -> str | None:
    """A group's key as a person reads it: a profile, route, theme or status in words, the
    name of a place or territory; None where a territory key is empty."""
    value = group[key]
    if value is None:
        return NO_REFERRAL if key in REFERRAL_KEYS else None
    if key == "profile":
        return cast(str, words.PROFILES.get(value, value))
    if key == "route":
        return cast(str, words.ROUTES.get(value, value))
    if key == "theme":
        return words.theme_label(value)
    if key == "status":
        return cast(str, words.STATUSES.get(value, value))
    return str(group.get(f"{key}_name") or value)


def referral_columns(keys: Sequence[str]) -> list[tuple[str, str]]:
    """The statistics CSV: each key (its code, and its label), whether the row is withheld,
    FIGURES (rates in percent), the count of each status as shown."""
    columns: list[tuple[str, str]] = []
    for key in keys:
        if key in CODE_HEADERS:
            columns.append((key, CODE_HEADERS[key]))
        columns.append((f"{key}_label", GROUP_LABELS[key]))
    return [
        *columns,
        ("masked", MASKED_HEADER),
        *((f.key, f.header) for f in FIGURES),
        *((s, f"Statut actuel : {words.STATUSES[ReferralStatus(s)]}") for s in STATUSES),
    ]


def _csv_row(row: dict[str, Any]) -> dict[str, Any]:
    for key in RATES:
        if row.get(key) is not None:
            row[key] = round(100 * row[key], 1)
    return row


def csv_rows(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The groups of a statistics document as the CSV has them, then a row of the totals."""
    keys = document["filters"]["group_by"]
    rows = [
        _csv_row({**g, **{f"{k}_label": key_label(k, g) for k in keys}}) for g in document["groups"]
    ]
    totals = document["totals"]
    last = {**totals, **totals["by_status"], "masked": False}
    if keys:
        first = keys[0] if keys[0] in CODE_HEADERS else f"{keys[0]}_label"
        last[first] = "Total"
    return [*rows, _csv_row(last)]


def referral_csv(document: Mapping[str, Any]) -> bytes:
    """GET /v1/stats/referrals as CSV (the API's, the page's and the command line's)."""
    return to_csv(csv_rows(document), referral_columns(document["filters"]["group_by"]))
