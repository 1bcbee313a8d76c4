"""The consent wording shown to the person before any contact data is taken, versioned: an
orientation records the version shown, and a published version never changes (add a new one)."""

from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True, slots=True)
class ConsentText:
    version: str
    published: date
    text: str


CONSENT_TEXTS = (
    ConsentText(
        "2026-11-v1",
        date(2026, 11, 23),
        "Pour que le lieu de médiation numérique vous recontacte, nous lui transmettons votre "
        "prénom et le moyen de contact que vous choisissez (téléphone ou courriel), avec vos "
        "disponibilités. Ces informations ne servent qu'à organiser votre accompagnement ; "
        "seuls l'agent de France Services qui vous oriente et le lieu qui vous reçoit y ont "
        "accès, et chaque consultation est enregistrée. Elles sont effacées 30 jours après la "
        "fin de l'accompagnement, ou plus tôt si vous le demandez à l'un ou à l'autre. Vous "
        "pouvez refuser : vous recevrez alors un coupon avec un code à présenter au lieu de "
        "médiation, sans que vos coordonnées soient transmises.",
    ),
)
CONSENT_VERSIONS = {c.version: c for c in CONSENT_TEXTS}
CURRENT_CONSENT = CONSENT_TEXTS[-1]
