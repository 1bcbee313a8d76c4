"""A throw-away PostgreSQL server on a free port, for the test suite and the benchmarks.

PostgreSQL refuses to run as root, so as root the server runs as the `postgres` system user
(pytest-postgresql's own process fixture cannot)."""

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from glob import glob
from pathlib import Path


class PostgresMissing(RuntimeError):
    pass


def _bindir() -> Path:
    found = shutil.which("pg_ctl") or next(
        iter(sorted(glob("/usr/lib/postgresql/*/bin/pg_ctl"))), None
    )
    if not found:
        raise PostgresMissing(
            "PostgreSQL binaries (pg_ctl, initdb) are required: install postgresql-15."
        )
    return Path(found).resolve().parent


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """`n` distinct free ports: held open together while chosen (one at a time, the system may
    hand the same port out twice, and two servers of a fleet then race for it)."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]


@contextmanager
def postgres_server(*settings: str) -> Iterator[tuple[str, int]]:
    """Starts a server (durability off: nothing here outlives it) and yields (host, port);
    `settings` are extra `-c name=value` options."""
    bindir = _bindir()
    workdir = Path(tempfile.mkdtemp(prefix="passerelle-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres", "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    data, port = workdir / "data", free_port()
    initdb = [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"]
    subprocess.run([*prefix, *initdb, "-E", "UTF8", "--locale=C"], check=True, capture_output=True)
    options = (
        f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off" + "".join(f" -c {s}" for s in settings)
    )
    pg_ctl = [*prefix, str(bindir / "pg_ctl"), "-D", str(data)]
    subprocess.run(
        [*pg_ctl, "-o", options, "-l", str(workdir / "log"), "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield "127.0.0.1", port
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)
