"""Which médiation place a referral goes to, as versioned rules with reason codes, like the
typology: hard constraints first (not paused, not full, the needs the place must meet), then
the nearest; when the person's availability is known, a place open at one of those times
ranks first. Plain data in, plain data out: the service gives the candidates within the
distance (those that accept referrals and offer the theme), nearest first."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from app.triage.needs import Fees, Modality, Needs
from app.triage.rules import REASON_PLACE_PAUSED

MATCHING_VERSION = "matching-2026-12"

# Why a nearer place was passed over.
PLACE_PAUSED = REASON_PLACE_PAUSED  # "lieu_en_pause"
PLACE_FULL = "lieu_complet"
CLOSED_AT_AVAILABILITY = "ferme_aux_disponibilites"
HOURS_UNKNOWN = "horaires_inconnus"
NEED_NOT_MET = "besoin_non_couvert"  # then ":<need>": surdite, gratuit, individuel…
FREE = "gratuit"
# When no place within the distance meets the needs (the answer names the nearest that would).
NO_SUITABLE_PLACE = "aucun_lieu_adapte_a_proximite"
# What the chosen place meets.
MEETS = "repond_au_besoin"  # then ":<need>"
OPEN_AT_AVAILABILITY = "ouvert_aux_disponibilites"


@dataclass(frozen=True, slots=True)
class Candidate:
    """A place as matching sees it. `open_slots`: the half-days it is open (app.triage.opening),
    None when its hours are unknown; `full`: it has as many open referrals as it takes."""

    id: str
    distance_km: float
    paused_until: date | None = None
    full: bool = False
    specific: frozenset[str] = frozenset()
    public: frozenset[str] = frozenset()
    fees: Fees | None = None
    modalities: frozenset[Modality] = frozenset()
    open_slots: int | None = None


@dataclass(frozen=True, slots=True)
class Passed:
    candidate: Candidate
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Match:
    chosen: list[Candidate]  # ranked: the referral goes to the first
    passed_over: list[Passed]  # every place nearer than the first chosen, and why
    meets: tuple[str, ...] = ()  # what the first chosen meets of the needs
    reasons: tuple[str, ...] = field(default=())  # the orientation's: distinct, in order


def paused(paused_until: date | None, today: date) -> bool:
    """A place paused until a day receives no new referral up to that day included."""
    return paused_until is not None and paused_until >= today


def unmet(place: Candidate, needs: Needs, today: date) -> tuple[str, ...]:
    """The hard constraints the place fails (none: it may receive the referral). What a place
    does not say (no modality, no fees given) is not held against it; a specific need must be
    one the place says it takes care of."""
    failed: list[str] = []
    if paused(place.paused_until, today):
        failed.append(PLACE_PAUSED)
    if place.full:
        failed.append(PLACE_FULL)
    failed += [f"{NEED_NOT_MET}:{need}" for need in sorted(needs.specific - place.specific)]
    if needs.free_only and place.fees is Fees.PAYANT:
        failed.append(f"{NEED_NOT_MET}:{FREE}")
    if needs.modality and place.modalities and needs.modality not in place.modalities:
        failed.append(f"{NEED_NOT_MET}:{needs.modality.value}")
    return tuple(failed)


def open_when_asked(place: Candidate, needs: Needs) -> bool | None:
    """Whether the place is open at one of the person's half-days (None: its hours unknown)."""
    if place.open_slots is None:
        return None
    return bool(place.open_slots & needs.availability)


def settled(result: Match, needs: Needs, limit: int) -> bool:
    """Whether the match of the nearest candidates is the match of them all: once `limit`
    places are chosen that no farther one ranks before (open at the person's times, when
    those are known), farther candidates change nothing, not even the passed over."""
    if len(result.chosen) < limit:
        return False
    return not needs.availability or all(open_when_asked(c, needs) for c in result.chosen)


def match(candidates: Sequence[Candidate], needs: Needs, today: date, limit: int) -> Match:
    """The places a referral may go to, ranked, and why every nearer one was passed over.
    `candidates` come nearest first."""
    allowed = [c for c in candidates if not unmet(c, needs, today)]
    if needs.availability:
        first_choice = [c for c in allowed if open_when_asked(c, needs)]
        ranked = first_choice + [c for c in allowed if not open_when_asked(c, needs)]
    else:
        ranked = allowed
    chosen = ranked[:limit]
    passed: list[Passed] = []
    if chosen:
        best = chosen[0]
        for place in candidates:
            if place is best:
                break
            why = unmet(place, needs, today)
            if not why:  # allowed, but ranked after the first: closed, or hours unknown
                why = (HOURS_UNKNOWN if place.open_slots is None else CLOSED_AT_AVAILABILITY,)
            passed.append(Passed(place, why))
    else:
        passed = [Passed(c, unmet(c, needs, today)) for c in candidates]
    meets: list[str] = [f"{MEETS}:{need}" for need in sorted(needs.specific)] if chosen else []
    if chosen:
        best = chosen[0]
        if needs.free_only and best.fees in (Fees.GRATUIT, Fees.GRATUIT_SOUS_CONDITION):
            meets.append(f"{MEETS}:{FREE}")
        if needs.modality and needs.modality in best.modalities:
            meets.append(f"{MEETS}:{needs.modality.value}")
        meets += [f"{MEETS}:{p}" for p in sorted(needs.public & best.public)]
        if needs.availability and open_when_asked(best, needs):
            meets.append(OPEN_AT_AVAILABILITY)
    said = [r for p in passed for r in p.reasons]
    if not chosen and needs.any and candidates:
        said.append(NO_SUITABLE_PLACE)
    return Match(chosen, passed, tuple(meets), tuple(dict.fromkeys([*said, *meets])))
