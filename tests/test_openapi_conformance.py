"""Issue 21, finding 13: schemathesis's own command line, every check and phase (examples,
coverage — negative data, missing headers, unsupported methods —, fuzzing, stateful links), as
each role, against a real `passerelle serve`: no conformance failure. (tests/test_openapi.py
fuzzes through the app in process; this is the run the probe made.)"""

import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import World, serving
from tests.test_places import PLACE

ST = Path(sys.executable).with_name("st")
ROLES = ("admin", "agent_tulle", "med_tulle", "coord")


@pytest.mark.usefixtures("engine")
def test_schemathesis_finds_no_conformance_failure(
    world: World,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not ST.exists():
        pytest.skip(f"schemathesis's command line is not installed ({ST})")
    # Its checks send wrong tokens on purpose: past the default limit the address would get
    # 429 where a missing token is 401 (the throttle is tested in test_hardening).
    monkeypatch.setenv("PASSERELLE_AUTH_FAILURES_PER_MINUTE", "1000000")
    failures = []
    with serving(database_url, tmp_path / "server.log") as server:
        for role in ROLES:
            done = subprocess.run(
                [
                    str(ST),
                    "run",
                    f"{server.url}/openapi.json",
                    "--checks",
                    "all",
                    # A commune code of the right form may still be unknown (a 422, as the
                    # contract says): the document cannot list 35,000 communes.
                    "--exclude-checks",
                    "positive_data_acceptance",
                    "--phases",
                    "examples,coverage,fuzzing,stateful",
                    "--max-examples",
                    "10",
                    "--workers",
                    "1",
                    "--seed",
                    "21",
                    "--no-color",
                    "-H",
                    f"Authorization: Bearer {world.tokens[role]}",
                ],
                capture_output=True,
                text=True,
                timeout=600,
                cwd=tmp_path,  # its cache (.schemathesis/) there, not in the work tree
            )
            if done.returncode != 0:
                failures.append(f"--- as {role}:\n{done.stdout[-6000:]}{done.stderr[-2000:]}")
    assert not failures, "\n".join(failures)


def test_what_the_probe_found_is_fixed(client: TestClient, world: World) -> None:
    """ST205: a 405 names every method of the path (Starlette named the first route's only);
    ST201: 0 is no date, false no number, 0 no boolean — each a French 422."""
    for path, methods in (
        ("/v1/webhooks", "GET, POST"),
        ("/v1/places/x", "GET, PUT"),
        ("/v1/referrals/x/events", "GET, POST"),
    ):
        answer = client.options(path, headers=world.auth("admin"))
        assert answer.status_code == 405 and answer.headers["allow"] == methods

    for day in ("0", "20260101", "2026-1-1"):
        stats = client.get(f"/v1/stats/referrals?to={day}", headers=world.auth("coord"))
        assert stats.status_code == 422 and "AAAA-MM-JJ" in stats.text, stats.text
    good = client.get("/v1/stats/referrals?from=2026-01-01", headers=world.auth("coord"))
    assert good.status_code == 200

    admin = world.auth("admin")
    for field, value in (
        ("capacity", False),
        ("accepts_referrals", 0),
        ("longitude", False),
        ("latitude", True),
        ("paused_until", 0),
    ):
        refused = client.post("/v1/places", headers=admin, json={**PLACE, field: value})
        assert refused.status_code == 422, (field, refused.text)
        assert refused.json()["errors"][0]["loc"][-1] == field
    accepted = client.post(
        "/v1/places",
        headers=admin,
        json={**PLACE, "latitude": 45, "capacity": 3, "paused_until": "2026-12-24"},
    )
    assert accepted.status_code == 201, accepted.text
