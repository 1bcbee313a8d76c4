"""Coordinators' statistics, on a data set built by hand through the API whose every figure
was computed by hand (see `stats_world`), on both databases."""

import csv
import io
import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape
from sqlalchemy import text
from sqlalchemy.engine import Engine

from app.models.common import local_day
from app.services import stats as stats_service
from tests.conftest import World, orientation_body

TULLE, USSEL = "19272", "19275"
NOVEMBER_MONDAY = "2026-11-02"  # ISO week 2026-W45
# Ussel's three orientations: a Monday of December 2025 that ISO puts in 2026-W01, New Year's
# Day, and the Sunday that closes that week.
USSEL_DAYS = ("2025-12-29", "2026-01-01", "2026-01-04")
PERIOD = "from=2025-12-01&to=2026-11-30"


@dataclass
class StatsWorld:
    world: World
    referrals: dict[str, str]  # R1… -> referral id
    reoriented_place: str  # where R6's re-orientation (R9) went


def _orient(
    client: TestClient, world: World, agent: str, profile: str, commune: str, theme: str
) -> dict[str, object]:
    body = orientation_body(
        assessment={"profile": profile},
        procedure={"theme": theme, "urgent": False},
        person={"commune": commune, "consent": False},
    )
    answer = client.post("/v1/orientations", json=body, headers=world.auth(agent))
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]


def _move(
    client: TestClient,
    world: World,
    who: str,
    referral: str,
    status: str,
    reason: str | None = None,
) -> None:
    body = {"status": status, **({"reason": reason} if reason else {})}
    answer = client.post(f"/v1/referrals/{referral}/events", json=body, headers=world.auth(who))
    assert answer.status_code == 200, answer.text


def _age(engine: Engine, referral: str, hours: float) -> None:
    """Makes the referral `hours` older, so that its first contact takes that long."""
    with engine.begin() as connection:
        row = connection.execute(
            text("SELECT created_at FROM referral WHERE id = :id"), {"id": referral}
        ).one()
        created = row[0] if isinstance(row[0], datetime) else datetime.fromisoformat(row[0])
        connection.execute(
            text("UPDATE referral SET created_at = :at WHERE id = :id"),
            {"at": created - timedelta(hours=hours), "id": referral},
        )


@pytest.fixture
def stats_world(client: TestClient, world: World, engine: Engine) -> StatsWorld:
    """15 orientations, 14 referrals:

    Tulle, 2 November 2026, theme caf (12 orientations):
      T1–T3 non_autonome_non_refractaire -> R1 terminee (contact after 10 h),
            R2 non_venue (contact after 30 h), R3 refusee pas_de_capacite
      T4, T5 partiellement_autonome -> R4 contactee (after 4 h), R5 past its deadline (expiree)
      T6 non_autonome_sans_envie (France Services), T7 autonome (aucune): no referral
      T8–T12 partiellement_autonome -> R10–R14 en_attente
    Ussel, theme retraite, non_autonome_non_refractaire (3 orientations, days USSEL_DAYS):
      U1 -> R6 refusee hors_territoire, re-oriented by the agent -> R9 en_attente elsewhere
      U2 -> R7 acceptee then annulee; U3 -> R8 en_attente
    """
    refs: dict[str, str] = {}

    def tulle(profile: str) -> str | None:
        doc = _orient(client, world, "agent_tulle", profile, TULLE, "caf")
        referral = doc["referral"]
        return referral["id"] if referral else None  # type: ignore[index]

    for name in ("R1", "R2", "R3"):
        refs[name] = tulle("non_autonome_non_refractaire")  # type: ignore[assignment]
    for name in ("R4", "R5"):
        refs[name] = tulle("partiellement_autonome")  # type: ignore[assignment]
    assert tulle("non_autonome_sans_envie") is None
    assert tulle("autonome") is None
    for i in range(10, 15):
        refs[f"R{i}"] = tulle("partiellement_autonome")  # type: ignore[assignment]
    for name in ("R6", "R7", "R8"):
        doc = _orient(
            client, world, "agent_ussel", "non_autonome_non_refractaire", USSEL, "retraite"
        )
        refs[name] = doc["referral"]["id"]  # type: ignore[index]

    for name, hours in (("R1", 10), ("R2", 30), ("R4", 4)):
        _age(engine, refs[name], hours)
        _move(client, world, "med_tulle", refs[name], "acceptee")
        _move(client, world, "med_tulle", refs[name], "contactee")
    _move(client, world, "med_tulle", refs["R1"], "terminee")
    _move(client, world, "med_tulle", refs["R2"], "non_venue")
    _move(client, world, "med_tulle", refs["R3"], "refusee", "pas_de_capacite")
    _move(client, world, "med_ussel", refs["R6"], "refusee", "hors_territoire")
    answer = client.post(
        f"/v1/referrals/{refs['R6']}/reorient", json={}, headers=world.auth("agent_ussel")
    )
    assert answer.status_code == 201, answer.text
    refs["R9"] = answer.json()["id"]
    _move(client, world, "med_ussel", refs["R7"], "acceptee")
    _move(client, world, "med_ussel", refs["R7"], "annulee")

    with engine.begin() as connection:
        # R5 past its deadline, not yet moved by the service: shown expiree.
        connection.execute(
            text("UPDATE referral SET expires_at = :at WHERE id = :id"),
            {"at": datetime.now(UTC) - timedelta(minutes=1), "id": refs["R5"]},
        )
        for table in ("orientation", "referral"):
            connection.execute(
                text(f"UPDATE {table} SET day = :day WHERE commune = :c"),
                {"day": date.fromisoformat(NOVEMBER_MONDAY), "c": TULLE},
            )
        ussel = (
            connection.execute(
                text("SELECT id FROM orientation WHERE commune = :c ORDER BY created_at"),
                {"c": USSEL},
            )
            .scalars()
            .all()
        )
        for oid, day in zip(ussel, USSEL_DAYS, strict=True):
            connection.execute(
                text("UPDATE orientation SET day = :day WHERE id = :id"),
                {"day": date.fromisoformat(day), "id": oid},
            )
            connection.execute(
                text("UPDATE referral SET day = :day WHERE orientation_id = :id"),
                {"day": date.fromisoformat(day), "id": oid},
            )
    reoriented = client.get(f"/v1/referrals/{refs['R9']}", headers=world.auth("agent_ussel"))
    return StatsWorld(world, refs, reoriented.json()["place"]["id"])


def _stats(client: TestClient, world: World, query: str, who: str = "coord") -> dict:  # type: ignore[type-arg]
    answer = client.get(f"/v1/stats/referrals?{PERIOD}&{query}", headers=world.auth(who))
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def _groups(doc: dict, *keys: str) -> dict:  # type: ignore[type-arg]
    return {tuple(g[k] for k in keys) if len(keys) > 1 else g[keys[0]]: g for g in doc["groups"]}


FIGURES_COUNTED = (
    "to_mediateur",
    "not_sent",
    "to_france_services",
    "no_orientation",
    "reoriented",
    "answered",
    "accepted",
    "refused",
    "expired_unanswered",
    "accepted_closed",
    "completed",
    "no_show",
)
STATUSES_ZERO = dict.fromkeys(
    (
        "en_attente",
        "acceptee",
        "refusee",
        "annulee",
        "expiree",
        "contactee",
        "non_venue",
        "terminee",
        "reorientee",
    ),
    0,
)


def test_totals_and_rates_match_the_hand_count(client: TestClient, stats_world: StatsWorld) -> None:
    doc = _stats(client, stats_world.world, "")
    assert doc["filters"] == {
        "from": "2025-12-01",
        "to": "2026-11-30",
        "territory": "departement:19",
        "territory_name": "Corrèze",
        "group_by": [],
    }
    assert doc["groups"] == []
    totals = doc["totals"]
    assert totals["orientations"] == 15 and totals["referrals"] == 14
    assert totals["by_route"] == {"france_services": 1, "mediateur": 13, "aucune": 1}
    assert totals["by_status"] == {
        **STATUSES_ZERO,
        "en_attente": 7,
        "contactee": 1,
        "terminee": 1,
        "non_venue": 1,
        "refusee": 2,
        "expiree": 1,
        "annulee": 1,
    }
    # accepted R1 R2 R4 R7; answered: those, refused R3 R6, expired unanswered R5.
    assert totals["acceptance_rate"] == round(4 / 7, 4)
    # accepted and closed: R1 terminee, R2 non_venue, R7 annulee.
    assert totals["completion_rate"] == round(1 / 3, 4)
    assert totals["no_show_rate"] == round(1 / 3, 4)
    assert totals["median_hours_to_first_contact"] == pytest.approx(10.0, abs=0.1)
    assert totals["refusal_reasons"] == {"hors_territoire": 1, "pas_de_capacite": 1}
    # The counts each rate is made of, cumulative: R7 was accepted, then cancelled; R1 and R2
    # were accepted, and are now terminee and non_venue.
    assert {k: totals[k] for k in FIGURES_COUNTED} == {
        "to_mediateur": 13,
        "not_sent": 0,
        "to_france_services": 1,
        "no_orientation": 1,
        "reoriented": 1,
        "answered": 7,
        "accepted": 4,
        "refused": 2,
        "expired_unanswered": 1,
        "accepted_closed": 3,
        "completed": 1,
        "no_show": 1,
    }


def test_every_group_by(client: TestClient, stats_world: StatsWorld) -> None:
    w = stats_world.world
    masked = {"orientations": None, "referrals": None, "masked": True}

    def is_masked(group: dict) -> bool:  # type: ignore[type-arg]
        return all(group[k] is v for k, v in masked.items()) and group["terminee"] is None

    by_month = _groups(_stats(client, w, "group_by=month"), "month")
    assert set(by_month) == {"2025-12", "2026-01", "2026-11"}
    assert is_masked(by_month["2025-12"]) and is_masked(by_month["2026-01"])
    november = by_month["2026-11"]
    assert november == {
        "month": "2026-11",
        "masked": False,
        "orientations": 12,
        "referrals": 10,
        **STATUSES_ZERO,
        "en_attente": 5,
        "contactee": 1,
        "terminee": 1,
        "non_venue": 1,
        "refusee": 1,
        "expiree": 1,
        "acceptance_rate": 0.6,
        "completion_rate": 0.5,
        "no_show_rate": 0.5,
        # T1–T5, T8–T12 to a médiateur, T6 France Services, T7 autonomous; accepted R1 R2 R4,
        # refused R3, R5 expired unanswered; closed after acceptance: R1 R2.
        "to_mediateur": 10,
        "not_sent": 0,
        "to_france_services": 1,
        "no_orientation": 1,
        "reoriented": 0,
        "answered": 5,
        "accepted": 3,
        "refused": 1,
        "expired_unanswered": 1,
        "accepted_closed": 2,
        "completed": 1,
        "no_show": 1,
    }

    by_week = _groups(_stats(client, w, "group_by=week"), "week")
    assert set(by_week) == {"2026-W01", "2026-W45"}
    assert is_masked(by_week["2026-W01"]) and by_week["2026-W45"]["orientations"] == 12

    by_profile = _groups(_stats(client, w, "group_by=profile"), "profile")
    assert by_profile["non_autonome_non_refractaire"]["orientations"] == 6
    assert by_profile["non_autonome_non_refractaire"]["referrals"] == 7  # R9 too
    # The user's "Orientations 5 / Vers un médiateur 6": 6 orientations to a médiateur, 7
    # referrals of which 1 re-orientation.
    assert by_profile["non_autonome_non_refractaire"]["to_mediateur"] == 6
    assert by_profile["non_autonome_non_refractaire"]["reoriented"] == 1
    assert by_profile["partiellement_autonome"]["orientations"] == 7
    assert is_masked(by_profile["autonome"]) and is_masked(by_profile["non_autonome_sans_envie"])

    by_route = _groups(_stats(client, w, "group_by=route"), "route")
    assert by_route["mediateur"]["orientations"] == 13 and by_route["mediateur"]["referrals"] == 14
    assert is_masked(by_route["france_services"]) and is_masked(by_route["aucune"])

    by_theme = _groups(_stats(client, w, "group_by=theme"), "theme")
    assert by_theme["caf"]["orientations"] == 12 and is_masked(by_theme["retraite"])

    by_status = _groups(_stats(client, w, "group_by=status"), "status")
    assert set(by_status) == {
        None,
        "en_attente",
        "contactee",
        "terminee",
        "non_venue",
        "refusee",
        "expiree",
        "annulee",
    }
    waiting = by_status["en_attente"]  # R8, R9 (re-orientation of U1), R10–R14
    assert (waiting["orientations"], waiting["referrals"], waiting["en_attente"]) == (7, 7, 7)
    assert waiting["acceptance_rate"] is None  # nothing answered among them
    assert is_masked(by_status[None])  # T6, T7: no referral

    by_place = _groups(_stats(client, w, "group_by=place"), "place")
    tulle = by_place[w.places["demo-med-tulle"]]
    assert tulle["place_name"] == "Espace numérique de la médiathèque de Tulle"
    assert (tulle["orientations"], tulle["referrals"]) == (10, 10)
    assert (tulle["to_mediateur"], tulle["not_sent"], tulle["reoriented"]) == (10, 0, 0)
    assert tulle["acceptance_rate"] == 0.6 and tulle["completion_rate"] == 0.5
    assert is_masked(by_place[w.places["demo-med-ussel"]]) and is_masked(by_place[None])
    assert is_masked(by_place[stats_world.reoriented_place])

    by_commune = _groups(_stats(client, w, "group_by=commune"), "commune")
    assert by_commune[TULLE]["commune_name"] == "Tulle"
    assert by_commune[TULLE]["orientations"] == 12 and is_masked(by_commune[USSEL])

    by_epci = _groups(_stats(client, w, "group_by=epci"), "epci")
    assert sorted(g["orientations"] or 0 for g in by_epci.values()) == [0, 12]
    assert all(g["epci_name"] for g in by_epci.values())

    by_dept = _groups(_stats(client, w, "group_by=departement"), "departement")
    assert by_dept == {"19": by_dept["19"]}
    assert by_dept["19"]["departement_name"] == "Corrèze"
    assert by_dept["19"]["orientations"] == 15 and by_dept["19"]["referrals"] == 14

    both = _groups(_stats(client, w, "group_by=month,profile"), "month", "profile")
    partial = both[("2026-11", "partiellement_autonome")]  # T4 T5 T8–T12
    assert (partial["orientations"], partial["referrals"]) == (7, 7)
    assert (partial["en_attente"], partial["contactee"], partial["expiree"]) == (5, 1, 1)
    assert is_masked(both[("2026-11", "non_autonome_non_refractaire")])
    # Totals stay exact whatever is masked.
    assert _stats(client, w, "group_by=month,profile")["totals"]["orientations"] == 15


def test_days_are_inclusive(client: TestClient, stats_world: StatsWorld) -> None:
    w = stats_world.world

    def orientations(query: str) -> int:
        answer = client.get(f"/v1/stats/referrals?{query}", headers=w.auth("coord"))
        assert answer.status_code == 200, answer.text
        return answer.json()["totals"]["orientations"]  # type: ignore[no-any-return]

    assert orientations(f"from={NOVEMBER_MONDAY}&to={NOVEMBER_MONDAY}") == 12
    assert orientations("from=2026-11-03&to=2026-11-30") == 0
    assert orientations("from=2026-01-01&to=2026-01-04") == 2
    assert orientations("from=2025-12-29&to=2025-12-29") == 1


def test_the_day_is_the_day_in_paris(client: TestClient, world: World, engine: Engine) -> None:
    assert local_day(datetime(2025, 12, 31, 23, 30, tzinfo=UTC)) == date(2026, 1, 1)  # CET
    assert local_day(datetime(2026, 6, 30, 22, 30, tzinfo=UTC)) == date(2026, 7, 1)  # CEST
    assert local_day(datetime(2026, 6, 30, 21, 30, tzinfo=UTC)) == date(2026, 6, 30)
    _orient(client, world, "agent_tulle", "autonome", TULLE, "caf")
    with engine.connect() as connection:
        created, day = connection.execute(text("SELECT created_at, day FROM orientation")).one()
    created = created if isinstance(created, datetime) else datetime.fromisoformat(created)
    day = day if isinstance(day, date) else date.fromisoformat(day)
    assert day == local_day(created)


def test_scope(client: TestClient, stats_world: StatsWorld, engine: Engine) -> None:
    w = stats_world.world

    def status(query: str, who: str = "coord") -> int:
        code: int = client.get(f"/v1/stats/referrals?{query}", headers=w.auth(who)).status_code
        return code

    with engine.connect() as connection:
        tulle_epci = connection.execute(
            text("SELECT epci FROM commune WHERE code = :c"), {"c": TULLE}
        ).scalar_one()
        # An EPCI with communes in Corrèze and elsewhere lies in no single département.
        astride = (
            connection.execute(
                text(
                    "SELECT epci FROM commune WHERE epci <> '' GROUP BY epci "
                    "HAVING COUNT(DISTINCT departement) > 1 "
                    "AND SUM(CASE WHEN departement = '19' THEN 1 ELSE 0 END) > 0"
                )
            )
            .scalars()
            .first()
        )
    assert status("territory=departement:19") == 200
    assert status(f"territory=epci:{tulle_epci}") == 200
    assert status("territory=departement:23") == 403
    assert status("territory=region:75") == 403  # Nouvelle-Aquitaine holds Corrèze, not the reverse
    assert status("territory=national") == 403
    if astride:
        assert status(f"territory=epci:{astride}") == 403
    assert status("territory=departement:99") == 422
    assert status("territory=corrèze") == 422
    assert status("group_by=month,age") == 422
    assert status("from=2026-12-01&to=2026-11-01") == 422
    assert status("from=2026-13-01") == 422
    for role in ("agent_tulle", "med_tulle"):
        assert status("", role) == 403
    assert client.get("/v1/stats/referrals").status_code == 401
    # The admin sees all; outside Corrèze there is nothing.
    national = _stats(client, w, "territory=national", "admin")
    assert national["totals"]["orientations"] == 15
    assert _stats(client, w, "territory=departement:23", "admin")["totals"]["orientations"] == 0
    assert _stats(client, w, "territory=region:75", "admin")["totals"]["orientations"] == 15
    forbidden = client.get("/v1/stats/referrals?territory=national", headers=w.auth("coord"))
    assert forbidden.headers["content-type"] == "application/problem+json"
    assert "departement:19" in forbidden.json()["detail"]


def test_nothing_that_names_a_person(client: TestClient, stats_world: StatsWorld) -> None:
    body = client.get(
        f"/v1/stats/referrals?{PERIOD}&group_by=month,profile,route,theme,status,place,commune",
        headers=stats_world.world.auth("coord"),
    ).text
    for referral in stats_world.referrals.values():
        assert referral not in body
    for personal in ("Jeanne", "06 01", "0601", "ori_", "orv_", "note"):
        assert personal not in body


def _read_csv(answer: object) -> list[dict[str, str]]:
    raw: bytes = answer.content  # type: ignore[attr-defined]
    assert raw.startswith(b"\xef\xbb\xbf")
    text_ = raw.decode("utf-8-sig")
    assert "\r\n" in text_
    return list(csv.DictReader(io.StringIO(text_), delimiter=";"))


def test_csv_both_ways(client: TestClient, stats_world: StatsWorld) -> None:
    w = stats_world.world
    by_param = client.get(
        f"/v1/stats/referrals?{PERIOD}&group_by=month&format=csv", headers=w.auth("coord")
    )
    by_accept = client.get(
        f"/v1/stats/referrals?{PERIOD}&group_by=month",
        headers={**w.auth("coord"), "Accept": "text/csv"},
    )
    for answer in (by_param, by_accept):
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "text/csv; charset=utf-8"
        assert "attachment" in answer.headers["content-disposition"]
        rows = {r["Mois"]: r for r in _read_csv(answer)}
        assert list(rows) == ["2025-12", "2026-01", "2026-11", "Total"]
        assert rows["2026-11"]["Orientations"] == "12"
        assert rows["2026-11"]["Vers un médiateur"] == "10"
        assert rows["2026-11"]["Taux d'acceptation (%)"] == "60,0"
        assert rows["2026-11"]["dont acceptés"] == "3"
        assert rows["2026-11"]["Masqué (moins de 5 orientations)"] == "non"
        masked = rows["2025-12"]
        assert masked["Masqué (moins de 5 orientations)"] == "oui"
        assert masked["Orientations"] == "" and masked["Taux d'acceptation (%)"] == ""
        total = rows["Total"]
        assert (total["Orientations"], total["Vers un médiateur"], total["Envois à un lieu"]) == (
            "15",
            "13",
            "14",
        )
        assert total["Taux d'acceptation (%)"] == "57,1"  # 4 / 7, as the page's 57 %
        assert total["Statut actuel : En attente"] == "7"
    assert by_param.content == by_accept.content


def test_csv_in_the_words_of_the_page(client: TestClient, stats_world: StatsWorld) -> None:
    """French headers, each code beside its label, rates in percent, a total row: the
    figures of the page, and still the codes for a program."""
    answer = client.get(
        f"/v1/stats/referrals?{PERIOD}&group_by=profile,status&format=csv",
        headers=stats_world.world.auth("coord"),
    )
    header = answer.content.decode("utf-8-sig").splitlines()[0].split(";")
    assert header[:5] == [
        "Profil (code)",
        "Profil",
        "Statut (code)",
        "Statut",
        "Masqué (moins de 5 orientations)",
    ]
    assert all(not re.fullmatch(r"[a-z_]+", h) for h in header), header  # no field name
    rows = _read_csv(answer)
    waiting = next(
        r
        for r in rows
        if (r["Profil (code)"], r["Statut (code)"]) == ("partiellement_autonome", "en_attente")
    )
    assert waiting["Profil"] == "Partiellement autonome et volontaire"
    assert waiting["Statut"] == "En attente" and waiting["Orientations"] == "5"
    no_referral = next(r for r in rows if r["Statut (code)"] == "" and r["Profil (code)"])
    assert no_referral["Statut"] == "Aucun envoi"
    assert rows[-1]["Profil (code)"] == "Total" and rows[-1]["Orientations"] == "15"
    # Without any grouping, the file is the total alone.
    alone = _read_csv(
        client.get(
            f"/v1/stats/referrals?{PERIOD}&format=csv", headers=stats_world.world.auth("coord")
        )
    )
    assert len(alone) == 1 and alone[0]["Orientations"] == "15"
    assert alone[0]["Taux d'accompagnements terminés (%)"] == "33,3"


# --- coverage ------------------------------------------------------------------------------


def _haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Written again here, apart from app.triage.geo, to check the k-d tree's answers."""
    from math import asin, cos, radians, sin, sqrt

    a = (
        sin(radians(lat2 - lat1) / 2) ** 2
        + cos(radians(lat1)) * cos(radians(lat2)) * sin(radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371.0088 * asin(sqrt(a))


def test_coverage_distances_against_brute_force(
    client: TestClient, world: World, engine: Engine
) -> None:
    places = [
        p
        for p in client.get(
            "/v1/places?kind=mediation&limit=500", headers=world.auth("coord")
        ).json()
        if p["accepts_referrals"]
    ]
    assert len(places) >= 5
    answer = client.get("/v1/stats/coverage?max_km=12", headers=world.auth("coord"))
    assert answer.status_code == 200, answer.text
    doc = answer.json()
    assert doc["filters"] == {
        "territory": "departement:19",
        "territory_name": "Corrèze",
        "max_km": 12.0,
        "need": None,
    }
    with engine.connect() as connection:
        expected = {
            code: (lat, lon, population)
            for code, lat, lon, population in connection.execute(
                text(
                    "SELECT code, latitude, longitude, population FROM commune "
                    "WHERE departement = '19' AND kind = 'COM'"
                )
            )
        }
    rows = doc["communes"]
    assert {r["commune"] for r in rows} == set(expected) and len(rows) == len(expected) > 250
    for row in rows:
        lat, lon, population = expected[row["commune"]]
        distances = sorted(
            (_haversine_km(lat, lon, p["latitude"], p["longitude"]), p["id"]) for p in places
        )
        assert row["distance_km"] == pytest.approx(distances[0][0], abs=0.051)
        if distances[1][0] - distances[0][0] > 0.01:
            assert row["place"]["id"] == distances[0][1]
        assert row["population"] == population
        assert row["beyond"] == (row["distance_km"] > 12)
    totals = doc["totals"]
    population = sum(r["population"] or 0 for r in rows)
    beyond = [r for r in rows if r["beyond"]]
    assert 0 < len(beyond) < len(rows)
    assert totals["communes"] == len(rows) and totals["population"] == population
    assert totals["communes_beyond"] == len(beyond)
    assert totals["population_beyond"] == sum(r["population"] or 0 for r in beyond)
    assert totals["share_beyond"] == round(totals["population_beyond"] / population, 4)
    assert totals["places"] == len(places)
    # A place's own commune is at 0 km (the demo places stand at the town halls).
    assert next(r for r in rows if r["commune"] == TULLE)["distance_km"] <= 0.5


def test_coverage_formats_and_scope(client: TestClient, world: World) -> None:
    import shapely
    from shapely.geometry import Point, shape

    auth = world.auth("coord")
    as_json = client.get("/v1/stats/coverage?max_km=10", headers=auth).json()
    for answer in (
        client.get("/v1/stats/coverage?max_km=10&format=csv", headers=auth),
        client.get("/v1/stats/coverage?max_km=10", headers={**auth, "Accept": "text/csv"}),
    ):
        assert answer.status_code == 200
        rows = _read_csv(answer)
        assert len(rows) == len(as_json["communes"])
        first, row = as_json["communes"][0], rows[0]
        assert row["Code INSEE"] == first["commune"] and row["Commune"] == first["name"]
        assert row["Lieu le plus proche (identifiant)"] == first["place"]["id"]
        distance = row["Distance au lieu le plus proche (km)"]
        assert distance == str(first["distance_km"]).replace(".", ",")
        assert row["Zone blanche"] == ("oui" if first["beyond"] else "non")

    geo = client.get("/v1/stats/coverage?max_km=10&format=geojson", headers=auth)
    assert geo.status_code == 200 and geo.headers["content-type"] == "application/geo+json"
    collection = geo.json()
    assert collection["type"] == "FeatureCollection"
    features = collection["features"]
    assert len(features) == len(as_json["communes"])
    by_code = {r["commune"]: r for r in as_json["communes"]}
    for feature in features:
        assert feature["type"] == "Feature"
        geometry = shape(feature["geometry"])
        assert geometry.geom_type in ("Polygon", "MultiPolygon") and geometry.is_valid
        minx, miny, maxx, maxy = geometry.bounds
        assert 1.0 < minx < maxx < 3.0 and 44.8 < miny < maxy < 45.9  # Corrèze, lon/lat order
        row = by_code[feature["properties"]["commune"]]
        assert feature["properties"]["distance_km"] == row["distance_km"]
        assert feature["properties"]["beyond"] == row["beyond"]
    tulle = next(f for f in features if f["properties"]["commune"] == TULLE)
    assert shape(tulle["geometry"]).contains(Point(1.7727, 45.2671))  # Tulle's centre
    parsed = shapely.from_geojson(geo.text)  # GEOS reads it as GeoJSON too
    assert shapely.get_num_geometries(parsed) == len(features)

    outside = client.get("/v1/stats/coverage?territory=departement:23", headers=auth)
    assert outside.status_code == 403
    assert client.get("/v1/stats/coverage?max_km=0", headers=auth).status_code == 422
    assert client.get("/v1/stats/coverage?format=xml", headers=auth).status_code == 422
    assert client.get("/v1/stats/coverage", headers=world.auth("agent_tulle")).status_code == 403


def test_coverage_cities_by_arrondissement_and_no_place(client: TestClient, world: World) -> None:
    paris = client.get(
        "/v1/stats/coverage?territory=departement:75", headers=world.auth("admin")
    ).json()
    codes = {r["commune"] for r in paris["communes"]}
    assert codes == {str(75101 + i) for i in range(20)}  # no 75056 counted twice
    # No médiation place near Paris in the demo: every arrondissement is beyond 30 km.
    assert paris["totals"]["communes_beyond"] == 20
    assert paris["totals"]["share_beyond"] == 1.0
    assert paris["totals"]["population"] > 2_000_000


def test_coverage_without_any_place(client: TestClient, engine: Engine) -> None:
    from sqlmodel import Session

    from app.models import Role
    from app.services.keys import create_key

    with Session(engine) as session:
        _, token = create_key(session, Role.COORDINATEUR, territory="departement:19")
    doc = client.get("/v1/stats/coverage", headers={"Authorization": f"Bearer {token}"}).json()
    assert doc["totals"]["places"] == 0
    assert doc["totals"]["communes_beyond"] == doc["totals"]["communes"] > 250
    assert all(r["distance_km"] is None and r["place"] is None for r in doc["communes"])


@pytest.mark.usefixtures("cli_env")
def test_stats_command_line(client: TestClient, stats_world: StatsWorld, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from app.cli import app as cli

    runner = CliRunner()
    out = tmp_path / "mois.csv"
    shown = runner.invoke(
        cli,
        [
            "stats",
            "referrals",
            "--territory",
            "departement:19",
            "--from",
            "2025-12-01",
            "--to",
            "2026-11-30",
            "--group-by",
            "month",
            "--csv",
            str(out),
        ],
        env={"COLUMNS": "250"},
    )
    assert shown.exit_code == 0, shown.output
    assert "Corrèze" in shown.output and "2026-11" in shown.output
    assert "Total : 15 orientations" in shown.output and "Acceptation 57,1 %" in shown.output
    api = client.get(
        f"/v1/stats/referrals?{PERIOD}&group_by=month&format=csv",
        headers=stats_world.world.auth("coord"),
    )
    assert out.read_bytes() == api.content  # the same figures, the same file

    refused = runner.invoke(cli, ["stats", "referrals", "--territory", "departement:99"])
    assert refused.exit_code == 2 and "Territoire inconnu" in refused.output

    cover = tmp_path / "couverture.csv"
    mapped = tmp_path / "couverture.geojson"
    covered = runner.invoke(
        cli,
        [
            "stats",
            "coverage",
            "--territory",
            "departement:19",
            "--max-km",
            "10",
            "--csv",
            str(cover),
            "--geojson",
            str(mapped),
        ],
        env={"COLUMNS": "250"},
    )
    assert covered.exit_code == 0, covered.output
    assert "au-delà de 10 km" in covered.output
    api_rows = client.get(
        "/v1/stats/coverage?max_km=10&format=csv", headers=stats_world.world.auth("coord")
    )
    assert cover.read_bytes() == api_rows.content
    assert mapped.read_bytes().startswith(b'{"type":"FeatureCollection"')


def parent(db: sqlite3.Connection, table: str, key: str, value: str) -> None:
    """A row with its key and placeholder values in its other required columns."""
    columns: dict[str, object] = {key: value}
    for _, name, kind, notnull, default, _pk in db.execute(f"PRAGMA table_info({table})"):
        if notnull and default is None and name not in columns:
            kind = kind.upper()
            columns[name] = (
                0
                if kind.startswith(("INT", "FLOAT", "BOOL", "NUMERIC"))
                else "[]"
                if kind == "JSON"
                else "2026-01-01 00:00:00.000000"
                if kind.startswith(("DATE", "TIME"))
                else ""
            )
    db.execute(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
        tuple(columns.values()),
    )


def test_migration_backfills_what_statistics_need(tmp_path: Path) -> None:
    """A database of the previous release keeps its history: 0005 derives the days and the
    referral's milestones from the stored rows and the handoff log."""
    from alembic import command

    from app.db import alembic_config, make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    command.upgrade(alembic_config(engine), "0004")
    with sqlite3.connect(tmp_path / "old.db") as db:
        parent(db, "commune", "code", "19272")
        for place in ("p", "m"):
            parent(db, "place", "id", place)
        parent(db, "api_key", "id", "k")
        db.execute(
            "INSERT INTO orientation (id, created_at, api_key_id, origin_place_id, profile, "
            "profile_source, route, do_now_at_france_services, reasons, rules_version, theme, "
            "urgent, already_followed, commune, consent, alternatives) VALUES ('ori_1', "
            "'2025-12-31 23:30:00.000000', 'k', 'p', 'autonome', 'declared', 'mediateur', 0, "
            "'[]', 'v', 'caf', 0, 0, '19272', 0, '[]')"
        )
        for rid, status in (("orv_1", "terminee"), ("orv_2", "refusee")):
            db.execute(
                "INSERT INTO referral (id, orientation_id, code, status, place_id, "
                "origin_place_id, distance_km, profile, theme, urgent, commune, created_at, "
                "updated_at, expires_at, version) VALUES (?, 'ori_1', ?, ?, 'm', 'p', 1.0, "
                "'autonome', 'caf', 0, '19272', '2025-12-31 23:30:00.000000', "
                "'2026-01-02 00:00:00.000000', '2026-01-14 00:00:00.000000', 3)",
                (rid, rid[-1], status),
            )
        for rid, at, to, reason in (
            ("orv_1", "2026-01-01 09:30:00.000000", "acceptee", None),
            ("orv_1", "2026-01-02 11:30:00.000000", "contactee", None),
            ("orv_1", "2026-01-05 08:00:00.000000", "terminee", "fait seule"),
            ("orv_2", "2026-01-01 10:00:00.000000", "refusee", "pas_de_capacite"),
        ):
            db.execute(
                "INSERT INTO handoff_event (orientation_id, referral_id, at, kind, actor_role, "
                "to_status, reason) VALUES ('ori_1', ?, ?, 'transition', 'mediateur', ?, ?)",
                (rid, at, to, reason),
            )
    command.upgrade(alembic_config(engine), "head")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT day FROM orientation")).scalar_one() == (
            "2026-01-01"  # 23:30 UTC on New Year's Eve is New Year's Day in Paris
        )
        rows = connection.execute(
            text(
                "SELECT id, day, accepted_at, first_contact_hours, refusal_reason "
                "FROM referral ORDER BY id"
            )
        ).all()
    assert rows[0][0] == "orv_1" and rows[0][1] == "2026-01-01"
    assert rows[0][2].startswith("2026-01-01 09:30") and rows[0][3] == 36.0 and rows[0][4] is None
    assert rows[1][1:] == ("2026-01-01", None, None, "pas_de_capacite")
    engine.dispose()


def test_orientations_without_needs_hold_no_json_null(tmp_path: Path) -> None:
    """0013: an orientation made without needs stored JSON's null, which an index on the
    orientations that state needs cannot leave out; it becomes SQL's NULL, the others stay."""
    from alembic import command

    from app.db import alembic_config, make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    command.upgrade(alembic_config(engine), "0012")
    with sqlite3.connect(tmp_path / "old.db") as db:
        parent(db, "commune", "code", "19272")
        parent(db, "place", "id", "p")
        parent(db, "api_key", "id", "k")
        for oid, needs in (("ori_1", "null"), ("ori_2", '{"free_only": true}'), ("ori_3", None)):
            db.execute(
                "INSERT INTO orientation (id, created_at, day, api_key_id, origin_place_id, "
                "profile, profile_source, route, do_now_at_france_services, reasons, "
                "rules_version, theme, urgent, already_followed, commune, consent, "
                "alternatives, needs) VALUES (?, '2026-01-01 10:00:00.000000', '2026-01-01', "
                "'k', 'p', 'autonome', 'declared', 'aucune', 0, '[]', 'v', 'caf', 0, 0, "
                "'19272', 0, '[]', ?)",
                (oid, needs),
            )
    command.upgrade(alembic_config(engine), "head")
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT id, needs FROM orientation ORDER BY id")).all()
    assert stored == [("ori_1", None), ("ori_2", '{"free_only": true}'), ("ori_3", None)]
    engine.dispose()


def test_geojson_of_a_commune_without_outline(
    client: TestClient, world: World, engine: Engine
) -> None:
    """Four Cantal communes restored in 2024 have no outline in the reference: their
    features are their routing points."""
    with engine.connect() as connection:
        bare = connection.execute(
            text(
                "SELECT code, latitude, longitude FROM commune "
                "WHERE departement = '15' AND kind = 'COM' AND shape IS NULL"
            )
        ).all()
    assert len(bare) == 4
    geo = client.get(
        "/v1/stats/coverage?territory=departement:15&format=geojson", headers=world.auth("admin")
    ).json()
    for code, lat, lon in bare:
        feature = next(f for f in geo["features"] if f["id"] == code)
        assert feature["geometry"]["type"] == "Point"
        assert feature["geometry"]["coordinates"] == pytest.approx([lon, lat], abs=1e-5)
    outlined = [f for f in geo["features"] if f["geometry"]["type"] != "Point"]
    assert len(outlined) == len(geo["features"]) - 4


# --- the coordinator's page ----------------------------------------------------------------


def test_the_page_says_what_the_api_and_the_csv_say(
    client: TestClient, stats_world: StatsWorld
) -> None:
    """The user's report: « Vers un médiateur » was 13 in the tile (orientations) and 14 in
    the table (referrals, the re-orientation a second time); « Acceptées » counted today's
    status beside a rate made of every acceptance. Now one figure, one label, one value."""
    from tests.test_stats_consistency import Tables, page_total_rows
    from tests.test_web import login

    login(client, stats_world.world, "coord")
    page = client.get("/coordinateur?du=2025-12-01&au=2026-11-30&par=profile")
    assert page.status_code == 200
    tiles, totals = Tables(page.text).tiles, page_total_rows(page.text)
    assert tiles["Vers un médiateur"] == totals["Vers un médiateur"] == "13"
    assert tiles["Envois à un lieu"] == totals["Envois à un lieu"] == "14"
    assert totals["dont réorientations"] == "1"
    assert tiles["Taux d'acceptation"] == totals["Taux d'acceptation"] == "57 %"
    assert (totals["dont acceptés"], totals["Acceptés, refusés ou expirés"]) == ("4", "7")
    assert "dont acceptés : 4 sur 7 acceptés, refusés ou expirés" not in page.text
    assert "acceptés : 4 sur 7 acceptés, refusés ou expirés" in page.text  # under the rate
    assert tiles["Taux d'accompagnements terminés"] == "33 %"
    assert "accompagnements terminés : 1 sur 3 acceptés et clos" in page.text
    assert "Acceptées</th>" not in page.text  # the current status, under a cumulative name

    # Each row adds up: its parts within it, beside the CSV's row.
    desk, sent, closed = Tables(page.text).tables
    assert closed[0][1:] == [
        "Acceptés et clos",
        "dont accompagnements terminés",
        "dont personnes non venues",
        "Taux d'accompagnements terminés",
        "Taux de personnes non venues",
    ]
    header = sent[0]
    ready = next(r for r in sent if r[0] == "Non autonome, prête à apprendre")
    row = dict(zip(header, ready, strict=True))
    assert (row["Envois à un lieu"], row["dont réorientations"]) == ("7", "1")
    assert int(row["dont acceptés"]) <= int(row["Acceptés, refusés ou expirés"]) <= 7
    assert row["Taux d'acceptation"] == "60 %"  # 3 / 5
    first = dict(zip(desk[0], next(r for r in desk if r[0] == ready[0]), strict=True))
    assert (first["Orientations"], first["Vers un médiateur"]) == ("6", "6")
    assert next(r for r in desk if r[0] == "Autonome")[1] == "masqué"

    # Every figure is defined on the page, with the same words as the API's description.
    for figure in stats_service.FIGURES:
        assert f"<dt><strong>{escape(figure.label)}</strong></dt>" in page.text
        assert escape(figure.definition) in page.text
    openapi = client.get("/openapi.json").json()
    described = openapi["paths"]["/v1/stats/referrals"]["get"]
    assert stats_service.FIGURE["accepted"].definition in described["description"]
    # Every total the API answers is declared (and described) in its schema.
    declared = openapi["components"]["schemas"]["ReferralStatsTotals"]["properties"]
    answered = client.get(f"/v1/stats/referrals?{PERIOD}", headers=stats_world.world.auth("coord"))
    assert set(answered.json()["totals"]) == set(declared)

    download = client.get("/coordinateur/statistiques.csv?du=2025-12-01&au=2026-11-30&par=profile")
    api = client.get(
        f"/v1/stats/referrals?{PERIOD}&group_by=profile&format=csv",
        headers=stats_world.world.auth("coord"),
    )
    assert download.content == api.content
    total = _read_csv(download)[-1]
    assert (total["Vers un médiateur"], total["Envois à un lieu"], total["dont acceptés"]) == (
        "13",
        "14",
        "4",
    )


def test_the_refusal_reasons_and_the_charts_in_words(
    client: TestClient, stats_world: StatsWorld, engine: Engine
) -> None:
    from tests.test_web import login

    with engine.begin() as connection:  # a refusal of the previous release, without reason
        connection.execute(
            text("UPDATE referral SET refusal_reason = NULL WHERE id = :id"),
            {"id": stats_world.referrals["R3"]},
        )
    login(client, stats_world.world, "coord")
    html = client.get("/coordinateur?du=2025-12-01&au=2026-11-30").text
    assert "Motifs des 2 envois refusés : Hors de notre territoire : 1 · Motif non précisé : 1" in (
        html
    )
    assert "non_precise" not in html
    # The bars say their series, as the legend does.
    assert "<title>Vers un médiateur, 2026-11 : 10</title>" in html
    assert "<title>Orientations, 2026-11 : 12</title>" in html
    assert "<title>Taux d&#x27;acceptation, 2026-11 : 60 %</title>" in html


def test_the_page_names_its_own_fields(client: TestClient, stats_world: StatsWorld) -> None:
    """A wrong period or grouping is told under the page's field, in its words (« Du »,
    « Au », « Regrouper par »); the API keeps naming its parameters."""
    from tests.test_web import login

    login(client, stats_world.world, "coord")
    backwards = client.get("/coordinateur?du=2026-05-01&au=2026-01-01")
    assert backwards.status_code == 422
    said = (
        "La période commence le 01/05/2026, après sa fin le 01/01/2026 : inversez « Du » et « Au »."
    )
    assert f'<p class="fr-error-text" id="du-erreur">{escape(said)}</p>' in backwards.text
    assert 'aria-describedby="du-erreur"' in backwards.text
    assert "« from »" not in backwards.text and "« to »" not in backwards.text
    assert 'value="2026-05-01"' in backwards.text  # what was typed stays in the field

    not_a_day = client.get("/coordinateur?au=hier")
    assert not_a_day.status_code == 422
    assert 'id="au-erreur">« Au » n&#39;est pas une date' in not_a_day.text

    unknown = client.get("/coordinateur?par=month&par=age")
    assert unknown.status_code == 422
    assert 'id="par-erreur"' in unknown.text and "Cochez parmi : Mois, Semaine, Profil" in (
        unknown.text
    )
    assert "group_by" not in unknown.text and "month, week" not in unknown.text

    # An empty date field is the default period, as the form sends it.
    assert client.get("/coordinateur?du=&au=").status_code == 200
    # A download asked with a wrong period says so in the page's words too.
    wrong = client.get("/coordinateur/statistiques.csv?du=2026-05-01&au=2026-01-01")
    assert wrong.status_code == 422 and "« Du »" in wrong.text

    auth = stats_world.world.auth("coord")
    api = client.get("/v1/stats/referrals?from=2026-05-01&to=2026-01-01", headers=auth).json()
    assert api["errors"][0]["loc"] == ["query", "from"] and "« from » et « to »" in api["detail"]
    api = client.get("/v1/stats/referrals?group_by=month,age", headers=auth).json()
    assert api["errors"][0]["loc"] == ["query", "group_by"]
    assert "month, week, profile" in api["detail"]
