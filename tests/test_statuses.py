"""The status and notification tables of the lifecycle, tested directly: every status has a
full entry, every reachable status and every event has its words and its event, and what is
derived from the tables is what the contract says."""

from app.notifications import notify
from app.notifications.models import WEBHOOK_EVENTS
from app.triage import words
from app.triage.lifecycle import (
    EXPIRABLE,
    FINAL,
    NEW_LINK,
    NOTICES,
    OPEN,
    REMINDER,
    REORIENTABLE,
    STATUS_TABLE,
    TRANSITIONS,
    Actor,
    ReferralStatus,
    Told,
    targets,
)
from app.web import render
from app.web.referrals import DONE

S = ReferralStatus

# The contract's sets ("Referrals", "Expiry, notifications and webhooks"), written out once.
CONTRACT_FINAL = {S.REFUSEE, S.ANNULEE, S.EXPIREE, S.NON_VENUE, S.TERMINEE, S.REORIENTEE}
CONTRACT_OPEN = {S.EN_ATTENTE, S.ACCEPTEE, S.CONTACTEE}
CONTRACT_EXPIRABLE = {S.EN_ATTENTE, S.ACCEPTEE}
CONTRACT_EVENTS = {
    S.EN_ATTENTE: "referral.created",
    S.ACCEPTEE: "referral.accepted",
    S.REFUSEE: "referral.refused",
    S.ANNULEE: "referral.cancelled",
    S.EXPIREE: "referral.expired",
    S.CONTACTEE: "referral.contacted",
    S.NON_VENUE: "referral.no_show",
    S.TERMINEE: "referral.completed",
    S.REORIENTEE: "referral.reoriented",
}
# The receiving place hears of a new referral, its reminder and a fresh link; the sending place
# of a refusal, an expiry or a re-orientation; a cancellation goes to the side that did not act.
CONTRACT_TO_RECEIVER = {"referral.created", "referral.reminder", "referral.link"}
CONTRACT_TO_SENDER = {"referral.refused", "referral.expired", "referral.reoriented"}
PEOPLE = (Actor.AGENT, Actor.MEDIATEUR)


def test_every_status_has_a_full_entry() -> None:
    assert list(STATUS_TABLE) == list(ReferralStatus)  # every one, in the enum's order
    for status, info in STATUS_TABLE.items():
        assert info.label.strip(), status
        assert info.event in NOTICES, status
        assert not (info.final and info.expirable), status
        assert (info.deadline is not None) == info.expirable, status
        assert not info.reorientable or info.final, status
        if info.step is not None:
            assert info.step.action.strip() and info.step.hint.strip(), status
            assert info.step.done.strip(), status


def test_every_reachable_status_has_words_and_an_event() -> None:
    reached = {S.EN_ATTENTE} | {t.target for t in TRANSITIONS}  # a referral starts waiting
    assert reached == set(ReferralStatus)
    for status in reached:
        assert words.STATUSES[status], status
        assert notify.EVENTS[status] in WEBHOOK_EVENTS, status
        assert status in render._BADGES, status


def test_every_step_a_person_takes_has_its_words() -> None:
    by_people = {target for s in S for actor in PEOPLE for target in targets(s, actor)}
    by_service_only = {t.target for t in TRANSITIONS} - by_people
    assert by_service_only == {S.EXPIREE}
    for status in by_people:
        assert STATUS_TABLE[status].step is not None, status
        assert words.ACTIONS[status] and words.ACTION_HINTS[status], status
        assert DONE[status.value], status
    for status in set(S) - by_people:
        assert STATUS_TABLE[status].step is None, status


def test_every_event_has_its_notice() -> None:
    for event, notice in NOTICES.items():
        assert notice.event == event
        assert notice.webhook or notice.email_to is not None, event  # it tells someone
    raised = {info.event for info in STATUS_TABLE.values()}
    assert raised == set(WEBHOOK_EVENTS)  # every webhook event is some status's
    assert set(NOTICES) - raised == {REMINDER, NEW_LINK}


def test_the_derived_sets_are_the_contracts() -> None:
    assert FINAL == CONTRACT_FINAL
    assert OPEN == CONTRACT_OPEN
    assert EXPIRABLE == CONTRACT_EXPIRABLE
    assert {S.REFUSEE} == REORIENTABLE
    assert notify.EVENTS == CONTRACT_EVENTS
    assert tuple(CONTRACT_EVENTS.values()) == WEBHOOK_EVENTS  # the order the API documents
    assert notify.TO_RECEIVER == CONTRACT_TO_RECEIVER
    assert notify.TO_SENDER == CONTRACT_TO_SENDER
    cancelled = [e for e, n in NOTICES.items() if n.email_to is Told.OTHER_SIDE]
    assert cancelled == ["referral.cancelled"]
    assert set(words.DEADLINES) == CONTRACT_EXPIRABLE


def test_the_pages_words_and_badges_are_unchanged() -> None:
    assert render._BADGES == {
        S.EN_ATTENTE: "new",
        S.ACCEPTEE: "info",
        S.CONTACTEE: "info",
        S.TERMINEE: "success",
        S.REFUSEE: "error",
        S.EXPIREE: "warning",
        S.NON_VENUE: "warning",
        S.ANNULEE: "",
        S.REORIENTEE: "",
    }
    assert {S.REFUSEE, S.ANNULEE, S.NON_VENUE, S.REORIENTEE} == render._SECONDARY_STEPS
    assert words.STATUSES[S.REORIENTEE] == "Renvoyée à France Services"
    assert words.ACTIONS[S.CONTACTEE] == "J'ai pris contact avec la personne"
    assert DONE["non_venue"] == "Absence enregistrée : l'orientation est close."
    assert set(DONE) == {s.value for s in words.ACTIONS} | {"efface", "reorientation"}
