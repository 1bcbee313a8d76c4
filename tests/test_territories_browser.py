"""The « Territoire » field in Chromium: suggestions while the coordinator types (the
datalist the agent's commune field uses), a choice offered when a name is not enough, each
page checked by axe-core (the fixtures and checks of test_web_browser.py)."""

from typing import Any

from tests.conftest import World
from tests.test_web_browser import _database, browser, check, login, new_page  # noqa: F401


def test_a_coordinator_chooses_a_territory_by_its_name(
    new_page: Any,  # noqa: F811
    world: World,
    database_url: str,
) -> None:
    db = _database(database_url)
    page = new_page()
    login(page, world, "coord")
    page.goto("/coordinateur/couverture")
    field = page.locator("#territoire")
    assert field.input_value() == "Corrèze (département 19)"
    field.fill("")
    field.press_sequentially("correz", delay=30)
    page.locator("#territoires-suggeres option").nth(1).wait_for(state="attached")
    offered = page.locator("#territoires-suggeres option").evaluate_all(
        "options => options.map(o => o.value)"
    )
    assert offered[0] == "Corrèze (département 19)" and "Corrèze (commune, 19)" in offered
    # Sent as typed: the page asks which, at the field, with the territories as links.
    page.get_by_role("button", name="Afficher").click()
    page.wait_for_load_state()
    assert "Plusieurs territoires correspondent à « correz »" in page.content()
    assert field.get_attribute("aria-describedby") == "territoire-erreur"
    check(page, "11-coordinateur-territoire-a-choisir", db)
    page.get_by_role("link", name="Corrèze (commune, 19)", exact=True).click()
    page.wait_for_load_state()
    assert page.locator("h2").first.inner_text() == "Corrèze"
    assert field.input_value() == "Corrèze (commune, 19)"
    assert page.locator("svg.map path").count() == 1  # the commune alone
    # A suggestion taken as it is offered: the figures of Tulle Agglo.
    page.goto("/coordinateur")
    field.fill("Communauté d'agglomération Tulle Agglo (19)")
    page.get_by_role("button", name="Afficher").click()
    page.wait_for_load_state()
    assert "Communauté d'agglomération Tulle Agglo" in page.locator("h2").first.inner_text()
