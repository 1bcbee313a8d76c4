"""make bench (statistics): coordinators' figures on a national database of PostgreSQL.

1. Starts a throw-away PostgreSQL 15 (shared_buffers 2 GB, work_mem 64 MB: a small production
   server), migrates, loads every commune of France and the consolidated real file of places
   (../shared/data/places/lieux-consolides-v1.csv; every médiation place takes referrals).
2. Generates N referrals (default 1,000,000) and their orientations and handoff events: people
   spread over the communes by population and over the last 365 days; profiles, routes,
   themes, statuses, refusal reasons, first-contact delays and re-orientations drawn from
   plausible shares; each referral goes to the médiation place nearest the commune, from the
   France Services place nearest it. Bulk COPY, the tallies' deltas folded, VACUUM ANALYZE.
3. Serves Passerelle on it (`passerelle serve`) and times, over HTTP, the median of 7 calls
   after 2 warm-ups: GET /v1/stats/referrals for a département by month and profile over a
   year, and national by département; GET /v1/stats/coverage of a département and of France.
4. The same on a SQLite copy of that database (every row copied; SQLite's triggers make its
   tallies as they would the service's writes).

Usage: python -m bench.stats [--referrals 1000000] [--places FILE] [--no-sqlite]"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import psycopg
from sqlmodel import Session, SQLModel

from app.db import make_engine, migrate
from app.models import Orientation, PlaceKind, Referral, Role
from app.models.columns import RowShape
from app.models.common import local_day
from app.places.importing import import_places
from app.places.service import load_place_index
from app.places.sources import read_source
from app.services.commune_reference import read_reference
from app.services.communes import communes, import_reference
from app.services.coverage import coverage_communes
from app.services.keys import create_key
from app.services.stats_tally import FOLDS
from app.services.territories import Territory
from app.triage import PROCEDURE_THEMES
from bench.load import ORIENTATION_COLUMNS, REFERRAL_COLUMNS
from bench.table import Table
from tests.pgserver import free_port, postgres_server

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("PASSERELLE_SHARED_DATA", ROOT.parent / "shared" / "data"))
NOW = datetime.now(UTC)
TODAY = local_day(NOW)
YEAR = f"from={TODAY - timedelta(days=364)}&to={TODAY}"

# (profile, route, share of orientations)
PROFILES = (
    ("non_autonome_sans_envie", "france_services", 0.15),
    ("non_autonome_non_refractaire", "mediateur", 0.35),
    ("partiellement_autonome", "mediateur", 0.35),
    ("autonome", "aucune", 0.15),
)
REFERRED = 0.92  # of the mediateur route: the others were already followed, or had no place
# Status of a referral, its share, and the transitions that led there.
PATHS = (
    ("en_attente", 0.08, ()),
    ("acceptee", 0.07, ("acceptee",)),
    ("contactee", 0.10, ("acceptee", "contactee")),
    ("terminee", 0.38, ("acceptee", "contactee", "terminee")),
    ("non_venue", 0.08, ("acceptee", "non_venue")),
    ("refusee", 0.10, ("refusee",)),
    ("annulee", 0.04, ("acceptee", "annulee")),
    ("expiree", 0.12, ("expiree",)),
    ("reorientee", 0.03, ("acceptee", "contactee", "reorientee")),
)
REASONS = ("hors_territoire", "releve_de_france_services", "pas_de_capacite", "autre")
REORIENTED = 0.5  # of refused referrals, re-oriented by the agent


# The columns generate writes, in the order of its rows; the others take the model's defaults
# (None for the personal data's and the reminders'), so a new column needs nothing here unless
# it is required.
ORIENTATION_FILL = RowShape.of(Orientation, ORIENTATION_COLUMNS, "bench.stats.generate")
REFERRAL_FILL = RowShape.of(
    Referral,
    (*REFERRAL_COLUMNS, "accepted_at", "first_contact_hours", "refusal_reason"),
    "bench.stats.generate",
)


def generate(url: str, wanted: int, key_id: str, seed: int = 7) -> tuple[int, int, int]:
    """Fills the database; returns (orientations, referrals, events)."""
    rng = np.random.default_rng(seed)
    engine = make_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with Session(engine) as session:
        index = load_place_index(session)
    every = communes(engine)
    people = [c for c in coverage_communes(every, Territory("national", "", "")) if c.population]
    lats = np.array([c.latitude for c in people])
    lons = np.array([c.longitude for c in people])
    to_place, km = index.nearest_each(
        lats, lons, kind=PlaceKind.MEDIATION, accepting_referrals=True
    )
    from_place, _ = index.nearest_each(lats, lons, kind=PlaceKind.FRANCE_SERVICES)
    engine.dispose()
    weights = np.array([c.population for c in people], dtype=np.float64)

    mediateur_share = sum(s for _, route, s in PROFILES if route == "mediateur")
    refusals = {s: p for s, p, _ in PATHS}["refusee"]
    per_orientation = mediateur_share * REFERRED * (1 + refusals * REORIENTED)
    n = int(wanted / per_orientation)
    where = rng.choice(len(people), size=n, p=weights / weights.sum())
    profile = rng.choice(len(PROFILES), size=n, p=[s for *_, s in PROFILES])
    themes = list(PROCEDURE_THEMES)
    theme = rng.integers(0, len(themes), size=n)
    urgent = rng.random(n) < 0.3
    first_day = TODAY - timedelta(days=364)
    days = rng.integers(0, 365, size=n)
    seconds = rng.integers(7 * 3600, 17 * 3600, size=n)  # office hours, UTC
    referred = np.array([PROFILES[p][1] == "mediateur" for p in profile]) & (
        rng.random(n) < REFERRED
    )
    status_p = [p for _, p, _ in PATHS]

    orientations = referrals = events = 0
    with psycopg.connect(url) as connection, connection.cursor() as cursor:
        with (
            cursor.copy(
                f"COPY orientation ({ORIENTATION_FILL.column_list()}) FROM STDIN"
            ) as o_copy,
        ):
            for i in range(n):
                c = people[where[i]]
                at = datetime.combine(
                    first_day + timedelta(days=int(days[i])), datetime.min.time(), UTC
                ) + timedelta(seconds=int(seconds[i]))
                o_copy.write_row(
                    ORIENTATION_FILL.fill(
                        (
                            f"ori_bench{i:010d}",
                            at,
                            at.date(),
                            key_id,
                            index.places[from_place[where[i]]].id,
                            PROFILES[profile[i]][0],
                            "declared",
                            PROFILES[profile[i]][1],
                            False,
                            "[]",
                            "bench",
                            themes[theme[i]],
                            bool(urgent[i]),
                            False,
                            c.code,
                            False,
                            "[]",
                        )
                    )
                )
                orientations += 1
        referral_rows: list[tuple[object, ...]] = []
        event_rows: list[tuple[object, ...]] = []
        chosen = rng.choice(len(PATHS), size=int(n * 1.2) + 10, p=status_p)
        hours = rng.lognormal(np.log(30), 0.9, size=len(chosen))
        reason = rng.integers(0, len(REASONS), size=len(chosen))
        again = rng.random(len(chosen)) < REORIENTED
        k = 0
        for i in np.flatnonzero(referred).tolist():
            c = people[where[i]]
            oid = f"ori_bench{i:010d}"
            at = datetime.combine(
                first_day + timedelta(days=int(days[i])), datetime.min.time(), UTC
            ) + timedelta(seconds=int(seconds[i]))
            event_rows.append(
                (
                    oid,
                    None,
                    at,
                    "orientation",
                    "mediateur",
                    key_id,
                    "agent",
                    None,
                    None,
                    "en_attente",
                    None,
                )
            )
            previous = None
            while True:
                status, _, path = PATHS[chosen[k]]
                if status in ("en_attente", "acceptee") and at + timedelta(days=14) <= NOW:
                    # The service expires what waited past its deadline: only recent ones
                    # are still open (else it would be expiring them during the timing).
                    status, path = "expiree", (*path, "expiree")
                rid = f"orv_bench{k:010d}"
                accepted = at + timedelta(hours=2) if "acceptee" in path else None
                contact = float(round(hours[k], 2)) if "contactee" in path else None
                refusal = REASONS[reason[k]] if status == "refusee" else None
                referral_rows.append(
                    REFERRAL_FILL.fill(
                        (
                            rid,
                            oid,
                            previous,
                            f"{k:07d}",
                            status,
                            index.places[to_place[where[i]]].id,
                            index.places[from_place[where[i]]].id,
                            float(round(km[where[i]], 1)),
                            PROFILES[profile[i]][0],
                            themes[theme[i]],
                            bool(urgent[i]),
                            c.code,
                            at.date(),
                            at,
                            at,
                            at + timedelta(days=14),
                            1 + len(path),
                            accepted,
                            contact,
                            refusal,
                        )
                    )
                )
                step = at
                last = "en_attente"
                for target in path:
                    step += timedelta(hours=contact if target == "contactee" and contact else 3)
                    actor = "service" if target == "expiree" else "mediateur"
                    why = refusal if target == "refusee" else None
                    event_rows.append(
                        (oid, rid, step, "transition", None, None, actor, None, last, target, why)
                    )
                    last = target
                k += 1
                if status != "refusee" or not again[k - 1] or previous is not None:
                    break
                previous = rid  # re-oriented once: a second referral of the same orientation
        with cursor.copy(f"COPY referral ({REFERRAL_FILL.column_list()}) FROM STDIN") as r_copy:
            for row in referral_rows:
                r_copy.write_row(row)
        referrals = len(referral_rows)
        with cursor.copy(
            "COPY handoff_event (orientation_id, referral_id, at, kind, route, actor_key_id, "
            "actor_role, actor_place_id, from_status, to_status, reason) FROM STDIN"
        ) as e_copy:
            for row in event_rows:
                e_copy.write_row(row)
        events = len(event_rows)
        connection.commit()
    with psycopg.connect(url, autocommit=True) as connection:
        # The tallies' deltas the COPY appended, folded as the service's job would (measured:
        # the timed calls, not the fold of a bulk load and the vacuum that follows it).
        for statement in FOLDS:
            connection.execute(statement)
        connection.execute("VACUUM ANALYZE")
    return orientations, referrals, events


def timed(client: httpx.Client, path: str, token: str) -> tuple[float, httpx.Response]:
    """Median wall time of 7 calls after 2 warm-ups, in ms, and the last answer."""
    headers = {"Authorization": f"Bearer {token}"}
    times = []
    answer = None
    for attempt in range(9):
        started = time.perf_counter()
        answer = client.get(path, headers=headers)
        elapsed = (time.perf_counter() - started) * 1000
        if answer.status_code != 200:
            raise SystemExit(f"{path}: {answer.status_code} {answer.text[:300]}")
        if attempt >= 2:
            times.append(elapsed)
    assert answer is not None
    return statistics.median(times), answer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--referrals", type=int, default=1_000_000)
    parser.add_argument(
        "--places", type=Path, default=SHARED / "places" / "lieux-consolides-v1.csv"
    )
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    args = parser.parse_args()
    national(None, args.referrals, args.places, sqlite=not args.no_sqlite)


def national(table: Table | None, referrals: int, places: Path, sqlite: bool = True) -> None:
    """Fills a throw-away PostgreSQL, serves Passerelle on it and times its figures, then the
    same on a SQLite copy (`sqlite`); each one is a row of `table` when given."""
    if not places.exists():
        print(f"statistics benchmark skipped: {places} is missing (../shared/data)")
        if table is not None:
            table.add("statistics and coverage", "not measured", f"{places} is missing")
        return
    with postgres_server("shared_buffers=2GB", "work_mem=64MB") as (host, port):
        with psycopg.connect(
            f"postgresql://postgres@{host}:{port}/postgres", autocommit=True
        ) as connection:
            connection.execute("CREATE DATABASE passerelle_bench")
        url = f"postgresql://postgres@{host}:{port}/passerelle_bench"
        engine = make_engine(url.replace("postgresql://", "postgresql+psycopg://"))
        started = time.perf_counter()
        migrate(engine)
        with Session(engine) as session:
            import_reference(session, read_reference())
        with Session(engine) as session:
            report = import_places(session, read_source(places), accepts_referrals=True)
        with Session(engine) as session:
            admin, admin_token = create_key(session, Role.ADMIN, name="bench")
            _, coord_token = create_key(
                session, Role.COORDINATEUR, territory="departement:49", name="bench 49"
            )
            admin_id = admin.id
        engine.dispose()
        print(
            f"  reference and {report.created:,} places ({report.merged:,} merged, "
            f"{len(report.rejected):,} rejected) in {time.perf_counter() - started:.0f} s"
        )
        started = time.perf_counter()
        counts = generate(url, referrals, admin_id)
        print(
            f"  generated {counts[0]:,} orientations, {counts[1]:,} referrals, "
            f"{counts[2]:,} handoff events in {time.perf_counter() - started:.0f} s"
        )
        pg_url = url.replace("postgresql://", "postgresql+psycopg://")
        _serve_and_time(table, pg_url, "PostgreSQL", counts, admin_token, coord_token)
        if not sqlite:
            return
        path = Path(tempfile.mkdtemp()) / "national.db"
        started = time.perf_counter()
        copy_to_sqlite(pg_url, f"sqlite:///{path}")
        print(
            f"  copied to SQLite ({path.stat().st_size / 1e9:.1f} GB) in "
            f"{time.perf_counter() - started:.0f} s"
        )
        try:
            _serve_and_time(table, f"sqlite:///{path}", "SQLite", counts, admin_token, coord_token)
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)


def copy_to_sqlite(source: str, target: str) -> None:
    """Every table of the PostgreSQL database `source` into a migrated SQLite file: rows in
    foreign-key order, in chunks, SQLite's triggers keeping its tallies as the service's
    writes would (the PostgreSQL tallies are not copied)."""
    pg, lite = make_engine(source), make_engine(target)
    migrate(lite)
    with lite.begin() as connection:  # the migrations' own rows (data_version's), copied again
        for table in reversed(SQLModel.metadata.sorted_tables):
            connection.execute(table.delete())
    with pg.connect() as reading, lite.connect() as writing:
        # Off outside any transaction (a referral may name a later one as its previous).
        driver = writing.connection.driver_connection
        assert driver is not None
        driver.execute("PRAGMA foreign_keys=OFF")
        for table in SQLModel.metadata.sorted_tables:
            rows = reading.execution_options(yield_per=20_000).execute(table.select())
            for chunk in rows.mappings().partitions():
                writing.execute(table.insert(), [dict(r) for r in chunk])
            writing.commit()
        writing.exec_driver_sql("ANALYZE")
        writing.commit()
        driver.execute("PRAGMA foreign_keys=ON")
    pg.dispose()
    lite.dispose()


def _serve_and_time(
    table: Table | None,
    url: str,
    kind: str,
    counts: tuple[int, int, int],
    admin_token: str,
    coord_token: str,
) -> None:
    """`passerelle serve` on the database `url` (SQLAlchemy), /readyz and the figures timed."""
    print(f"  {kind}:")
    # The targets: national statistics under 300 ms on PostgreSQL, 1 s on SQLite.
    figures = 300 if kind == "PostgreSQL" else 1000
    serve_port = free_port()
    launched = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(serve_port)],
        env={**os.environ, "DATABASE_URL": url},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{serve_port}"
        with httpx.Client(base_url=base, timeout=120) as client:
            for _ in range(300):
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            ready = (time.perf_counter() - launched) * 1000
            print(f"  serve ready (/readyz 200) after {ready:,.0f} ms")
            if table is not None:
                table.timed(f"serve ready, {kind}, {counts[1]:,} referrals", ready, 5000)
            cases = (
                (
                    "referrals, departement:49, month+profile, a year",
                    coord_token,
                    f"/v1/stats/referrals?{YEAR}&territory=departement:49&group_by=month,profile",
                    figures,
                ),
                (
                    "referrals, national, by departement, a year",
                    admin_token,
                    f"/v1/stats/referrals?{YEAR}&territory=national&group_by=departement",
                    figures,
                ),
                (
                    "referrals, national, by month, a year",
                    admin_token,
                    f"/v1/stats/referrals?{YEAR}&territory=national&group_by=month",
                    figures,
                ),
                (
                    "coverage, departement:49",
                    coord_token,
                    "/v1/stats/coverage?territory=departement:49",
                    200,
                ),
                (
                    "coverage, France",
                    admin_token,
                    "/v1/stats/coverage?territory=national",
                    1000,
                ),
                (
                    "coverage, departement:49, GeoJSON",
                    coord_token,
                    "/v1/stats/coverage?territory=departement:49&format=geojson",
                    None,
                ),
                (
                    "coverage, France, GeoJSON",
                    admin_token,
                    "/v1/stats/coverage?territory=national&format=geojson",
                    2000,
                ),
            )
            for label, token, path, target in cases:
                ms, answer = timed(client, path, token)
                goal = f" (target < {target} ms)" if target else ""
                size = len(answer.content) / 1e6
                print(f"  {label:<48} p50 {ms:8.1f} ms{goal}, {size:.1f} MB")
                if table is not None:
                    table.timed(
                        f"{label}, {kind}, {counts[1]:,} referrals",
                        ms,
                        target,
                        f"{size:.1f} MB",
                    )
                    if "national" in path and "stats/referrals" in path:
                        table.checks[f"ms {label}, {kind}"] = ms
                if "stats/referrals" in path:
                    totals = answer.json()["totals"]
                    print(
                        f"      {totals['orientations']:,} orientations, "
                        f"{totals['referrals']:,} referrals, "
                        f"{len(answer.json()['groups'])} groups"
                    )
                elif "geojson" not in path:
                    t = answer.json()["totals"]
                    print(
                        f"      {t['communes']:,} communes, {t['places']:,} places, "
                        f"{t['share_beyond']:.2%} of {t['population']:,} people beyond "
                        "30 km"
                    )
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
