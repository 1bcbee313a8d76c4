"""make bench (orientations): POST /v1/orientations against the reference app, both under wrk in
alternating rounds, on SQLite and on PostgreSQL, at 1, 32 and 256 connections; then on
PostgreSQL with `passerelle serve --workers 2` and with three `passerelle serve` instances (a
fleet), counting the database connections at rest and under load.

Each cell: `rounds` rounds of `seconds` seconds, the reference then Passerelle, medians of
requests/s and of CPU time per request (all the server processes' user + system time over the
requests they answered). Three instances get three wrk processes, one per instance, their
connections split; their throughputs add up."""

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psycopg
from sqlmodel import Session

from app.services.demo import demo_keys
from bench.load import cpu_seconds, demo_database, lua_script, peak_rss_mib, wrk
from bench.table import Table
from tests.pgserver import free_ports

ROOT = Path(__file__).resolve().parent.parent


def prepare(url: str) -> str:
    """A migrated database (SQLAlchemy URL) with every commune and the demo; the agent's token."""
    engine = demo_database(url)
    with Session(engine) as session:
        token = demo_keys(session)["agent"]
    engine.dispose()
    return token


def _wait(port: int, process: subprocess.Popen[bytes], path: str = "/healthz") -> None:
    for _ in range(600):
        if process.poll() is not None:
            raise SystemExit(f"server on port {port} stopped ({process.args!r})")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise SystemExit(f"server on port {port} did not start")


class Servers:
    """N server processes (each a process group, so that `--workers` children count too)."""

    def __init__(self, commands: list[list[str]], env: dict[str, str], cwd: Path = ROOT) -> None:
        self.ports = free_ports(len(commands))
        # A file, not a pipe: an access log filling a pipe nobody reads would stall a server.
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop())
        self.processes = [
            subprocess.Popen(
                [*command, "--port", str(port)],
                env={**os.environ, **env},
                cwd=cwd,
                stdout=subprocess.DEVNULL,
                stderr=self.log,
                start_new_session=True,
            )
            for command, port in zip(commands, self.ports, strict=True)
        ]
        for port, process in zip(self.ports, self.processes, strict=True):
            _wait(port, process)

    def pids(self) -> list[int]:
        """Every process of the groups (uvicorn's --workers children included)."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    pgid = os.getpgid(int(entry.name))
                except OSError:
                    continue
                if pgid in {p.pid for p in self.processes}:
                    found.append(int(entry.name))
        return found

    def cpu(self) -> float:
        total = 0.0
        for pid in self.pids():
            with contextlib.suppress(OSError):  # a process gone meanwhile
                total += cpu_seconds(pid)
        return total

    def peak_mib(self) -> float:
        return max(peak_rss_mib(pid) for pid in self.pids())

    def stop(self) -> None:
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, 2)
        for process in self.processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
        self.log.close()


def load(servers: Servers, script: Path, connections: int, seconds: int) -> dict[str, float]:
    """wrk on every server at once, the connections split; summed throughput, worst p99."""
    results: list[dict[str, float]] = []
    share = max(1, connections // len(servers.ports))

    def one(port: int) -> None:
        results.append(
            wrk(
                f"http://127.0.0.1:{port}",
                script,
                share,
                seconds,
                threads=1 if len(servers.ports) > 1 or share < 2 else 2,
            )
        )

    cpu = servers.cpu()
    threads = [threading.Thread(target=one, args=(p,)) for p in servers.ports]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = sum(r["requests"] for r in results)
    return {
        "rps": sum(r["rps"] for r in results),
        "p99": max(r["p99"] for r in results),
        "requests": total,
        "errors": sum(r["non_2xx"] + r["socket_errors"] for r in results),
        "cpu_ms": (servers.cpu() - cpu) * 1000 / max(1, total),
    }


def compare(
    table: Table,
    label: str,
    reference: Servers,
    ours: Servers,
    script: Path,
    connections: int,
    seconds: int,
    rounds: int,
    during: "ConnectionCount | None" = None,
) -> float:
    """Alternating rounds; adds one row; returns the throughput ratio."""
    runs: dict[str, list[dict[str, float]]] = {"reference": [], "passerelle": []}
    for _ in range(rounds):
        for name, servers in (("reference", reference), ("passerelle", ours)):
            if name == "passerelle" and during is not None:
                with during:
                    runs[name].append(load(servers, script, connections, seconds))
            else:
                runs[name].append(load(servers, script, connections, seconds))
    ref, pas = (
        {k: statistics.median(r[k] for r in runs[n]) for k in runs[n][0]}
        for n in ("reference", "passerelle")
    )
    ratio = pas["rps"] / ref["rps"]
    cpu_ratio = pas["cpu_ms"] / ref["cpu_ms"]
    errors = f", {pas['errors']:.0f} errors" if pas["errors"] or connections >= 256 else ""
    table.add(
        label,
        f"{pas['rps']:,.0f}/s, CPU {pas['cpu_ms']:.2f} ms, p99 {pas['p99']:.0f} ms{errors}",
        f"{ref['rps']:,.0f}/s, CPU {ref['cpu_ms']:.2f} ms",
        f"{ratio:.2f}× throughput, {cpu_ratio:.2f}× CPU",
    )
    table.checks[f"ratio {label}"] = ratio
    return ratio


class ConnectionCount:
    """The most connections to the database seen while the block runs (pg_stat_activity)."""

    def __init__(self, url: str, database: str) -> None:
        self.url, self.database, self.peak = url, database, 0
        self._stop = threading.Event()

    def now(self) -> int:
        with psycopg.connect(self.url, autocommit=True) as c:
            row = c.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (self.database,)
            ).fetchone()
        return int(row[0]) if row else 0

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            self.peak = max(self.peak, self.now())

    def __enter__(self) -> "ConnectionCount":
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


UVICORN = [sys.executable, "-m", "uvicorn", "--no-access-log", "--no-server-header"]
PASSERELLE = [*UVICORN, "app.main:create_app", "--factory", "--http", "app.server:GuardedProtocol"]
REFERENCE = [*UVICORN, "bench.reference_app:app"]
SERVE = [sys.executable, "-m", "app.cli", "serve"]


def sqlite(table: Table, tmp: Path, seconds: int, rounds: int) -> None:
    token = prepare(f"sqlite:///{tmp / 'orientations.db'}")
    script = tmp / "orientation.lua"
    lua_script(script, token)
    reference = Servers([REFERENCE], {"REFERENCE_DB": str(tmp / "reference.db")})
    ours = Servers([PASSERELLE], {"DATABASE_URL": f"sqlite:///{tmp / 'orientations.db'}"})
    try:
        for s in (reference, ours):
            load(s, script, 32, 2)  # warm-up
        for c in (1, 32, 256):
            compare(
                table,
                f"orientation, SQLite, 1 process, c{c}",
                reference,
                ours,
                script,
                c,
                seconds,
                rounds,
            )
        table.add(
            "peak memory, SQLite, 1 process",
            f"{ours.peak_mib():.0f} MiB",
            f"{reference.peak_mib():.0f} MiB",
        )
    finally:
        reference.stop()
        ours.stop()


def postgresql(table: Table, tmp: Path, host: str, port: int, seconds: int, rounds: int) -> None:
    admin = f"postgresql://postgres@{host}:{port}/postgres"
    with psycopg.connect(admin, autocommit=True) as server:
        server.execute("CREATE DATABASE orientations")
        server.execute("CREATE DATABASE reference")
    url = f"postgresql+psycopg://postgres@{host}:{port}/orientations"
    token = prepare(url)
    script = tmp / "orientation-pg.lua"
    lua_script(script, token)
    env = {
        "DATABASE_URL": url,
        "PASSERELLE_SECRET_KEY": "b" * 32,
        "PASSERELLE_PUBLIC_URL": "http://127.0.0.1",
    }
    ref_env = {"REFERENCE_PG": f"postgresql://postgres@{host}:{port}/reference"}
    count = ConnectionCount(admin, "orientations")

    reference = Servers([REFERENCE], ref_env)
    ours = Servers([SERVE], env)
    try:
        for s in (reference, ours):
            load(s, script, 32, 2)
        for c in (1, 32, 256):
            compare(
                table,
                f"orientation, PostgreSQL, 1 process, c{c}",
                reference,
                ours,
                script,
                c,
                seconds,
                rounds,
            )
        table.add(
            "peak memory, PostgreSQL, 1 process",
            f"{ours.peak_mib():.0f} MiB",
            f"{reference.peak_mib():.0f} MiB",
        )
    finally:
        reference.stop()
        ours.stop()

    for label, ref_cmd, our_cmds in (
        ("serve --workers 2", [[*REFERENCE, "--workers", "2"]], [[*SERVE, "--workers", "2"]]),
        ("3 × serve (a fleet)", [REFERENCE] * 3, [SERVE] * 3),
    ):
        reference = Servers(ref_cmd, ref_env)
        ours = Servers(our_cmds, env)
        try:
            for s in (reference, ours):
                load(s, script, 32, 2)
            time.sleep(1)
            at_rest = count.now()
            count.peak = 0
            compare(
                table,
                f"orientation, PostgreSQL, {label}, c32",
                reference,
                ours,
                script,
                32,
                seconds,
                rounds,
                during=count,
            )
            table.add(
                f"database connections, {label}",
                f"{at_rest} at rest, {count.peak} under load (c32)",
            )
        finally:
            reference.stop()
            ours.stop()
