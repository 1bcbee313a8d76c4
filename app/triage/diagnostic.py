"""The short front-desk diagnostic that computes an autonomy profile from five answers."""

from collections.abc import Mapping
from dataclasses import dataclass

from app.triage.vocabulary import Profile


@dataclass(frozen=True)
class Answer:
    id: str
    label: str
    score: int  # 0 = cannot, 1 = with help, 2 = alone; for the wish question, 0 = no.


@dataclass(frozen=True)
class Question:
    id: str
    label: str
    answers: tuple[Answer, ...]
    measures_skill: bool

    def answer(self, answer_id: str) -> Answer | None:
        return next((a for a in self.answers if a.id == answer_id), None)


def _three(
    no: tuple[str, str], helped: tuple[str, str], alone: tuple[str, str]
) -> tuple[Answer, ...]:
    return (Answer(*no, 0), Answer(*helped, 1), Answer(*alone, 2))


DIAGNOSTIC_VERSION = "diagnostic-2026-11"

DIAGNOSTIC: tuple[Question, ...] = (
    Question(
        "usage_appareil",
        "Utilisez-vous un smartphone, une tablette ou un ordinateur ?",
        _three(("jamais", "Jamais"), ("avec_aide", "Avec de l'aide"), ("seul", "Seul(e)")),
        measures_skill=True,
    ),
    Question(
        "courriel",
        "Savez-vous lire et envoyer un courriel ?",
        _three(("non", "Non"), ("avec_aide", "Avec de l'aide"), ("oui", "Oui, seul(e)")),
        measures_skill=True,
    ),
    Question(
        "identifiants",
        "Savez-vous retrouver vos identifiants et mots de passe (FranceConnect, ameli, CAF…) ?",
        _three(("non", "Non"), ("parfois", "Parfois"), ("oui", "Oui")),
        measures_skill=True,
    ),
    Question(
        "demarches_en_ligne",
        "Faites-vous vos démarches administratives en ligne ?",
        _three(("jamais", "Jamais"), ("avec_aide", "Avec de l'aide"), ("seul", "Seul(e)")),
        measures_skill=True,
    ),
    Question(
        "envie_apprendre",
        "Souhaitez-vous apprendre à faire ces démarches vous-même ?",
        _three(("non", "Non"), ("peut_etre", "Peut-être"), ("oui", "Oui")),
        measures_skill=False,
    ),
)

SKILL_MAX = 2 * sum(1 for q in DIAGNOSTIC if q.measures_skill)
# At or above this skill score (out of SKILL_MAX), a person is partly autonomous.
PARTIAL_SKILL_THRESHOLD = 4


class DiagnosticError(ValueError):
    """Answers that do not fit the published diagnostic; `problems` maps question id to why."""

    def __init__(self, problems: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in problems.items()))
        self.problems = problems


def _validated(answers: Mapping[str, str]) -> dict[str, Answer]:
    problems: dict[str, str] = {}
    chosen: dict[str, Answer] = {}
    known = {q.id for q in DIAGNOSTIC}
    for key in answers:
        if key not in known:
            problems[key] = "Question inconnue du diagnostic."
    for q in DIAGNOSTIC:
        if q.id not in answers:
            problems[q.id] = "Réponse manquante."
            continue
        answer = q.answer(answers[q.id])
        if answer is None:
            allowed = ", ".join(a.id for a in q.answers)
            problems[q.id] = f"Réponse non prévue ; valeurs possibles : {allowed}."
        else:
            chosen[q.id] = answer
    if problems:
        raise DiagnosticError(problems)
    return chosen


def profile_from_answers(answers: Mapping[str, str]) -> Profile:
    """Computes the profile. Fully autonomous people need no orientation whatever their wish;
    anyone else who does not want to learn is served by France Services."""
    chosen = _validated(answers)
    skill = sum(a.score for q_id, a in chosen.items() if _question(q_id).measures_skill)
    wish = chosen["envie_apprendre"].id
    if skill == SKILL_MAX:
        return Profile.AUTONOME
    if wish == "non":
        return Profile.NON_AUTONOME_SANS_ENVIE
    if skill >= PARTIAL_SKILL_THRESHOLD and wish == "oui":
        return Profile.PARTIELLEMENT_AUTONOME
    return Profile.NON_AUTONOME_NON_REFRACTAIRE


def _question(question_id: str) -> Question:
    return next(q for q in DIAGNOSTIC if q.id == question_id)
