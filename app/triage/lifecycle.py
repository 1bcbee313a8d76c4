"""The referral lifecycle as data: which status may follow which, by whom, with what reason.

The contract's table ("Referrals"), declared once; `check` says whether a transition is
allowed and, if not, why, in terms the HTTP layer maps to 409 (not from this status), 403 (not
by this role) or 422 (reason missing or not one of the allowed values)."""

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

LIFECYCLE_VERSION = "cycle-2026-11-v1"


class ReferralStatus(StrEnum):
    EN_ATTENTE = "en_attente"
    ACCEPTEE = "acceptee"
    REFUSEE = "refusee"
    ANNULEE = "annulee"
    EXPIREE = "expiree"
    CONTACTEE = "contactee"
    NON_VENUE = "non_venue"
    TERMINEE = "terminee"
    REORIENTEE = "reorientee"


class Actor(StrEnum):
    AGENT = "agent"
    MEDIATEUR = "mediateur"
    SERVICE = "service"  # the service itself: expiry


class ReasonRule(StrEnum):
    NONE = "none"  # free text allowed, not required
    REQUIRED_CHOICE = "required_choice"  # one of `reasons`


REFUSAL_REASONS = {
    "hors_territoire": "Hors de notre territoire",
    "releve_de_france_services": "Relève de France Services",
    "pas_de_capacite": "Pas de capacité d'accueil",
    "autre": "Autre motif",
}

S = ReferralStatus


@dataclass(frozen=True)
class Transition:
    sources: frozenset[ReferralStatus]
    target: ReferralStatus
    actors: frozenset[Actor]
    reason: ReasonRule = ReasonRule.NONE
    reasons: tuple[str, ...] = ()


def _t(
    sources: set[ReferralStatus],
    target: ReferralStatus,
    actors: set[Actor],
    reason: ReasonRule = ReasonRule.NONE,
    reasons: tuple[str, ...] = (),
) -> Transition:
    return Transition(frozenset(sources), target, frozenset(actors), reason, reasons)


TRANSITIONS: tuple[Transition, ...] = (
    _t({S.EN_ATTENTE}, S.ACCEPTEE, {Actor.MEDIATEUR}),
    _t(
        {S.EN_ATTENTE},
        S.REFUSEE,
        {Actor.MEDIATEUR},
        ReasonRule.REQUIRED_CHOICE,
        tuple(REFUSAL_REASONS),
    ),
    _t({S.EN_ATTENTE, S.ACCEPTEE}, S.ANNULEE, {Actor.AGENT, Actor.MEDIATEUR}),
    _t({S.EN_ATTENTE, S.ACCEPTEE}, S.EXPIREE, {Actor.SERVICE}),
    _t({S.ACCEPTEE}, S.CONTACTEE, {Actor.MEDIATEUR}),
    _t({S.ACCEPTEE, S.CONTACTEE}, S.NON_VENUE, {Actor.MEDIATEUR}),
    _t({S.CONTACTEE}, S.TERMINEE, {Actor.MEDIATEUR}),
    _t({S.ACCEPTEE, S.CONTACTEE}, S.REORIENTEE, {Actor.MEDIATEUR}),
)

FINAL = frozenset({S.REFUSEE, S.ANNULEE, S.EXPIREE, S.NON_VENUE, S.TERMINEE, S.REORIENTEE})
OPEN = frozenset(ReferralStatus) - FINAL


class Refusal(StrEnum):
    """Why a transition is refused (the HTTP status the service answers)."""

    NOT_FROM_STATUS = "not_from_status"  # 409
    NOT_BY_ROLE = "not_by_role"  # 403
    REASON = "reason"  # 422


def check(
    current: ReferralStatus, target: ReferralStatus, actor: Actor, reason: str | None
) -> Refusal | None:
    """None if `actor` may move a referral from `current` to `target` with `reason`."""
    possible = [t for t in TRANSITIONS if t.target is target and current in t.sources]
    if not possible:
        return Refusal.NOT_FROM_STATUS
    allowed = [t for t in possible if actor in t.actors]
    if not allowed:
        return Refusal.NOT_BY_ROLE
    rule = allowed[0]
    if rule.reason is ReasonRule.REQUIRED_CHOICE and reason not in rule.reasons:
        return Refusal.REASON
    return None


def targets(current: ReferralStatus, actor: Actor) -> list[ReferralStatus]:
    """The statuses `actor` may move a referral to from `current` (what a page offers)."""
    return [t.target for t in TRANSITIONS if current in t.sources and actor in t.actors]


# Waiting for the médiation place, or accepted but not yet followed up: the deadline applies.
EXPIRABLE = frozenset({S.EN_ATTENTE, S.ACCEPTEE})


def shown_status(status: ReferralStatus, past_due: bool) -> ReferralStatus:
    """A referral past its deadline is expired, whether or not the service has written it yet
    (it does every minute, and `passerelle referrals expire`)."""
    return S.EXPIREE if status in EXPIRABLE and past_due else status


def effective_status(status: ReferralStatus, expires_at: datetime, now: datetime) -> ReferralStatus:
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    return shown_status(status, expires_at <= now)
