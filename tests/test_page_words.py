"""Every page of every role, rendered with real data, speaks its readers' words: no field name
or code of the API (taken from its OpenAPI document), no English word, on the pages as they
are and on the error pages a person can reach."""

import re
from html.parser import HTMLParser
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session

from app.services import links
from tests.conftest import World, orientation_body
from tests.test_web import login

# The API's names that are also plain French, as a sentence may use them ("non autonome",
# "la commune", "le code"): they stay allowed on a page.
FRENCH = {
    "aucune",
    "autonome",
    "autre",
    "code",
    "commune",
    "communes",
    "diagnostic",
    "note",
    "orientations",
    "place",
    "population",
    "retraite",
    "service",
    "services",
    "sort",
    # The days and the needs of app.triage.needs are plain French too.
    "lundi",
    "mardi",
    "mercredi",
    "jeudi",
    "vendredi",
    "samedi",
    "dimanche",
    "matin",
    "public",
    "publics",
    "individuel",
    "collectif",
    "gratuit",
    "payant",
    "jeunes",
    "seniors",
    "femmes",
    "illettrisme",
}
# Words a French page would never show but an untranslated one does.
ENGLISH = {
    "the",
    "and",
    "not",
    "found",
    "error",
    "none",
    "None",
    "null",
    "true",
    "false",
    "True",
    "False",
    "field",
    "required",
    "invalid",
    "Invalid",
    "ETag",
    "Internal",
    "Server",
    "Method",
    "Allowed",
    "Unauthorized",
    "Forbidden",
    "Missing",
    "value",
    "is",
    "of",
    "Not",
    "Found",
    "Error",
    "Bad",
    "Request",
    "Unprocessable",
    "Entity",
    "undefined",
    "NaN",
    "Traceback",
    "Exception",
    "detail",
    "loc",
    "msg",
}
WORD = re.compile(r"[^\W\d][\w\-]*")


class _Visible(HTMLParser):
    """The text a reader sees or hears: text nodes outside script and style, and the
    attributes read out (alt, title, aria-label, placeholder, a button's value)."""

    HIDDEN = frozenset({"script", "style", "template"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.HIDDEN:
            self.skipping += 1
        given = dict(attrs)
        for name in ("alt", "title", "aria-label", "placeholder"):
            if given.get(name):
                self.parts.append(str(given[name]))
        if tag == "input" and given.get("type") in ("submit", "button") and given.get("value"):
            self.parts.append(str(given["value"]))

    def handle_endtag(self, tag: str) -> None:
        if tag in self.HIDDEN and self.skipping:
            self.skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def visible_text(html: str) -> str:
    parser = _Visible()
    parser.feed(html)
    return " ".join(parser.parts)


def _api_names(document: dict[str, Any]) -> set[str]:
    """Every property name, enum value and query parameter of the API."""
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            names.update(str(v) for v in node.get("enum", []) if isinstance(v, str))
            properties = node.get("properties")
            if isinstance(properties, dict):
                names.update(properties)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document.get("components", {}))
    for operations in document["paths"].values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                names.add(parameter["name"])
    return {n for n in names if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n)}


def api_words_in(text: str, forbidden: set[str]) -> list[str]:
    return sorted({w for w in WORD.findall(text) if w in forbidden or w in ENGLISH})


@pytest.fixture
def forbidden(client: TestClient) -> set[str]:
    names = _api_names(client.get("/openapi.json").json())
    assert {"profile", "answers", "en_attente", "territory", "acceptance_rate"} <= names
    return names - FRENCH


def _world_of_referrals(client: TestClient, world: World) -> dict[str, Any]:
    """Orientations of every kind, and referrals at most statuses."""
    agent, med = world.auth("agent_tulle"), world.auth("med_tulle")

    def orient(**changes: Any) -> dict[str, Any]:
        answer = client.post("/v1/orientations", json=orientation_body(**changes), headers=agent)
        assert answer.status_code == 201, answer.text
        return dict(answer.json())

    def step(referral: dict[str, Any], status: str, **extra: Any) -> dict[str, Any]:
        answer = client.post(
            f"/v1/referrals/{referral['id']}/events",
            json={"status": status, **extra},
            headers=med,
        )
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    made = {
        "mediateur": orient(),
        "france_services": orient(assessment={"profile": "non_autonome_sans_envie"}),
        "aucune": orient(assessment={"profile": "autonome"}),
        "hors_de_portee": orient(
            person={"commune": "29019", "consent": False},  # Brest: no place in range
        ),
        "non_urgent": orient(procedure={"theme": "impots", "urgent": False}),
        # Needs stated: the coordinator's figures then list them, in words.
        "besoins": orient(
            needs={
                "specific": ["surdite"],
                "public": ["jeunes"],
                "free_only": True,
                "modality": "individuel",
                "availability": [{"day": "lundi", "half": "matin"}],
            }
        ),
        "besoin_sans_lieu": orient(needs={"specific": ["illettrisme"]}),
    }
    done = orient()
    step(done["referral"], "acceptee")
    step(done["referral"], "contactee")
    step(done["referral"], "terminee", note="Dossier CAF fait ensemble.")
    refused = orient()
    step(refused["referral"], "refusee", reason="pas_de_capacite")
    made["terminee"], made["refusee"] = done, refused
    return made


def _pages(made: dict[str, Any]) -> dict[str, list[str]]:
    referral = made["mediateur"]["referral"]
    done, refused = made["terminee"]["referral"], made["refusee"]["referral"]
    results = [f"/agent/resultat/{o['id']}" for o in made.values()]
    by = [
        "month",
        "week",
        "profile",
        "route",
        "theme",
        "status",
        "place",
        "commune",
        "epci",
        "departement",
    ]
    return {
        "agent_tulle": [
            "/agent",
            *results,
            "/agent/orientations",
            "/agent/orientations?statut=refusee",
            f"/agent/orientations/{referral['id']}",
            f"/agent/orientations/{done['id']}",
            f"/agent/orientations/{refused['id']}",
            "/accessibilite",
        ],
        "med_tulle": [
            "/mediateur",
            "/mediateur?statut=terminee&statut=refusee",
            f"/mediateur?code={referral['code']}",
            "/mediateur?code=ZZZ-ZZZ",
            f"/mediateur/orientations/{referral['id']}",
            f"/mediateur/orientations/{done['id']}",
            f"/mediateur/orientations/{refused['id']}",
        ],
        "coord": [
            "/coordinateur",
            *(f"/coordinateur?par={key}" for key in by),
            "/coordinateur?par=month&par=profile",
            "/coordinateur/couverture",
            "/coordinateur/couverture?km=5",
            "/coordinateur/couverture?besoin=surdite",
        ],
        "admin": ["/coordinateur", "/coordinateur?par=departement", "/coordinateur/couverture"],
    }


def test_every_page_of_every_role_speaks_the_readers_words(
    client: TestClient, world: World, forbidden: set[str], engine: Engine
) -> None:
    made = _world_of_referrals(client, world)
    seen: dict[str, list[str]] = {}
    # The pages a place opens from its e-mail, with no account.
    with Session(engine) as session:
        secret = links.link_secret(session)
    for what in ("mediateur", "terminee", "refusee"):
        referral = made[what]["referral"]
        base = f"/lien/{links.make_link(secret, referral['id'], referral['place']['id'])}"
        for path in (base, base + "/lieu"):
            found = api_words_in(visible_text(client.get(path).text), forbidden)
            if found:
                seen[f"lien {what} {path[-5:]}"] = found
    for who, paths in _pages(made).items():
        client.cookies.clear()
        login(client, world, who)
        for path in paths:
            answer = client.get(path)
            assert answer.status_code in (200, 404), (path, answer.status_code)
            if path == "/coordinateur":  # the needs stated are among what is checked
                assert "Besoins indiqués par l'agent pour 2 orientations" in answer.text
            assert answer.headers["content-type"].startswith("text/html"), path
            found = api_words_in(visible_text(answer.text), forbidden)
            if found:
                seen[f"{who} {path}"] = found
    client.cookies.clear()
    for path in ("/", "/connexion", "/accessibilite"):
        found = api_words_in(visible_text(client.get(path).text), forbidden)
        if found:
            seen[path] = found
    assert not seen, "\n".join(f"{k}: {v}" for k, v in seen.items())


def test_every_error_a_page_shows_is_in_the_readers_words(
    client: TestClient, world: World, forbidden: set[str]
) -> None:
    """The errors a person can meet: an empty or half-done form, a stale page, a step not
    theirs, a wrong period or territory, a page of another role, an unknown address."""
    made = _world_of_referrals(client, world)
    referral = made["mediateur"]["referral"]
    answers: dict[str, Any] = {}

    client.cookies.clear()
    token = login(client, world, "agent_tulle")
    answers["empty form"] = client.post("/agent", data={"csrf": token})
    answers["half diagnostic"] = client.post(
        "/agent",
        data={
            "csrf": token,
            "mode": "diagnostic",
            "q_usage_appareil": "jamais",
            "q_courriel": "avec_aide",
            "theme": "caf",
            "commune": "Tulle",
        },
    )
    answers["a forged answer"] = client.post(
        "/agent",
        data={
            "csrf": token,
            "mode": "diagnostic",
            "q_usage_appareil": "jamais",
            "q_courriel": "peut-etre",
            "q_identifiants": "non",
            "q_demarches_en_ligne": "seul",
            "q_envie_apprendre": "oui",
            "theme": "caf",
            "commune": "Tulle",
        },
    )
    answers["unknown commune"] = client.post(
        "/agent",
        data={
            "csrf": token,
            "mode": "profil",
            "profile": "autonome",
            "theme": "caf",
            "commune": "Xyzzyville",
        },
    )
    answers["contact without consent"] = client.post(
        "/agent",
        data={
            "csrf": token,
            "mode": "profil",
            "profile": "autonome",
            "theme": "caf",
            "commune": "Tulle",
            "phone": "06 01 02 03 04",
        },
    )
    answers["not the agent's step"] = client.post(
        f"/agent/orientations/{referral['id']}/statut",
        data={"csrf": token, "status": "acceptee", "version": "1"},
    )
    answers["a status the page never offers"] = client.post(
        f"/agent/orientations/{referral['id']}/statut",
        data={"csrf": token, "status": "nimporte", "version": "1"},
    )
    answers["reorient what is not refused"] = client.post(
        f"/agent/orientations/{referral['id']}/reorienter", data={"csrf": token}
    )
    answers["a page of another role"] = client.get("/mediateur")
    answers["an unknown address"] = client.get("/nulle-part")
    answers["an unknown filter"] = client.get("/agent/orientations?statut=nimporte")
    answers["no csrf"] = client.post("/agent", data={})

    client.cookies.clear()
    token = login(client, world, "med_tulle")
    answers["refuse without a reason"] = client.post(
        f"/mediateur/orientations/{referral['id']}/statut",
        data={"csrf": token, "status": "refusee", "version": "1"},
    )
    client.post(
        f"/mediateur/orientations/{referral['id']}/statut",
        data={"csrf": token, "status": "acceptee", "version": "1"},
    )
    answers["a stale page"] = client.post(
        f"/mediateur/orientations/{referral['id']}/statut",
        data={"csrf": token, "status": "refusee", "reason": "pas_de_capacite", "version": "1"},
    )
    answers["a step no longer possible"] = client.post(
        f"/mediateur/orientations/{referral['id']}/statut",
        data={"csrf": token, "status": "acceptee", "version": "2"},
    )

    client.cookies.clear()
    login(client, world, "coord")
    answers["period backwards"] = client.get("/coordinateur?du=2026-05-01&au=2026-01-01")
    answers["not a date"] = client.get("/coordinateur?du=hier")
    answers["territory outside"] = client.get("/coordinateur?territoire=departement:75")
    answers["territory unknown"] = client.get("/coordinateur/couverture?territoire=nimportequoi")
    answers["grouping unknown"] = client.get("/coordinateur?par=nimporte")
    answers["distance too far"] = client.get("/coordinateur/couverture?km=9999")

    assert answers["an unknown address"].status_code == 404
    assert "Aucune page à cette adresse" in answers["an unknown address"].text
    assert client.get("/v1/nulle-part").headers["content-type"] == "application/problem+json"
    stale = answers["a stale page"]
    assert stale.status_code == 412 and "a changé depuis que vous avez ouvert" in stale.text
    assert "« Acceptée »" in stale.text
    assert answers["refuse without a reason"].status_code == 422
    assert "Motif du refus" in answers["refuse without a reason"].text
    seen = {}
    for what, answer in answers.items():
        assert answer.status_code < 500, what
        assert answer.headers["content-type"].startswith("text/html"), what
        found = api_words_in(visible_text(answer.text), forbidden)
        if found:
            seen[what] = found
    assert not seen, "\n".join(f"{k}: {v}" for k, v in seen.items())


def test_the_check_finds_api_words_where_they_are() -> None:
    """The check itself can fail: an API code or an English word is caught, the same
    words spelled for people are not."""
    forbidden = {"en_attente", "profile", "acceptance_rate"}
    html = (
        "<p>Statut : en_attente</p><script>var profile = 1;</script>"
        "<input type=hidden value=acceptance_rate><p title='Not found'>ok</p>"
    )
    assert api_words_in(visible_text(html), forbidden) == ["Not", "en_attente", "found"]
    assert api_words_in(visible_text("<p>En attente, profil autonome</p>"), forbidden) == []
