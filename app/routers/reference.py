"""Published reference: the diagnostic's questions, the procedure themes, the consent
wording, the needs an orientation may state."""

from typing import Any

from fastapi import APIRouter

from app.errors import problem_responses
from app.problems import InternalError
from app.triage import DIAGNOSTIC, PROCEDURE_THEMES, RULES_VERSION
from app.triage.consent import CONSENT_TEXTS, CURRENT_CONSENT
from app.triage.diagnostic import DIAGNOSTIC_VERSION
from app.triage.matching import MATCHING_VERSION
from app.triage.needs import HALVES, MODALITIES, PUBLIC, SPECIFIC, Day

router = APIRouter(
    prefix="/v1",
    tags=["référentiels"],
    responses=problem_responses(InternalError),
)


@router.get("/diagnostic", summary="Questions du diagnostic d'autonomie numérique")
def diagnostic() -> dict[str, Any]:
    return {
        "version": DIAGNOSTIC_VERSION,
        "rules_version": RULES_VERSION,
        "questions": [
            {
                "id": q.id,
                "label": q.label,
                "answers": [{"id": a.id, "label": a.label} for a in q.answers],
            }
            for q in DIAGNOSTIC
        ],
    }


@router.get("/procedure-themes", summary="Thèmes de démarches")
def procedure_themes() -> dict[str, Any]:
    return {"themes": [{"slug": t.slug, "label": t.label} for t in PROCEDURE_THEMES.values()]}


@router.get(
    "/consent",
    summary="Texte du consentement à lire à la personne",
    description=(
        "Le texte à montrer à la personne avant de prendre ses coordonnées, et sa version, à "
        "renvoyer dans `person.consent_text_version` de l'orientation. Les versions "
        "précédentes restent publiées : une orientation dit quel texte a été montré."
    ),
)
def consent() -> dict[str, Any]:
    def shown(c: Any) -> dict[str, Any]:
        return {"version": c.version, "published": c.published.isoformat(), "text": c.text}

    return {**shown(CURRENT_CONSENT), "versions": [shown(c) for c in CONSENT_TEXTS]}


@router.get(
    "/needs",
    summary="Besoins que l'agent peut indiquer",
    description=(
        "Les valeurs de `needs` d'une orientation, avec leurs libellés : prises en charge "
        "spécifiques et publics (vocabulaires du schéma national des lieux de médiation "
        "numérique), formes d'accompagnement, jours et demi-journées. Le lieu choisi répond "
        f"aux besoins indiqués (règles {MATCHING_VERSION})."
    ),
)
def needs() -> dict[str, Any]:
    def listed(vocabulary: Any) -> list[dict[str, str]]:
        return [{"slug": str(slug), "label": label} for slug, (label, _) in vocabulary.items()]

    return {
        "matching_version": MATCHING_VERSION,
        "specific": listed(SPECIFIC),
        "public": listed(PUBLIC),
        "modality": listed(MODALITIES),
        "availability": {
            "days": [d.value for d in Day],
            "halves": [{"slug": h.value, "label": label} for h, label in HALVES.items()],
        },
    }
