"""make bench: Passerelle against a reference app, under the same load generator, in one run.

1. Throughput of POST /v1/orientations: wrk, 2 threads, 32 connections, 10 s, against the
   reference app (bench/reference_app.py) and Passerelle in turn, three rounds, each one
   uvicorn process on its own SQLite file, access logs off for both. Prints the medians of
   requests/s, p50/p99, CPU time per request, and the ratio of throughputs.
2. Passerelle at 256 connections: every answer must be a 201.
3. In process: GET /v1/places?near= among 20,000 places; a page of GET /v1/referrals with
   1,000 and with 1,000,000 referrals in the table.
4. Peak resident memory of each server process.

Usage: python -m bench.load [--seconds 10]"""

import argparse
import os
import random
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import insert
from sqlalchemy.engine import Engine
from sqlmodel import Session

from app.config import Settings
from app.db import make_engine, migrate
from app.main import create_app
from app.models import Place, Role
from app.services.commune_reference import Reference, read_reference
from app.services.communes import get_commune, import_reference
from app.services.demo import DEMO_MEDIATEUR_PLACE, demo_keys, load_demo
from app.services.keys import create_key
from app.services.place_import import place_ids_by_source_id
from app.services.places import place_index
from bench.table import Table

ROOT = Path(__file__).resolve().parent.parent
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


def start(args: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", *args, "--port", str(port), "--no-access-log"],
        env={**os.environ, **env},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    for _ in range(100):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/docs", timeout=1).status_code < 500:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"server on port {port} did not start: {process.stderr.read()!r}")  # type: ignore[union-attr]


def _pid(process: "subprocess.Popen[bytes] | int") -> int:
    return process if isinstance(process, int) else process.pid


def cpu_seconds(process: "subprocess.Popen[bytes] | int") -> float:
    """User + system CPU time of the process so far (all its threads)."""
    fields = Path(f"/proc/{_pid(process)}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(process: "subprocess.Popen[bytes] | int") -> float:
    status = Path(f"/proc/{_pid(process)}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else float("nan")


def wrk(
    url: str, script: Path, connections: int, seconds: int, threads: int = 2
) -> dict[str, float]:
    threads = min(threads, connections)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s",
         str(script), url],
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


def demo_database(db: Path) -> Engine:
    """A migrated database with every commune of France and the demo places."""
    engine = make_engine(f"sqlite:///{db}")
    migrate(engine)
    with Session(engine) as session:
        import_reference(session, national_reference())
        load_demo(session)  # finds the reference there: only the places are imported
    return engine


def prepare_passerelle(db: Path) -> str:
    engine = demo_database(db)
    with Session(engine) as session:
        token = demo_keys(session)["agent"]
    engine.dispose()
    return token


def throughput(tmp: Path, seconds: int, rounds: int) -> None:
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing: apt-get install wrk (make bench installs it)")
    token = prepare_passerelle(tmp / "passerelle.db")
    script = tmp / "orientation.lua"
    lua_script(script, token)
    reference = start(
        ["bench.reference_app:app", "--no-server-header"],
        {"REFERENCE_DB": str(tmp / "reference.db")},
        8101,
    )
    passerelle = start(
        [
            "app.main:create_app",
            "--factory",
            "--http",
            "app.server:GuardedProtocol",
            "--no-server-header",
        ],
        {"DATABASE_URL": f"sqlite:///{tmp / 'passerelle.db'}"},
        8102,
    )
    try:
        for port in (8101, 8102):  # warm-up
            wrk(f"http://127.0.0.1:{port}", script, 32, 2)
        # Rounds in turn, so that both see the same machine (a shared machine's speed drifts).
        runs: dict[str, list[dict[str, float]]] = {"reference": [], "passerelle": []}
        for _ in range(rounds):
            for name, process, port in (
                ("reference", reference, 8101),
                ("passerelle", passerelle, 8102),
            ):
                cpu = cpu_seconds(process)
                result = wrk(f"http://127.0.0.1:{port}", script, 32, seconds)
                result["cpu_ms"] = (cpu_seconds(process) - cpu) * 1000 / max(1, result["requests"])
                runs[name].append(result)
        ref, ours = (
            {k: statistics.median(r[k] for r in runs[name]) for k in runs[name][0]}
            for name in ("reference", "passerelle")
        )
        burst = wrk("http://127.0.0.1:8102", script, 256, seconds)
        print(
            f"POST /v1/orientations, wrk -t2 -c32 -d{seconds}s, {rounds} rounds in turn "
            "(medians), one uvicorn process each, SQLite"
        )
        for name, r in (("reference", ref), ("passerelle", ours)):
            print(
                f"  {name:<11} {r['rps']:8.0f} req/s   p50 {r['p50']:6.1f} ms   "
                f"p99 {r['p99']:6.1f} ms   CPU {r['cpu_ms']:.2f} ms/request   "
                f"errors {r['non_2xx'] + r['socket_errors']:.0f}"
            )
        print(f"  ratio passerelle / reference (throughput): {ours['rps'] / ref['rps']:.2f}")
        print(
            f"  passerelle at 256 connections: {burst['rps']:.0f} req/s, "
            f"{burst['requests']:.0f} requests, p99 {burst['p99']:.0f} ms, "
            f"non-2xx {burst['non_2xx']:.0f}, socket errors {burst['socket_errors']:.0f}"
        )
        print(
            f"  peak resident memory: reference {peak_rss_mib(reference):.0f} MiB, "
            f"passerelle {peak_rss_mib(passerelle):.0f} MiB"
        )
    finally:
        for process in (reference, passerelle):
            process.send_signal(signal.SIGINT)
            process.wait(10)


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
    engine = demo_database(tmp / "places.db")
    rng = random.Random(1)
    services = ["Aide aux démarches administratives", "Prendre en main un ordinateur",
                "Accompagnement CAF", "Utiliser un smartphone", "Naviguer sur internet"]
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
    engine = demo_database(db)
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


def web_pages(tmp: Path, table: "Table | None" = None) -> None:
    """The web pages in process (ASGI test client), logged in as a person would be: the
    médiateur's summary and inbox for a place with 100,000 referrals (200,000 in the table), a
    referral's page, the coordinator's figures and coverage map of Corrèze, and the national
    map (admin)."""
    print("Web pages, in process (ASGI test client), p50")
    engine, tokens = filled_demo(tmp / "web.db", 200_000, 100_000)
    settings = Settings(secret_key="b" * 32, web_key_login=True)
    figures = []
    for role, pages, n in (
        # The place's newest 1% of referrals are open (the inbox), the others final.
        (
            "mediateur",
            ["/v1/referrals/summary", "/mediateur", "/mediateur?statut=expiree",
             "/mediateur/orientations/orv_b000000000"],
            50,
        ),
        ("coordinateur", ["/coordinateur", "/coordinateur/couverture"], 20),
        ("admin", ["/coordinateur/couverture"], 5),
    ):
        with TestClient(create_app(engine, settings)) as client:
            form = client.get("/connexion").text
            csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
            assert client.post("/connexion", data={"csrf": csrf, "cle": tokens[role]}).is_success
            headers = {"Authorization": f"Bearer {tokens[role]}"} if url_is_api(pages) else {}
            for url in pages:
                h = headers if url.startswith("/v1/") else {}
                size = len(client.get(url, headers=h).content)

                def get(url: str = url, client: TestClient = client,
                        h: dict[str, str] = h) -> None:
                    assert client.get(url, headers=h).status_code == 200

                took = p50_ms(get, n)
                figures.append(f"  {role:<12} {url:<42} {took:7.1f} ms  {size / 1e3:,.0f} kB")
                if table is not None:
                    target = 50 if role == "mediateur" and "orientations/" not in url else None
                    table.timed(f"{url} ({role}, place with 100,000 referrals, SQLite)"
                                if role == "mediateur" else f"{url} ({role}, SQLite)",
                                took, target, f"{size / 1e3:,.0f} kB")
    print("\n".join(figures))
    engine.dispose()


def url_is_api(pages: list[str]) -> bool:
    return any(p.startswith("/v1/") for p in pages)


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

    def rows(kind: str):  # type: ignore[no-untyped-def]
        for i in range(total):
            at = f"2026-{1 + i * 10 // total:02d}-01 00:00:{i % 60:02d}.{i:06d}"[:26]
            oid = f"ori_b{i:09d}"
            if kind == "orientation":
                yield (oid, at, at[:10], "cle_bench", origin, "partiellement_autonome", "declared",
                       "mediateur", 0, "[]", "v", "caf", 0, 0, "19272", 0, "[]")
            else:
                target = place if i % step == 0 else others[i % len(others)]
                status, due = (
                    (opens[i % 3], "2027" + at[4:]) if i >= recent else (finals[i % 5], at)
                )
                yield (f"orv_b{i:09d}", oid, None, f"B{i:06d}", status, target, origin,
                       1.0, "partiellement_autonome", "caf", 0, "19272", at[:10], at, at, due, 1)

    conn.executemany(
        "INSERT INTO orientation (id, created_at, day, api_key_id, origin_place_id, profile, "
        "profile_source, route, do_now_at_france_services, reasons, rules_version, theme, "
        "urgent, already_followed, commune, consent, alternatives) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        rows("orientation"),
    )
    conn.executemany(
        "INSERT INTO referral (id, orientation_id, previous_referral_id, code, status, place_id, "
        "origin_place_id, distance_km, profile, theme, urgent, commune, day, created_at, "
        "updated_at, expires_at, version) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        rows("referral"),
    )
    conn.commit()
    conn.execute("ANALYZE")
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=["throughput", "places", "referrals", "web"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="passerelle-bench-") as tmp:
        if args.only in (None, "throughput"):
            throughput(Path(tmp), args.seconds, args.rounds)
        if args.only in (None, "places"):
            places_near(Path(tmp))
        if args.only in (None, "referrals"):
            referral_pages(Path(tmp))
        if args.only in (None, "web"):
            web_pages(Path(tmp))


if __name__ == "__main__":
    main()
