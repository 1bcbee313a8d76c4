"""People sign in as themselves, in a real browser: Debian's Chromium driven by Playwright,
against `passerelle serve` in a process of its own (the API-key form closed, as in a
deployment), a real OpenID Connect provider on the loopback (the npm package oidc-provider,
tests/oidc/provider.mjs: its own login and consent pages) and a real SMTP server (aiosmtpd)
that receives the service's e-mails. On SQLite and on PostgreSQL. Each of Passerelle's pages
visited is checked with axe-core (the provider's pages are not ours)."""

import base64
import email.message
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

import tests.test_accounts as accounts_tests
from app.models import Role
from app.services.oidc import CALLBACK
from tests.conftest import Mailbox, Server, World, serving
from tests.pgserver import free_port
from tests.test_accounts import ACCOUNTS, CLIENT_ID, CLIENT_SECRET, invite, needs_provider
from tests.test_web_browser import (  # noqa: F401 (fixtures)
    AXE,
    CHROMIUM,
    _database,
    _orient,
    browser,
    check,
    new_page,
)

pytestmark = [
    needs_provider,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists() or not AXE.exists(),
        reason="needs Debian's Chromium (apt-get install chromium) and axe-core (make install)",
    ),
]

MARIE = "marie.curie@mediatheque-tulle.fr"
assert MARIE in ACCOUNTS  # the provider gives her given_name and usual_name: Marie Curie


@pytest.fixture
def provider_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def server(
    engine: Engine,  # noqa: ARG001 (asked for its side effect: the tables emptied)
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mailbox: Mailbox,
    provider_url: str,
) -> Iterator[Server]:
    """`passerelle serve` configured as a deployment with a provider, then the provider with
    the service's redirect URI (the service reads the provider's metadata on first use)."""
    for name, value in {
        "PASSERELLE_OIDC_ISSUER": provider_url,
        "PASSERELLE_OIDC_CLIENT_ID": CLIENT_ID,
        "PASSERELLE_OIDC_CLIENT_SECRET": CLIENT_SECRET,
        "PASSERELLE_WEB_KEY_LOGIN": "false",
        "PASSERELLE_SMTP_URL": f"smtp://127.0.0.1:{mailbox.port}",
        "PASSERELLE_MAIL_FROM": "Passerelle <passerelle@example.org>",
        "PASSERELLE_OUTBOX_CHECK_SECONDS": "0.3",
    }.items():
        monkeypatch.setenv(name, value)
    with serving(database_url, tmp_path / "server.log") as running:
        # The provider on the port the service was told (tests/test_accounts.py starts it).
        monkeypatch.setattr(
            accounts_tests, "free_port", lambda: int(provider_url.rsplit(":", 1)[1])
        )
        with contextmanager(accounts_tests.start_provider)([running.url + CALLBACK]):
            yield running


def through_provider(
    page: Any, provider_url: str, server: Server, email: str, until: Any = None
) -> None:
    """The provider's own pages, as a person fills them: its login form (the test provider
    takes "pc-" and the hexadecimal of the e-mail as the account's login), then its consent."""
    page.wait_for_url(f"{provider_url}/**")
    for _ in range(6):
        if page.url.startswith(server.url) or (until and until()):
            return
        login = page.locator("input[name=login]")
        if login.count():
            login.fill("pc-" + email.encode().hex())
            page.locator("input[name=password]").fill("x")
            page.get_by_role("button", name="Sign-in").click()
        else:
            page.get_by_role("button", name="Continue").click()
        page.wait_for_load_state()
    assert page.url.startswith(server.url) or (until and until()), page.url


def open_page(make: Any) -> Any:
    page = make()
    # The provider's pages import a web font from the Internet: answered here, empty.
    page.route("https://fonts.googleapis.com/**", lambda r: r.fulfill(content_type="text/css"))
    return page


def header(page: Any) -> str:
    return str(page.locator("header.fr-header").inner_text())


def sign_in_with_the_provider(
    page: Any, provider_url: str, server: Server, email: str, lands: str, db: str, shot: str
) -> None:
    page.goto("/connexion")
    assert page.get_by_role("heading", name="Connexion", exact=True).is_visible()
    assert page.get_by_label("Clé d'accès").count() == 0  # people sign in as themselves
    check(page, shot, db)
    page.get_by_role("link", name="S'identifier avec ProConnect").click()
    through_provider(page, provider_url, server, email)
    # Back on Passerelle: a page that moves on by itself to the person's home.
    page.wait_for_url(server.url + lands)


def test_an_invited_mediateur_signs_in_with_the_provider_and_accepts_a_referral(
    new_page: Any,  # noqa: F811
    world: World,
    server: Server,
    database_url: str,
    engine: Engine,
    provider_url: str,
) -> None:
    db = _database(database_url)
    invite(
        engine,
        "Marie.Curie@mediatheque-tulle.fr",
        Role.MEDIATEUR,
        place_id=world.places["demo-med-tulle"],
    )
    sent = _orient(server, world)["referral"]
    page = open_page(new_page)
    sign_in_with_the_provider(page, provider_url, server, MARIE, "/mediateur", db, "20-connexion")

    assert "Médiateur numérique — Marie Curie" in header(page)
    check(page, "21-connexion-mediateur-orientations-recues", db)
    page.get_by_role("link", name=sent["code"]).click()
    page.wait_for_url(f"**/mediateur/orientations/{sent['id']}")
    assert "Jeanne" in page.locator("main").inner_text()  # the contact, read in her name
    check(page, "22-connexion-mediateur-orientation", db)
    page.get_by_role("button", name="Accepter").click()
    page.wait_for_load_state()
    assert page.get_by_text("Orientation acceptée : la personne vous attend.").is_visible()
    last = page.locator("table tbody tr").last.inner_text()
    assert "Acceptée" in last and "Médiateur" in last, last
    check(page, "23-connexion-mediateur-orientation-acceptee", db)

    # The handoff log names her and the membership she acted in, not a key.
    with engine.connect() as connection:
        user_id, first, last_name, sub = connection.execute(
            text(
                "SELECT id, first_name, last_name, oidc_sub FROM user_account WHERE email = :email"
            ),
            {"email": MARIE},
        ).one()
        membership = connection.execute(
            text("SELECT id FROM membership WHERE user_id = :u AND place_id = :p"),
            {"u": user_id, "p": world.places["demo-med-tulle"]},
        ).scalar_one()
        event = connection.execute(
            text(
                "SELECT actor_user_id, actor_membership_id, actor_key_id FROM handoff_event "
                "WHERE referral_id = :r AND to_status = 'acceptee'"
            ),
            {"r": sent["id"]},
        ).one()
    assert (first, last_name) == ("Marie", "Curie") and sub == "pc-" + MARIE.encode().hex()
    assert tuple(event) == (user_id, membership, None)

    # The access log, as an operator reads it (`passerelle audit`, piped: one line a read).
    audit = subprocess.run(
        [sys.executable, "-m", "app.cli", "audit", "--referral", sent["id"]],
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert audit.returncode == 0, audit.stderr
    head, *rows = [line.split("\t") for line in audit.stdout.splitlines()]
    who, via = head.index("personne"), head.index("requête")
    # Two reads, both hers: the page before she accepted, and after. Her button's own answer
    # went to no one (the page redirects) and is no read.
    assert [(r[who], r[via]) for r in rows] == [
        (f"Marie Curie <{MARIE}>", "GET /mediateur/orientations/{id}")
    ] * 2, audit.stdout


def test_a_person_with_two_memberships_switches_between_them(
    new_page: Any,  # noqa: F811
    world: World,
    server: Server,
    database_url: str,
    engine: Engine,
    provider_url: str,
) -> None:
    db = _database(database_url)
    invite(engine, MARIE, Role.MEDIATEUR, place_id=world.places["demo-med-tulle"])
    invite(engine, MARIE, Role.COORDINATEUR, territory="departement:19")
    page = open_page(new_page)
    sign_in_with_the_provider(page, provider_url, server, MARIE, "/mediateur", db, "20-connexion")
    assert "Médiateur numérique — Marie Curie" in header(page)

    page.get_by_role("link", name="Changer de rôle").first.click()
    page.wait_for_url("**/espace")
    assert page.get_by_text("Rôle actuel").is_visible()
    check(page, "24-connexion-changer-de-role", db)
    page.get_by_role("button", name="Agir en tant que coordinateur — departement:19").click()
    page.wait_for_url("**/coordinateur")
    assert "Coordinateur — Marie Curie" in header(page)
    check(page, "25-connexion-coordinateur", db)
    assert page.goto("/mediateur").status == 403  # one role at a time

    page.goto("/espace")
    page.get_by_role("button", name=re.compile(r"^Agir en tant que médiateur")).click()
    page.wait_for_url("**/mediateur")
    assert "Médiateur numérique — Marie Curie" in header(page)
    assert page.goto("/coordinateur").status == 403


def test_a_tampered_state_is_refused_with_a_french_page(
    new_page: Any,  # noqa: F811
    world: World,
    server: Server,
    database_url: str,
    engine: Engine,
    provider_url: str,
) -> None:
    db = _database(database_url)
    invite(engine, MARIE, Role.MEDIATEUR, place_id=world.places["demo-med-tulle"])
    page = open_page(new_page)
    # The provider's answer (its redirect to Passerelle's callback) is held in the browser
    # before it is sent. Playwright's routes never see the requests of a redirect: Chromium's
    # own interception (the DevTools protocol's Fetch domain) does.
    held: list[str] = []
    devtools = page.context.new_cdp_session(page)

    def hold(event: dict[str, Any]) -> None:
        held.append(event["request"]["url"])
        body = '<!doctype html><html lang="fr"><title>Retenue</title><main></main></html>'
        devtools.send(
            "Fetch.fulfillRequest",
            {
                "requestId": event["requestId"],
                "responseCode": 200,
                "responseHeaders": [{"name": "Content-Type", "value": "text/html"}],
                "body": base64.b64encode(body.encode()).decode(),
            },
        )

    devtools.on("Fetch.requestPaused", hold)
    devtools.send("Fetch.enable", {"patterns": [{"urlPattern": f"{server.url}{CALLBACK}*"}]})
    page.goto("/connexion")
    page.get_by_role("link", name="S'identifier avec ProConnect").click()
    through_provider(page, provider_url, server, MARIE, until=lambda: bool(held))
    devtools.send("Fetch.disable")
    devtools.detach()
    assert len(held) == 1 and "state=" in held[0] and "code=" in held[0], held
    assert page.goto("/mediateur").url.endswith("/connexion?suite=/mediateur")  # not yet in

    # Its state edited in the address bar: refused, in French, nobody signed in.
    forged = re.sub(r"([?&]state=)[^&]+", r"\g<1>forge", held[0])
    assert forged != held[0]
    answer = page.goto(forged)
    assert answer.status == 400
    assert page.locator("html").get_attribute("lang") == "fr"
    words = page.locator("main").inner_text()
    assert "ne correspond pas à la connexion demandée (paramètre « state »)" in words, words
    assert "personne n'a été connecté" in words
    check(page, "26-connexion-refusee-state", db)
    assert page.goto("/mediateur").url.endswith("/connexion?suite=/mediateur")
    # The refusal ended that sign-in: the genuine answer, replayed, opens nothing either.
    replayed = page.goto(held[0])
    assert replayed.status == 400 and "pas été commencée" in page.locator("main").inner_text()
    assert page.goto("/mediateur").url.endswith("/connexion?suite=/mediateur")


def mail_to(mailbox: Mailbox, address: str, subject: str) -> email.message.EmailMessage:
    """The e-mail the service delivered (it delivers its outbox every 0.3 s here)."""
    for _ in range(100):
        for recipients, message in mailbox.messages:
            if address in recipients and message["Subject"] == subject:
                return message  # type: ignore[return-value]
        time.sleep(0.1)
    raise AssertionError(f"no e-mail « {subject} » to {address}: {mailbox.messages}")


def test_an_email_link_signs_in_once_and_the_second_use_says_why(
    new_page: Any,  # noqa: F811
    world: World,
    server: Server,
    database_url: str,
    engine: Engine,
    mailbox: Mailbox,
) -> None:
    db = _database(database_url)
    address = "jean.perrin@mediatheque-tulle.fr"
    invite(engine, address, Role.MEDIATEUR, place_id=world.places["demo-med-tulle"])
    page = new_page()
    page.goto("/connexion")
    typed = "Jean.Perrin@mediatheque-tulle.fr"
    page.get_by_label(re.compile("Adresse e-mail professionnelle")).fill(typed)
    page.get_by_role("button", name="Recevoir un lien de connexion").click()
    page.wait_for_load_state()
    assert (
        page.get_by_role("status")
        .get_by_text(
            f"Si l'adresse {typed} a été invitée sur Passerelle, un lien "
            "de connexion vient d'y être envoyé."
        )
        .is_visible()
    )
    check(page, "27-connexion-lien-envoye", db)

    message = mail_to(mailbox, address, "Votre lien de connexion à Passerelle")
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    found = re.search(rf"{re.escape(server.url)}/connexion/lien/\S+", body.get_content())
    assert found, body.get_content()
    link = found.group(0)

    # Another browser opens the link too (a mail scanner, a second tab): a page, a button.
    other = new_page()
    other.goto(link)
    assert other.get_by_role("button", name="Me connecter").is_visible()
    assert other.goto("/mediateur").url.endswith("/connexion?suite=/mediateur")
    other.goto(link)

    page.goto(link)
    assert page.get_by_role("heading", name="Se connecter à Passerelle").is_visible()
    check(page, "28-connexion-lien", db)
    page.get_by_role("button", name="Me connecter").click()
    page.wait_for_url("**/mediateur")
    # No name given by a provider: the pages name him by his address.
    assert f"Médiateur numérique — {address}" in header(page)

    # The second use, by its button: refused, and the page says why.
    with other.expect_response(lambda r: r.request.method == "POST") as posted:
        other.get_by_role("button", name="Me connecter").click()
    assert posted.value.status == 410
    other.wait_for_load_state()
    said = "Ce lien de connexion a déjà servi ou a expiré : un lien ne sert qu'une fois"
    assert other.get_by_text(said).is_visible()
    check(other, "29-connexion-lien-deja-servi", db)
    assert other.goto("/mediateur").url.endswith("/connexion?suite=/mediateur")
    # Opened again, even by the person it signed in: the same words.
    again = page.goto(link)
    assert again.status == 410 and page.get_by_text(said).is_visible()
