"""The field's words: autonomy profiles, routes and procedure themes, as the API spells them."""

from dataclasses import dataclass
from enum import StrEnum


class Profile(StrEnum):
    NON_AUTONOME_SANS_ENVIE = "non_autonome_sans_envie"
    NON_AUTONOME_NON_REFRACTAIRE = "non_autonome_non_refractaire"
    PARTIELLEMENT_AUTONOME = "partiellement_autonome"
    AUTONOME = "autonome"


class ProfileSource(StrEnum):
    DECLARED = "declared"
    DIAGNOSTIC = "diagnostic"


class Route(StrEnum):
    FRANCE_SERVICES = "france_services"
    MEDIATEUR = "mediateur"
    AUCUNE = "aucune"


# Services of the national schema of lieux de médiation numérique (v1: nine). The schema's
# description spells one "Comprehension", its pattern "Compréhension".
SERVICE_DEMARCHES = "Aide aux démarches administratives"
SERVICE_QUOTIDIEN = "Maîtrise des outils numériques du quotidien"
SERVICE_INSERTION = "Insertion professionnelle via le numérique"
SERVICE_SECURITE = "Utilisation sécurisée du numérique"
SERVICE_PARENTALITE = "Parentalité et éducation avec le numérique"
SERVICE_LOISIRS = "Loisirs et créations numériques"
SERVICE_COMPREHENSION = "Compréhension du monde numérique"
SERVICE_ACCES = "Accès internet et matériel informatique"
SERVICE_MATERIEL = "Acquisition de matériel informatique à prix solidaire"
SERVICES = (
    SERVICE_DEMARCHES,
    SERVICE_QUOTIDIEN,
    SERVICE_INSERTION,
    SERVICE_SECURITE,
    SERVICE_PARENTALITE,
    SERVICE_LOISIRS,
    SERVICE_COMPREHENSION,
    SERVICE_ACCES,
    SERVICE_MATERIEL,
)


@dataclass(frozen=True)
class ProcedureTheme:
    slug: str
    label: str
    # A médiation place fits a referral for this theme when it offers any of these services.
    services: tuple[str, ...]


_ADMIN = (SERVICE_DEMARCHES, SERVICE_QUOTIDIEN)

PROCEDURE_THEMES: dict[str, ProcedureTheme] = {
    t.slug: t
    for t in (
        ProcedureTheme("caf", "Caisse d'allocations familiales (CAF)", _ADMIN),
        ProcedureTheme("assurance_maladie", "Assurance maladie (CPAM, MSA)", _ADMIN),
        ProcedureTheme("retraite", "Retraite (Assurance retraite, Agirc-Arrco)", _ADMIN),
        ProcedureTheme("france_travail", "France Travail (emploi)", (*_ADMIN, SERVICE_INSERTION)),
        ProcedureTheme("impots", "Impôts (DGFiP)", _ADMIN),
        ProcedureTheme("identite", "Titres d'identité et permis (ANTS)", _ADMIN),
        ProcedureTheme("justice", "Justice (accès au droit)", _ADMIN),
        ProcedureTheme("logement", "Logement et énergie", _ADMIN),
        ProcedureTheme("numerique_quotidien", "Numérique du quotidien", (SERVICE_QUOTIDIEN,)),
        ProcedureTheme("autre", "Autre démarche", _ADMIN),
    )
}
