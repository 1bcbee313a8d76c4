"""The referral lifecycle, tested directly: every status × every target × every role."""

import itertools

from hypothesis import given
from hypothesis import strategies as st

from app.triage.lifecycle import (
    FINAL,
    REFUSAL_REASONS,
    Actor,
    ReferralStatus,
    Refusal,
    check,
    targets,
)

S, A = ReferralStatus, Actor

# The contract's table, written out again by hand: (from, to) -> who may.
CONTRACT = {
    (S.EN_ATTENTE, S.ACCEPTEE): {A.MEDIATEUR},
    (S.EN_ATTENTE, S.REFUSEE): {A.MEDIATEUR},
    (S.EN_ATTENTE, S.ANNULEE): {A.AGENT, A.MEDIATEUR},
    (S.ACCEPTEE, S.ANNULEE): {A.AGENT, A.MEDIATEUR},
    (S.EN_ATTENTE, S.EXPIREE): {A.SERVICE},
    (S.ACCEPTEE, S.EXPIREE): {A.SERVICE},
    (S.ACCEPTEE, S.CONTACTEE): {A.MEDIATEUR},
    (S.ACCEPTEE, S.NON_VENUE): {A.MEDIATEUR},
    (S.CONTACTEE, S.NON_VENUE): {A.MEDIATEUR},
    (S.CONTACTEE, S.TERMINEE): {A.MEDIATEUR},
    (S.ACCEPTEE, S.REORIENTEE): {A.MEDIATEUR},
    (S.CONTACTEE, S.REORIENTEE): {A.MEDIATEUR},
}


def test_every_status_target_and_role() -> None:
    for current, target, actor in itertools.product(S, S, A):
        reason = "pas_de_capacite" if target is S.REFUSEE else None
        refusal = check(current, target, actor, reason)
        who = CONTRACT.get((current, target))
        if who is None:
            assert refusal is Refusal.NOT_FROM_STATUS, (current, target, actor)
        elif actor not in who:
            assert refusal is Refusal.NOT_BY_ROLE, (current, target, actor)
        else:
            assert refusal is None, (current, target, actor)


def test_final_statuses_are_final() -> None:
    assert {S.REFUSEE, S.ANNULEE, S.EXPIREE, S.NON_VENUE, S.TERMINEE, S.REORIENTEE} == FINAL
    for status, actor in itertools.product(FINAL, A):
        assert targets(status, actor) == []


@given(reason=st.none() | st.text(max_size=30) | st.sampled_from(list(REFUSAL_REASONS)))
def test_a_refusal_needs_one_of_the_reasons(reason: str | None) -> None:
    refusal = check(S.EN_ATTENTE, S.REFUSEE, A.MEDIATEUR, reason)
    assert (refusal is None) == (reason in REFUSAL_REASONS)


@given(
    current=st.sampled_from(list(S)),
    target=st.sampled_from(list(S)),
    actor=st.sampled_from(list(A)),
    reason=st.none() | st.text(max_size=20),
)
def test_only_refusal_checks_the_reason(
    current: ReferralStatus, target: ReferralStatus, actor: Actor, reason: str | None
) -> None:
    """Outside a refusal the reason never decides; an allowed move is listed by `targets`."""
    refusal = check(current, target, actor, reason)
    if target is not S.REFUSEE:
        assert refusal is not Refusal.REASON
        assert (refusal is None) == (target in targets(current, actor))
