"""Published reference: the diagnostic's questions, the procedure themes, the consent
wording."""

from typing import Any

from fastapi import APIRouter

from app.errors import problem_responses
from app.triage import DIAGNOSTIC, PROCEDURE_THEMES, RULES_VERSION
from app.triage.consent import CONSENT_TEXTS, CURRENT_CONSENT
from app.triage.diagnostic import DIAGNOSTIC_VERSION

router = APIRouter(
    prefix="/v1", tags=["référentiels"],
    responses=problem_responses(*(500,)),
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
