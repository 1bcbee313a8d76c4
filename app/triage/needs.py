"""What the agent may say about the person's needs, in the national schema's own vocabularies
(`prise_en_charge_specifique`, `publics_specifiquement_adresses`, `frais_a_charge`,
`modalites_accompagnement`), and when the person can come (days and half-days)."""

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Specific(StrEnum):
    DEFICIENCE_VISUELLE = "deficience_visuelle"
    SURDITE = "surdite"
    HANDICAPS_MOTEURS = "handicaps_moteurs"
    HANDICAPS_MENTAUX = "handicaps_mentaux"
    ILLETTRISME = "illettrisme"
    LANGUES_ETRANGERES_ANGLAIS = "langues_etrangeres_anglais"
    LANGUES_ETRANGERES_AUTRES = "langues_etrangeres_autres"


class Public(StrEnum):
    JEUNES = "jeunes"
    ETUDIANTS = "etudiants"
    FAMILLES_ENFANTS = "familles_enfants"
    SENIORS = "seniors"
    FEMMES = "femmes"


# slug -> (label shown to people, the schema's values: v1's, and v0's spellings)
SPECIFIC: dict[str, tuple[str, tuple[str, ...]]] = {
    "deficience_visuelle": ("Déficience visuelle", ("Déficience visuelle",)),
    "surdite": ("Surdité", ("Surdité",)),
    "handicaps_moteurs": ("Handicaps moteurs", ("Handicaps moteurs",)),
    "handicaps_mentaux": (
        "Handicaps mentaux ou psychiques",
        ("Handicaps mentaux", "Handicaps psychiques"),
    ),
    "illettrisme": ("Illettrisme", ("Illettrisme", "Personnes en situation d'illettrisme")),
    "langues_etrangeres_anglais": (
        "Langue étrangère : anglais",
        ("Langues étrangères (anglais)", "Public langues étrangères"),
    ),
    "langues_etrangeres_autres": (
        "Autre langue étrangère",
        ("Langues étrangères (autres)", "Public langues étrangères"),
    ),
}
PUBLIC: dict[str, tuple[str, tuple[str, ...]]] = {
    "jeunes": ("Jeunes (16-26 ans)", ("Jeunes", "Jeunes (16-26 ans)")),
    "etudiants": ("Étudiants", ("Étudiants",)),
    "familles_enfants": ("Familles et enfants", ("Familles et/ou enfants", "Familles/enfants")),
    "seniors": ("Seniors (plus de 65 ans)", ("Seniors", "Seniors (+ 65 ans)")),
    "femmes": ("Femmes", ("Femmes", "Uniquement femmes")),
}


class Modality(StrEnum):
    INDIVIDUEL = "individuel"
    COLLECTIF = "collectif"
    A_DISTANCE = "a_distance"


MODALITIES: dict[Modality, tuple[str, tuple[str, ...]]] = {
    Modality.INDIVIDUEL: (
        "Accompagnement individuel",
        (
            "Accompagnement individuel",
            "Avec de l'aide : je suis accompagné seul dans l'usage du numérique",
            "A ma place : une personne habilitée fait les démarches à ma place",
        ),
    ),
    Modality.COLLECTIF: (
        "Atelier collectif",
        (
            "Dans un atelier collectif",
            "Dans un atelier : j'apprends collectivement à utiliser le numérique",
        ),
    ),
    Modality.A_DISTANCE: ("À distance", ("À distance",)),
}


class Fees(StrEnum):
    GRATUIT = "gratuit"
    GRATUIT_SOUS_CONDITION = "gratuit_sous_condition"
    PAYANT = "payant"


FEES: dict[Fees, tuple[str, tuple[str, ...]]] = {
    Fees.GRATUIT: ("Gratuit", ("Gratuit",)),
    Fees.GRATUIT_SOUS_CONDITION: ("Gratuit sous condition", ("Gratuit sous condition",)),
    Fees.PAYANT: ("Payant", ("Payant", "Adhésion")),
}


class Day(StrEnum):
    LUNDI = "lundi"
    MARDI = "mardi"
    MERCREDI = "mercredi"
    JEUDI = "jeudi"
    VENDREDI = "vendredi"
    SAMEDI = "samedi"
    DIMANCHE = "dimanche"


class Half(StrEnum):
    MATIN = "matin"
    APRES_MIDI = "apres_midi"


HALVES = {Half.MATIN: "le matin", Half.APRES_MIDI: "l'après-midi"}


def slot(day: Day, half: Half) -> int:
    """The bit of a half-day in a week's mask (Monday morning is bit 0)."""
    return 1 << (2 * list(Day).index(day) + list(Half).index(half))


@dataclass(frozen=True)
class Needs:
    """What the agent chose to record of the person's needs (nothing personal)."""

    specific: frozenset[str] = frozenset()
    public: frozenset[str] = frozenset()
    free_only: bool = False
    modality: Modality | None = None
    availability: int = 0  # a mask of slot()s; 0: not said

    @property
    def any(self) -> bool:
        return bool(
            self.specific or self.public or self.free_only or self.modality or self.availability
        )


def from_schema(
    values: list[str], vocabulary: Mapping[Any, tuple[str, tuple[str, ...]]]
) -> list[str]:
    """The slugs of a schema field's values (either version's spelling), unknown ones left."""
    by_value = {
        v.casefold(): str(slug) for slug, (_, spellings) in vocabulary.items() for v in spellings
    }
    found = {by_value[v.strip().casefold()] for v in values if v.strip().casefold() in by_value}
    return sorted(found, key=list(vocabulary).index)
