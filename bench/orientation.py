"""Benchmark of the front-desk orientation, on a fresh SQLite file.

Times N orientations through the real app (in process, HTTP via the ASGI test client) and the
same number of GET /healthz calls as the reference run in the same process: the ratio says what
the orientation costs beyond the framework's own round trip, whatever the machine. Also reports
peak Python memory (tracemalloc) over a separate orientation run.

Usage: python -m bench.orientation [N]
"""

import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from fastapi.testclient import TestClient
from sqlmodel import Session

from app.config import get_settings
from app.db import get_engine, make_engine, migrate
from app.main import create_app
from app.services.demo import demo_keys, load_demo

COMMUNES = ["19272", "19275", "19031", "19121", "19269", "19028", "19255", "19153"]


def timed(call, n: int) -> list[float]:  # type: ignore[no-untyped-def]
    samples = []
    for i in range(n):
        start = time.perf_counter()
        call(i)
        samples.append(time.perf_counter() - start)
    return samples


def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
        migrate(engine)
        with Session(engine) as session:
            load_demo(session)
            token = demo_keys(session)["agent"]
        app = create_app()
        app.dependency_overrides[get_engine] = lambda: engine
        headers = {"Authorization": f"Bearer {token}"}
        settings = get_settings()
        with TestClient(app) as client:

            def orient(i: int) -> None:
                body = {
                    "assessment": {"profile": "non_autonome_non_refractaire"},
                    "procedure": {"theme": "caf", "urgent": i % 2 == 0},
                    "person": {"commune": COMMUNES[i % len(COMMUNES)], "consent": False},
                }
                response = client.post("/v1/orientations", json=body, headers=headers)
                assert response.status_code == 201

            def health(_: int) -> None:
                assert client.get("/healthz").status_code == 200

            timed(health, 20)  # warm-up
            timed(orient, 20)
            reference = timed(health, n)
            work = timed(orient, n)
            # Memory in a run of its own: tracemalloc slows Python down several times.
            tracemalloc.start()
            timed(orient, min(n, 100))
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
    ref_ms = statistics.median(reference) * 1000
    work_ms = statistics.median(work) * 1000
    p95_ms = sorted(work)[int(0.95 * len(work)) - 1] * 1000
    print(f"orientations: {n} on SQLite, max distance {settings.max_referral_distance_km} km")
    print(f"reference GET /healthz median: {ref_ms:.2f} ms")
    print(f"POST /v1/orientations median: {work_ms:.2f} ms, p95 {p95_ms:.2f} ms")
    print(f"ratio orientation / reference (median): {work_ms / ref_ms:.1f}")
    print(f"peak traced Python memory over {min(n, 100)} orientations: {peak / 1024:.0f} KiB")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
