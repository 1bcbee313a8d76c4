"""The typology rules as versioned data: profile, urgency and follow-up -> route and reasons."""

from dataclasses import dataclass
from enum import StrEnum

from app.triage.vocabulary import Profile, Route

RULES_VERSION = "typologie-2026-11-v1"


class When(StrEnum):
    ALWAYS = "always"
    IF_URGENT = "if_urgent"
    UNLESS_FOLLOWED = "unless_followed"
    NEVER = "never"


@dataclass(frozen=True)
class Rule:
    route: Route
    reason: str
    do_now: When
    refer: When


RULES: dict[Profile, Rule] = {
    # "Faire à la place de": France Services does the procedure for the person.
    Profile.NON_AUTONOME_SANS_ENVIE: Rule(
        Route.FRANCE_SERVICES, "profil_sans_envie", When.ALWAYS, When.NEVER
    ),
    # The urgent procedure first, the autonomy work with a médiateur after.
    Profile.NON_AUTONOME_NON_REFRACTAIRE: Rule(
        Route.MEDIATEUR, "profil_non_refractaire", When.IF_URGENT, When.UNLESS_FOLLOWED
    ),
    Profile.PARTIELLEMENT_AUTONOME: Rule(
        Route.MEDIATEUR, "profil_partiellement_autonome", When.IF_URGENT, When.UNLESS_FOLLOWED
    ),
    Profile.AUTONOME: Rule(Route.AUCUNE, "profil_autonome", When.NEVER, When.NEVER),
}

# Reason codes are part of the API: never rename one, add new ones instead.
REASON_URGENT = "demarche_urgente"
REASON_NOT_URGENT = "demarche_non_urgente"
REASON_DONE_FOR_PERSON = "faire_a_la_place"
REASON_ALREADY_FOLLOWED = "deja_suivi_par_un_mediateur"
REASON_NO_PLACE_IN_RANGE = "aucun_lieu_de_mediation_a_proximite"
# Said by matching (app.places.service), not by the typology: a nearer place was passed over.
REASON_PLACE_PAUSED = "lieu_en_pause"


@dataclass(frozen=True)
class Decision:
    profile: Profile
    route: Route
    do_now_at_france_services: bool
    needs_referral: bool
    reasons: tuple[str, ...]
    rules_version: str = RULES_VERSION


def _applies(when: When, *, urgent: bool, already_followed: bool) -> bool:
    return {
        When.ALWAYS: True,
        When.IF_URGENT: urgent,
        When.UNLESS_FOLLOWED: not already_followed,
        When.NEVER: False,
    }[when]


def decide(profile: Profile, *, urgent: bool, already_followed: bool) -> Decision:
    rule = RULES[profile]
    do_now = _applies(rule.do_now, urgent=urgent, already_followed=already_followed)
    refer = _applies(rule.refer, urgent=urgent, already_followed=already_followed)
    reasons = [rule.reason]
    if rule.route is Route.FRANCE_SERVICES:
        reasons.append(REASON_DONE_FOR_PERSON)
    if rule.route is not Route.AUCUNE:
        reasons.append(REASON_URGENT if urgent else REASON_NOT_URGENT)
    if rule.refer is When.UNLESS_FOLLOWED and already_followed:
        reasons.append(REASON_ALREADY_FOLLOWED)
    return Decision(profile, rule.route, do_now, refer, tuple(reasons))
