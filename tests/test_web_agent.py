"""The agent's pages as a front desk meets them (issue 16): the form's errors in plain words at
their fields, commune suggestions of the desk's surroundings, the slip addressed to the person,
the result's words true in every outcome, the lists of referrals, erasing after a question.
Through the real app (tests/test_web.py has the session and CSRF)."""

import html
import re
from itertools import product

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.config import Settings
from app.main import create_app
from app.services.communes import communes, search_communes
from app.triage import Profile, decide
from app.triage.rules import REASON_NO_PLACE_IN_RANGE
from app.triage.vocabulary import PROCEDURE_THEMES
from app.triage.words import (
    HEADLINES,
    NO_PLACE,
    ORIENTED,
    outcome,
    reason_words,
    what_to_bring,
)
from app.web.agent import slip_address
from app.web.render import qr_svg
from tests.conftest import World, count, orientation_body
from tests.test_web import form, login


def _visible(page: str) -> str:
    """The text a reader sees: without scripts, tags, and runs of spaces."""
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def test_an_empty_form_names_each_field_to_fill_once_and_in_plain_words(
    client: TestClient, world: World, engine: Engine
) -> None:
    token = login(client, world, "agent_tulle")
    answer = client.post("/agent", data={"csrf": token, "mode": "profil", "commune": ""})
    assert answer.status_code == 422
    text = _visible(answer.text)
    # Never the API's words: its field names, its « one of the two » rule.
    for api in ("profile", "answers", "assessment", "theme", "commune »", "soit"):
        assert api not in text, api
    # Each message once, beside its field; the alert links to each field by its label.
    for message in (
        "Choisissez le profil de la personne, ou faites le diagnostic.",
        "Choisissez la démarche concernée.",
        "Indiquez la commune de la personne (nom, code postal ou code INSEE).",
    ):
        assert text.count(message) == 1, message
    links = re.findall(r'<li><a href="#([^"]+)">([^<]+)</a></li>', html.unescape(answer.text))
    assert links == [
        ("profil-non_autonome_sans_envie", "Profil de la personne"),
        ("theme", "Démarche concernée"),
        ("commune", "Commune où habite la personne"),
    ]
    for anchor, _ in links:
        assert f'id="{anchor}"' in answer.text  # each link leads to its field
    assert 'aria-describedby="commune-erreur"' in answer.text
    assert "<title>Erreur : Orienter une personne" in answer.text
    assert count(engine, "orientation") == 0


def test_an_unfinished_diagnostic_marks_each_question_left_without_the_answers_codes(
    client: TestClient, world: World
) -> None:
    token = login(client, world, "agent_tulle")
    answer = client.post(
        "/agent",
        data=form(csrf=token, mode="diagnostic", q_usage_appareil="jamais", q_identifiants="oui"),
    )
    assert answer.status_code == 422
    text = _visible(answer.text)
    assert "avec_aide" not in text and "peut_etre" not in text and "jamais," not in text
    assert text.count("Choisissez une réponse à cette question.") == 3  # questions 2, 4, 5
    assert "None" not in text and 'name="commune_code"' not in answer.text  # Tulle is one
    assert "Diagnostic : questions 2, 4 et 5 sans réponse" in text
    assert 'href="#q-courriel-non"' in answer.text  # the first question left
    errors = re.findall(
        r'class="fr-fieldset diagnostic-question fr-fieldset--error" id="([^"]+)"', answer.text
    )
    assert errors == ["question-2", "question-4", "question-5"]
    # What was answered stays answered.
    assert 'id="q-usage_appareil-jamais" name="q_usage_appareil" value="jamais" checked' in (
        answer.text
    )


def test_contact_errors_are_said_at_their_fields(client: TestClient, world: World) -> None:
    token = login(client, world, "agent_tulle")
    # Typed without the person's consent: at the consent box, to tick or to erase.
    answer = client.post("/agent", data=form(csrf=token, phone="06 01 02 03 04"))
    assert answer.status_code == 422
    assert re.search(r'id="consent-erreur">Sans l&#39;accord de la personne', answer.text)
    assert 'href="#consent">Accord de la personne' in answer.text
    # A phone number that is not one, an e-mail address that is not one: at their fields.
    answer = client.post(
        "/agent", data=form(csrf=token, consent="oui", phone="12", email="jeanne@")
    )
    assert answer.status_code == 422
    assert re.search(r'id="phone-erreur">Numéro de téléphone invalide', answer.text)
    assert re.search(r'id="email-erreur">Adresse électronique invalide', answer.text)
    assert 'value="jeanne@"' in answer.text  # kept, to correct


def test_a_form_sent_then_changed_says_so_and_draws_a_new_key(
    client: TestClient, world: World, engine: Engine
) -> None:
    token = login(client, world, "agent_tulle")
    first = client.post("/agent", data=form(csrf=token, cle_unique="cle-1"))
    assert first.status_code == 200 and count(engine, "orientation") == 1
    again = client.post("/agent", data=form(csrf=token, cle_unique="cle-1", theme="impots"))
    assert again.status_code == 422
    assert "Ce formulaire a déjà envoyé une orientation" in _visible(again.text)
    assert "idempotence" not in again.text and 'value="cle-1"' not in again.text
    assert count(engine, "orientation") == 1


def test_the_form_leaves_the_commune_to_type(client: TestClient, world: World) -> None:
    login(client, world, "agent_tulle")
    page = client.get("/agent").text
    assert re.search(r'id="commune" name="commune" value=""', page)
    assert "Tulle (19000)" not in page


def test_suggestions_favour_the_desks_departement_and_postal_codes(
    client: TestClient, world: World, engine: Engine
) -> None:
    # Nationally, « saint » is Saint-Étienne first, the largest.
    assert search_communes(engine, "saint")[0].code == "42218"
    login(client, world, "agent_ussel")
    for typed in ("saint", "saint-", "Saint "):
        found = client.get("/agent/communes", params={"q": typed}).json()
        assert len(found) == 10
        assert all(communes(engine)[c["code"]].departement == "19" for c in found), typed
    # The département's two first (« st » is « saint »), then the exact name elsewhere.
    found = [c["code"] for c in client.get("/agent/communes", params={"q": "st etienne"}).json()]
    assert set(found[:2]) == {"19199", "19200"} and found[2] == "42218"
    # Out of the département, nearest first too: the Ussel Cantal is nearer than the Lot's.
    found = [c["code"] for c in client.get("/agent/communes", params={"q": "ussel"}).json()]
    assert found[:3] == ["19275", "15244", "46323"]
    # Five digits: the postal code's communes first, then the INSEE code, which says so.
    found = client.get("/agent/communes", params={"q": "19200"}).json()
    assert found[0] == {"code": "19275", "label": "Ussel (19200)"}
    assert found[-1]["code"] == "19200" and found[-1]["detail"] == "code INSEE 19200"
    assert all("detail" not in c for c in found[:-1])
    # Nine communes share 19200 and take the first places; the INSEE code is never crowded out.
    assert len(search_communes(engine, "19200", limit=3)) == 3
    assert search_communes(engine, "19200", limit=3)[-1].code == "19200"
    # An INSEE code alone, a Corsican one in lower case, a name with its postal code.
    assert [c.code for c in search_communes(engine, "19272")] == ["19272"]
    assert [c.code for c in search_communes(engine, "2a004")] == ["2A004"]
    assert [c.code for c in search_communes(engine, "Ussel (19200)")] == ["19275"]


@pytest.mark.usefixtures("engine")
def test_a_commune_of_several_is_chosen_not_assumed(client: TestClient, world: World) -> None:
    token = login(client, world, "agent_tulle")
    answer = client.post("/agent", data=form(csrf=token, commune="Ussel"))
    assert answer.status_code == 422
    offered = re.findall(r'name="commune_code" value="(\d+)"( checked)?', answer.text)
    assert [code for code, _ in offered][:1] == ["19275"]  # the Corrèze one first
    assert not any(checked for _, checked in offered)  # none chosen for the agent
    # Sent without a choice: asked again.
    again = client.post("/agent", data=form(csrf=token, commune="Ussel", commune_offerte="Ussel"))
    assert again.status_code == 422 and "choisissez celle de la personne" in again.text
    # Chosen: that one. The text changed meanwhile: the text is what the agent means.
    chosen = client.post(
        "/agent",
        data=form(csrf=token, commune="Ussel", commune_offerte="Ussel", commune_code="15244"),
    )
    assert chosen.status_code == 200 and "Ussel (15)" in chosen.text
    retyped = client.post(
        "/agent",
        data=form(csrf=token, commune="Tulle", commune_offerte="Ussel", commune_code="15244"),
    )
    assert retyped.status_code == 200 and "Tulle (19)" in retyped.text
    # The INSEE code typed is offered as such.
    answer = client.post("/agent", data=form(csrf=token, commune="19200"))
    assert "Code INSEE 19200" in answer.text


def _slip(page_text: str) -> str:
    found = re.search(r'<section class="slip".*?</section>', page_text, re.S)
    assert found, "no slip"
    return _visible(found.group(0))


def test_the_slip_speaks_to_the_person_and_promises_no_appointment(
    client: TestClient, world: World
) -> None:
    with_consent = client.post(
        "/v1/orientations", json=orientation_body(), headers=world.auth("agent_tulle")
    ).json()
    without = client.post(
        "/v1/orientations",
        json=orientation_body(person={"commune": "19272", "consent": False}),
        headers=world.auth("agent_tulle"),
    ).json()
    login(client, world, "agent_tulle")
    called = _slip(client.get(f"/agent/resultat/{with_consent['id']}").text)
    calls = _slip(client.get(f"/agent/resultat/{without['id']}").text)
    for slip in (called, calls):
        assert "Votre orientation vers un médiateur numérique" in slip
        assert "Votre rendez-vous" not in slip
        # « vous » throughout: no « il » or « elle » for the person holding it.
        assert not re.search(r"\b(s'il en a|la personne|elle)\b", slip), slip
        assert "Votre code" in slip and "Une pièce d'identité" in slip
        assert "Coupon remis par France Services de Tulle" in slip
    # Who calls whom, and until when.
    assert "va vous contacter pour vous proposer un rendez-vous" in called
    assert "revenez vers France Services de Tulle" in called
    assert "Appelez le lieu de médiation ci-dessous, ou allez-y" in calls
    assert "va vous contacter" not in calls
    # What to bring is said to the person, for every procedure.
    for theme in PROCEDURE_THEMES:
        assert not any(re.search(r"\bs'il\b|\bil en a\b", item) for item in what_to_bring(theme))


def test_the_slips_qr_code_leads_to_the_public_address(engine: Engine, world: World) -> None:
    public = Settings(public_url="https://passerelle.example.org/")
    app = create_app(engine, public)
    # Over HTTPS, as the session cookie is Secure with an https public address.
    with TestClient(app, base_url="https://testserver", raise_server_exceptions=False) as client:
        sent = client.post(
            "/v1/orientations", json=orientation_body(), headers=world.auth("agent_tulle")
        ).json()
        login(client, world, "agent_tulle")
        page = client.get(f"/agent/resultat/{sent['id']}").text
        code = sent["referral"]["code"]
        assert qr_svg(f"https://passerelle.example.org/mediateur?code={code}") in page
        # The referral's page prints the same slip again.
        page = client.get(f"/agent/orientations/{sent['referral']['id']}").text
        assert qr_svg(f"https://passerelle.example.org/mediateur?code={code}") in page


@pytest.mark.parametrize(
    ("public_url", "expected"),
    [
        ("https://passerelle.example.org/", "https://passerelle.example.org"),
        ("http://192.168.1.20:8000", "http://192.168.1.20:8000"),
        # What `passerelle serve` sets when the variable is not given: no phone reaches it.
        ("http://127.0.0.1:8000", "http://poste-accueil:8000"),
        ("http://0.0.0.0:8000", "http://poste-accueil:8000"),
        ("http://localhost:8000", "http://poste-accueil:8000"),
        ("http://[::1]:8000", "http://poste-accueil:8000"),
    ],
)
def test_the_slip_never_points_to_a_loopback_address_when_another_is_known(
    public_url: str, expected: str
) -> None:
    class Seen:
        base_url = "http://poste-accueil:8000/"

    assert slip_address(Seen(), public_url) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("profile", "urgent", "followed", "in_range"),
    list(product(Profile, (True, False), (True, False), (True, False))),
)
def test_every_reason_reads_true_in_the_outcome_it_is_given(
    profile: Profile, urgent: bool, followed: bool, in_range: bool
) -> None:
    decision = decide(profile, urgent=urgent, already_followed=followed)
    reasons = list(decision.reasons)
    if decision.needs_referral and not in_range:
        reasons.append(REASON_NO_PLACE_IN_RANGE)
    case = outcome(decision.route, reasons)
    said = " ".join(reason_words(r, case) for r in reasons)
    assert case in HEADLINES
    assert "rendez-vous" not in said  # no reason promises one
    if case != ORIENTED:  # no médiateur takes the person over
        assert not re.search(r"l'accompagnera\b|la fera avec le médiateur", said)
    if not decision.do_now_at_france_services:
        assert "dès maintenant" not in said
    if case == NO_PLACE:
        assert "France Services" in said


def test_the_result_says_what_happens_when_no_place_is_in_range(
    client: TestClient, world: World
) -> None:
    brest = client.post(
        "/v1/orientations",
        json=orientation_body(
            procedure={"theme": "caf", "urgent": False},
            person={"commune": "29019", "consent": False},
        ),
        headers=world.auth("agent_tulle"),
    ).json()
    assert brest["referral"] is None
    followed = client.post(
        "/v1/orientations",
        json=orientation_body(already_followed=True),
        headers=world.auth("agent_tulle"),
    ).json()
    done_here = client.post(
        "/v1/orientations",
        json=orientation_body(
            assessment={"profile": "non_autonome_sans_envie"},
            procedure={"theme": "impots", "urgent": False},
        ),
        headers=world.auth("agent_tulle"),
    ).json()
    login(client, world, "agent_tulle")
    page = _visible(client.get(f"/agent/resultat/{brest['id']}").text)
    assert "Pas de lieu de médiation à proximité : France Services garde la main" in page
    assert "Orientation vers un médiateur numérique" not in page
    assert "À faire ici : la démarche « Caisse d'allocations familiales (CAF) »" in page
    assert "à moins de 30 km" in page and "la personne n'a pas de coupon" in page
    # The nearest place that would take it, farther: named, to hand to the person.
    assert re.search(r"Le lieu adapté le plus proche, à \d+ km", page)
    assert "Orienter une autre personne" in page
    assert "attendre" not in page and "rendez-vous" not in page
    page = _visible(client.get(f"/agent/resultat/{followed['id']}").text)
    assert "Déjà suivie par un médiateur numérique : pas de nouvelle orientation" in page
    assert "le médiateur numérique qui la suit déjà" in page
    page = _visible(client.get(f"/agent/resultat/{done_here['id']}").text)
    assert "France Services fait la démarche avec la personne" in page
    assert "peut attendre" not in page and "rendez-vous" not in page


def test_lists_of_referrals_show_the_commune_and_fit_a_phone(
    client: TestClient, world: World
) -> None:
    sent = client.post(
        "/v1/orientations", json=orientation_body(), headers=world.auth("agent_tulle")
    ).json()["referral"]
    for who, path in (("agent_tulle", "/agent/orientations"), ("med_tulle", "/mediateur")):
        client.cookies.clear()
        login(client, world, who)
        page = client.get(path).text
        assert 'class="fr-table table-cards"' in page  # cards below 48 em (passerelle.css)
        assert '<th scope="col" role="columnheader">Commune de la personne</th>' in page
        assert 'data-label="Commune">Tulle (19)</td>' in page
        assert f'class="code">{sent["code"]}</a>' in page


def test_erasing_a_persons_contact_asks_first(client: TestClient, world: World) -> None:
    sent = client.post(
        "/v1/orientations", json=orientation_body(), headers=world.auth("agent_tulle")
    ).json()["referral"]
    for who in ("med_tulle", "agent_tulle"):
        client.cookies.clear()
        login(client, world, who)
        prefix = "/mediateur" if who == "med_tulle" else "/agent"
        page = client.get(f"{prefix}/orientations/{sent['id']}").text
        # One click only asks: a link, no form that erases.
        assert f'href="{prefix}/orientations/{sent["id"]}?effacer=confirmer#effacer"' in page
        assert "/effacer" not in page.replace("effacer=confirmer", "")
        asked = client.get(f"{prefix}/orientations/{sent['id']}?effacer=confirmer").text
        assert "Effacer les coordonnées de la personne ?" in asked
        assert f'action="{prefix}/orientations/{sent["id"]}/effacer"' in asked
        assert "Oui, effacer ses coordonnées" in asked and "Non, les garder" in asked
        assert (
            "Jeanne" in client.get(f"/v1/referrals/{sent['id']}", headers=world.auth(who)).text
        )  # nothing erased yet
