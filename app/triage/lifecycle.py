"""The referral lifecycle as data: each status, which status may follow which, by whom, with
what reason, and what each step tells whom.

The contract's table ("Referrals"), declared once; `check` says whether a transition is
allowed and, if not, why, in terms the HTTP layer maps to 409 (not from this status), 403 (not
by this role) or 422 (reason missing or not one of the allowed values).

Beside it, as Les emplois keeps a state's labels beside its transitions, one entry per status
(`STATUS_TABLE`: its words, its badge, whether it is final or expirable, the event it raises)
and one per notification event (`NOTICES`: webhook or e-mail only, who gets the e-mail). The
words, badges, sets, webhook events and e-mail recipients used elsewhere are derived from
these two tables: a new status is its enum member, its entry, its transitions (and a
migration if stored data must change)."""

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


class Tone(StrEnum):
    """How a status's badge looks (the DSFR badge of that kind)."""

    NEW = "new"
    INFO = "info"
    SUCCESS = "success"
    ERROR = "error"
    WARNING = "warning"
    NEUTRAL = "neutral"  # the plain grey badge


class Told(StrEnum):
    """Who gets the e-mail of a notification event."""

    RECEIVER = "receiver"  # the médiation place the referral is sent to
    SENDER = "sender"  # the France Services place that sent it
    OTHER_SIDE = "other_side"  # whichever of the two did not act (a cancellation)


@dataclass(frozen=True)
class Notice:
    """A notification event: whether webhooks may follow it, and who gets its e-mail (its
    words: app.notifications.outbox.render_email)."""

    event: str
    webhook: bool
    email_to: Told | None = None


CREATED = "referral.created"
REMINDER = "referral.reminder"
NEW_LINK = "referral.link"  # a fresh link, asked for from an old one (app.services.links)

# The receiving place's e-mails carry the link it acts with (app.services.links). The order is
# the webhook events' order, as the API documents them.
NOTICES: dict[str, Notice] = {
    n.event: n
    for n in (
        Notice(CREATED, webhook=True, email_to=Told.RECEIVER),
        Notice("referral.accepted", webhook=True),
        Notice("referral.refused", webhook=True, email_to=Told.SENDER),
        Notice("referral.cancelled", webhook=True, email_to=Told.OTHER_SIDE),
        Notice("referral.expired", webhook=True, email_to=Told.SENDER),
        Notice("referral.contacted", webhook=True),
        Notice("referral.no_show", webhook=True),
        Notice("referral.completed", webhook=True),
        Notice("referral.reoriented", webhook=True, email_to=Told.SENDER),
        Notice(REMINDER, webhook=False, email_to=Told.RECEIVER),
        Notice(NEW_LINK, webhook=False, email_to=Told.RECEIVER),
    )
}


@dataclass(frozen=True)
class Step:
    """How a person's move to a status reads on the pages: its button, what it means under
    the button, and what the page says once it is done."""

    action: str
    hint: str
    done: str
    secondary: bool = False  # a step that closes short of the goal: a secondary button


@dataclass(frozen=True)
class StatusInfo:
    """One status, declared once: the words, badge, sets and event used elsewhere derive from
    it (app.triage.words, app.web.render, app.notifications.notify)."""

    label: str  # as the front desk reads it
    tone: Tone
    event: str  # the notification event a referral reaching it raises (a key of NOTICES)
    final: bool = False  # nothing follows it
    expirable: bool = False  # the deadline applies: past it, the referral is expired
    deadline: str | None = None  # while expirable, what is due before the deadline
    reorientable: bool = False  # its agent may send the orientation to the next place
    step: Step | None = None  # None: no person moves a referral to it


REFUSAL_REASONS = {
    "hors_territoire": "Hors de notre territoire",
    "releve_de_france_services": "Relève de France Services",
    "pas_de_capacite": "Pas de capacité d'accueil",
    "autre": "Autre motif",
}

S = ReferralStatus

# One entry per status, in the enum's order (the pages list them in this order).
STATUS_TABLE: dict[ReferralStatus, StatusInfo] = {
    S.EN_ATTENTE: StatusInfo(
        "En attente",
        Tone.NEW,
        CREATED,
        expirable=True,
        deadline="À accepter ou refuser avant le",
    ),
    S.ACCEPTEE: StatusInfo(
        "Acceptée",
        Tone.INFO,
        "referral.accepted",
        expirable=True,
        deadline="Premier contact à prendre avant le",
        step=Step(
            "Accepter",
            "Votre lieu peut accompagner la personne : elle vous attend.",
            "Orientation acceptée : la personne vous attend.",
        ),
    ),
    S.REFUSEE: StatusInfo(
        "Refusée",
        Tone.ERROR,
        "referral.refused",
        final=True,
        reorientable=True,
        step=Step(
            "Refuser",
            "France Services est prévenu et pourra orienter ailleurs.",
            "Orientation refusée : France Services en est averti.",
            secondary=True,
        ),
    ),
    S.ANNULEE: StatusInfo(
        "Annulée",
        Tone.NEUTRAL,
        "referral.cancelled",
        final=True,
        step=Step(
            "Annuler l'orientation",
            "La personne ne viendra pas (à sa demande, ou par erreur).",
            "Orientation annulée.",
            secondary=True,
        ),
    ),
    S.EXPIREE: StatusInfo("Expirée", Tone.WARNING, "referral.expired", final=True),
    S.CONTACTEE: StatusInfo(
        "Personne contactée",
        Tone.INFO,
        "referral.contacted",
        step=Step(
            "J'ai pris contact avec la personne",
            "Vous avez joint la personne, ou elle est venue.",
            "Premier contact enregistré.",
        ),
    ),
    S.NON_VENUE: StatusInfo(
        "Personne non venue",
        Tone.WARNING,
        "referral.no_show",
        final=True,
        step=Step(
            "La personne n'est pas venue",
            "La personne ne s'est pas présentée : l'orientation est close.",
            "Absence enregistrée : l'orientation est close.",
            secondary=True,
        ),
    ),
    S.TERMINEE: StatusInfo(
        "Accompagnement terminé",
        Tone.SUCCESS,
        "referral.completed",
        final=True,
        step=Step(
            "Terminer l'accompagnement",
            "L'accompagnement est fini : notez son issue si vous le souhaitez.",
            "Accompagnement terminé : merci !",
        ),
    ),
    S.REORIENTEE: StatusInfo(
        "Renvoyée à France Services",
        Tone.NEUTRAL,
        "referral.reoriented",
        final=True,
        step=Step(
            "Renvoyer à France Services",
            "La personne relève d'un autre lieu ou de France Services.",
            "Orientation renvoyée à France Services.",
            secondary=True,
        ),
    ),
}


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

FINAL = frozenset(s for s, info in STATUS_TABLE.items() if info.final)
OPEN = frozenset(ReferralStatus) - FINAL
# Waiting for the médiation place, or accepted but not yet followed up: the deadline applies.
EXPIRABLE = frozenset(s for s, info in STATUS_TABLE.items() if info.expirable)
# Refused: the agent may send the orientation to the next suitable place (app.services.lifecycle).
REORIENTABLE = frozenset(s for s, info in STATUS_TABLE.items() if info.reorientable)


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


def shown_status(status: ReferralStatus, past_due: bool) -> ReferralStatus:
    """A referral past its deadline is expired, whether or not the service has written it yet
    (it does every minute, and `passerelle referrals expire`)."""
    return S.EXPIREE if status in EXPIRABLE and past_due else status


def effective_status(status: ReferralStatus, expires_at: datetime, now: datetime) -> ReferralStatus:
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    return shown_status(status, expires_at <= now)
