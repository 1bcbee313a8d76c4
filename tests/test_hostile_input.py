"""Issue 21, point by point: hostile input, round two (exports, imports, sessions, the command
line, webhooks, storage faults), each tried again through the real app or a real server."""

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import Result
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from app.cli import app as cli
from app.models import Place
from app.services.place_sources import MAX_FILE_BYTES
from tests.conftest import World, count, orientation_body
from tests.test_web import login

PROBLEM = "application/problem+json"
FORMULA = '=HYPERLINK("http://127.0.0.1:9/x";"Cliquez")'


def _csv(raw: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig")), delimiter=";"))


# --- 4. CSV formula injection ------------------------------------------------------------------


def test_csv_cells_never_start_a_formula(client: TestClient, world: World) -> None:
    """A place named like a formula reaches the statistics and coverage CSVs (API and pages) as
    text: a leading apostrophe, as OWASP says; negative or plain numbers stay numbers."""
    admin = world.auth("admin")
    place_id = world.places["demo-med-tulle"]
    place = client.get(f"/v1/places/{place_id}", headers=admin).json()
    body = {k: place[k] for k in ("kind", "address", "postal_code", "commune", "latitude",
                                  "longitude", "services", "phone", "email", "hours")}
    assert client.put(
        f"/v1/places/{place_id}", headers=admin, json={**body, "name": FORMULA}
    ).status_code == 200
    answer = client.post("/v1/orientations", headers=world.auth("agent_tulle"),
                         json=orientation_body())
    assert answer.status_code == 201 and answer.json()["referral"]["place"]["id"] == place_id

    coord = world.auth("coord")
    coverage = _csv(client.get("/v1/stats/coverage?format=csv", headers=coord).content)
    names = {row["Lieu le plus proche"] for row in coverage}
    assert "'" + FORMULA in names and FORMULA not in names
    stats = _csv(
        client.get("/v1/stats/referrals?group_by=place&format=csv", headers=coord).content
    )
    labels = {row["Lieu de médiation"] for row in stats}
    assert "'" + FORMULA in labels
    for row in coverage + stats:
        assert not any(cell[:1] in "=+-@\t\r" for cell in row.values() if cell), row

    # The pages' downloads are the same writer.
    login(client, world, "coord")
    page = client.get("/coordinateur/couverture.csv")
    assert page.status_code == 200
    assert "'" + FORMULA in {row["Lieu le plus proche"] for row in _csv(page.content)}


# --- 5, 6. place imports: record boundaries, hostile files ----------------------------------

IMPORT_HEADER = "id,source,nom,adresse,code_postal,code_insee,commune,latitude,longitude,"
IMPORT_HEADER += "services,courriels,telephone,date_maj\n"


def _import(*args: str) -> Result:
    return CliRunner().invoke(cli, ["places", "import", *args], env={"COLUMNS": "200"})


def test_a_line_separator_inside_quotes_stays_in_its_cell(
    tmp_path: Path, world: World, engine: Engine, cli_env: None
) -> None:
    """U+2028, vertical tab, form feed, U+0085, U+001C… are no record boundary for CSV, in a
    quoted cell or not: each of six places keeps its e-mail, phone and services, and no fake
    row is rejected (before: five places without them, and five rejected halves)."""
    separators = ["\u2028", "\x0b", "\x0c", "\x1c", "\x85", "\u2029"]
    path = tmp_path / "lieux.csv"
    path.write_text(
        IMPORT_HEADER
        + "".join(
            f'h{i},h,EPN{sep}{i},"Rue de la Mairie{sep}Bâtiment B",19500,19138,Meyssac,45.0557,'
            f"1.6739,Aide aux démarches administratives,epn{i}@meyssac.fr,0555000{i:03d},"
            "2024-03-01\n"
            for i, sep in enumerate(separators)
        ),
        encoding="utf-8",
    )
    result = _import(str(path))
    assert result.exit_code == 0, result.output
    assert "6 lieux sont créés" in result.output and "0 lignes rejetées" in result.output
    with Session(engine) as session:
        found = session.exec(select(Place).where(Place.source == "h")).all()
    assert len(found) == 6
    for place in found:
        i = int((place.source_id or "")[1:])
        assert place.email == f"epn{i}@meyssac.fr" and place.phone
        assert place.services == ["Aide aux démarches administratives"]
        assert "Bâtiment B" in place.address


def _hostile_files(tmp_path: Path) -> list[tuple[Path, str]]:
    files: list[tuple[Path, str]] = []

    def add(name: str, content: str | bytes, reason: str) -> None:
        path = tmp_path / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        files.append((path, reason))

    columns = ",".join(f"c{i}" for i in range(200_000))
    add("colonnes.csv", "nom,adresse,code_postal," + columns + "\n" + "," * 200_000 + "\n",
        "Trop de colonnes : 200003")
    add("valeurs.csv", "nom,adresse,code_postal\n" + "a," * 200_000 + "\n",
        "Ligne 2 : 200001 valeurs")
    add("champ.csv", 'nom,adresse,code_postal\nEPN,"' + "x" * 200_000 + '",19000\n',
        "une valeur dépasse 100\u202f000 caractères")
    add("guillemet.csv", 'nom,adresse,code_postal\nEPN,"rue,19000\nAutre,rue,19000\n',
        "un guillemet ouvert n'est jamais fermé")
    add("profond.json", "[" * 10_000 + "]" * 10_000, "JSON imbriqué sur plus de 16 niveaux")
    add("profond2.json", '[{"nom": ' + "[" * 30 + "]" * 30 + "}]",
        "JSON imbriqué sur plus de 16 niveaux")
    add("champ.json", json.dumps([{"nom": "x" * 200_000, "adresse": "r", "code_postal": "1"}]),
        "une valeur dépasse 100\u202f000 caractères")
    huge = tmp_path / "enorme.csv"
    with huge.open("wb") as handle:  # sparse: 100 MiB + 1 byte, no disk used
        handle.truncate(MAX_FILE_BYTES + 1)
    files.append((huge, "Fichier trop gros : plus de 100 Mo"))
    if Path("/dev/zero").exists():
        files.append((Path("/dev/zero"), "Fichier trop gros"))
    return files


def test_hostile_import_files_are_refused_in_french(
    tmp_path: Path, world: World, engine: Engine, cli_env: None
) -> None:
    """Too many columns or values, a huge cell, an unterminated quote, JSON nested 10,000
    deep, a 100 MiB file, /dev/zero: refused whole, in French, nothing imported."""
    before = count(engine, "place")
    for path, reason in _hostile_files(tmp_path):
        result = _import(str(path))
        assert result.exit_code == 1, (path.name, result.output)
        assert "Fichier refusé, rien n'a été importé" in result.output, result.output
        assert reason in result.output.replace("\n", " "), (path.name, result.output)
        assert not isinstance(result.exception, RecursionError | MemoryError | csv.Error)
    assert count(engine, "place") == before


def test_200_000_columns_cost_little_memory(
    tmp_path: Path, world: World, database_url: str
) -> None:
    """The 41.5 MB file of 200,000 columns took 3.1 GB: the real command, in a process of its
    own, now refuses it within a bound that a normal start already nearly fills."""
    path = tmp_path / "colonnes.csv"
    header = "nom,adresse,code_postal," + ",".join(f"colonne{i:06d}" for i in range(200_000))
    path.write_text(header + "\n" + ("," * 200_002 + "\n") * 100, encoding="utf-8")
    assert path.stat().st_size > 20_000_000
    measure = (
        "import resource, subprocess, sys; "
        "r = subprocess.run([sys.executable, '-m', 'app.cli', 'places', 'import', sys.argv[1]], "
        "capture_output=True, text=True); "
        "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
        "print(r.stdout + r.stderr)"
    )
    out = subprocess.run(
        [sys.executable, "-c", measure, str(path)],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "DATABASE_URL": database_url, "COLUMNS": "200"},
    ).stdout
    code, peak_kb = out.split("\n", 1)[0].split()
    assert code == "1" and "Trop de colonnes" in out, out
    assert int(peak_kb) < 400_000, out  # the file itself is 21 MB; before: 3.1 GB
