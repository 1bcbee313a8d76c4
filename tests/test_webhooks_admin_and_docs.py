"""Issue 21, finding 13 (the rest): an admin lists and removes any place's webhooks through the
API; /docs runs under a Content-Security-Policy that Swagger UI still works with (Chromium)."""

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Server, World

PUBLIC_URL = "https://93.184.215.14/hook"  # a public address: nothing is resolved or sent


def _subscribe(client: TestClient, world: World, who: str) -> dict[str, Any]:
    answer = client.post(
        "/v1/webhooks",
        headers=world.auth(who),
        json={"url": PUBLIC_URL, "events": ["referral.created"]},
    )
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]


def test_an_admin_lists_and_removes_any_places_webhooks(client: TestClient, world: World) -> None:
    tulle = _subscribe(client, world, "med_tulle")
    ussel = _subscribe(client, world, "med_ussel")
    own = _subscribe(client, world, "admin")
    admin = world.auth("admin")

    # Without place_id, the admin's own (they follow every place); with it, that place's.
    assert [w["id"] for w in client.get("/v1/webhooks", headers=admin).json()] == [own["id"]]
    place = world.places["demo-med-tulle"]
    listed = client.get("/v1/webhooks", params={"place_id": place}, headers=admin)
    assert listed.status_code == 200 and [w["id"] for w in listed.json()] == [tulle["id"]]
    assert listed.json()[0]["place_id"] == place and "secret" not in listed.json()[0]
    unknown = client.get("/v1/webhooks", params={"place_id": "nulle-part"}, headers=admin)
    assert unknown.status_code == 404 and "lieu" in unknown.json()["detail"]

    # A place sees its own only, whatever place_id it names.
    med = world.auth("med_ussel")
    assert [w["id"] for w in client.get("/v1/webhooks", headers=med).json()] == [ussel["id"]]
    assert client.get("/v1/webhooks", params={"place_id": place}, headers=med).json() == []
    assert client.delete(f"/v1/webhooks/{tulle['id']}", headers=med).status_code == 404

    # The admin removes a place's webhook; the place no longer has it.
    assert client.delete(f"/v1/webhooks/{tulle['id']}", headers=admin).status_code == 204
    assert client.get("/v1/webhooks", headers=world.auth("med_tulle")).json() == []
    assert client.delete(f"/v1/webhooks/{tulle['id']}", headers=admin).status_code == 404
    assert [w["id"] for w in client.get("/v1/webhooks", headers=med).json()] == [ussel["id"]]


def test_docs_carry_a_content_security_policy_without_unsafe_inline(client: TestClient) -> None:
    for path in ("/docs", "/docs/oauth2-redirect"):
        answer = client.get(path)
        assert answer.status_code == 200
        policy = answer.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "'sha256-" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
def chromium() -> Iterator[Any]:
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("needs Debian's Chromium (apt-get install chromium)")
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        yield launched
        launched.close()


@pytest.mark.usefixtures("world")
def test_docs_work_under_their_policy_in_chromium(chromium: Any, server: Server) -> None:
    """Swagger UI renders every operation, opens one and calls it for real, and the browser
    reports no refusal of the policy and no script error."""
    page = chromium.new_page(base_url=server.url)
    problems: list[str] = []

    def console(message: Any) -> None:
        if message.type in ("error", "warning"):
            problems.append(message.text)

    page.on("console", console)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.add_init_script(
        "window.refused = []; document.addEventListener('securitypolicyviolation',"
        " e => window.refused.push(e.violatedDirective + ' ' + e.blockedURI));"
    )
    page.goto("/docs")
    page.wait_for_selector(".opblock", timeout=20_000)
    assert page.locator(".opblock").count() >= 12
    health = page.locator(".opblock", has_text="/healthz").first
    health.locator(".opblock-summary").click()
    page.get_by_role("button", name="Try it out").click()
    page.get_by_role("button", name="Execute").click()
    status = ".live-responses-table tbody .response-col_status"
    page.wait_for_selector(status, timeout=10_000)
    assert "200" in page.locator(status).first.inner_text()
    refused = page.evaluate("() => window.refused")
    assert refused == [] and not problems, (refused, problems)
    page.close()
