"""The API's codes in the words a person at the front desk reads: profiles, routes, reasons,
statuses, and what to bring to the médiation place. The web pages and printed slips use these;
the API keeps its slugs."""

from collections.abc import Sequence

from app.triage.lifecycle import REFUSAL_REASONS, STATUS_TABLE
from app.triage.matching import (
    CLOSED_AT_AVAILABILITY,
    FREE,
    HOURS_UNKNOWN,
    MEETS,
    NEED_NOT_MET,
    NO_SUITABLE_PLACE,
    OPEN_AT_AVAILABILITY,
    PLACE_FULL,
)
from app.triage.needs import MODALITIES, PUBLIC, SPECIFIC
from app.triage.rules import (
    REASON_ALREADY_FOLLOWED,
    REASON_DONE_FOR_PERSON,
    REASON_NO_PLACE_IN_RANGE,
    REASON_NOT_URGENT,
    REASON_PLACE_PAUSED,
    REASON_URGENT,
)
from app.triage.vocabulary import PROCEDURE_THEMES, Profile, Route

PROFILES = {
    Profile.NON_AUTONOME_SANS_ENVIE: "Non autonome, sans envie d'apprendre",
    Profile.NON_AUTONOME_NON_REFRACTAIRE: "Non autonome, prête à apprendre",
    Profile.PARTIELLEMENT_AUTONOME: "Partiellement autonome et volontaire",
    Profile.AUTONOME: "Autonome",
}

PROFILE_HINTS = {
    Profile.NON_AUTONOME_SANS_ENVIE: "Ne souhaite pas apprendre : on fait la démarche pour elle.",
    Profile.NON_AUTONOME_NON_REFRACTAIRE: (
        "A besoin d'aide pour ses démarches et veut bien apprendre."
    ),
    Profile.PARTIELLEMENT_AUTONOME: "Se débrouille en partie et veut être accompagnée.",
    Profile.AUTONOME: "Fait ses démarches en ligne seule.",
}

ROUTES = {
    Route.FRANCE_SERVICES: "France Services fait la démarche avec la personne",
    Route.MEDIATEUR: "Orientation vers un médiateur numérique",
    Route.AUCUNE: "Pas d'orientation nécessaire",
}

# What came of an orientation: the words of its reasons depend on it (the same code, say
# « démarche non urgente », is said one way when a médiateur takes over, another when France
# Services keeps the procedure).
ORIENTED = "orientee"  # a referral to a médiation place
ALREADY_FOLLOWED = "deja_suivie"  # a médiateur already follows the person: no referral
NO_PLACE = "sans_lieu"  # no suitable place in range: France Services keeps it
DONE_HERE = "france_services"  # France Services does it for the person
NOT_NEEDED = "aucune"  # autonomous: nothing to do

HEADLINES = {
    ORIENTED: ROUTES[Route.MEDIATEUR],
    ALREADY_FOLLOWED: "Déjà suivie par un médiateur numérique : pas de nouvelle orientation",
    NO_PLACE: "Pas de lieu de médiation à proximité : France Services garde la main",
    DONE_HERE: ROUTES[Route.FRANCE_SERVICES],
    NOT_NEEDED: ROUTES[Route.AUCUNE],
}


def outcome(route: Route | str, reasons: Sequence[str], referred: bool | None = None) -> str:
    """Which of the five outcomes an orientation had, from its route and reasons (and, when
    known, whether a referral was made: a médiateur's route without one, whatever the reason
    why no place took it, leaves the procedure with France Services)."""
    if route == Route.FRANCE_SERVICES:
        return DONE_HERE
    if route == Route.AUCUNE:
        return NOT_NEEDED
    if REASON_ALREADY_FOLLOWED in reasons:
        return ALREADY_FOLLOWED
    no_place = REASON_NO_PLACE_IN_RANGE in reasons or NO_SUITABLE_PLACE in reasons
    if no_place or referred is False:
        return NO_PLACE
    return ORIENTED


# Each reason as it reads when a médiateur takes over (the API documents the codes).
REASONS = {
    "profil_sans_envie": (
        "La personne ne souhaite pas apprendre : France Services fait la démarche à sa place."
    ),
    "profil_non_refractaire": (
        "La personne n'est pas autonome mais veut bien apprendre : un médiateur numérique "
        "l'accompagnera vers l'autonomie."
    ),
    "profil_partiellement_autonome": (
        "La personne est en partie autonome et volontaire : un médiateur numérique la rassurera "
        "et l'accompagnera."
    ),
    "profil_autonome": "La personne fait ses démarches seule : aucune orientation n'est utile.",
    REASON_DONE_FOR_PERSON: "L'agent France Services réalise la démarche avec la personne.",
    REASON_URGENT: (
        "La démarche est urgente : elle se fait dès maintenant à France Services, avant "
        "l'accompagnement du médiateur numérique."
    ),
    REASON_NOT_URGENT: (
        "La démarche n'est pas urgente : la personne la fera avec le médiateur numérique, "
        "en apprenant."
    ),
    REASON_ALREADY_FOLLOWED: (
        "Un médiateur numérique suit déjà la personne : pas de nouvelle orientation."
    ),
    REASON_NO_PLACE_IN_RANGE: (
        "Aucun lieu de médiation adapté n'est assez proche de la commune de la personne : "
        "France Services garde la main."
    ),
    REASON_PLACE_PAUSED: (
        "Un lieu plus proche ne reçoit pas d'orientation en ce moment (il est en pause) : "
        "l'orientation va au lieu adapté suivant."
    ),
}

# And as it reads in the other outcomes, where those words would not be true.
_REASONS_WHEN: dict[tuple[str, str], str] = {
    ("profil_non_refractaire", ALREADY_FOLLOWED): (
        "La personne n'est pas autonome mais veut bien apprendre : le médiateur numérique qui "
        "la suit déjà l'accompagne vers l'autonomie."
    ),
    ("profil_non_refractaire", NO_PLACE): (
        "La personne n'est pas autonome mais veut bien apprendre : un médiateur numérique "
        "l'accompagnerait vers l'autonomie, mais aucun n'est assez proche."
    ),
    ("profil_partiellement_autonome", ALREADY_FOLLOWED): (
        "La personne est en partie autonome et volontaire : le médiateur numérique qui la suit "
        "déjà continue de l'accompagner."
    ),
    ("profil_partiellement_autonome", NO_PLACE): (
        "La personne est en partie autonome et volontaire : un médiateur numérique la "
        "rassurerait et l'accompagnerait, mais aucun n'est assez proche."
    ),
    (REASON_URGENT, DONE_HERE): "La démarche est urgente : France Services la fait dès maintenant.",
    (REASON_URGENT, ALREADY_FOLLOWED): (
        "La démarche est urgente : elle se fait dès maintenant à France Services."
    ),
    (REASON_URGENT, NO_PLACE): (
        "La démarche est urgente : elle se fait dès maintenant à France Services."
    ),
    (REASON_NOT_URGENT, DONE_HERE): (
        "La démarche n'est pas urgente, mais rien ne sert d'attendre : France Services la fait "
        "avec la personne."
    ),
    (REASON_NOT_URGENT, ALREADY_FOLLOWED): (
        "La démarche n'est pas urgente : la personne peut la faire avec le médiateur numérique "
        "qui la suit."
    ),
    (REASON_NOT_URGENT, NO_PLACE): (
        "La démarche n'est pas urgente : France Services peut la faire avec la personne, "
        "maintenant ou à son prochain passage."
    ),
}


# The matching's reasons (app.triage.matching): why nearer places were passed over, what the
# chosen one meets; a need's code follows the colon.
_MATCHING = {
    PLACE_FULL: "Un lieu plus proche a déjà toutes les orientations qu'il peut prendre.",
    CLOSED_AT_AVAILABILITY: "Un lieu plus proche est fermé aux moments où la personne peut venir.",
    HOURS_UNKNOWN: (
        "Un lieu plus proche ne dit pas ses horaires : un lieu ouvert aux moments où la personne "
        "peut venir passe avant."
    ),
    OPEN_AT_AVAILABILITY: "Le lieu choisi est ouvert aux moments où la personne peut venir.",
    NO_SUITABLE_PLACE: (
        "Aucun lieu de médiation assez proche ne répond aux besoins indiqués : France Services "
        "garde la main (le plus proche qui y répond est indiqué)."
    ),
}
NEED_LABELS = {
    **{slug: label for slug, (label, _) in SPECIFIC.items()},
    **{slug: label for slug, (label, _) in PUBLIC.items()},
    **{m.value: label for m, (label, _) in MODALITIES.items()},
    FREE: "la gratuité",
}


def reason_words(reason: str, when: str) -> str:
    """A reason code in words, true in the outcome `when` (see `outcome`)."""
    said = _REASONS_WHEN.get((reason, when)) or REASONS.get(reason) or _MATCHING.get(reason)
    if said:
        return said
    code, _, need = reason.partition(":")
    label = NEED_LABELS.get(need, need).lower() if need else ""
    if code == NEED_NOT_MET:
        if when == NO_PLACE:
            return f"Les lieux assez proches ne répondent pas à ce besoin : {label}."
        return f"Un lieu plus proche ne répond pas à ce besoin : {label}."
    if code == MEETS and need in PUBLIC:
        return f"Le lieu choisi accueille en particulier ce public : {label}."
    if code == MEETS:
        return f"Le lieu choisi répond à ce besoin : {label}."
    return reason


# A status's words, from its entry in the lifecycle's table (app.triage.lifecycle).
STATUSES = {status: info.label for status, info in STATUS_TABLE.items()}

# What the person moves a referral to, as a button says it.
ACTIONS = {status: info.step.action for status, info in STATUS_TABLE.items() if info.step}

# What each of those steps means, under its button.
ACTION_HINTS = {status: info.step.hint for status, info in STATUS_TABLE.items() if info.step}

# What the page says once a step is done.
DONE = {status: info.step.done for status, info in STATUS_TABLE.items() if info.step}

# What is due before the deadline, in each status it applies to.
DEADLINES = {
    status: info.deadline for status, info in STATUS_TABLE.items() if info.deadline is not None
}

REFUSALS = REFUSAL_REASONS

# Read by the person, on the slip: « vous » throughout.
_ALWAYS = (
    "Une pièce d'identité",
    "Votre téléphone portable, si vous en avez un (pour recevoir les codes de connexion)",
    "Ce coupon, avec votre code",
)
_ACCOUNTS = "Vos identifiants, si vous en avez (numéro et mot de passe)"
_BRING_BY_THEME = {
    "caf": ("Votre numéro d'allocataire CAF", _ACCOUNTS),
    "assurance_maladie": ("Votre carte Vitale ou attestation de droits", _ACCOUNTS),
    "retraite": ("Votre numéro de sécurité sociale", "Vos derniers relevés de carrière"),
    "france_travail": ("Votre identifiant France Travail", "Un CV si vous en avez un"),
    "impots": ("Votre dernier avis d'impôt (numéro fiscal)", _ACCOUNTS),
    "identite": ("Votre ancien titre ou une déclaration de perte", "Un justificatif de domicile"),
    "justice": ("Les courriers reçus sur l'affaire",),
    "logement": ("Votre bail ou une facture d'énergie récente", _ACCOUNTS),
    "numerique_quotidien": ("L'appareil avec lequel vous voulez apprendre",),
    "autre": ("Les courriers reçus sur la démarche", _ACCOUNTS),
}


def what_to_bring(theme: str) -> list[str]:
    """The slip's list: what the person brings to the médiation place for this procedure."""
    return [*_ALWAYS[:1], *_BRING_BY_THEME.get(theme, ()), *_ALWAYS[1:]]


def theme_label(theme: str) -> str:
    found = PROCEDURE_THEMES.get(theme)
    return found.label if found else theme
