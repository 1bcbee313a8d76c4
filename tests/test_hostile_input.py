"""Issue 21, point by point: hostile input, round two (exports, imports, sessions, the command
line, webhooks, storage faults), each tried again through the real app or a real server."""

import csv
import io

from fastapi.testclient import TestClient

from tests.conftest import World, orientation_body
from tests.test_web import login

PROBLEM = "application/problem+json"
FORMULA = '=HYPERLINK("http://127.0.0.1:9/x";"Cliquez")'


def _csv(raw: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig")), delimiter=";"))


# --- 4. CSV formula injection ------------------------------------------------------------------


def test_csv_cells_never_start_a_formula(client: TestClient, world: World) -> None:
    """A place named like a formula reaches the statistics and coverage CSVs (API and pages) as
    text: a leading apostrophe, as OWASP says; negative or plain numbers stay numbers."""
    admin = world.auth("admin")
    place_id = world.places["demo-med-tulle"]
    place = client.get(f"/v1/places/{place_id}", headers=admin).json()
    body = {k: place[k] for k in ("kind", "address", "postal_code", "commune", "latitude",
                                  "longitude", "services", "phone", "email", "hours")}
    assert client.put(
        f"/v1/places/{place_id}", headers=admin, json={**body, "name": FORMULA}
    ).status_code == 200
    answer = client.post("/v1/orientations", headers=world.auth("agent_tulle"),
                         json=orientation_body())
    assert answer.status_code == 201 and answer.json()["referral"]["place"]["id"] == place_id

    coord = world.auth("coord")
    coverage = _csv(client.get("/v1/stats/coverage?format=csv", headers=coord).content)
    names = {row["Lieu le plus proche"] for row in coverage}
    assert "'" + FORMULA in names and FORMULA not in names
    stats = _csv(
        client.get("/v1/stats/referrals?group_by=place&format=csv", headers=coord).content
    )
    labels = {row["Lieu de médiation"] for row in stats}
    assert "'" + FORMULA in labels
    for row in coverage + stats:
        assert not any(cell[:1] in "=+-@\t\r" for cell in row.values() if cell), row

    # The pages' downloads are the same writer.
    login(client, world, "coord")
    page = client.get("/coordinateur/couverture.csv")
    assert page.status_code == 200
    assert "'" + FORMULA in {row["Lieu le plus proche"] for row in _csv(page.content)}
