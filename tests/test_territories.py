"""Territories chosen by name on the coordinator's pages: suggestions as one types, inside the
coordinator's territory only; a typed name resolved without accents or case, a choice asked
for when it is not enough, the code still taken; errors at the « Territoire » field in the
reader's words. The API keeps its `territory` codes. Through the real app, with every commune
of France loaded (Corrèze's demo coordinator, `departement:19`, and the admin for France)."""

import html
import re
from urllib.parse import quote

from fastapi.testclient import TestClient

from tests.conftest import World
from tests.test_web import login

HAUTE_CORREZE = "epci:200066744"  # 59 communes in Corrèze, 11 in Creuse
TULLE_AGGLO = "epci:241927201"  # wholly in Corrèze


def suggestions(client: TestClient, q: str) -> list[dict[str, str]]:
    answer = client.get("/coordinateur/territoires", params={"q": q})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    found: list[dict[str, str]] = answer.json()
    return found


def field_value(page: str) -> str:
    found = re.search(r'<input[^>]* id="territoire" name="territoire" value="([^"]*)"', page)
    assert found, page[:2000]
    return html.unescape(found.group(1))


def choices(page: str) -> list[tuple[str, str]]:
    """The territories offered under the field: (label, link)."""
    block = re.search(r'<ul[^>]*id="territoire-choix".*?</ul>', page, re.S)
    assert block, "no choice offered"
    return [
        (html.unescape(label), html.unescape(href))
        for href, label in re.findall(r'<a class="fr-link" href="([^"]+)">([^<]+)</a>', block[0])
    ]


def test_suggestions_stay_inside_the_coordinators_territory(
    client: TestClient, world: World
) -> None:
    login(client, world, "coord")
    labels = [s["label"] for s in suggestions(client, "Correze")]
    # Without accent or capital, the département first, then the commune of that name.
    assert labels[:2] == ["Corrèze (département 19)", "Corrèze (commune, 19)"]
    assert labels == [s["label"] for s in suggestions(client, "CORRÈZE")]
    # Haute-Corrèze Communauté reaches into Creuse: not a part of Corrèze, never offered.
    assert not [label for label in labels if "Haute-Corrèze" in label]
    assert suggestions(client, "Haute-Corrèze") == []
    assert suggestions(client, "Limoges") == [] and suggestions(client, "Nouvelle") == []
    tulle = suggestions(client, "tulle")
    assert [s["code"] for s in tulle] == ["commune:19272", TULLE_AGGLO]
    assert tulle[1]["label"] == "Communauté d'agglomération Tulle Agglo (19)"
    # By number: the département, the communes of a postal code, a code as the API writes it.
    assert [s["code"] for s in suggestions(client, "19")] == ["departement:19"]
    assert "commune:19275" in {s["code"] for s in suggestions(client, "19200")}
    assert [s["code"] for s in suggestions(client, "departement:19")] == ["departement:19"]
    assert suggestions(client, "c") == []  # one letter: nothing yet
    # Every territory offered is one the coordinator may read, through the API as well.
    offered = {
        s["code"]
        for q in ("Correze", "tulle", "brive", "saint", "xaintrie")
        for s in suggestions(client, q)
    }
    assert len(offered) >= 15
    for code in offered:
        answer = client.get(
            "/v1/stats/referrals", params={"territory": code}, headers=world.auth("coord")
        )
        assert answer.status_code == 200, (code, answer.text)


def test_all_of_france_is_offered_to_a_national_reader(client: TestClient, world: World) -> None:
    login(client, world, "admin")
    found = suggestions(client, "haute-correze communaute")
    assert found == [
        {"code": HAUTE_CORREZE, "label": "Communauté de communes Haute-Corrèze Communauté (19, 23)"}
    ]
    assert [s["code"] for s in suggestions(client, "nouvelle-aquit")] == ["region:75"]
    assert suggestions(client, "france")[0] == {"code": "national", "label": "France entière"}
    # Two EPCI share a name: their labels do not.
    twins = [s["label"] for s in suggestions(client, "Deux Vallées")]
    assert len(twins) == len(set(twins)) >= 2


def test_suggestions_need_a_coordinators_session(client: TestClient, world: World) -> None:
    answer = client.get("/coordinateur/territoires?q=tulle", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/connexion")
    login(client, world, "agent_tulle")
    assert client.get("/coordinateur/territoires?q=tulle").status_code == 403


def test_a_territory_is_chosen_by_its_name(client: TestClient, world: World) -> None:
    login(client, world, "coord")
    # Several of that name: the page asks which, at the field, keeping the other fields.
    asked = client.get("/coordinateur/couverture", params={"territoire": "correze", "km": "12"})
    assert asked.status_code == 422
    assert "Plusieurs territoires correspondent à « correze »" in asked.text
    assert 'aria-describedby="territoire-erreur"' in asked.text
    assert '<a href="#territoire">' in asked.text  # the alert leads to the field
    offered = choices(asked.text)
    assert [label for label, _ in offered] == ["Corrèze (département 19)", "Corrèze (commune, 19)"]
    chosen = client.get(offered[0][1])
    assert chosen.status_code == 200 and "km=12" in offered[0][1]
    assert field_value(chosen.text) == "Corrèze (département 19)"
    assert '<h2 class="fr-h3">Corrèze</h2>' in chosen.text
    # One of that name inside the coordinator's territory (Ussel is also in Cantal and Lot).
    ussel = client.get("/coordinateur/couverture", params={"territoire": "USSEL"})
    assert ussel.status_code == 200 and field_value(ussel.text) == "Ussel (commune, 19)"
    # An EPCI by the name people say, without its legal form; the figures page alike.
    agglo = client.get("/coordinateur", params={"territoire": "tulle agglo"})
    assert agglo.status_code == 200, agglo.text
    assert field_value(agglo.text) == "Communauté d'agglomération Tulle Agglo (19)"
    # Only the start of a name: confirmed, not guessed.
    partial = client.get("/coordinateur/couverture", params={"territoire": "Saint-Martin"})
    assert partial.status_code == 422
    assert [label for label, _ in choices(partial.text)] == ["Saint-Martin-la-Méanne (commune, 19)"]
    # The CSV of the page's query names the territory by its code.
    csv = client.get("/coordinateur/couverture.csv", params={"territoire": "Tulle Agglo"})
    assert csv.status_code == 200
    assert f"couverture-{TULLE_AGGLO.replace(':', '-')}" in csv.headers["content-disposition"]


def test_the_code_is_still_taken_and_the_page_shows_the_name(
    client: TestClient, world: World
) -> None:
    login(client, world, "coord")
    for path in ("/coordinateur", "/coordinateur/couverture"):
        answer = client.get(path, params={"territoire": TULLE_AGGLO})
        assert answer.status_code == 200, answer.text
        assert field_value(answer.text) == "Communauté d'agglomération Tulle Agglo (19)"
        assert TULLE_AGGLO not in answer.text.replace(quote(TULLE_AGGLO), "")
        # By default, the coordinator's own territory, by its name.
        assert field_value(client.get(path).text) == "Corrèze (département 19)"
    commune = client.get("/coordinateur/couverture", params={"territoire": "commune:19272"})
    assert commune.status_code == 200 and field_value(commune.text) == "Tulle (commune, 19)"


def test_errors_about_the_territory_speak_of_the_field(client: TestClient, world: World) -> None:
    login(client, world, "coord")
    for path in ("/coordinateur", "/coordinateur/couverture"):
        astride = client.get(path, params={"territoire": "Haute-Corrèze Communauté"})
        assert astride.status_code == 403
        text = html.unescape(astride.text)
        assert "Communauté de communes Haute-Corrèze Communauté (19, 23) sort du vôtre" in text
        assert "11 de ses 70 communes n'en font pas partie" in text
        assert "champ « Territoire »" in text and "territory" not in text
        assert 'aria-describedby="territoire-erreur"' in astride.text
        assert field_value(astride.text) == "Haute-Corrèze Communauté"  # as typed
        unknown = client.get(path, params={"territoire": "Xyzzyville"})
        assert unknown.status_code == 422
        assert "ne s'appelle « Xyzzyville »" in html.unescape(unknown.text)
        elsewhere = client.get(path, params={"territoire": "Lyon"})
        assert elsewhere.status_code == 403
        assert "Aucun territoire nommé « Lyon » n'est compris dans le vôtre (Corrèze)" in (
            html.unescape(elsewhere.text)
        )


def test_the_api_keeps_its_codes(client: TestClient, world: World) -> None:
    coord = world.auth("coord")
    outside = client.get(f"/v1/stats/referrals?territory={HAUTE_CORREZE}", headers=coord)
    assert outside.status_code == 403
    problem = outside.json()
    assert "11 de ses 70 communes" in problem["detail"] and "« territory »" in problem["detail"]
    assert problem["errors"][0]["loc"] == ["query", "territory"]
    # A name is not a code there.
    named = client.get("/v1/stats/referrals", params={"territory": "Corrèze"}, headers=coord)
    assert named.status_code == 422 and "mal écrit" in named.json()["detail"]
    # A commune is a territory too; Paris by its arrondissements.
    tulle = client.get("/v1/stats/coverage?territory=commune:19272", headers=coord).json()
    assert [row["commune"] for row in tulle["communes"]] == ["19272"]
    assert tulle["filters"]["territory_name"] == "Tulle"
    paris = client.get(
        "/v1/stats/coverage?territory=commune:75056", headers=world.auth("admin")
    ).json()
    assert [row["commune"] for row in paris["communes"]] == [f"751{n:02d}" for n in range(1, 21)]
    assert (
        client.get("/v1/stats/coverage?territory=commune:75056", headers=coord).status_code == 403
    )
