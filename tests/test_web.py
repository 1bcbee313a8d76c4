"""The web pages' session, CSRF and forms through the real app (the browser tests in
test_web_browser.py drive the same pages in Chromium)."""

import html
import re

from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlmodel import Session

from app.services.keys import list_keys, revoke_key
from app.triage import Profile, decide
from app.triage.lifecycle import Actor, ReferralStatus, targets
from app.triage.rules import REASON_NO_PLACE_IN_RANGE
from app.triage.vocabulary import PROCEDURE_THEMES
from app.triage.words import (
    ACTION_HINTS,
    ACTIONS,
    PROFILES,
    REASONS,
    ROUTES,
    STATUSES,
    what_to_bring,
)
from app.web.render import qr_svg
from tests.conftest import World, count, orientation_body


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


def login(client: TestClient, world: World, who: str, suite: str = "") -> str:
    """Logs in as `who`; returns the session's CSRF token."""
    token = csrf_of(client.get("/connexion").text)
    answer = client.post(
        "/connexion",
        data={"csrf": token, "cle": world.tokens[who], "suite": suite},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    return csrf_of(client.get(answer.headers["location"]).text)


def form(**fields: str) -> dict[str, str]:
    base = {
        "mode": "profil",
        "profile": "non_autonome_non_refractaire",
        "theme": "caf",
        "commune": "Tulle",
    }
    return {**base, **fields}


def test_login_opens_a_session_in_an_httponly_strict_cookie_without_the_key(
    client: TestClient, world: World
) -> None:
    token = csrf_of(client.get("/connexion").text)
    answer = client.post(
        "/connexion",
        data={"csrf": token, "cle": world.tokens["agent_tulle"], "suite": ""},
        follow_redirects=False,
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/agent"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert world.tokens["agent_tulle"] not in cookie
    assert client.get("/agent").status_code == 200
    # The role decides the pages.
    assert client.get("/mediateur").status_code == 403
    assert client.get("/coordinateur").status_code == 403


def test_a_wrong_key_is_refused_in_french_and_counted_like_the_apis(
    client: TestClient, world: World
) -> None:
    token = csrf_of(client.get("/connexion").text)
    answer = client.post("/connexion", data={"csrf": token, "cle": "psl_faux"})
    assert answer.status_code == 401
    assert "Clé inconnue ou révoquée" in answer.text
    statuses = [
        client.post("/connexion", data={"csrf": token, "cle": "psl_faux"}).status_code
        for _ in range(30)
    ]
    assert statuses[-1] == 429  # the API's throttle: the same guessing costs the same here
    # Even the right key waits its turn: a guess that succeeds would not be told apart.
    right = client.post("/connexion", data={"csrf": token, "cle": world.tokens["agent_tulle"]})
    assert right.status_code == 429


def test_pages_send_visitors_to_the_login_and_back(client: TestClient, world: World) -> None:
    answer = client.get("/mediateur", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/connexion?suite=/mediateur"
    # The QR code of a slip, scanned before logging in, leads to the referral after it.
    answer = client.get("/mediateur?code=ABC-DEF", follow_redirects=False)
    assert answer.headers["location"] == "/connexion?suite=/mediateur%3Fcode%3DABC-DEF"
    token = csrf_of(client.get(answer.headers["location"]).text)
    answer = client.post(
        "/connexion",
        data={"csrf": token, "cle": world.tokens["med_tulle"], "suite": "/mediateur?code=ABC-DEF"},
        follow_redirects=False,
    )
    assert answer.headers["location"] == "/mediateur?code=ABC-DEF"
    client.cookies.clear()
    token = csrf_of(client.get("/connexion?suite=/mediateur").text)
    answer = client.post(
        "/connexion",
        data={"csrf": token, "cle": world.tokens["med_tulle"], "suite": "/mediateur"},
        follow_redirects=False,
    )
    assert answer.headers["location"] == "/mediateur"
    # Never to another site.
    for elsewhere in ("//evil.example/x", "https://evil.example", "/\\evil.example"):
        token = csrf_of(client.get("/connexion").text)
        answer = client.post(
            "/connexion",
            data={"csrf": token, "cle": world.tokens["med_tulle"], "suite": elsewhere},
            follow_redirects=False,
        )
        assert answer.headers["location"] == "/mediateur", elsewhere


def test_forms_without_the_sessions_csrf_token_are_refused_and_store_nothing(
    client: TestClient, world: World, engine: Engine
) -> None:
    token = login(client, world, "agent_tulle")
    for fields in (form(), form(csrf="forged"), form(csrf=token + "x")):
        answer = client.post("/agent", data=fields, follow_redirects=False)
        assert answer.status_code == 403
        assert "Formulaire refusé" in answer.text
    # A token without its cookie (another site's page posting here) is worth nothing either.
    stranger = TestClient(client.app)
    answer = stranger.post("/agent", data=form(csrf=token), follow_redirects=False)
    assert answer.status_code == 303  # to the login page: no session, nothing read
    assert count(engine, "orientation") == 0
    # With it, the orientation goes.
    answer = client.post("/agent", data=form(csrf=token), follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/agent/resultat/")
    assert count(engine, "orientation") == 1


def test_a_revoked_key_ends_its_session_and_logout_ends_it_too(
    client: TestClient, world: World, engine: Engine
) -> None:
    token = login(client, world, "agent_tulle")
    assert client.get("/agent").status_code == 200
    with Session(engine) as session:
        key_id = next(k.id for k in list_keys(session) if k.name == "agent_tulle")
    with Session(engine) as session:
        revoke_key(session, key_id)
    answer = client.get("/agent", follow_redirects=False)
    assert answer.status_code == 303 and "expiree=1" in answer.headers["location"]

    token = login(client, world, "agent_ussel")
    answer = client.post("/deconnexion", data={"csrf": token}, follow_redirects=False)
    assert answer.status_code == 303
    assert client.get("/agent", follow_redirects=False).status_code == 303


def test_the_form_says_what_to_fix_in_french_and_keeps_what_was_typed(
    client: TestClient, world: World, engine: Engine
) -> None:
    token = login(client, world, "agent_tulle")
    # No profile, no procedure.
    answer = client.post("/agent", data={"csrf": token, "mode": "profil", "commune": "Tulle"})
    assert answer.status_code == 422
    assert "Choisissez le profil" in answer.text and "Choisissez la démarche" in answer.text
    # Contact without consent: the API's rule, in the page's words, at the consent box.
    answer = client.post("/agent", data=form(csrf=token, first_name="Jeanne"))
    assert answer.status_code == 422
    assert "Sans l'accord de la personne, ne notez aucune" in html.unescape(answer.text)
    assert 'value="Jeanne"' in answer.text
    # A diagnostic left half done.
    answer = client.post(
        "/agent", data=form(csrf=token, mode="diagnostic", q_usage_appareil="jamais")
    )
    assert answer.status_code == 422
    assert "Diagnostic : questions 2, 3, 4 et 5 sans réponse" in html.unescape(answer.text)
    # A commune nobody knows, then one that several share.
    answer = client.post("/agent", data=form(csrf=token, commune="Xyzzyville"))
    assert answer.status_code == 422 and "Aucune commune ne correspond" in answer.text
    answer = client.post("/agent", data=form(csrf=token, commune="Ussel"))
    assert answer.status_code == 422 and "Plusieurs communes" in answer.text
    assert 'value="19275"' in answer.text  # Ussel (Corrèze), the largest, offered first
    assert count(engine, "orientation") == 0
    # The diagnostic, whole, decides the profile by the same rule as the API.
    answers = {
        "q_usage_appareil": "seul",
        "q_courriel": "oui",
        "q_identifiants": "oui",
        "q_demarches_en_ligne": "seul",
        "q_envie_apprendre": "non",
    }
    answer = client.post(
        "/agent", data=form(csrf=token, mode="diagnostic", commune="19275", **answers)
    )
    assert answer.status_code == 200  # followed to the result
    assert "Pas d'orientation nécessaire" in html.unescape(answer.text)
    assert "Autonome (d'après le diagnostic)" in html.unescape(answer.text)


def test_an_agent_cancels_a_referral_from_its_page(client: TestClient, world: World) -> None:
    sent = client.post(
        "/v1/orientations", json=orientation_body(), headers=world.auth("agent_tulle")
    ).json()["referral"]
    token = login(client, world, "agent_tulle")
    page = client.get(f"/agent/orientations/{sent['id']}")
    assert "Jeanne" in page.text and sent["code"] in page.text
    assert 'class="slip"' in page.text  # the slip, to print again
    # Its QR code opens the referral at the médiation place (after its login, if need be);
    # PASSERELLE_PUBLIC_URL being the loopback default, at the address the browser used.
    assert qr_svg(f"http://testserver/mediateur?code={sent['code']}") in page.text
    # Only the médiateur accepts: a forged button gets the API's 403, in words.
    answer = client.post(
        f"/agent/orientations/{sent['id']}/statut",
        data={"csrf": token, "status": "acceptee", "version": "1"},
    )
    assert answer.status_code == 403 and "Action impossible" in answer.text
    # A step the page never offers: said at its field, in the page's words.
    answer = client.post(
        f"/agent/orientations/{sent['id']}/statut",
        data={"csrf": token, "status": "telepathie", "version": "1"},
    )
    assert answer.status_code == 422
    assert "Étape : choisissez une des valeurs proposées par la page." in html.unescape(answer.text)
    answer = client.post(
        f"/agent/orientations/{sent['id']}/statut",
        data={"csrf": token, "status": "annulee", "version": "1"},
    )
    assert answer.status_code == 200 and "Orientation annulée." in answer.text
    # The same button again, from a page read before: the page says why not.
    answer = client.post(
        f"/agent/orientations/{sent['id']}/statut",
        data={"csrf": token, "status": "annulee", "version": "1"},
    )
    assert answer.status_code == 412 and "Action impossible" in answer.text
    answer = client.post(
        f"/agent/orientations/{sent['id']}/statut",
        data={"csrf": token, "status": "annulee", "version": "2"},
    )
    assert answer.status_code == 409


def test_web_forms_never_reach_the_api(client: TestClient, world: World) -> None:
    answer = client.post(
        "/v1/orientations",
        data={"a": "b"},
        headers=world.auth("agent_tulle"),
    )
    assert answer.status_code == 415
    assert answer.headers["content-type"] == "application/problem+json"


def test_a_coordinator_outside_their_territory_is_told_so_on_the_page(
    client: TestClient, world: World
) -> None:
    login(client, world, "coord")
    answer = client.get("/coordinateur?territoire=departement:75")
    assert answer.status_code == 403 and "sort du vôtre" in answer.text
    answer = client.get("/coordinateur/couverture?territoire=nimportequoi")
    assert answer.status_code == 422 and "ne s&#39;appelle « nimportequoi »" in answer.text
    answer = client.get("/coordinateur?par=profile&par=theme&du=2026-01-01")
    assert answer.status_code == 200 and "Détail par profil et démarche" in answer.text
    assert 'id="par-profile" name="par" value="profile" checked' in answer.text
    answer = client.get("/coordinateur?du=pas-une-date")
    assert answer.status_code == 422 and "text/html" in answer.headers["content-type"]
    csv = client.get("/coordinateur/couverture.csv")
    assert csv.status_code == 200 and csv.text.startswith("\ufeffCode INSEE;Commune;")
    assert "attachment" in csv.headers["content-disposition"]


@given(
    st.sampled_from(list(Profile)),
    st.booleans(),
    st.booleans(),
)
def test_every_decision_reads_in_words(profile: Profile, urgent: bool, followed: bool) -> None:
    decision = decide(profile, urgent=urgent, already_followed=followed)
    assert decision.route in ROUTES and decision.profile in PROFILES
    for reason in (*decision.reasons, REASON_NO_PLACE_IN_RANGE):
        assert reason in REASONS, reason


def test_the_slip_lists_what_to_bring_for_every_theme() -> None:
    for theme in PROCEDURE_THEMES:
        bring = what_to_bring(theme)
        assert bring[0] == "Une pièce d'identité" and len(bring) >= 3


def test_every_step_a_page_offers_has_its_button_and_its_words() -> None:
    for status in ReferralStatus:
        for actor in (Actor.AGENT, Actor.MEDIATEUR):
            for target in targets(status, actor):
                assert target in ACTIONS and target in ACTION_HINTS, (status, actor, target)
        assert status in STATUSES


def test_commune_suggestions_while_typing(client: TestClient, world: World) -> None:
    login(client, world, "agent_tulle")
    found = client.get("/agent/communes", params={"q": "ussel"}).json()
    assert found[0] == {"code": "19275", "label": "Ussel (19200)"}  # the largest first
    # 19200: Ussel's postal code and Saint-Étienne-la-Geneste's INSEE code; both offered,
    # the postal code's communes first.
    both = [c["code"] for c in client.get("/agent/communes", params={"q": "19200"}).json()]
    assert both[0] == "19275" and both[-1] == "19200"
    assert client.get("/agent/communes", params={"q": "u"}).json() == []  # two letters at least
    # Typed, it is a choice to make; chosen, it is the commune of that code.
    token = login(client, world, "agent_tulle")
    answer = client.post("/agent", data=form(csrf=token, commune="19200"))
    assert answer.status_code == 422 and "Plusieurs communes correspondent" in answer.text
    answer = client.post(
        "/agent",
        data=form(csrf=token, commune="19200", commune_code="19200"),
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert "Saint-Étienne-la-Geneste (19)" in client.get(answer.headers["location"]).text
    client.cookies.clear()
    assert client.get("/agent/communes?q=ussel", follow_redirects=False).status_code == 303


def test_the_person_erased_from_the_page_is_erased_everywhere(
    client: TestClient, world: World
) -> None:
    sent = client.post(
        "/v1/orientations", json=orientation_body(), headers=world.auth("agent_tulle")
    ).json()["referral"]
    token = login(client, world, "med_tulle")
    answer = client.post(f"/mediateur/orientations/{sent['id']}/effacer", data={"csrf": token})
    assert answer.status_code == 200
    assert "Coordonnées de la personne effacées." in answer.text
    assert "Jeanne" not in answer.text and "Coordonnées effacées le" in answer.text
    person = client.get(f"/v1/referrals/{sent['id']}", headers=world.auth("agent_tulle")).json()
    assert person["person"]["erased_at"] and person["person"]["first_name"] is None
    # Another place's médiateur cannot: the referral is not theirs.
    client.cookies.clear()
    token = login(client, world, "med_ussel")
    answer = client.post(f"/mediateur/orientations/{sent['id']}/effacer", data={"csrf": token})
    assert answer.status_code == 404


def test_the_link_of_the_emails_opens_the_readers_page(client: TestClient, world: World) -> None:
    sent = client.post(
        "/v1/orientations", json=orientation_body(), headers=world.auth("agent_tulle")
    ).json()["referral"]
    link = f"/orientations/{sent['id']}"
    answer = client.get(link, follow_redirects=False)
    assert answer.headers["location"] == f"/connexion?suite={link}"
    for who, page_of in (("med_tulle", "mediateur"), ("agent_tulle", "agent")):
        client.cookies.clear()
        token = csrf_of(client.get(answer.headers["location"]).text)
        landed = client.post(
            "/connexion", data={"csrf": token, "cle": world.tokens[who], "suite": link}
        )
        assert landed.url.path == f"/{page_of}/orientations/{sent['id']}"
        assert sent["code"] in landed.text


def test_a_form_with_a_nul_character_is_refused_and_stores_nothing(
    client: TestClient, world: World, engine: Engine
) -> None:
    token = login(client, world, "agent_tulle")
    answer = client.post(
        "/agent",
        content=f"csrf={token}&mode=profil&profile=autonome&theme=caf&commune=Tulle%00".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 422 and "caractère nul" in answer.json()["detail"]
    assert count(engine, "orientation") == 0


def test_long_lists_come_in_pages_and_filter_by_status(client: TestClient, world: World) -> None:
    for _ in range(52):
        response = client.post(
            "/v1/orientations", json=orientation_body(), headers=world.auth("agent_tulle")
        )
        assert response.status_code == 201
    login(client, world, "agent_tulle")
    first = client.get("/agent/orientations")
    assert first.text.count('<a href="/agent/orientations/orv_') == 50
    following = re.search(r'href="\?(suite=[^"]+)">Orientations suivantes', first.text)
    assert following, "no link to the next page"
    rest = client.get("/agent/orientations?" + html.unescape(following.group(1)))
    assert rest.text.count('<a href="/agent/orientations/orv_') == 2
    none = client.get("/agent/orientations?statut=terminee")
    assert "Aucune orientation avec ces statuts" in none.text
