"""People sign in as themselves: through a real OpenID Connect provider on the loopback (the
npm package oidc-provider, tests/oidc/provider.mjs), or with a one-time link by e-mail; they
switch memberships, a responsable manages the team, the logs name who acted and read. On
SQLite and PostgreSQL."""

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlmodel import Session, select
from typer.testing import CliRunner

from app.cli import app as cli
from app.config import Settings
from app.main import create_app
from app.models import OutboxMessage, Role
from app.notifications import outbox
from app.services import accounts
from app.services.links import link_secret
from tests.conftest import World, orientation_body
from tests.pgserver import free_port
from tests.test_web import csrf_of

ROOT = Path(__file__).resolve().parents[1]
PROVIDER = ROOT / "tests" / "oidc" / "provider.mjs"
NODE = shutil.which("node")
CLIENT_ID, CLIENT_SECRET = "passerelle-tests", "un-secret-de-test-assez-long-pour-hs256"
ACCOUNTS = {
    "marie.curie@mediatheque-tulle.fr": {"given_name": "Marie", "usual_name": "Curie"},
    "paul.langevin@mediatheque-tulle.fr": {
        "given_name": "Paul",
        "usual_name": "Langevin",
        "siret": "21190272300013",
    },
}

needs_provider = pytest.mark.skipif(
    NODE is None or not (ROOT / "node_modules" / "oidc-provider").exists(),
    reason="needs Node.js and the npm package oidc-provider (make install)",
)


@dataclass
class Provider:
    issuer: str
    redirect_uris: list[str]


def start_provider(redirect_uris: list[str]) -> Iterator[Provider]:
    port = free_port()
    process = subprocess.Popen(
        [
            NODE or "node",
            str(PROVIDER),
            str(port),
            CLIENT_ID,
            CLIENT_SECRET,
            ",".join(redirect_uris),
        ],
        env={"ACCOUNTS": json.dumps(ACCOUNTS), "PATH": "/usr/bin:/bin", "NODE_ENV": "test"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    issuer = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if httpx.get(issuer + "/.well-known/openid-configuration").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            process.kill()
            said = process.stdout.read() if process.stdout else b""
            pytest.fail("oidc-provider did not start: " + said.decode())
        yield Provider(issuer, redirect_uris)
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    if NODE is None:
        pytest.skip("needs Node.js")
    yield from start_provider(["http://testserver/connexion/oidc/retour"])


def oidc_settings(provider: Provider) -> Settings:
    return Settings(
        public_url="http://testserver",
        oidc_issuer=provider.issuer,
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=CLIENT_SECRET,
    )


@pytest.fixture
def oidc_client(engine: Engine, provider: Provider) -> Iterator[TestClient]:
    with TestClient(
        create_app(engine, oidc_settings(provider)), raise_server_exceptions=False
    ) as c:
        yield c


def provider_sign_in(authorization_url: str, email: str) -> str:
    """Goes through the provider's own login and consent pages as a browser would; returns
    the address it sends back to (the callback, with code and state)."""
    with httpx.Client(follow_redirects=False) as browser:
        url = authorization_url
        for _ in range(12):
            answer = browser.get(url)
            if answer.status_code in (302, 303):
                url = str(httpx.URL(url).join(answer.headers["location"]))
                if url.startswith("http://testserver"):
                    return url
                continue
            form = re.search(r'<form[^>]*action="([^"]+)"', answer.text)
            assert form, answer.text[:800]
            fields = dict(re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', answer.text))
            if 'name="login"' in answer.text:  # the provider's id of the account
                fields.update(login="pc-" + email.encode().hex(), password="x")
            posted = browser.post(str(httpx.URL(url).join(unescape(form.group(1)))), data=fields)
            assert posted.status_code in (302, 303), posted.text[:800]
            url = str(httpx.URL(url).join(posted.headers["location"]))
            if url.startswith("http://testserver"):
                return url
    raise AssertionError("the provider never sent back")


def sign_in_oidc(client: TestClient, email: str, tamper: Any = None) -> httpx.Response:
    started = client.get("/connexion/oidc", follow_redirects=False)
    assert started.status_code == 303, started.text
    authorization = started.headers["location"]
    if tamper:
        authorization = tamper(authorization)
    back = provider_sign_in(authorization, email)
    answer: httpx.Response = client.get(
        back.removeprefix("http://testserver"), follow_redirects=False
    )
    return answer


def landing(answer: httpx.Response) -> str:
    found = re.search(r'http-equiv="refresh" content="0;url=([^"]+)"', answer.text)
    assert found, answer.text[:600]
    return found.group(1)


def invite(engine: Engine, email: str, role: Role, **scope: Any) -> str:
    with Session(engine) as session:
        return accounts.invite(session, email=email, role=role, **scope).id


def emails(engine: Engine, event: str) -> list[tuple[str, str]]:
    """(recipient, text) of the e-mails of that kind, as they are delivered."""
    with Session(engine) as session:
        secret = link_secret(session)
        rows = session.exec(select(OutboxMessage).where(OutboxMessage.event == event)).all()
        found = []
        for row in sorted(rows, key=lambda r: r.created_at):
            _, body, _ = outbox.render_email(row.content, "http://testserver", secret)
            found.append((row.recipient, body))
        return found


def link_in(body: str, prefix: str) -> str:
    found = re.search(rf"http://testserver({re.escape(prefix)}\S+)", body)
    assert found, body
    return found.group(1)


def signed_in(app: Any, engine: Engine, email: str) -> TestClient:
    """A browser of its own, signed in with the last sign-in link sent to `email`."""
    browser = TestClient(app)
    page = browser.get("/connexion")
    browser.post("/connexion/lien", data={"csrf": csrf_of(page.text), "email": email})
    path = link_in(
        [b for r, b in emails(engine, accounts.LOGIN_LINK) if r == email][-1], "/connexion/lien/"
    )
    browser.post(path, data={"csrf": csrf_of(browser.get(path).text)})
    return browser


@needs_provider
@pytest.mark.usefixtures("cli_env")
def test_an_invited_mediateur_signs_in_accepts_a_referral_and_the_logs_name_them(
    oidc_client: TestClient, world: World, engine: Engine
) -> None:
    client = oidc_client
    invite(
        engine,
        "Marie.Curie@mediatheque-tulle.fr",
        Role.MEDIATEUR,
        place_id=world.places["demo-med-tulle"],
    )
    made = client.post(
        "/v1/orientations", json=orientation_body(), headers=world.auth("agent_tulle")
    )
    referral_id = made.json()["referral"]["id"]

    answer = sign_in_oidc(client, "marie.curie@mediatheque-tulle.fr")
    assert answer.status_code == 200 and landing(answer) == "/mediateur"
    inbox = client.get("/mediateur")
    assert inbox.status_code == 200 and made.json()["referral"]["code"] in inbox.text
    assert "Marie Curie" in inbox.text
    shown = client.get(f"/mediateur/orientations/{referral_id}")
    token = csrf_of(shown.text)
    version = re.search(r'name="version" value="(\d+)"', shown.text)
    moved = client.post(
        f"/mediateur/orientations/{referral_id}/statut",
        data={"csrf": token, "status": "acceptee", "version": version.group(1) if version else ""},
        follow_redirects=False,
    )
    assert moved.status_code == 303, moved.text
    history = client.get(f"/mediateur/orientations/{referral_id}")
    assert history.status_code == 200 and "Jeanne" in history.text
    with engine.connect() as connection:
        user_id, sub = connection.execute(
            text(
                "SELECT id, oidc_sub FROM user_account "
                "WHERE email = 'marie.curie@mediatheque-tulle.fr'"
            )
        ).one()
        assert sub and sub.startswith("pc-")
        event = connection.execute(
            text(
                "SELECT actor_user_id, actor_membership_id, actor_key_id FROM handoff_event "
                "WHERE to_status = 'acceptee'"
            )
        ).one()
        reads = connection.execute(
            text("SELECT user_id, membership_id, api_key_id FROM contact_read")
        ).all()
    assert event[0] == user_id and event[1] and event[2] is None
    assert reads and all(r[0] == user_id and r[1] and r[2] is None for r in reads)
    audit = CliRunner().invoke(cli, ["audit"])
    assert audit.exit_code == 0 and "Marie Curie" in audit.output


@needs_provider
def test_a_tampered_state_nonce_or_id_token_is_refused_with_a_french_page(
    oidc_client: TestClient, world: World, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = oidc_client
    invite(
        engine,
        "marie.curie@mediatheque-tulle.fr",
        Role.MEDIATEUR,
        place_id=world.places["demo-med-tulle"],
    )

    def with_param(name: str, value: str) -> Any:
        def change(url: str) -> str:
            return re.sub(rf"([?&]{name}=)[^&]+", rf"\g<1>{value}", url)

        return change

    state = sign_in_oidc(client, "marie.curie@mediatheque-tulle.fr", with_param("state", "forge"))
    assert (
        state.status_code == 400
        and "« state »" in unescape(state.text)
        and 'lang="fr"' in state.text
    )
    nonce = sign_in_oidc(client, "marie.curie@mediatheque-tulle.fr", with_param("nonce", "autre"))
    assert nonce.status_code == 400 and "nonce" in nonce.text
    assert (
        "passerelle_session" not in nonce.headers.get("set-cookie", "")
        or client.get("/mediateur", follow_redirects=False).status_code == 303
    )

    # The ID token altered on its way (its payload changed, the signature kept).
    from app.services import oidc

    real = oidc.Oidc.finish

    async def tampered(self: Any, code: str, nonce: str, verifier: str) -> Any:
        fetch = self.client.fetch_access_token

        async def altered(**kwargs: Any) -> Any:
            token = await fetch(**kwargs)
            head, payload, signature = token["id_token"].split(".")
            import base64

            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            claims["email"] = "pirate@example.org"
            forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
            token["id_token"] = f"{head}.{forged}.{signature}"
            return token

        monkeypatch.setattr(self.client, "fetch_access_token", altered)
        return await real(self, code, nonce, verifier)

    monkeypatch.setattr(oidc.Oidc, "finish", tampered)
    forged = sign_in_oidc(client, "marie.curie@mediatheque-tulle.fr")
    assert forged.status_code == 400
    assert "jeton d'identité reçu n'est pas valide" in unescape(forged.text)
    assert client.get("/mediateur", follow_redirects=False).status_code == 303  # not signed in
    # A callback with no flow started in this browser.
    stray = TestClient(client.app).get("/connexion/oidc/retour?code=x&state=y")
    assert stray.status_code == 400 and "pas été commencée" in unescape(stray.text)


def test_an_email_link_signs_in_once_and_never_twice(
    client: TestClient, world: World, engine: Engine
) -> None:
    invite(
        engine,
        "marie.curie@mediatheque-tulle.fr",
        Role.MEDIATEUR,
        place_id=world.places["demo-med-tulle"],
    )
    page = client.get("/connexion")
    assert "ProConnect" not in page.text  # no provider configured
    asked = client.post(
        "/connexion/lien",
        data={"csrf": csrf_of(page.text), "email": "Marie.Curie@mediatheque-tulle.fr"},
    )
    unknown = client.post(
        "/connexion/lien", data={"csrf": csrf_of(page.text), "email": "personne@example.org"}
    )
    assert asked.status_code == unknown.status_code == 200
    said = "un lien de connexion vient d'y être envoyé"
    assert said in unescape(asked.text) and said in unescape(
        unknown.text
    )  # nobody learns who has an account
    sent = emails(engine, accounts.LOGIN_LINK)
    assert [r for r, _ in sent] == ["marie.curie@mediatheque-tulle.fr"]
    path = link_in(sent[0][1], "/connexion/lien/")

    # A mail scanner opens the link: a page with a button, nobody signed in.
    scanner = TestClient(client.app)
    shown = scanner.get(path)
    assert shown.status_code == 200 and "Me connecter" in shown.text
    assert scanner.get("/mediateur", follow_redirects=False).status_code == 303

    opened = client.get(path)
    done = client.post(path, data={"csrf": csrf_of(opened.text)}, follow_redirects=False)
    assert done.status_code == 200 and landing(done) == "/mediateur"
    assert client.get("/mediateur").status_code == 200
    again = scanner.post(path, data={"csrf": csrf_of(scanner.get("/connexion").text)})
    assert again.status_code == 410 and "déjà servi" in again.text
    assert scanner.get(path).status_code == 410
    forged = scanner.get(path[:-3] + "abc")
    assert forged.status_code == 404 and "pas valide" in forged.text


def test_wrong_sign_in_links_from_one_address_are_slowed_down(
    client: TestClient, settings: Settings
) -> None:
    for _ in range(settings.auth_failures_per_minute):
        assert client.get("/connexion/lien/pas-un-lien").status_code == 404
    refused = client.get("/connexion/lien/pas-un-lien")
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
    assert "Trop de liens erronés depuis cette adresse" in unescape(refused.text)
    assert 'lang="fr"' in refused.text  # the page, not the API's problem


def test_a_removed_member_and_a_logged_out_session_end_at_once(
    client: TestClient, world: World, engine: Engine
) -> None:
    place = world.places["demo-med-tulle"]
    invite(engine, "chef@mediatheque-tulle.fr", Role.MEDIATEUR, place_id=place, responsable=True)
    invite(engine, "marie.curie@mediatheque-tulle.fr", Role.MEDIATEUR, place_id=place)

    chief = signed_in(client.app, engine, "chef@mediatheque-tulle.fr")
    marie = signed_in(client.app, engine, "marie.curie@mediatheque-tulle.fr")
    assert marie.get("/mediateur").status_code == 200
    assert marie.get("/equipe").status_code == 403  # not the responsable
    team = chief.get("/equipe")
    assert team.status_code == 200 and "marie.curie@mediatheque-tulle.fr" in team.text
    member = re.search(r'name="membre" value="([^"]+)"', team.text)
    assert member
    removed = chief.post(
        "/equipe/retirer", data={"csrf": csrf_of(team.text), "membre": member.group(1)}
    )
    assert removed.status_code == 200 and "ses sessions sont terminées" in removed.text
    assert marie.get("/mediateur", follow_redirects=False).status_code == 303  # at once

    invited = chief.post(
        "/equipe/inviter", data={"csrf": csrf_of(team.text), "email": "nouveau@exemple.fr"}
    )
    assert invited.status_code == 200 and "Invitation envoyée à nouveau@exemple.fr" in invited.text
    assert emails(engine, accounts.INVITATION)[-1][0] == "nouveau@exemple.fr"
    bad = chief.post(
        "/equipe/inviter", data={"csrf": csrf_of(team.text), "email": "pas une adresse"}
    )
    assert bad.status_code == 422 and "Adresse e-mail invalide" in bad.text

    # A copy of the chief's cookie taken before logout opens nothing after it.
    copy = TestClient(client.app, cookies=dict(chief.cookies))
    assert copy.get("/mediateur").status_code == 200
    chief.post("/deconnexion", data={"csrf": csrf_of(chief.get("/mediateur").text)})
    assert copy.get("/mediateur", follow_redirects=False).status_code == 303


def test_an_admin_signed_in_as_a_person_manages_the_team_of_any_place(
    client: TestClient, world: World, engine: Engine
) -> None:
    place = world.places["demo-med-tulle"]
    invite(engine, "marie.curie@mediatheque-tulle.fr", Role.MEDIATEUR, place_id=place)
    invite(engine, "admin@correze.fr", Role.ADMIN)
    admin = signed_in(client.app, engine, "admin@correze.fr")
    assert admin.get("/equipe").status_code == 403  # which place: the page asks for one
    team = admin.get(f"/equipe?lieu={place}")
    assert team.status_code == 200 and "marie.curie@mediatheque-tulle.fr" in team.text
    member = re.search(r'name="membre" value="([^"]+)"', team.text)
    assert member
    removed = admin.post(
        "/equipe/retirer",
        data={"csrf": csrf_of(team.text), "membre": member.group(1), "lieu": place},
    )
    assert removed.status_code == 200 and "ses sessions sont terminées" in removed.text
    assert "marie.curie@mediatheque-tulle.fr" not in admin.get(f"/equipe?lieu={place}").text


def test_a_person_with_two_memberships_switches_between_them(
    client: TestClient, world: World, engine: Engine
) -> None:
    email = "double@correze.fr"
    invite(engine, email, Role.MEDIATEUR, place_id=world.places["demo-med-tulle"])
    invite(engine, email, Role.COORDINATEUR, territory="departement:19")
    client = signed_in(client.app, engine, email)
    assert client.get("/mediateur").status_code == 200
    assert client.get("/coordinateur").status_code == 403
    choices = client.get("/espace")
    assert "Changer de rôle" in choices.text and "coordinateur — departement:19" in choices.text
    ids = re.findall(r'name="membership" value="([^"]+)"', choices.text)
    assert len(ids) == 2
    switched = client.post(
        "/espace",
        data={"csrf": csrf_of(choices.text), "membership": ids[1]},
        follow_redirects=False,
    )
    assert switched.status_code == 303 and switched.headers["location"] == "/coordinateur"
    assert client.get("/coordinateur").status_code == 200
    assert client.get("/mediateur").status_code == 403
    other = client.post("/espace", data={"csrf": csrf_of(choices.text), "membership": "mbr_x"})
    assert other.status_code == 404 and "plus le vôtre" in other.text


@needs_provider
def test_a_siret_lets_a_stranger_ask_to_join_and_the_responsable_accepts_from_the_email(
    oidc_client: TestClient, world: World, engine: Engine
) -> None:
    place = world.places["demo-med-tulle"]
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE place SET pivot = '21190272300013' WHERE id = :id"), {"id": place}
        )
    invite(engine, "chef@mediatheque-tulle.fr", Role.MEDIATEUR, place_id=place, responsable=True)
    answer = sign_in_oidc(oidc_client, "paul.langevin@mediatheque-tulle.fr")
    assert answer.status_code == 200 and "Demander à rejoindre" in answer.text
    proof = re.search(r'name="preuve" value="([^"]+)"', answer.text)
    assert proof, answer.text[:300]
    asked = oidc_client.post(
        "/espace/rejoindre", data={"csrf": csrf_of(answer.text), "preuve": proof.group(1)}
    )
    assert asked.status_code == 200 and "attend la réponse" in asked.text
    assert oidc_client.get("/mediateur", follow_redirects=False).headers["location"] == "/espace"
    ((to, body),) = emails(engine, accounts.JOIN_REQUEST)
    assert to == "chef@mediatheque-tulle.fr" and "Paul Langevin" in body
    path = link_in(body, "/equipe/demandes/")
    scanner = TestClient(oidc_client.app)
    shown = scanner.get(path)
    assert shown.status_code == 200 and "Accepter Paul Langevin" in shown.text
    link_csrf = re.search(r'name="csrf" value="([^"]+)"', shown.text).group(1)  # type: ignore[union-attr]
    done = scanner.post(path, data={"csrf": link_csrf, "decision": "accepter"})
    assert done.status_code == 200 and "Demande acceptée" in done.text
    # A member now: the same session opens the inbox, without following a redirect.
    assert oidc_client.get("/mediateur", follow_redirects=False).status_code == 200
    assert emails(engine, accounts.JOIN_ANSWER)[0][0] == "paul.langevin@mediatheque-tulle.fr"


def test_without_a_provider_or_the_key_setting_the_login_page_offers_the_email_link(
    engine: Engine, world: World
) -> None:
    closed = Settings(web_key_login=False)
    with TestClient(create_app(engine, closed), raise_server_exceptions=False) as client:
        page = client.get("/connexion")
        assert (
            "Clé d'accès" not in unescape(page.text)
            and "Recevoir un lien de connexion" in page.text
        )
        refused = client.post(
            "/connexion", data={"csrf": csrf_of(page.text), "cle": world.tokens["med_tulle"]}
        )
        assert refused.status_code == 403 and "pas ouverte" in refused.text
        missing = client.get("/connexion/oidc")
        assert missing.status_code == 404 and "pas configurée" in missing.text


@pytest.mark.usefixtures("cli_env")
def test_users_invite_list_and_deactivate_on_the_command_line(
    world: World, engine: Engine, client: TestClient
) -> None:
    runner = CliRunner()
    made = runner.invoke(
        cli,
        [
            "users",
            "invite",
            "--email",
            "Anne@Correze.fr",
            "--role",
            "coordinateur",
            "--territory",
            "departement:19",
        ],
    )
    assert made.exit_code == 0, made.output
    assert "Invitation envoyée à anne@correze.fr" in made.output
    wrong = runner.invoke(
        cli,
        [
            "users",
            "invite",
            "--email",
            "x@y.fr",
            "--role",
            "agent",
            "--place",
            world.places["demo-med-tulle"],
        ],
    )
    assert wrong.exit_code == 2 and "france_services" in wrong.output
    listed = runner.invoke(cli, ["users", "list"])
    assert listed.exit_code == 0
    # Piped: one tab-separated line per role (e-mail, name, role, place, territory, responsable).
    lines = [line.split("\t") for line in listed.output.splitlines()]
    assert lines[0][:3] == ["e-mail", "nom", "rôle"]
    anne = ["anne@correze.fr", "anne@correze.fr", "coordinateur", "", "departement:19", "non"]
    assert anne in [line[:6] for line in lines], listed.output
    shown = runner.invoke(cli, ["outbox", "list", "--show", "--url", "https://passerelle.example"])
    assert "https://passerelle.example/connexion/lien/" in shown.output
    anne_browser = signed_in(client.app, engine, "anne@correze.fr")
    assert anne_browser.get("/coordinateur").status_code == 200
    gone = runner.invoke(cli, ["users", "deactivate", "anne@correze.fr"])
    assert gone.exit_code == 0 and "sessions sont terminées" in gone.output
    assert anne_browser.get("/coordinateur", follow_redirects=False).status_code == 303  # at once
    assert runner.invoke(cli, ["users", "deactivate", "nobody@x.fr"]).exit_code == 1
    with Session(engine) as session:
        assert not accounts.request_login_link(session, "anne@correze.fr", None, 15)
        from datetime import timedelta

        from app.models.common import utcnow

        assert accounts.erase_deactivated(session, 0, utcnow() + timedelta(days=1)) == 1
        assert accounts.user_by_email(session, "anne@correze.fr") is None
