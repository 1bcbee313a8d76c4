"""Issue 5, point by point: what broke the first version under load and hostile input, tried
again through the real server (a `passerelle serve` process) or the real app."""

import asyncio
import base64
import gc
import socket
import sqlite3
import subprocess
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session
from typer.testing import CliRunner

from app.cli import app as cli
from app.config import Settings
from app.main import GC_YOUNGEST, create_app
from app.models import PlaceKind, Role
from app.places.models import PlaceIn
from app.places.service import create_place
from app.server import HideTokens
from app.services.demo import demo_keys, load_demo
from app.services.keys import create_key, revoke_key
from tests.conftest import Server, World, count, orientation_body, serving

PROBLEM = "application/problem+json"
JSON = "application/json"


def _healthz_ms(url: str) -> float:
    """/healthz as another program sees it: curl's own clock, outside this process's GIL."""
    out = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-m", "5", "-w", "%{http_code} %{time_total}", url],
        capture_output=True,
        text=True,
    ).stdout.split()
    assert out and out[0] == "200", out
    return float(out[1]) * 1000


def _probe(url: str, stop: threading.Event, seen: list[float]) -> None:
    while not stop.is_set():
        seen.append(_healthz_ms(url + "/healthz"))
        time.sleep(0.02)


# --- 1. no stall under concurrency ---------------------------------------------------------


@pytest.mark.stress
def test_a_burst_of_256_requests_never_stalls(server: Server, world: World) -> None:
    """Above 56 authenticated connections the first version stopped answering for minutes.
    Here 256 clients arrive within half a second and each sends three requests back to back
    (768 in all, 256 in flight at once), reads and writes mixed, while another program
    watches /healthz."""
    calls = [
        ("GET", "/v1/places?near=19272", "coord", None),
        ("POST", "/v1/orientations", "agent_tulle", orientation_body()),
        ("GET", "/v1/referrals?limit=20", "med_tulle", None),
        ("GET", "/v1/places?near=19031&kind=mediation", "agent_ussel", None),
    ]
    stop = threading.Event()
    during: list[float] = []  # the probe's /healthz times, in ms

    async def burst() -> list[int]:
        # A client keeps idle connections for less time than the server (uvicorn closes them
        # after 5 s, httpx's default is also 5 s): with equal times, a request sent on a
        # connection just as the server closes it finds it gone (seen once in CI, when the
        # burst lasted about 5 s). Browsers and well-behaved clients do the same.
        limits = httpx.Limits(
            max_connections=256, max_keepalive_connections=256, keepalive_expiry=2
        )
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as client:

            async def user(i: int) -> list[int]:
                await asyncio.sleep(i / 512)
                statuses = []
                for j in range(3):
                    method, path, who, body = calls[(i + j) % len(calls)]
                    response = await client.request(
                        method, path, json=body, headers=world.auth(who)
                    )
                    statuses.append(response.status_code)
                return statuses

            answers = await asyncio.gather(*(user(i) for i in range(256)))
            return [status for statuses in answers for status in statuses]

    probe = threading.Thread(target=_probe, args=(server.url, stop, during))
    probe.start()
    try:
        statuses = asyncio.run(burst())
    finally:
        stop.set()
        probe.join()
    after = [_healthz_ms(server.url + "/healthz") for _ in range(5)]
    assert len(statuses) == 768 and sorted(set(statuses)) == [200, 201], sorted(set(statuses))
    assert len(during) > 5, "the probe hardly ran during the burst"
    # A stall is the first version's failure: minutes without an answer. The load generator
    # shares the machine's two cores with the server, so a probe may wait behind a batch of
    # requests (once 1.2 s on a busy CI machine; the usual p95 is 15 ms): the bounds tell a
    # stall from a queue, and speed is measured by `make bench`, not here.
    ordered = sorted(during)
    p95 = ordered[int(0.95 * len(ordered)) - 1]
    assert p95 < 500 and ordered[-1] < 5000, [round(x) for x in ordered]
    assert max(after) < 500, after


def test_the_loop_never_waits_for_another_writer(
    server: Server, world: World, database_url: str, engine: Engine
) -> None:
    """An import in another process holds SQLite's write lock: orientations wait for it in a
    thread, the service keeps answering, and they are written once the lock is free."""
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's single writer lock")
    other = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    results: list[int] = []

    def orient() -> None:
        response = httpx.post(
            server.url + "/v1/orientations",
            json=orientation_body(),
            headers=world.auth("agent_tulle"),
            timeout=60,
        )
        results.append(response.status_code)

    writers = [threading.Thread(target=orient) for _ in range(3)]
    for writer in writers:
        writer.start()
    time.sleep(0.5)
    waiting = [_healthz_ms(server.url + "/healthz") for _ in range(5)]
    assert results == [] and max(waiting) < 100, (results, waiting)
    other.execute("COMMIT")
    for writer in writers:
        writer.join(30)
    assert results == [201, 201, 201]
    assert count(engine, "orientation") == 3


# --- 2, 9. bodies that are not what they claim ----------------------------------------------


HOSTILE_BODIES: list[tuple[str, bytes, str, int, str]] = [
    ("nested 1,000 deep", b"[" * 1000 + b"]" * 1000, "application/json", 400, "imbriqué"),
    ("objects 320 deep", b'{"a":' * 320 + b"1" + b"}" * 320, JSON, 400, "imbriqué"),
    ("just too deep", b"[" * 40 + b"]" * 40, "application/json", 400, "imbriqué"),
    ("invalid UTF-8", b'{"person": "\xff\xfe"}', "application/json", 400, "UTF-8"),
    ("lone surrogate", b'{"a": "\\ud800"}', "application/json", 400, "JSON"),
    ("5,000 digits", b'{"already_followed": ' + b"9" * 5000 + b"}", JSON, 400, "Nombre"),
    ("text/plain", b'{"a": 1}', "text/plain", 415, "Content-Type: application/json"),
    ("form", b"a=1", "application/x-www-form-urlencoded", 415, "JSON"),
]


@pytest.mark.parametrize(
    ("raw", "content_type", "status", "words"),
    [pytest.param(*case, id=label) for label, *case in HOSTILE_BODIES],
)
def test_hostile_bodies_get_a_french_problem(
    client: TestClient,
    world: World,
    engine: Engine,
    raw: bytes,
    content_type: str,
    status: int,
    words: str,
) -> None:
    headers = {**world.auth("agent_tulle"), "Content-Type": content_type}
    response = client.post("/v1/orientations", content=raw, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    assert words in response.json()["detail"]
    assert "error" not in response.json()["detail"].lower()  # no English left
    assert count(engine, "orientation") == 0


# --- 3. cursors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    ["2026-01-01T00:00:00|orv_x", "not a date|orv_x", "2026-01-01T00:00:00+00:00|bad id!", "x"],
)
def test_a_forged_cursor_is_a_400(client: TestClient, world: World, raw: str) -> None:
    cursor = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
    response = client.get(f"/v1/referrals?cursor={cursor}", headers=world.auth("med_tulle"))
    assert response.status_code == 400 and "Curseur" in response.json()["detail"]


# --- 4. heads and slow clients --------------------------------------------------------------


def _raw(port: int, data: bytes, wait: float = 5) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def test_a_huge_head_is_refused(server: Server) -> None:
    head = b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n"
    in_one_piece = _raw(server.port, head)
    assert in_one_piece.startswith(b"HTTP/1.1 431") and b"trop volumineux" in in_one_piece

    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nX-Big: ")
        for _ in range(64):  # 32 MB were accepted before; this stops at the limit
            try:
                sock.sendall(b"a" * 4096)
            except OSError:
                break
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 431")


@pytest.mark.stress
def test_slow_and_idle_connections_are_closed(server: Server) -> None:
    """The server under test gives each request two seconds to arrive."""
    started = time.monotonic()
    answer = _raw(
        server.port,
        b"POST /v1/orientations HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",
    )
    assert answer.startswith(b"HTTP/1.1 408") and b"connection: close" in answer.lower()
    assert time.monotonic() - started < 5

    # Many connections that announce a body and never send it, or send nothing at all.
    socks = []
    for i in range(100):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        if i % 2:
            sock.sendall(b"POST /v1/orientations HTTP/1.1\r\nContent-Length: 50\r\n\r\n")
        socks.append(sock)
    time.sleep(3.5)
    for i, sock in enumerate(socks):
        sock.settimeout(5)
        data = b""
        while chunk := sock.recv(4096):  # the server closes each one: recv ends
            data += chunk
        sock.close()
        # A started request is told why; a connection that sent nothing is just closed.
        assert data.startswith(b"HTTP/1.1 408") if i % 2 else data == b"", (i, data[:40])
    assert _healthz_ms(server.url + "/healthz") < 100


# --- 5. an unexpected error closes the connection cleanly ------------------------------------


def test_a_500_says_connection_close(
    client: TestClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("jeanne@example.org broke it")

    monkeypatch.setattr("app.services.orientation._write_orientation", broken)
    response = client.post(
        "/v1/orientations", json=orientation_body(), headers=world.auth("agent_tulle")
    )
    assert response.status_code == 500
    assert response.headers["connection"] == "close"
    assert response.headers["content-type"] == PROBLEM
    assert "jeanne" not in response.text


# --- 6. wrong tokens -----------------------------------------------------------------------------


@pytest.mark.usefixtures("world")
def test_wrong_tokens_are_slowed_down(client: TestClient, settings: Settings) -> None:
    limit = settings.auth_failures_per_minute
    for _ in range(limit):
        wrong = client.get("/v1/referrals", headers={"Authorization": "Bearer psl_nope"})
        assert wrong.status_code == 401
    refused = client.get("/v1/referrals", headers={"Authorization": "Bearer psl_nope"})
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
    assert refused.headers["content-type"] == PROBLEM and "réessayez" in refused.json()["detail"]


# --- 7. tokens in logs, demo keys, keys list --------------------------------------------------


def test_tokens_in_an_address_never_reach_the_log(server: Server, world: World) -> None:
    token = world.tokens["med_tulle"]
    response = httpx.get(f"{server.url}/v1/referrals?access_token={token}&limit=5")
    assert response.status_code == 401 and "jamais dans l'adresse" in response.json()["detail"]
    time.sleep(0.3)
    log = server.log.read_text()
    assert "access_token=***" in log and token not in log


def test_hide_tokens_filter_masks_every_token_parameter() -> None:
    import logging

    record = logging.LogRecord(
        "uvicorn.access",
        20,
        "",
        0,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1", "GET", "/v1/x?a=1&token=abc&api_key=def&key=ghi", "1.1", 200),
        None,
    )
    HideTokens().filter(record)
    assert record.getMessage().count("***") == 3 and "abc" not in record.getMessage()


def test_demo_keys_of_a_previous_start_are_revoked(client: TestClient, engine: Engine) -> None:
    with Session(engine) as session:
        load_demo(session)
        first = demo_keys(session)
        second = demo_keys(session)
    for role, token in first.items():
        old = client.get("/v1/places", headers={"Authorization": f"Bearer {token}"})
        new = client.get("/v1/places", headers={"Authorization": f"Bearer {second[role]}"})
        assert (old.status_code, new.status_code) == (401, 200), role


@pytest.mark.usefixtures("world", "cli_env")
def test_keys_list_feeds_keys_revoke() -> None:
    runner = CliRunner()
    listed = runner.invoke(cli, ["keys", "list"])  # not a terminal: tab-separated lines
    rows = [line.split("\t") for line in listed.output.splitlines() if line]
    assert rows[0][0] == "id" and all(len(row) == 8 for row in rows)
    ids = [row[0] for row in rows[1:] if row[1] in ("coord", "admin")]
    assert len(ids) == 2 and all(i.startswith("cle_") and len(i) == 24 for i in ids)
    revoked = runner.invoke(cli, ["keys", "revoke", *ids])
    assert revoked.exit_code == 0 and revoked.output.count("révoquée") == 2


# --- 8. headers and documentation --------------------------------------------------------------


def test_answers_are_not_cached_nor_sniffed(server: Server, world: World) -> None:
    created = httpx.post(
        server.url + "/v1/orientations", json=orientation_body(), headers=world.auth("agent_tulle")
    ).json()
    referral = httpx.get(
        f"{server.url}/v1/referrals/{created['referral']['id']}", headers=world.auth("med_tulle")
    )
    assert referral.json()["person"]["first_name"] == "Jeanne"
    for response in (referral, httpx.get(server.url + "/healthz")):
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "server" not in response.headers


def test_docs_work_offline(server: Server) -> None:
    page = httpx.get(server.url + "/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text and "https://" not in page.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        served = httpx.get(f"{server.url}/static-offline-docs/{asset}")
        assert served.status_code == 200 and len(served.content) > 10_000
        assert served.headers["cache-control"].startswith("public")


# --- 10. the OpenAPI document (the fuzzer itself is in test_openapi.py) --------------------------


def test_openapi_declares_auth_errors_and_themes(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert document["components"]["securitySchemes"]["cle_api"]["scheme"] == "bearer"
    post = document["paths"]["/v1/orientations"]["post"]
    assert post["security"] == [{"cle_api": []}]
    for status in ("400", "401", "403", "413", "415", "422", "429"):
        assert list(post["responses"][status]["content"]) == [PROBLEM], status
    themes = document["components"]["schemas"]["ProcedureIn"]["properties"]["theme"]["enum"]
    assert "caf" in themes and "numerique_quotidien" in themes
    assert document["components"]["schemas"]["OrientationIn"]["examples"]


# --- several processes: what one writes, the others see within a second ---------------------


def _within(seconds: float, check: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.usefixtures("world")
def test_keys_and_places_changed_elsewhere_reach_a_running_service(
    server: Server, engine: Engine
) -> None:
    """The service keeps keys and places in memory; a key created or revoked, a place created
    by another process (here, this test, through the same services) is seen through the
    once-a-second check."""
    with Session(engine) as session:
        key, token = create_key(session, Role.COORDINATEUR, territory="national")
    auth = {"Authorization": f"Bearer {token}"}

    def places() -> httpx.Response:
        return httpx.get(server.url + "/v1/places?limit=100", headers=auth)

    assert _within(3, lambda: places().status_code == 200)
    naves = PlaceIn(
        name="Tiers-lieu de Naves",
        kind=PlaceKind.MEDIATION,
        commune="19146",
        latitude=45.3137,
        longitude=1.7667,
        services=["Accompagnement CAF"],
    )
    with Session(engine) as session:
        create_place(session, key.id, naves, None)
    assert _within(3, lambda: naves.name in {p["name"] for p in places().json()})
    with Session(engine) as session:
        revoke_key(session, key.id)
    assert _within(3, lambda: places().status_code == 401)


def test_several_workers_on_postgresql(
    world: World, engine: Engine, database_url: str, tmp_path: Path
) -> None:
    if not database_url.startswith("postgresql"):
        refused = CliRunner().invoke(
            cli, ["serve", "--workers", "2"], env={"DATABASE_URL": database_url}
        )
        assert refused.exit_code == 2 and "PostgreSQL" in refused.output
        return
    with serving(database_url, tmp_path / "workers.log", "--workers", "2") as running:
        answers = [  # a new connection each: the kernel spreads them over the workers
            httpx.post(
                running.url + "/v1/orientations",
                json=orientation_body(),
                headers=world.auth("agent_tulle"),
            ).status_code
            for _ in range(20)
        ]
        assert answers == [201] * 20
        assert httpx.get(running.url + "/readyz").status_code == 200
        pids = {
            line.split("[")[1].split("]")[0]
            for line in running.log.read_text().splitlines()
            if "Started server process" in line
        }
        assert len(pids) >= 2, running.log.read_text()
    assert count(engine, "orientation") == 20


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_a_serving_app_keeps_its_start_up_out_of_the_collector_and_gives_it_back(
    engine: Engine, settings: Settings
) -> None:
    """While an app serves, what existed at its start is frozen (out of each full
    collection's walk); at its shutdown the collector gets it back, garbage included: many
    apps in one process (the tests) leak nothing."""
    before = gc.get_threshold()
    cycle = _Cycle()
    alive = weakref.ref(cycle)
    with TestClient(create_app(engine, settings)) as client:
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == GC_YOUNGEST
        del cycle  # garbage from now on, but frozen: no collection finds it
        gc.collect()
        assert alive() is not None
        assert client.get("/healthz").status_code == 200
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before
    gc.collect()
    assert alive() is None
