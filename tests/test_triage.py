"""The typology rules and the diagnostic, as pure functions."""

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.triage import DIAGNOSTIC, DiagnosticError, Profile, Route, decide, profile_from_answers
from app.triage.geo import distance_km

ALL_ANSWERS = [
    dict(zip([q.id for q in DIAGNOSTIC], combo, strict=True))
    for combo in itertools.product(*[[a.id for a in q.answers] for q in DIAGNOSTIC])
]
answers_strategy = st.fixed_dictionaries(
    {q.id: st.sampled_from([a.id for a in q.answers]) for q in DIAGNOSTIC}
)
LEVEL = {
    Profile.NON_AUTONOME_SANS_ENVIE: 0,
    Profile.NON_AUTONOME_NON_REFRACTAIRE: 0,
    Profile.PARTIELLEMENT_AUTONOME: 1,
    Profile.AUTONOME: 2,
}


def _skill_questions() -> list[str]:
    return [q.id for q in DIAGNOSTIC if q.measures_skill]


@pytest.mark.parametrize(
    ("profile", "urgent", "followed", "route", "do_now", "refer"),
    [
        (Profile.NON_AUTONOME_SANS_ENVIE, u, f, Route.FRANCE_SERVICES, True, False)
        for u in (True, False)
        for f in (True, False)
    ]
    + [
        (p, u, f, Route.MEDIATEUR, u, not f)
        for p in (Profile.NON_AUTONOME_NON_REFRACTAIRE, Profile.PARTIELLEMENT_AUTONOME)
        for u in (True, False)
        for f in (True, False)
    ]
    + [
        (Profile.AUTONOME, u, f, Route.AUCUNE, False, False)
        for u in (True, False)
        for f in (True, False)
    ],
)
def test_every_rule(
    profile: Profile, urgent: bool, followed: bool, route: Route, do_now: bool, refer: bool
) -> None:
    decision = decide(profile, urgent=urgent, already_followed=followed)
    assert (decision.route, decision.do_now_at_france_services, decision.needs_referral) == (
        route,
        do_now,
        refer,
    )
    assert decision.reasons[0].startswith("profil_")
    assert ("deja_suivi_par_un_mediateur" in decision.reasons) == (
        route is Route.MEDIATEUR and followed
    )
    if route is not Route.AUCUNE:
        assert ("demarche_urgente" if urgent else "demarche_non_urgente") in decision.reasons


def test_diagnostic_covers_every_combination() -> None:
    assert 5 <= len(DIAGNOSTIC) <= 8
    profiles = {profile_from_answers(a) for a in ALL_ANSWERS}
    assert profiles == set(Profile)  # every profile is reachable, and nothing else comes out


@given(answers_strategy)
def test_refusing_to_learn_means_done_for_or_autonomous(answers: dict[str, str]) -> None:
    answers["envie_apprendre"] = "non"
    assert profile_from_answers(answers) in (Profile.NON_AUTONOME_SANS_ENVIE, Profile.AUTONOME)


@given(answers_strategy, st.sampled_from(_skill_questions()))
def test_more_skill_never_means_less_autonomy(answers: dict[str, str], question_id: str) -> None:
    question = next(q for q in DIAGNOSTIC if q.id == question_id)
    before = profile_from_answers(answers)
    current = question.answer(answers[question_id])
    assert current is not None
    better = next((a for a in question.answers if a.score == current.score + 1), None)
    if better is None:
        return
    after = profile_from_answers({**answers, question_id: better.id})
    assert LEVEL[after] >= LEVEL[before]


@given(answers_strategy)
def test_top_answers_on_every_skill_is_autonomous(answers: dict[str, str]) -> None:
    for q in DIAGNOSTIC:
        if q.measures_skill:
            answers[q.id] = q.answers[-1].id
    assert profile_from_answers(answers) is Profile.AUTONOME


def test_wrong_answers_name_each_question() -> None:
    with pytest.raises(DiagnosticError) as caught:
        profile_from_answers({"usage_appareil": "parfois", "inconnue": "x"})
    problems = caught.value.problems
    assert "valeurs possibles : jamais, avec_aide, seul" in problems["usage_appareil"]
    assert problems["inconnue"] == "Question inconnue du diagnostic."
    assert problems["envie_apprendre"] == "Réponse manquante."


def test_great_circle_distance() -> None:
    # Paris (Notre-Dame) to Lyon (Bellecour): 391-392 km as the crow flies.
    assert 390 < distance_km(48.8530, 2.3499, 45.7578, 4.8320) < 393
    assert distance_km(45.2667, 1.7667, 45.2667, 1.7667) == 0
