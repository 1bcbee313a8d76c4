"""The coordinator's figures add up, whatever the data: for generated orientations and
referrals (every route, re-orientations after refusals, every status including those past
their deadline, accepted or not), the API's totals are those counted here from the data
itself; every grouping adds up to them when nothing is masked; the CSV's total row, the
page's tiles and the page's total rows say the same; and the counts each rate is made of
hold together (accepted >= completed + no_show, rate = accepted / answered…). On both
databases."""

import csv
import io
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from app.db import insert_row
from app.models import Orientation, Referral
from app.models.common import new_id
from app.services import stats
from app.services.referrals import new_referral
from app.web.render import number, percent
from tests.conftest import World
from tests.test_web import login

TULLE, USSEL, BRIVE, GUERET = "19272", "19275", "19031", "23096"  # Guéret: outside Corrèze
PERIOD = ("2025-12-01", "2026-11-30")
# ISO week 2026-W01 starts on 29 December 2025; 15 December 2026 is after the period.
DAYS = ("2025-12-01", "2025-12-29", "2026-01-04", "2026-06-15", "2026-11-30", "2026-12-15")
ROUTE_OF = {
    "non_autonome_sans_envie": "france_services",
    "non_autonome_non_refractaire": "mediateur",
    "partiellement_autonome": "mediateur",
    "autonome": "aucune",
}
REASONS = (None, "hors_territoire", "releve_de_france_services", "pas_de_capacite", "autre")
# What a médiation place may do with a referral, as the lifecycle allows it from en_attente.
PATHS = (
    (),
    ("acceptee",),
    ("refusee",),
    ("annulee",),
    ("expiree",),
    ("acceptee", "annulee"),
    ("acceptee", "expiree"),
    ("acceptee", "contactee"),
    ("acceptee", "non_venue"),
    ("acceptee", "reorientee"),
    ("acceptee", "contactee", "non_venue"),
    ("acceptee", "contactee", "terminee"),
    ("acceptee", "contactee", "reorientee"),
)
FINAL = {"refusee", "annulee", "expiree", "non_venue", "terminee", "reorientee"}
# What each rate divides, written here again (not read from stats.FIGURES): a rate whose
# definition changed in the code fails here.
RATES_OF = {
    "acceptance_rate": ("accepted", "answered"),
    "completion_rate": ("completed", "accepted_closed"),
    "no_show_rate": ("no_show", "accepted_closed"),
}


@dataclass(frozen=True)
class Sent:
    """One referral: the steps its place took, whether its deadline has passed."""

    path: tuple[str, ...]
    past_due: bool
    reason: str | None  # when refused


@dataclass(frozen=True)
class Oriented:
    commune: str
    day: str
    profile: str
    theme: str
    # The referrals of the orientation in order: each one before the last was refused, then
    # re-oriented by the agent. Empty: none sent (already followed, or no place near).
    chain: tuple[Sent, ...] = field(default=())

    @property
    def route(self) -> str:
        return ROUTE_OF[self.profile]


def _sent(refused: bool) -> st.SearchStrategy[Sent]:
    return st.builds(
        Sent,
        st.just(("refusee",)) if refused else st.sampled_from(PATHS),
        st.booleans(),
        st.sampled_from(REASONS),
    )


@st.composite
def _oriented(draw: st.DrawFn) -> Oriented:
    profile = draw(st.sampled_from(sorted(ROUTE_OF)))
    chain: tuple[Sent, ...] = ()
    if ROUTE_OF[profile] == "mediateur" and draw(st.integers(0, 5)):  # 1 in 6 not sent
        refused = draw(st.integers(0, 2))
        chain = (*(draw(_sent(True)) for _ in range(refused)), draw(_sent(False)))
    return Oriented(
        draw(st.sampled_from((TULLE, USSEL, BRIVE, GUERET))),
        draw(st.sampled_from(DAYS)),
        profile,
        draw(st.sampled_from(("caf", "retraite"))),
        chain,
    )


def _shown(sent: Sent) -> str:
    """The status as shown, written here again: an open referral past due is expired."""
    stored = sent.path[-1] if sent.path else "en_attente"
    return "expiree" if stored in ("en_attente", "acceptee") and sent.past_due else stored


def expected_totals(made: list[Oriented]) -> dict[str, Any]:
    """The totals as a coordinator of Corrèze counts them by hand from the data."""
    counted = [o for o in made if o.commune != GUERET and PERIOD[0] <= o.day <= PERIOD[1]]
    sent = [s for o in counted for s in o.chain]
    shown = Counter(_shown(s) for s in sent)
    accepted = [s for s in sent if "acceptee" in s.path]
    expired_unanswered = sum(1 for s in sent if _shown(s) == "expiree" and "acceptee" not in s.path)
    routes = Counter(o.route for o in counted)
    totals: dict[str, Any] = {
        "orientations": len(counted),
        "to_mediateur": routes["mediateur"],
        "not_sent": sum(1 for o in counted if o.route == "mediateur" and not o.chain),
        "to_france_services": routes["france_services"],
        "no_orientation": routes["aucune"],
        "referrals": len(sent),
        "reoriented": sum(len(o.chain) - 1 for o in counted if o.chain),
        "answered": len(accepted) + shown["refusee"] + expired_unanswered,
        "accepted": len(accepted),
        "refused": shown["refusee"],
        "expired_unanswered": expired_unanswered,
        "accepted_closed": sum(1 for s in accepted if _shown(s) in FINAL),
        "completed": shown["terminee"],
        "no_show": shown["non_venue"],
    }
    assert set(RATES_OF) == set(stats.RATES)
    for key, (numerator, denominator) in RATES_OF.items():
        d = totals[denominator]
        totals[key] = round(totals[numerator] / d, 4) if d else None
    return totals


def insert(engine: Engine, world: World, made: list[Oriented], copies: int) -> None:
    """The rows the services would write (app.services.orientation, lifecycle): orientations,
    their referrals with the milestones the transitions keep, each orientation `copies`
    times. Straight into the tables, emptied first: hundreds of rows an example."""
    mediation = sorted(v for k, v in world.places.items() if k.startswith("demo-med-"))
    desk = world.places["demo-fs-tulle"]
    now = datetime.now(UTC)
    with Session(engine) as session:
        key_id = session.execute(text("SELECT id FROM api_key LIMIT 1")).scalar_one()
        session.execute(text("DELETE FROM referral"))
        session.execute(text("DELETE FROM orientation"))
        for o in made:
            for _ in range(copies):
                day = date.fromisoformat(o.day)
                created = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=9)
                oid = new_id("ori")
                insert_row(
                    session,
                    Orientation,
                    {
                        "id": oid,
                        "created_at": created,
                        "day": day,
                        "api_key_id": key_id,
                        "origin_place_id": desk,
                        "profile": o.profile,
                        "profile_source": "declared",
                        "route": o.route,
                        "do_now_at_france_services": False,
                        "reasons": [],
                        "rules_version": "test",
                        "theme": o.theme,
                        "urgent": False,
                        "already_followed": o.route == "mediateur" and not o.chain,
                        "commune": o.commune,
                        "consent": False,
                        "alternatives": [],
                    },
                )
                previous = None
                for place, sent in zip(mediation, o.chain, strict=False):
                    row = new_referral(
                        orientation_id=oid,
                        place_id=place,
                        origin_place_id=desk,
                        distance_km=1.0,
                        profile=o.profile,
                        theme=o.theme,
                        urgent=False,
                        commune=o.commune,
                        day=day,
                        now=created,
                        ttl_days=14,
                        previous_referral_id=previous,
                    )
                    row["status"] = sent.path[-1] if sent.path else "en_attente"
                    row["expires_at"] = now + timedelta(days=-1 if sent.past_due else 14)
                    if "acceptee" in sent.path:
                        row["accepted_at"] = created + timedelta(hours=2)
                    if "contactee" in sent.path:
                        row["first_contact_hours"] = 30.0
                    if sent.path == ("refusee",):
                        row["refusal_reason"] = sent.reason
                    insert_row(session, Referral, row)
                    previous = row["id"]
        session.commit()


# --- what the API, the CSV and the page say ------------------------------------------------


def check_figures(figures: dict[str, Any], where: str) -> None:
    """What holds within any set of figures: the parts within their whole, each rate the
    division of the counts beside it."""
    f = figures
    assert f["to_mediateur"] + f["to_france_services"] + f["no_orientation"] == f["orientations"]
    assert 0 <= f["not_sent"] <= f["to_mediateur"], where
    assert f["reoriented"] <= f["referrals"], where
    assert f["answered"] == f["accepted"] + f["refused"] + f["expired_unanswered"], where
    assert f["accepted"] <= f["answered"] <= f["referrals"], where
    assert f["accepted"] >= f["accepted_closed"] >= f["completed"] + f["no_show"], where
    assert sum(f[s] for s in stats.STATUSES) == f["referrals"], where
    for key, (numerator, denominator) in RATES_OF.items():
        d = f[denominator]
        assert f[key] == (round(f[numerator] / d, 4) if d else None), (where, key)


def _read_csv(raw: bytes) -> list[dict[str, str]]:
    assert raw.startswith(b"\xef\xbb\xbf")
    return list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig")), delimiter=";"))


def csv_value(value: Any, is_rate: bool) -> str:
    if value is None:
        return ""
    return repr(round(100 * value, 1)).replace(".", ",") if is_rate else str(value)


class Tables(HTMLParser):
    """The tables of a page as rows of cell texts; the tiles as label -> value."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[list[list[str]]] = []
        self.tiles: dict[str, str] = {}
        self._cell: list[str] | None = None
        self._tile_value: str | None = None
        self._in: str | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = (dict(attrs).get("class") or "").split()
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th") and self.tables:
            self._cell = []
        elif "fr-tile__title" in classes:
            self._in = "value"
        elif tag == "strong" and self._tile_value is not None and self._cell is None:
            self._in = "label"

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag in ("p", "strong"):
            self._in = None if self._in != "value" or tag == "p" else self._in

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        elif self._in == "value":
            self._tile_value = " ".join(data.split())
        elif self._in == "label" and self._tile_value is not None:
            self.tiles[data.strip()] = self._tile_value
            self._tile_value = None


def page_total_rows(html: str) -> dict[str, str]:
    """The page's tables, each header with the cell of its total row (the last)."""
    found: dict[str, str] = {}
    for table in Tables(html).tables:
        header, total = table[0], table[-1]
        keys = len(header) - len(total) + 1 if total and total[0] == "Total" else 0
        found.update(zip(header[keys:], total[1:] if keys else total, strict=True))
    return found


def shown(value: Any, is_rate: bool) -> str:
    """A figure as the page writes it."""
    return " ".join((percent(value) if is_rate else number(value)).split())


@pytest.fixture
def coordinator(client: TestClient, world: World) -> TestClient:
    """The client, logged in to the pages as the coordinator of Corrèze."""
    login(client, world, "coord")
    return client


@given(
    made=st.lists(_oriented(), max_size=10),
    copies=st.sampled_from((1, 5)),
)
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_every_figure_adds_up(
    coordinator: TestClient, world: World, engine: Engine, made: list[Oriented], copies: int
) -> None:
    client = coordinator
    insert(engine, world, made, copies)
    auth = world.auth("coord")
    period = f"from={PERIOD[0]}&to={PERIOD[1]}"

    def api(query: str) -> Any:
        answer = client.get(f"/v1/stats/referrals?{period}&{query}", headers=auth)
        assert answer.status_code == 200, answer.text
        return answer

    totals = api("").json()["totals"]
    expected = expected_totals(made * copies)
    assert {k: totals[k] for k in expected} == expected
    assert totals["by_route"] == {
        "mediateur": expected["to_mediateur"],
        "france_services": expected["to_france_services"],
        "aucune": expected["no_orientation"],
    }
    assert sum(totals["by_status"].values()) == totals["referrals"]
    assert sum(totals["refusal_reasons"].values()) == totals["refused"]
    check_figures({**totals, **totals["by_status"]}, "totals")

    sums = stats.COUNTS + stats.STATUSES
    for key in stats.GROUP_KEYS:
        document = api(f"group_by={key}").json()
        assert document["totals"] == totals, key  # whatever the grouping
        groups = document["groups"]
        shown_groups = [g for g in groups if not g["masked"]]
        for g in shown_groups:
            check_figures(g, f"{key}={g[key]}")
            if key not in stats.REFERRAL_KEYS:
                assert g["referrals"] == g["to_mediateur"] - g["not_sent"] + g["reoriented"]
        for g in groups:
            if g["masked"]:
                assert all(g[f] is None for f in sums + stats.RATES), key
        if len(shown_groups) == len(groups):  # nothing masked: the groups add up
            added = {f: sum(g[f] for g in groups) for f in sums}
            for f in sums:
                whole = totals["by_status"][f] if f in stats.STATUSES else totals[f]
                if key in stats.REFERRAL_KEYS and f in stats.AT_THE_DESK:
                    # An orientation counts in the group of each of its referrals: by place,
                    # one more time per re-orientation.
                    assert added[f] >= whole, (key, f)
                    if key == "place" and f in ("orientations", "to_mediateur"):
                        assert added[f] == whole + totals["reoriented"], (key, f)
                else:
                    assert added[f] == whole, (key, f)
        else:
            for f in sums:
                whole = totals["by_status"][f] if f in stats.STATUSES else totals[f]
                if not (key in stats.REFERRAL_KEYS and f in stats.AT_THE_DESK):
                    assert sum(g[f] for g in shown_groups) <= whole, (key, f)

        # The CSV: a row per group, then the total row, in the page's words.
        rows = _read_csv(api(f"group_by={key}&format=csv").content)
        assert len(rows) == len(groups) + 1
        total_row = rows[-1]
        assert total_row[next(iter(total_row))] == "Total"
        for figure in stats.FIGURES:
            assert total_row[figure.header] == csv_value(totals[figure.key], bool(figure.of))
        for row, g in zip(rows, groups, strict=False):
            assert row[stats.FIGURES[0].header] == csv_value(g["orientations"], False)

    # The page: its tiles and the total rows of its tables say the totals.
    page = client.get(f"/coordinateur?du={PERIOD[0]}&au={PERIOD[1]}&par=profile")
    assert page.status_code == 200
    tiles = Tables(page.text).tiles
    rows_total = page_total_rows(page.text)
    # The three tables share the figures out: each figure in one table, once.
    labels = [figure.label for figure in stats.FIGURES]
    headers = [h for table in Tables(page.text).tables for h in table[0] if h in labels]
    assert sorted(headers) == sorted(labels)
    for figure in stats.FIGURES:
        value = shown(totals[figure.key], bool(figure.of))
        assert rows_total[figure.label] == value, figure.label
        if figure.label in tiles:
            assert tiles[figure.label] == value, figure.label
    assert {"Orientations", "Vers un médiateur", "Envois à un lieu", "Taux d'acceptation"} <= set(
        tiles
    )


def test_the_checks_can_fail() -> None:
    """check_figures refuses figures that do not add up, and the total row is found."""
    good = {
        "orientations": 3,
        "to_mediateur": 2,
        "not_sent": 0,
        "to_france_services": 1,
        "no_orientation": 0,
        "referrals": 3,
        "reoriented": 1,
        "answered": 3,
        "accepted": 2,
        "refused": 1,
        "expired_unanswered": 0,
        "accepted_closed": 2,
        "completed": 1,
        "no_show": 1,
        "acceptance_rate": round(2 / 3, 4),
        "completion_rate": 0.5,
        "no_show_rate": 0.5,
        **dict.fromkeys(stats.STATUSES, 0),
        "refusee": 1,
        "terminee": 1,
        "non_venue": 1,
    }
    check_figures(good, "good")
    for wrong in (
        {"accepted_closed": 1},  # fewer closed than completed + no_show
        {"acceptance_rate": 0.67},  # not accepted / answered
        {"answered": 4},  # more than accepted + refused + expired unanswered
        {"to_mediateur": 1},  # routes do not add up to orientations
        {"en_attente": 1},  # statuses do not add up to referrals
    ):
        with pytest.raises(AssertionError):
            check_figures({**good, **wrong}, "wrong")
    html = (
        "<table><tr><th>Profil</th><th>Orientations</th></tr><tr><td>Autonome</td><td>2</td>"
        "</tr><tr><th>Total</th><td>7</td></tr></table>"
    )
    assert page_total_rows(html) == {"Orientations": "7"}
    assert re.fullmatch(r"57\s%", shown(0.5714, True))
