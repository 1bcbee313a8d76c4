"""The web pages in a real browser: Debian's Chromium driven by Playwright, against
`passerelle serve` in a process of its own, on SQLite and on PostgreSQL. Every page visited is
checked with axe-core (no serious or critical violation of WCAG 2.1 A/AA, the rules RGAA
follows) and photographed into tests/screenshots/ (see the README)."""

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from tests.conftest import Server, World, count, orientation_body

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
SHOTS = ROOT / "tests" / "screenshots"
AXE_SOURCE = AXE.read_text() if AXE.exists() else ""

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists() or not AXE.exists(),
    reason="needs Debian's Chromium (apt-get install chromium) and axe-core (make install)",
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield launched
        launched.close()


@pytest.fixture
def new_page(browser: Any, server: Server) -> Iterator[Any]:
    contexts = []
    problems: list[str] = []

    def make() -> Any:
        context = browser.new_context(
            base_url=server.url, locale="fr-FR", viewport={"width": 1280, "height": 900}
        )
        contexts.append(context)
        page = context.new_page()

        # Anything the Content-Security-Policy refused, or a script error, fails the test.
        def console(message: Any) -> None:
            if message.type == "error":
                problems.append(message.text)

        page.on("console", console)
        page.on("pageerror", lambda e: problems.append(str(e)))
        return page

    yield make
    for context in contexts:
        context.close()
    assert not [p for p in problems if "status of 4" not in p], problems


def login(page: Any, world: World, who: str) -> None:
    page.goto("/connexion")
    page.get_by_label("Clé d'accès").fill(world.tokens[who])
    page.get_by_role("button", name="Se connecter").click()
    page.wait_for_load_state()


def check(page: Any, name: str, database: str) -> None:
    """axe-core finds no serious violation; the page is photographed."""
    # Through the DevTools protocol: the pages' Content-Security-Policy refuses inline scripts.
    page.evaluate(AXE_SOURCE)
    result = page.evaluate(
        """async () => await axe.run(document, {runOnly: {type: 'tag',
            values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})"""
    )
    serious = [
        {"id": v["id"], "help": v["help"], "nodes": [n["html"][:120] for n in v["nodes"][:3]]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert not serious, json.dumps(serious, ensure_ascii=False, indent=1)
    assert len(result["passes"]) > 10  # axe really ran over the page
    SHOTS.mkdir(exist_ok=True)
    if database == "sqlite":  # one set of pictures: the pages are the same on PostgreSQL
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _database(database_url: str) -> str:
    return "sqlite" if database_url.startswith("sqlite") else "postgresql"


def test_an_agent_orients_a_person_with_the_diagnostic_and_prints_the_slip(
    new_page: Any, world: World, database_url: str
) -> None:
    db = _database(database_url)
    page = new_page()
    login(page, world, "agent_tulle")
    assert page.url.endswith("/agent")
    check(page, "01-agent-formulaire", db)

    page.get_by_label("Faire le diagnostic (cinq questions simples)").check(force=True)
    # One question at a time: only the first is shown.
    assert page.locator(".diagnostic-question:visible").count() == 1
    for answer in ("Avec de l'aide", "Non", "Non", "Avec de l'aide", "Oui"):
        shown = page.locator(".diagnostic-question:visible")
        shown.get_by_label(answer, exact=True).check(force=True)
        if page.get_by_role("button", name="Question suivante").is_enabled():
            page.get_by_role("button", name="Question suivante").click()
    page.get_by_label("Démarche concernée").select_option("caf")
    page.get_by_label("La démarche est urgente").check(force=True)
    page.get_by_label("Commune où habite la personne").fill("Tulle")
    # The consent wording comes first: no contact field can be typed before it is accepted.
    assert page.get_by_label("Prénom").is_disabled()
    page.get_by_label(re.compile("accepte que le lieu de médiation la contacte")).check(force=True)
    page.get_by_label("Prénom").fill("Jeanne")
    page.get_by_label("Téléphone").fill("06 01 02 03 04")
    page.get_by_role("button", name="Orienter la personne").click()
    page.wait_for_load_state()

    assert "/agent/resultat/" in page.url
    # Exact: the slip's title says « Votre orientation vers un médiateur numérique ».
    title = "Orientation vers un médiateur numérique"
    assert page.get_by_role("heading", name=title, exact=True).is_visible()
    assert "d'après le diagnostic" in page.content()
    code = page.locator(".slip__code").inner_text()
    assert re.fullmatch(r"[A-Z0-9]{3}-[A-Z0-9]{3}", code)
    assert page.locator(".slip svg").count() == 1  # the QR code
    assert "Espace numérique de la médiathèque de Tulle" in page.locator(".slip").inner_text()
    assert "Une pièce d'identité" in page.locator(".slip").inner_text()
    check(page, "02-agent-resultat", db)

    # The button calls window.print(). A real print dialog is the browser's own (headless
    # Chromium 156 keeps a print job open, then page.pdf answers "Page is already being
    # printed"): the test records the call instead of opening one, then prints to PDF itself.
    page.evaluate("() => { window.print = () => { window.printed = (window.printed || 0) + 1; }; }")
    page.get_by_role("button", name="Imprimer le coupon").click()
    assert page.evaluate("window.printed") == 1, "the button opens the print dialog once"
    page.emulate_media(media="print")
    assert not page.locator("header.fr-header").is_visible()
    assert page.locator(".slip__code").is_visible()
    if db == "sqlite":
        page.screenshot(path=str(SHOTS / "03-coupon-impression.png"), full_page=True)
    pdf = page.pdf(prefer_css_page_size=True, print_background=True)
    assert len(re.findall(rb"/Type\s*/Page[^s]", pdf)) == 1, "the slip fits one A5 sheet"
    if db == "sqlite":
        (SHOTS / "03-coupon.pdf").write_bytes(pdf)
    page.emulate_media(media="screen")

    page.goto("/agent/orientations")
    assert page.get_by_role("link", name=code).is_visible()
    check(page, "04-agent-orientations-envoyees", db)


def _orient(server: Server, world: World, who: str = "agent_tulle", **changes: Any) -> Any:
    response = httpx.post(
        server.url + "/v1/orientations",
        json=orientation_body(**changes),
        headers=world.auth(who),
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_a_mediateur_finds_a_referral_by_code_and_works_it_to_the_end(
    new_page: Any, world: World, server: Server, database_url: str, engine: Engine
) -> None:
    db = _database(database_url)
    sent = _orient(server, world)
    code = sent["referral"]["code"]
    page = new_page()
    login(page, world, "med_tulle")
    assert page.url.endswith("/mediateur")
    assert page.get_by_role("link", name=code).is_visible()
    check(page, "05-mediateur-orientations-recues", db)

    page.get_by_label(re.compile("Code du coupon")).fill(code.lower().replace("-", ""))
    page.get_by_role("button", name="Retrouver").click()
    page.wait_for_load_state()
    assert page.url.endswith(f"/mediateur/orientations/{sent['referral']['id']}")
    assert "Jeanne" in page.content()  # consent given, referral open: the contact is shown
    reads = count(engine, "contact_read")
    assert reads >= 1  # and its reading is in the access log
    check(page, "06-mediateur-orientation", db)

    page.get_by_role("button", name="Accepter").click()
    page.wait_for_load_state()
    assert page.get_by_text("Orientation acceptée : la personne vous attend.").is_visible()
    page.get_by_role("button", name="J'ai pris contact avec la personne").click()
    page.wait_for_load_state()
    assert page.get_by_text("Premier contact enregistré.").is_visible()
    page.get_by_label(re.compile("Issue de l'accompagnement")).fill("autonome sur caf.fr")
    page.get_by_role("button", name="Terminer l'accompagnement").click()
    page.wait_for_load_state()
    assert page.locator("h1 .fr-badge").first.inner_text().lower() == "accompagnement terminé"
    assert page.get_by_role("button", name="Accepter").count() == 0
    # Final: the contact is no longer shown; the history has all four steps.
    assert "Jeanne" not in page.content()
    assert page.locator("table tbody tr").count() == 4
    check(page, "07-mediateur-orientation-terminee", db)

    events = f"{server.url}/v1/referrals/{sent['referral']['id']}/events"
    api = httpx.get(events, headers=world.auth("med_tulle")).json()
    assert [e["to_status"] for e in api] == ["en_attente", "acceptee", "contactee", "terminee"]
    assert api[-1]["reason"] == "autonome sur caf.fr"


def test_a_refusal_with_its_reason_then_the_agent_reorients(
    new_page: Any, world: World, server: Server, database_url: str
) -> None:
    db = _database(database_url)
    sent = _orient(server, world)
    page = new_page()
    login(page, world, "med_tulle")
    page.goto(f"/mediateur/orientations/{sent['referral']['id']}")
    page.get_by_label("Pas de capacité d'accueil").check(force=True)
    page.get_by_role("button", name="Refuser").click()
    page.wait_for_load_state()
    assert "REFUSÉE" in page.locator("h1").inner_text().upper()

    agent = new_page()
    login(agent, world, "agent_tulle")
    agent.goto(f"/agent/orientations/{sent['referral']['id']}")
    assert "Pas de capacité d'accueil" in agent.content()
    check(agent, "08-agent-orientation-refusee", db)
    agent.get_by_role("button", name="Réorienter vers un autre lieu").click()
    agent.wait_for_load_state()
    assert agent.get_by_text("Nouvelle orientation envoyée au lieu suivant.").is_visible()
    assert "Espace numérique de la médiathèque de Tulle" not in agent.locator("main").inner_text()


def test_a_mediateur_cannot_open_another_places_referral(
    new_page: Any, world: World, server: Server
) -> None:
    sent = _orient(server, world)  # to Tulle's place
    page = new_page()
    login(page, world, "med_ussel")
    response = page.goto(f"/mediateur/orientations/{sent['referral']['id']}")
    assert response.status == 404
    assert "Jeanne" not in page.content()
    assert "Aucune orientation" in page.locator("main").inner_text()
    page.goto(f"/mediateur?code={sent['referral']['code']}")
    assert "Aucune orientation avec ce code pour votre lieu" in page.content()
    # Nor the agents' pages, nor the coordinators'.
    assert page.goto("/agent").status == 403
    assert page.goto("/coordinateur").status == 403


def test_a_form_without_its_csrf_token_is_refused_and_stores_nothing(
    new_page: Any, world: World, engine: Engine
) -> None:
    page = new_page()
    login(page, world, "agent_tulle")
    page.goto("/agent")
    page.get_by_label("Non autonome, prête à apprendre").check(force=True)
    page.get_by_label("Démarche concernée").select_option("impots")
    page.get_by_label("Commune où habite la personne").fill("19272")
    page.evaluate("document.querySelector('#orientation input[name=csrf]').value = 'forged'")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name="Orienter la personne").click()
    assert answer.value.status == 403
    assert "Formulaire refusé" in page.content()
    assert count(engine, "orientation") == 0


def test_a_coordinator_sees_the_figures_the_charts_and_the_map(
    new_page: Any, world: World, server: Server, database_url: str
) -> None:
    db = _database(database_url)
    for _ in range(6):
        _orient(server, world)
    _orient(server, world, assessment={"profile": "non_autonome_sans_envie"})
    page = new_page()
    login(page, world, "coord")
    assert page.url.endswith("/coordinateur")
    tiles = page.locator(".fr-tile").all_inner_texts()
    assert any(t.startswith("7\n") and "Orientations" in t for t in tiles), tiles
    assert page.locator("svg.chart").count() == 2
    assert page.locator("svg.chart rect[fill='#000091']").count() >= 1
    check(page, "09-coordinateur-statistiques", db)
    with page.expect_download() as download:
        page.get_by_role("link", name=re.compile("Télécharger ce tableau")).click()
    text = Path(download.value.path()).read_text(encoding="utf-8-sig")
    assert text.splitlines()[0].startswith(
        "Mois;Masqué (moins de 5 orientations);Orientations;Vers un médiateur;"
    )

    page.goto("/coordinateur/couverture")
    assert "Corrèze" in page.locator("h2").first.inner_text()
    paths = page.locator("svg.map path").count()
    assert paths > 250, paths  # Corrèze has 278 communes, each drawn
    assert (page.locator("svg.map > title").text_content() or "").startswith("Distance")
    check(page, "10-coordinateur-couverture", db)
    with page.expect_download() as download:
        page.get_by_role("link", name=re.compile("Toutes les communes")).click()
    rows = Path(download.value.path()).read_text(encoding="utf-8-sig").splitlines()
    assert len(rows) - 1 >= paths  # a row per commune (a commune without outline is a dot)


def test_the_pages_work_from_the_keyboard(new_page: Any, world: World) -> None:
    page = new_page()
    page.goto("/connexion")
    # The key field has the focus: type, Enter.
    page.keyboard.type(world.tokens["agent_tulle"])
    page.keyboard.press("Enter")
    page.wait_for_url("**/agent")
    # First Tab: the skip link; Enter: to the content; Tab: the first choice of the form.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent.trim()") == "Contenu"
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "mode-profil"
    # Arrow keys move within a group of radios: the diagnostic shows, one question.
    page.keyboard.press("ArrowDown")
    assert page.evaluate("document.activeElement.id") == "mode-diagnostic"
    assert page.locator(".diagnostic-question:visible").count() == 1
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.name") == "q_usage_appareil"
    # The focus is visible (the DSFR's outline), as RGAA 10.7 asks.
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"


def test_every_page_fits_a_phone_and_a_desktop_without_sideways_scrolling(
    browser: Any, world: World, server: Server
) -> None:
    """Every page of every role, with real data, at 390 px (a phone) and 1280 px: nothing
    wider than the screen, no box that scrolls sideways, and the slip's code on one line."""
    from tests.test_page_words import _pages, _world_of_referrals

    with httpx.Client(base_url=server.url) as api:
        made = _world_of_referrals(api, world)  # type: ignore[arg-type]
    too_wide: dict[str, int] = {}
    wrapped: dict[str, int] = {}
    sideways: dict[str, list[str]] = {}
    for width in (390, 1280):
        for who, paths in _pages(made).items():
            context = browser.new_context(
                base_url=server.url, locale="fr-FR", viewport={"width": width, "height": 800}
            )
            page = context.new_page()
            login(page, world, who)
            for path in paths:
                page.goto(path)
                wide = page.evaluate("document.documentElement.scrollWidth")
                if wide > width:
                    too_wide[f"{width} px {who} {path}"] = wide
                # A table in a box that scrolls sideways is as bad on a phone.
                scrolling = page.evaluate(
                    """() => [...document.querySelectorAll('*')].filter(e =>
                        ['auto', 'scroll'].includes(getComputedStyle(e).overflowX)
                        && e.scrollWidth > e.clientWidth + 1).map(e => e.tagName + '.' + e.className
                        + ' ' + e.scrollWidth + '>' + e.clientWidth)"""
                )
                # A coordinator's wide table of figures may scroll within its box on a phone
                # (DSFR's pattern); the front desk's and the médiateurs' pages may not.
                if scrolling and (width >= 1280 or not path.startswith("/coordinateur")):
                    sideways[f"{width} px {who} {path}"] = scrolling
                for code in page.locator(".slip__code").all():
                    if code.is_visible():
                        lines = code.evaluate(
                            "e => Math.round(e.getBoundingClientRect().height"
                            " / parseFloat(getComputedStyle(e).lineHeight))"
                        )
                        if lines != 1:
                            wrapped[f"{width} px {path}"] = lines
            context.close()
    assert not too_wide, f"wider than the screen (px): {too_wide}"
    assert not sideways, f"boxes that scroll sideways: {sideways}"
    assert not wrapped, f"the slip's code on several lines: {wrapped}"


def test_a_place_without_a_key_works_its_referral_from_the_emails_link(
    new_page: Any, world: World, server: Server, database_url: str, engine: Engine
) -> None:
    """The page an e-mail's link opens, in Chromium: no login, the contact on request, accept,
    first contact, completed; then the place pauses itself."""
    from sqlmodel import Session

    from app.services import links

    db = _database(database_url)
    sent = _orient(server, world)["referral"]
    with Session(engine) as session:  # the link the e-mail carries (test_links.py: the e-mail)
        token = links.make_link(links.link_secret(session), sent["id"], sent["place"]["id"])
    page = new_page()
    page.goto(f"/lien/{token}")
    assert sent["code"] in page.locator("h1").inner_text()
    assert "0601020304" not in page.content()
    check(page, "13-lien-orientation", db)
    page.get_by_role("button", name="Afficher ses coordonnées").click()
    page.wait_for_load_state()
    assert "0601020304" in page.content()
    for button, done in (
        ("Accepter", "Orientation acceptée"),
        ("J'ai pris contact avec la personne", "Premier contact enregistré"),
        ("Terminer l'accompagnement", "Accompagnement terminé"),
    ):
        page.get_by_role("button", name=button).click()
        page.wait_for_load_state()
        assert page.get_by_text(done).first.is_visible(), button
    assert "par le lien de l'e-mail" in page.content()
    page.get_by_role("link", name=re.compile("Gérer mon lieu")).click()
    page.wait_for_load_state()
    check(page, "14-lien-gerer-mon-lieu", db)
    page.get_by_label(re.compile("Pas de nouvelle orientation jusqu'au")).fill("2099-12-31")
    page.get_by_role("button", name="Enregistrer").click()
    page.wait_for_load_state()
    assert page.get_by_text("Modifications enregistrées.").is_visible()
    assert "31 décembre 2099" in page.content()
