"""The `passerelle` command line: serve, migrate, import places, manage keys."""

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from sqlmodel import Session

from app.db import get_engine
from app.db import migrate as apply_migrations
from app.models import Role
from app.services import keys as key_service
from app.services.communes import import_communes
from app.services.demo import demo_keys, load_demo
from app.services.lifecycle import expire_due
from app.services.place_import import import_places, read_rows

app = typer.Typer(
    help="Passerelle : orientation vers la médiation numérique.", no_args_is_help=True
)
places_app = typer.Typer(
    help="Lieux France Services et de médiation numérique.", no_args_is_help=True
)
communes_app = typer.Typer(help="Référentiel des communes.", no_args_is_help=True)
keys_app = typer.Typer(help="Clés d'API.", no_args_is_help=True)
referrals_app = typer.Typer(help="Orientations vers un médiateur.", no_args_is_help=True)
app.add_typer(places_app, name="places")
app.add_typer(communes_app, name="communes")
app.add_typer(keys_app, name="keys")
app.add_typer(referrals_app, name="referrals")

console = Console()
errors = Console(stderr=True)


@app.command()
def migrate() -> None:
    """Applique les migrations de la base de données."""
    apply_migrations(get_engine())
    console.print("Migrations appliquées.")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Adresse d'écoute.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port d'écoute.")] = 8000,
    demo: Annotated[
        bool, typer.Option("--demo", help="Charge la démo (Corrèze) et crée une clé par rôle.")
    ] = False,
    workers: Annotated[
        int, typer.Option(min=1, max=32, help="Processus (PostgreSQL ; SQLite : 1).")
    ] = 1,
) -> None:
    """Applique les migrations puis sert l'API."""
    from app.server import serve as run_server

    engine = get_engine()
    if workers > 1 and engine.dialect.name == "sqlite":
        errors.print(
            "SQLite n'admet qu'un écrivain à la fois : un seul processus (--workers 1). "
            "Pour plusieurs processus, utilisez PostgreSQL (DATABASE_URL)."
        )
        raise typer.Exit(2)
    apply_migrations(engine)
    if demo:
        with Session(engine) as session:
            report = load_demo(session)
            tokens = demo_keys(session)
        console.print(f"Démo chargée : {report.imported} lieux en Corrèze.")
        for role, token in tokens.items():
            console.print(f"  clé {role:<13} {token}", highlight=False)
        console.print("Les clés de démo des démarrages précédents sont révoquées.")
    run_server(host, port, workers)


@places_app.command("import")
def places_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
) -> None:
    """Importe des lieux au format du schéma national de la médiation numérique (CSV, JSON)."""
    try:
        rows = read_rows(file)
    except (ValueError, UnicodeDecodeError) as exc:
        errors.print(f"Fichier illisible : {exc}")
        raise typer.Exit(1) from exc
    with Session(get_engine()) as session, Progress(console=console, transient=True) as progress:
        task = progress.add_task("Import des lieux", total=len(rows))
        report = import_places(session, rows, on_row=lambda: progress.advance(task))
    console.print(
        f"{report.imported} lieux importés ({report.created} créés, {report.updated} mis à jour), "
        f"{len(report.rejected)} lignes rejetées."
    )
    if report.rejected:
        table = Table("ligne", "motif du rejet")
        for line, reason in report.rejected:
            table.add_row(str(line), reason)
        console.print(table)


@communes_app.command("import")
def communes_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
) -> None:
    """Importe le référentiel des communes (format de app/data/communes-19.csv)."""
    with Session(get_engine()) as session:
        try:
            count = import_communes(session, file)
        except (ValueError, UnicodeDecodeError) as exc:
            errors.print(f"Fichier refusé, rien n'a été importé : {exc}")
            raise typer.Exit(1) from exc
    console.print(f"{count} communes importées.")


@referrals_app.command("expire")
def referrals_expire() -> None:
    """Passe à « expiree » les orientations en attente ou acceptées dont le délai est passé
    (le service le fait aussi chaque minute)."""
    with Session(get_engine()) as session:
        count = expire_due(session)
    console.print(f"{count} orientations expirées.")


@keys_app.command("create")
def keys_create(
    role: Annotated[Role, typer.Option(help="agent, mediateur, coordinateur ou admin.")],
    place: Annotated[
        str | None, typer.Option(help="Lieu (agent, mediateur) : son id, ou son id dans la source.")
    ] = None,
    territory: Annotated[
        str | None, typer.Option(help="departement:19, epci:<SIREN>, region:<code>, national.")
    ] = None,
    name: Annotated[str, typer.Option(help="Nom lisible de la clé.")] = "",
) -> None:
    """Crée une clé ; le jeton est affiché seul sur la dernière ligne, une seule fois."""
    with Session(get_engine()) as session:
        try:
            key, token = key_service.create_key(
                session, role, place_id=place, territory=territory, name=name
            )
        except key_service.KeyError_ as exc:
            errors.print(str(exc))
            raise typer.Exit(2) from exc
    console.print(
        f"Clé {key.id} créée (rôle {key.role}). Conservez le jeton : il ne sera plus affiché."
    )
    print(token)


@keys_app.command("list")
def keys_list() -> None:
    """Liste les clés (jamais les jetons). Hors d'un terminal : une ligne par clé, champs
    séparés par des tabulations (… | cut -f1 | xargs passerelle keys revoke)."""
    with Session(get_engine()) as session:
        keys = key_service.list_keys(session)
    columns = ("id", "nom", "rôle", "lieu", "territoire", "début du jeton", "créée", "révoquée")
    rows = [
        (
            key.id,
            key.name,
            key.role,
            key.place_id or "",
            key.territory or "",
            key.prefix + "…",
            key.created_at.isoformat(timespec="minutes"),
            key.revoked_at.isoformat(timespec="minutes") if key.revoked_at else "",
        )
        for key in keys
    ]
    if not sys.stdout.isatty():
        for row in (columns, *rows):
            print("\t".join(row))
        return
    table = Table(*columns)
    table.columns[0].no_wrap = True
    for row in rows:
        table.add_row(*row)
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_ids: Annotated[list[str], typer.Argument(help="Identifiants des clés.")],
) -> None:
    """Révoque des clés : elles ne donnent plus accès à rien (au plus une seconde après, pour
    un service déjà lancé)."""
    unknown = []
    with Session(get_engine()) as session:
        for key_id in key_ids:
            if key_service.revoke_key(session, key_id) is None:
                unknown.append(key_id)
            else:
                console.print(f"Clé {key_id} révoquée.")
    if unknown:
        errors.print(f"Clé inconnue : {', '.join(unknown)}.")
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
