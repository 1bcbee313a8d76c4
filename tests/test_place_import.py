"""`passerelle places import` on small files written here: every rule of the import, through the
command line, checked in the database."""

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from app.cli import app as cli
from app.models import Place
from tests.conftest import World, count

V1_HEADER = (
    "id,source,nom,adresse,code_postal,code_insee,commune,latitude,longitude,services,"
    "modalites_accompagnement,dispositif_programmes_nationaux,date_maj,pivot\n"
)


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, ["places", "import", *args], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def places(engine: Engine, source: str) -> dict[str, Place]:
    with Session(engine) as session:
        rows = session.exec(select(Place).where(Place.source == source)).all()
        return {p.source_id or "": p for p in rows}


@pytest.mark.usefixtures("cli_env")
def test_rows_are_checked_located_and_reported(
    tmp_path: Path, world: World, engine: Engine, client: TestClient
) -> None:
    source = tmp_path / "lieux.csv"
    source.write_text(
        V1_HEADER
        # complete
        + "a1,t,EPN de Meyssac,Rue de la Mairie,19500,19138,Meyssac,45.0557,1.6739,"
        "Aide aux démarches administratives|Comprehension du monde numérique,,"
        "Conseillers numériques,2024-03-01,\n"
        # no coordinates: the town hall of Meyssac, flagged approximate
         + "a2,t,Atelier du bourg,Place,19500,19138,Meyssac,,,Loisirs et créations numériques,"
        "Dans un atelier collectif,,2024-03-01,\n"
        # no INSEE code: postal code 19800 has several communes, the name tells
         + "a3,t,Point numérique de Corrèze,Le bourg,19800,,CORREZE,45.3713,1.8746,"
        "Maîtrise des outils numériques du quotidien,,,2024-03-01,\n"
        # latitude and longitude swapped
         + "a4,t,Médiathèque d'Objat,Rue,19130,19153,Objat,1.4093,45.2638,"
        "Maîtrise des outils numériques du quotidien,En autonomie,,2024-03-01,\n"
        # France Services label: a France Services place, which receives no referral
         + "a5,t,Maison France Services,Avenue,19500,19138,Meyssac,45.0560,1.6740,,,"
        "France Services,2024-03-01,\n"
        # rejected, each for one reason
        + "a6,t,Code postal faux,Place,195,,Meyssac,45.0,1.6,,,,2024-03-01,\n"
        + "a7,t,,Place,19500,19138,Meyssac,45.0,1.6,,,,2024-03-01,\n"
        + "a8,t,Inconnu,Place,19500,99999,Nulle part,,,,,,2024-03-01,\n"
        + "a9,t,Nombre faux,Place,19500,19138,Meyssac,quarante,1.6,,,,2024-03-01,\n",
        encoding="utf-8",
    )
    before = count(engine, "place")
    output = run(str(source), "--details")
    assert "5 lieux sont créés, 0 mis à jour, 0 inchangés" in output
    assert "4 lignes rejetées" in output
    # line, field, reason
    assert "│ 7     │ code_postal │ invalide : '195'" in output
    assert "│ 8     │ nom         │ manquant" in output
    assert "│ 9     │ code_insee  │ inconnu du référentiel (99999)" in output
    assert "│ 10    │ latitude    │ n'est pas un nombre : 'quarante'" in output
    assert "latitude et longitude inversées" in output
    assert count(engine, "place") == before + 5

    rows = places(engine, "t")
    assert rows["a1"].services == [
        "Aide aux démarches administratives",
        "Compréhension du monde numérique",
    ]
    assert rows["a1"].accepts_referrals and not rows["a1"].approximate_location
    with Session(engine) as session:
        from app.models import Commune

        meyssac = session.get(Commune, "19138")
        assert meyssac is not None and meyssac.point_source == "mairie"
    assert rows["a2"].approximate_location
    assert (rows["a2"].latitude, rows["a2"].longitude) == (meyssac.latitude, meyssac.longitude)
    assert rows["a2"].accepts_referrals  # a collective workshop accompanies
    shown = client.get(f"/v1/places/{rows['a2'].id}", headers=world.auth("agent_tulle")).json()
    assert shown["approximate_location"] is True
    shown = client.get(f"/v1/places/{rows['a1'].id}", headers=world.auth("agent_tulle")).json()
    assert shown["approximate_location"] is False
    assert rows["a3"].commune == "19062"  # Corrèze, told from its neighbours of 19800 by name
    assert (rows["a4"].latitude, rows["a4"].longitude) == (45.2638, 1.4093)
    assert not rows["a4"].accepts_referrals  # free access only: no accompaniment
    assert rows["a5"].kind == "france_services" and not rows["a5"].accepts_referrals

    # Importing the same file again changes nothing, not even the update times.
    stamps = {k: p.updated_at for k, p in rows.items()}
    again = run(str(source))
    assert "0 lieux sont créés, 0 mis à jour, 5 inchangés" in again
    assert {k: p.updated_at for k, p in places(engine, "t").items()} == stamps
    assert count(engine, "place") == before + 5


@pytest.mark.usefixtures("world", "cli_env")
def test_v0_json_same_place_from_two_sources_and_file_options(
    tmp_path: Path, engine: Engine
) -> None:
    v1 = tmp_path / "v1.csv"
    v1.write_text(
        V1_HEADER + "x1,hub,Espace numérique de Brive,1 rue,19100,19031,Brive-la-Gaillarde,45.1590,"
        "1.5330,Aide aux démarches administratives,,,2023-01-10,12345678900011\n"
        + "x2,hub,Tiers-lieu de Brive,2 rue,19100,19031,Brive-la-Gaillarde,45.1700,1.5400,"
        "Maîtrise des outils numériques du quotidien,,,2024-06-01,\n",
        encoding="utf-8",
    )
    run(str(v1))
    older = {
        "id": "1",
        "source": "cnfs",
        "nom": "Tiers lieu de Brive",
        "adresse": "Ancienne adresse",
        "code_postal": "19100",
        "commune": "Brive-la-Gaillarde",
        "latitude": 45.1703,
        "longitude": 1.5402,
        "services": "Créer avec le numérique",
        "date_maj": "01/02/2022",
    }
    v0 = tmp_path / "v0.json"
    v0.write_text(
        json.dumps(
            [
                # same SIRET and name, more recent: its values win, the place stays one
                {
                    "id": "0",
                    "source": "cnfs",
                    "nom": "ESPACE NUMERIQUE DE BRIVE",
                    "adresse": "1 rue Nouvelle",
                    "code_postal": "19100",
                    "commune": "BRIVE LA GAILLARDE",
                    "latitude": 45.1591,
                    "longitude": 1.5331,
                    "pivot": "12345678900011",
                    "services": "Prendre en main un ordinateur;Accompagner les démarches de santé",
                    "modalites_accompagnement": (
                        "Avec de l'aide : je suis accompagné seul dans l'usage du numérique"
                    ),
                    "courriel": "contact@example.org",
                    "date_maj": "2024-02-01",
                },
                # same name within 100 m, older: merged, the stored values stay
                older,
                # the same record twice in the file
                older,
            ]
        ),
        encoding="utf-8",
    )
    before = count(engine, "place")
    dry = run(str(v0), "--dry-run")
    assert "Format : schéma v0 (JSON), 3 lignes." in dry
    assert "0 lieux seraient créés" in dry and "rien n'a été écrit" in dry
    output = run(str(v0))
    assert "0 lieux sont créés, 1 mis à jour, 0 inchangés ; 3 lignes" in output
    assert count(engine, "place") == before
    hub = places(engine, "hub")
    assert hub["x1"].address == "1 rue Nouvelle" and hub["x1"].email == "contact@example.org"
    # v0 services mapped to v1
    assert hub["x1"].services == [
        "Maîtrise des outils numériques du quotidien",
        "Aide aux démarches administratives",
    ]
    assert hub["x2"].address == "2 rue"  # the older record did not win
    assert ["cnfs", "1"] in hub["x2"].merged_ids
    again = run(str(v0))
    assert "0 lieux sont créés, 0 mis à jour" in again

    # --no-accepts-referrals for the whole file
    other = tmp_path / "autre.csv"
    other.write_text(
        V1_HEADER + "z1,z,Atelier de Tulle,rue,19000,19272,Tulle,45.2700,1.7700,"
        "Aide aux démarches administratives,,,2024-01-01,\n",
        encoding="utf-8",
    )
    run(str(other), "--no-accepts-referrals")
    assert not places(engine, "z")["z1"].accepts_referrals


@pytest.mark.usefixtures("world", "cli_env")
def test_files_that_are_not_places_are_refused_whole(tmp_path: Path, engine: Engine) -> None:
    before = count(engine, "place")
    for name, content, reason in (
        ("broken.json", "[{", "JSON invalide"),
        ("other.csv", "nom;ville\nA;B\n", "colonnes adresse, code_postal absentes"),
        ("latin1.csv", "nom,adresse,code_postal\nMédiathèque,r,19000\n", "pas en UTF-8"),
    ):
        path = tmp_path / name
        path.write_bytes(content.encode("latin-1"))
        result = CliRunner().invoke(cli, ["places", "import", str(path)])
        assert result.exit_code == 1 and reason in result.output, result.output
    assert count(engine, "place") == before


@pytest.mark.usefixtures("world", "cli_env")
def test_france_services_list(tmp_path: Path, engine: Engine) -> None:
    source = tmp_path / "fs.csv"
    source.write_text(
        '"id_fs","insee_dep","lib_fs","adresse","complement_adresse","insee_com","code_postal",'
        '"lib_com","latitude","longitude","mail","telephone","h_lundi","h_mardi","h_mercredi",'
        '"h_jeudi","h_vendredi","h_samedi","itinerance"\n'
        '"7","19","France services de Meymac","Place",,"19136","19250","Meymac",45.5367,2.1463,'
        '"fs@example.org","05 55 00 00 00","09:00 - 12:00 / 13:30 - 17:00",'
        '"09:00 - 12:00 / 13:30 - 17:00","09:00 - 12:00 / 13:30 - 17:00",'
        '"09:00-12:00/13:30-17:00","09:00 - 12:00",,"Non"\n',
        encoding="utf-8",
    )
    output = run(str(source))
    assert "liste des France Services (ANCT, CSV), 1 lignes" in output
    place = places(engine, "anct-france-services")["7"]
    assert place.kind == "france_services" and not place.accepts_referrals
    assert place.hours == "Mo-Th 09:00-12:00,13:30-17:00; Fr 09:00-12:00"
    assert place.email == "fs@example.org"
