"""make bench-more: the narrower measures in process (ASGI test client), each on a SQLite file.

1. GET /v1/places?near= among 20,000 places, and the search itself (PlaceIndex.near).
2. A page of GET /v1/referrals with 1,000 and with 1,000,000 referrals in the table.

Also the helpers of `python -m bench` (wrk, CPU time and memory of a server, the demo database
filled with referrals) and its web pages (`web_pages`). The orientation's throughput against
the reference app is `python -m bench` (bench/orientations.py).

Usage: python -m bench.load [--only places|referrals]"""

import argparse
import os
import random
import re
import sqlite3
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import insert
from sqlalchemy.engine import Engine
from sqlmodel import Session

from app.config import Settings
from app.db import make_engine, migrate
from app.main import create_app
from app.models import Orientation, Place, Referral, Role
from app.models.columns import RowShape
from app.places.importing import place_ids_by_source_id
from app.places.service import place_index
from app.services.commune_reference import Reference, read_reference
from app.services.communes import get_commune, import_reference
from app.services.demo import DEMO_MEDIATEUR_PLACE, demo_keys, load_demo
from app.services.keys import create_key
from bench.table import Table

COMMUNES = ["19272", "19275", "19031", "19121", "19269", "19028", "19255", "19153"]


def body(i: int) -> str:
    urgent = "true" if i % 2 else "false"
    commune = COMMUNES[i % len(COMMUNES)]
    return (
        '{"assessment": {"profile": "non_autonome_non_refractaire"}, '
        f'"procedure": {{"theme": "caf", "urgent": {urgent}}}, '
        f'"person": {{"commune": "{commune}", "consent": false}}}}'
    )


def lua_script(path: Path, token: str) -> None:
    bodies = ",\n".join("[[" + body(i) + "]]" for i in range(len(COMMUNES) * 2))
    path.write_text(
        f"""local bodies = {{{bodies}}}
local headers = {{["Content-Type"] = "application/json", ["Authorization"] = "Bearer {token}"}}
local i = 0
request = function()
  i = i + 1
  return wrk.format("POST", "/v1/orientations", headers, bodies[(i % #bodies) + 1])
end
"""
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else float("nan")


def wrk(
    url: str, script: Path, connections: int, seconds: int, threads: int = 2
) -> dict[str, float]:
    threads = min(threads, connections)
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def ms(label: str) -> float:
        match = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert match, out
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    requests = re.search(r"(\d+) requests in", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50": ms("50%"),
        "p99": ms("99%"),
        "requests": float(requests.group(1)) if requests else 0,
        "non_2xx": float(errors.group(1)) if errors else 0,
        "socket_errors": float(sum(int(g) for g in sockets.groups())) if sockets else 0,
    }


@lru_cache(maxsize=1)
def national_reference() -> Reference:
    """Every commune of France, read once for all the benchmark's databases."""
    return read_reference()


def demo_database(url: str) -> Engine:
    """A migrated database (SQLAlchemy URL) with every commune of France and the demo places."""
    engine = make_engine(url)
    migrate(engine)
    with Session(engine) as session:
        import_reference(session, national_reference())
        load_demo(session)  # finds the reference there: only the places are imported
    return engine


def p50_ms(call: Callable[[], object], n: int = 300) -> float:
    for _ in range(20):
        call()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def places_near(tmp: Path) -> None:
    engine = demo_database(f"sqlite:///{tmp / 'places.db'}")
    rng = random.Random(1)
    services = [
        "Aide aux démarches administratives",
        "Prendre en main un ordinateur",
        "Accompagnement CAF",
        "Utiliser un smartphone",
        "Naviguer sur internet",
    ]
    with Session(engine) as session:
        _, token = create_key(session, Role.COORDINATEUR, territory="national")
        session.execute(
            insert(Place),
            [
                {
                    "id": f"lieu_bench{i:05d}",
                    "name": f"Lieu {i}",
                    "kind": "mediation" if i % 7 else "france_services",
                    "latitude": rng.uniform(42.3, 51.0),
                    "longitude": rng.uniform(-4.7, 8.2),
                    "services": rng.sample(services, 2),
                    "hours": "Mo-Fr 09:00-12:00,14:00-17:00",
                    "accepts_referrals": True,
                }
                for i in range(20_000 - 16)
            ],
        )
        session.commit()
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(engine, Settings())) as client:
        url = "/v1/places?near=19272&limit=20"
        assert len(client.get(url, headers=headers).json()) == 20
        near = p50_ms(lambda: client.get(url, headers=headers))
        url_kind = "/v1/places?near=19272&kind=mediation&max_km=30&limit=20"
        near_kind = p50_ms(lambda: client.get(url_kind, headers=headers))
        health = p50_ms(lambda: client.get("/healthz"))
    with Session(engine) as session:
        index = place_index(session)
        origin = get_commune(session, "19272", [])
        search = p50_ms(lambda: index.near(origin, limit=20), 1000)
    print("GET /v1/places?near= among 20,000 places, in process (ASGI test client)")
    print(f"  p50 {near:.2f} ms (limit 20); with kind and max_km 30: {near_kind:.2f} ms")
    print(
        f"  of which the test client's own round trip (GET /healthz): {health:.2f} ms; "
        f"the search itself (PlaceIndex.near): {search:.3f} ms"
    )
    engine.dispose()


def filled_demo(db: Path, total: int, own: int) -> tuple[Engine, dict[str, str]]:
    """The demo database with `total` referrals sent from Tulle's France Services, `own` of
    them to the demo médiation place; its keys by role."""
    engine = demo_database(f"sqlite:///{db}")
    with Session(engine) as session:
        tokens = demo_keys(session)
        place_ids = place_ids_by_source_id(session)
    mediation = place_ids[DEMO_MEDIATEUR_PLACE]
    others = [p for s, p in place_ids.items() if s != DEMO_MEDIATEUR_PLACE]
    fill(db, total, own, mediation, others, place_ids["demo-fs-tulle"])
    return engine, tokens


def referral_pages(tmp: Path) -> None:
    print("GET /v1/referrals, one médiation place, in process (ASGI test client)")
    for total, own in ((1_000, 1_000), (1_000_000, 100_000)):
        engine, tokens = filled_demo(tmp / f"referrals-{total}.db", total, own)
        headers = {"Authorization": f"Bearer {tokens['mediateur']}"}
        with TestClient(create_app(engine, Settings())) as client:
            first = client.get("/v1/referrals?limit=20", headers=headers)
            assert first.status_code == 200 and len(first.json()["items"]) == 20, first.text
            cursor = first.json()["next_cursor"]

            def get(url: str, client: TestClient = client, h: dict[str, str] = headers) -> None:
                assert client.get(url, headers=h).status_code == 200

            page = p50_ms(lambda: get("/v1/referrals?limit=20"), 200)
            deep = p50_ms(lambda: get(f"/v1/referrals?limit=20&cursor={cursor}"), 200)  # noqa: B023
            status = p50_ms(lambda: get("/v1/referrals?limit=20&status=acceptee"), 200)
            big = p50_ms(lambda: get("/v1/referrals?limit=200"), 50)
        print(
            f"  {total:>9,} referrals ({own:,} to the place): page of 20 p50 {page:.2f} ms, "
            f"next page {deep:.2f} ms, status=acceptee {status:.2f} ms, page of 200 {big:.1f} ms"
        )
        engine.dispose()


def web_pages(tmp: Path, table: Table) -> None:
    """The web pages in process (ASGI test client), logged in as a person would be: the
    médiateur's summary and inbox for a place with 100,000 referrals (200,000 in the table), a
    referral's page, the coordinator's figures and coverage map of Corrèze, and the national
    map (admin). One row of `table` each (p50)."""
    engine, tokens = filled_demo(tmp / "web.db", 200_000, 100_000)
    settings = Settings(secret_key="b" * 32, web_key_login=True)
    for role, pages, n in (
        # The place's newest 1% of referrals are open (the inbox), the others final.
        (
            "mediateur",
            [
                "/v1/referrals/summary",
                "/mediateur",
                "/mediateur?statut=expiree",
                "/mediateur/orientations/orv_b000000000",
            ],
            50,
        ),
        ("coordinateur", ["/coordinateur", "/coordinateur/couverture"], 20),
        ("admin", ["/coordinateur/couverture"], 5),
    ):
        with TestClient(create_app(engine, settings)) as client:
            form = client.get("/connexion").text
            csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
            assert client.post("/connexion", data={"csrf": csrf, "cle": tokens[role]}).is_success
            for url in pages:
                # The API answers to the key; the pages, to the session just opened.
                h = {"Authorization": f"Bearer {tokens[role]}"} if url.startswith("/v1/") else {}
                size = len(client.get(url, headers=h).content)

                def get(url: str = url, client: TestClient = client, h: dict[str, str] = h) -> None:
                    assert client.get(url, headers=h).status_code == 200

                took = p50_ms(get, n)
                target = 50 if role == "mediateur" and "orientations/" not in url else None
                table.timed(
                    f"{url} ({role}, place with 100,000 referrals, SQLite)"
                    if role == "mediateur"
                    else f"{url} ({role}, SQLite)",
                    took,
                    target,
                    f"{size / 1e3:,.0f} kB",
                )
    engine.dispose()


# The columns a bench fill writes, in the order of its rows (bench.stats's generate adds what
# its statuses need); the others take the model's defaults (None for the transitions' and the
# personal data's), so a new column needs nothing here unless it is required.
ORIENTATION_COLUMNS = (
    "id",
    "created_at",
    "day",
    "api_key_id",
    "origin_place_id",
    "profile",
    "profile_source",
    "route",
    "do_now_at_france_services",
    "reasons",
    "rules_version",
    "theme",
    "urgent",
    "already_followed",
    "commune",
    "consent",
    "alternatives",
)
REFERRAL_COLUMNS = (
    "id",
    "orientation_id",
    "previous_referral_id",
    "code",
    "status",
    "place_id",
    "origin_place_id",
    "distance_km",
    "profile",
    "theme",
    "urgent",
    "commune",
    "day",
    "created_at",
    "updated_at",
    "expires_at",
    "version",
)
ORIENTATION_FILL = RowShape.of(Orientation, ORIENTATION_COLUMNS, "bench.load.fill")
REFERRAL_FILL = RowShape.of(Referral, REFERRAL_COLUMNS, "bench.load.fill")


def fill(db: Path, total: int, own: int, place: str, others: list[str], origin: str) -> None:
    """Bulk rows straight into SQLite: orientations and their referrals, newest last."""
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA foreign_keys=OFF")
    # As the service leaves them: the old ones final (what was waiting past its deadline
    # expired), the newest 1% still open, due in 2027.
    finals = ["terminee", "refusee", "expiree", "non_venue", "annulee"]
    opens = ["en_attente", "acceptee", "contactee"]
    recent = total - max(1, total // 100)
    step = max(1, total // own)
    # Made with the demo's agent key, as foreign keys want (a missing key broke `serve`).
    (agent_key,) = conn.execute("SELECT id FROM api_key WHERE role = 'agent' LIMIT 1").fetchone()

    def rows(kind: str):  # type: ignore[no-untyped-def]
        for i in range(total):
            at = f"2026-{1 + i * 10 // total:02d}-01 00:00:{i % 60:02d}.{i:06d}"[:26]
            oid = f"ori_b{i:09d}"
            if kind == "orientation":
                yield ORIENTATION_FILL.fill(
                    (
                        oid,
                        at,
                        at[:10],
                        agent_key,
                        origin,
                        "partiellement_autonome",
                        "declared",
                        "mediateur",
                        0,
                        "[]",
                        "v",
                        "caf",
                        0,
                        0,
                        "19272",
                        0,
                        "[]",
                    )
                )
            else:
                target = place if i % step == 0 else others[i % len(others)]
                status, due = (
                    (opens[i % 3], "2027" + at[4:]) if i >= recent else (finals[i % 5], at)
                )
                yield REFERRAL_FILL.fill(
                    (
                        f"orv_b{i:09d}",
                        oid,
                        None,
                        f"B{i:06d}",
                        status,
                        target,
                        origin,
                        1.0,
                        "partiellement_autonome",
                        "caf",
                        0,
                        "19272",
                        at[:10],
                        at,
                        at,
                        due,
                        1,
                    )
                )

    for shape, kind in ((ORIENTATION_FILL, "orientation"), (REFERRAL_FILL, "referral")):
        conn.executemany(
            f"INSERT INTO {shape.table.name} ({shape.column_list()}) "
            f"VALUES ({','.join('?' * len(shape.names))})",
            rows(kind),
        )
    conn.commit()
    conn.execute("ANALYZE")
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=["places", "referrals"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="passerelle-bench-") as tmp:
        if args.only in (None, "places"):
            places_near(Path(tmp))
        if args.only in (None, "referrals"):
            referral_pages(Path(tmp))


if __name__ == "__main__":
    main()
