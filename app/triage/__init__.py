"""Pure front-desk triage: profiles, diagnostic and routing rules. No web, no database."""

from app.triage.diagnostic import DIAGNOSTIC, DiagnosticError, profile_from_answers
from app.triage.rules import RULES_VERSION, Decision, decide
from app.triage.vocabulary import (
    PROCEDURE_THEMES,
    Profile,
    ProfileSource,
    Route,
)

__all__ = [
    "DIAGNOSTIC",
    "PROCEDURE_THEMES",
    "RULES_VERSION",
    "Decision",
    "DiagnosticError",
    "Profile",
    "ProfileSource",
    "Route",
    "decide",
    "profile_from_answers",
]
