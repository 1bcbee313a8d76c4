"""The agent's and médiateur's pages in Chromium on a 390 px phone: nothing scrolls sideways,
the slip's code holds on one line, the form's error summary leads to each field, and erasing
a person's contact asks first, from the keyboard (tests/test_web_browser.py for the setup)."""

import re
from typing import Any

from tests.conftest import Server, World
from tests.test_web_browser import (  # noqa: F401 (fixtures)
    _database,
    _orient,
    browser,
    check,
    login,
    new_page,
    pytestmark,
)

PHONE = {"width": 390, "height": 844}


def _fits(page: Any) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{page.url} scrolls sideways: {width} px"


def test_a_phone_shows_every_page_without_sideways_scroll(
    new_page: Any,  # noqa: F811
    world: World,
    server: Server,
    database_url: str,
) -> None:
    db = _database(database_url)
    for _ in range(3):
        sent = _orient(server, world)
    page = new_page()
    page.set_viewport_size(PHONE)
    login(page, world, "agent_tulle")
    _fits(page)
    # The form sent empty: the summary names each field, its links lead to them.
    page.get_by_role("button", name="Orienter la personne").click()
    page.wait_for_load_state()
    assert page.evaluate("document.activeElement.id") == "erreurs"
    links = page.locator("#erreurs a").all_inner_texts()
    assert links == ["Profil de la personne", "Démarche concernée", "Commune où habite la personne"]
    page.locator("#erreurs a", has_text="Démarche concernée").click()
    assert page.evaluate("document.activeElement.id") == "theme"
    _fits(page)
    check(page, "11-agent-formulaire-erreurs-telephone", db)
    # An unfinished diagnostic: the link to the first question left shows it.
    page.get_by_label("Faire le diagnostic (cinq questions simples)").check(force=True)
    page.locator(".diagnostic-question:visible").get_by_label("Jamais", exact=True).check(
        force=True
    )
    page.get_by_role("button", name="Orienter la personne").click()
    page.wait_for_load_state()
    page.locator("#erreurs a", has_text="Diagnostic").click()
    assert page.evaluate("document.activeElement.id") == "q-courriel-non"
    assert page.locator(".diagnostic-question:visible").count() == 1

    page.goto(f"/agent/resultat/{sent['id']}")
    _fits(page)
    code = page.locator(".slip__code")
    box = code.bounding_box()
    size = float(code.evaluate("e => parseFloat(getComputedStyle(e).fontSize)"))
    assert box is not None and box["height"] < 2 * size, "the code wraps"
    assert re.fullmatch(r"[A-Z0-9]{3}-[A-Z0-9]{3}", code.inner_text())
    check(page, "12-agent-resultat-telephone", db)

    page.goto("/agent/orientations")
    _fits(page)
    header = page.locator("thead").bounding_box()
    assert header is not None and header["width"] <= 1  # each card's labels say it instead
    communes = page.locator('td[data-label="Commune"]', has_text="Tulle (19)")
    assert communes.count() == 3 and communes.first.is_visible()
    check(page, "13-agent-orientations-telephone", db)

    mediateur = new_page()
    mediateur.set_viewport_size(PHONE)
    login(mediateur, world, "med_tulle")
    _fits(mediateur)
    mediateur.goto(f"/mediateur/orientations/{sent['referral']['id']}")
    _fits(mediateur)


def test_erasing_a_contact_asks_first_and_works_from_the_keyboard(
    new_page: Any,  # noqa: F811
    world: World,
    server: Server,
    database_url: str,
) -> None:
    db = _database(database_url)
    sent = _orient(server, world)
    page = new_page()
    login(page, world, "med_tulle")
    page.goto(f"/mediateur/orientations/{sent['referral']['id']}")
    erase = page.get_by_role("link", name="Effacer ses coordonnées (à sa demande)")
    erase.focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    # Nothing erased yet: the question, with the focus on it.
    assert "Jeanne" in page.content()
    assert page.evaluate("document.activeElement.id") == "effacer"
    check(page, "14-mediateur-effacer-confirmation", db)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent.trim()") == (
        "Oui, effacer ses coordonnées"
    )
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent.trim()") == "Non, les garder"
    page.keyboard.press("Shift+Tab")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.get_by_text("Coordonnées de la personne effacées.").is_visible()
    assert "Jeanne" not in page.content()
