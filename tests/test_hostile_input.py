"""Issue 21, point by point: hostile input, round two (exports, imports, sessions, the command
line, webhooks, storage faults), each tried again through the real app or a real server."""

import csv
import io
import json
import os
import pty
import subprocess
import sys
from pathlib import Path
from select import select as readable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner, Result

from app.cli import app as cli
from app.models import Place, Role
from app.places.sources import MAX_FILE_BYTES
from app.services.keys import create_key
from tests.conftest import Mailbox, World, count, orientation_body
from tests.test_notifications import parts
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
    body = {
        k: place[k]
        for k in (
            "kind",
            "address",
            "postal_code",
            "commune",
            "latitude",
            "longitude",
            "services",
            "phone",
            "email",
            "hours",
        )
    }
    assert (
        client.put(
            f"/v1/places/{place_id}", headers=admin, json={**body, "name": FORMULA}
        ).status_code
        == 200
    )
    answer = client.post(
        "/v1/orientations", headers=world.auth("agent_tulle"), json=orientation_body()
    )
    assert answer.status_code == 201 and answer.json()["referral"]["place"]["id"] == place_id

    coord = world.auth("coord")
    coverage = _csv(client.get("/v1/stats/coverage?format=csv", headers=coord).content)
    names = {row["Lieu le plus proche"] for row in coverage}
    assert "'" + FORMULA in names and FORMULA not in names
    stats = _csv(client.get("/v1/stats/referrals?group_by=place&format=csv", headers=coord).content)
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


@pytest.mark.usefixtures("world", "cli_env")
def test_a_line_separator_inside_quotes_stays_in_its_cell(tmp_path: Path, engine: Engine) -> None:
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
    add(
        "colonnes.csv",
        "nom,adresse,code_postal," + columns + "\n" + "," * 200_000 + "\n",
        "Trop de colonnes : 200003",
    )
    add(
        "valeurs.csv",
        "nom,adresse,code_postal\n" + "a," * 200_000 + "\n",
        "Ligne 2 : 200001 valeurs",
    )
    add(
        "champ.csv",
        'nom,adresse,code_postal\nEPN,"' + "x" * 200_000 + '",19000\n',
        "une valeur dépasse 100\u202f000 caractères",
    )
    add(
        "guillemet.csv",
        'nom,adresse,code_postal\nEPN,"rue,19000\nAutre,rue,19000\n',
        "un guillemet ouvert n'est jamais fermé",
    )
    add("profond.json", "[" * 10_000 + "]" * 10_000, "JSON imbriqué sur plus de 16 niveaux")
    add(
        "profond2.json",
        '[{"nom": ' + "[" * 30 + "]" * 30 + "}]",
        "JSON imbriqué sur plus de 16 niveaux",
    )
    add(
        "champ.json",
        json.dumps([{"nom": "x" * 200_000, "adresse": "r", "code_postal": "1"}]),
        "une valeur dépasse 100\u202f000 caractères",
    )
    huge = tmp_path / "enorme.csv"
    with huge.open("wb") as handle:  # sparse: 100 MiB + 1 byte, no disk used
        handle.truncate(MAX_FILE_BYTES + 1)
    files.append((huge, "Fichier trop gros : plus de 100 Mo"))
    if Path("/dev/zero").exists():
        files.append((Path("/dev/zero"), "Fichier trop gros"))
    return files


@pytest.mark.usefixtures("world", "cli_env")
def test_hostile_import_files_are_refused_in_french(tmp_path: Path, engine: Engine) -> None:
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


@pytest.mark.usefixtures("world")
def test_200_000_columns_cost_little_memory(tmp_path: Path, database_url: str) -> None:
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
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DATABASE_URL": database_url, "COLUMNS": "200"},
    ).stdout
    code, peak_kb = out.split("\n", 1)[0].split()
    assert code == "1" and "Trop de colonnes" in out, out
    assert int(peak_kb) < 400_000, out  # the file itself is 21 MB; before: 3.1 GB


# --- 11. the command line: names are not markup ---------------------------------------------


def _run(database_url: str, *args: str, tty: bool = False, **env: str) -> tuple[int, str]:
    """The real `passerelle` in a process of its own; on a pseudo-terminal when `tty`, as a
    person at a terminal runs it (Rich draws tables then)."""
    command = [sys.executable, "-m", "app.cli", *args]
    environment = {**os.environ, "DATABASE_URL": database_url, "COLUMNS": "80", **env}
    for name in ("PASSERELLE_PUBLIC_URL", "PORT"):
        if name not in env:
            environment.pop(name, None)
    if not tty:
        done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=60)
        return done.returncode, done.stdout + done.stderr
    leader, follower = pty.openpty()
    process = subprocess.Popen(command, env=environment, stdout=follower, stderr=follower)
    os.close(follower)
    out = b""
    for _ in range(1000):  # bounded: each read waits at most 10 s
        ready, _, _ = readable([leader], [], [], 10)
        try:
            chunk = os.read(leader, 65536) if ready else b""
        except OSError:  # the terminal closes with the process
            chunk = b""
        if not chunk:
            break
        out += chunk
    os.close(leader)
    return process.wait(10), out.decode(errors="replace")


@pytest.mark.usefixtures("world")
def test_names_and_ids_with_brackets_are_printed_as_typed(
    engine: Engine, database_url: str
) -> None:
    """A key named « [/] » (Rich's closing tag) listed on a terminal, an unknown id or
    territory written the same way: printed as typed, never a MarkupError."""
    with Session(engine) as session:
        create_key(session, Role.ADMIN, name="[/]")
    code, out = _run(database_url, "keys", "list", tty=True)
    assert code == 0 and "[/]" in out and "Traceback" not in out, out
    code, out = _run(database_url, "keys", "revoke", "[/]")
    assert code == 1 and "Clé inconnue : [/]." in out and "Traceback" not in out, out
    code, out = _run(database_url, "stats", "referrals", "--territory", "[/x]")
    assert code == 2 and "Territoire mal écrit : '[/x]'" in out and "Traceback" not in out, out
    code, out = _run(database_url, "keys", "create", "--role", "chef", tty=True)
    assert code == 2 and "« chef » n'est pas parmi agent" in out, out


# --- 12. outbox deliver from a cron --------------------------------------------------------


def test_outbox_deliver_needs_the_public_address(
    client: TestClient, world: World, engine: Engine, database_url: str, mailbox: Mailbox
) -> None:
    """From a cron without PASSERELLE_PUBLIC_URL, the links would lead to 127.0.0.1:8000:
    nothing is sent, and the command says what to set; with it, the links lead there."""
    referral = client.post(
        "/v1/orientations", headers=world.auth("agent_tulle"), json=orientation_body()
    ).json()["referral"]
    smtp = f"smtp://127.0.0.1:{mailbox.port}"
    code, out = _run(database_url, "outbox", "deliver", PASSERELLE_SMTP_URL=smtp)
    assert code == 1 and "Adresse publique inconnue : définissez PASSERELLE_PUBLIC_URL" in out
    assert mailbox.messages == [] and count(engine, "outbox") >= 1
    code, out = _run(
        database_url,
        "outbox",
        "deliver",
        PASSERELLE_SMTP_URL=smtp,
        PASSERELLE_PUBLIC_URL="https://passerelle.exemple.fr",
    )
    assert code == 0 and "1 envoyées" in out, out
    ((_, message),) = mailbox.messages
    text, _ = parts(message)
    # The one message goes to the receiving place: its link to act without an account.
    assert "https://passerelle.exemple.fr/lien/" in text and referral["code"] in text, text
    assert "127.0.0.1" not in text


# --- 13. policy: a re-orientation goes no farther than any referral -----------------------


def test_reorienting_to_a_named_place_keeps_the_distance_limit(
    client: TestClient, world: World, engine: Engine
) -> None:
    """Corrèze to Corsica was accepted: a named place beyond PASSERELLE_MAX_REFERRAL_DISTANCE_KM
    is a French 422 that stores nothing; a named place within it is taken."""
    admin = world.auth("admin")
    corsica = client.post(
        "/v1/places",
        headers=admin,
        json={
            "name": "Espace numérique d'Ajaccio",
            "kind": "mediation",
            "commune": "2A004",
            "latitude": 41.9267,
            "longitude": 8.7369,
            "services": ["Aide aux démarches administratives"],
        },
    )
    assert corsica.status_code == 201, corsica.text
    agent = world.auth("agent_tulle")
    first = client.post("/v1/orientations", headers=agent, json=orientation_body()).json()
    referral = first["referral"]
    refused = client.post(
        f"/v1/referrals/{referral['id']}/events",
        headers=world.auth("med_tulle"),
        json={"status": "refusee", "reason": "pas_de_capacite"},
    )
    assert refused.status_code == 200, refused.text
    before = count(engine, "referral"), count(engine, "handoff_event"), count(engine, "outbox")
    far = client.post(
        f"/v1/referrals/{referral['id']}/reorient",
        headers=agent,
        json={"place_id": corsica.json()["id"]},
    )
    assert far.status_code == 422 and far.headers["content-type"] == PROBLEM, far.text
    (error,) = far.json()["errors"]
    assert error["loc"] == ["body", "place_id"]
    assert "au-delà des 30 km" in error["msg"]
    assert "PASSERELLE_MAX_REFERRAL_DISTANCE_KM" in error["msg"]
    assert (
        count(engine, "referral"),
        count(engine, "handoff_event"),
        count(engine, "outbox"),
    ) == before
    nearby = client.post(
        "/v1/places",
        headers=admin,
        json={
            "name": "Médiathèque de Laguenne",
            "kind": "mediation",
            "commune": "19272",
            "latitude": 45.2656,
            "longitude": 1.7700,
            "services": ["Aide aux démarches administratives"],
        },
    )
    assert nearby.status_code == 201, nearby.text
    near = client.post(
        f"/v1/referrals/{referral['id']}/reorient",
        headers=agent,
        json={"place_id": nearby.json()["id"]},
    )
    assert near.status_code == 201, near.text
    assert near.json()["place"]["id"] == nearby.json()["id"]
