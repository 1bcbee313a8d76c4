"""The front-desk orientation: triage, matching, referral and handoff event in one transaction."""

import math
from typing import Any

from sqlmodel import Session, col, select

from app.config import Settings
from app.db import insert_row
from app.models import (
    Contact,
    Orientation,
    Referral,
    ReferralStatus,
)
from app.models.columns import OutputShape, RowShape
from app.models.common import local_day, utcnow
from app.models.orientation import (
    ConsentOut,
    OrientationIn,
    OrientationOut,
    ProcedureOut,
    ReferralBrief,
)
from app.models.referral import REFERRAL_INHERITS
from app.notifications import notify
from app.places.models import PlaceAlternative, PlaceOut
from app.places.service import NO_NEEDS, match_places, place_by_id, place_summary
from app.principal import Principal
from app.problems import AccessDenied, InvalidData
from app.services import idempotency
from app.services.communes import get_commune
from app.services.contact import OrientationAnswer
from app.services.lookup import first_or_404
from app.services.referrals import (
    is_code_collision,
    new_referral,
    record_handoff,
)
from app.services.scope import orientation_scope, scope_filter
from app.triage import (
    DiagnosticError,
    Profile,
    ProfileSource,
    decide,
    profile_from_answers,
)
from app.triage.consent import CURRENT_CONSENT
from app.triage.lifecycle import effective_status
from app.triage.matching import MATCHING_VERSION, NO_SUITABLE_PLACE
from app.triage.rules import REASON_NO_PLACE_IN_RANGE

# The orientation's row as written (_write_orientation): the columns it does not set (erasure,
# purge) take the model's defaults.
NEW_ORIENTATION = RowShape.of(
    Orientation,
    (
        "created_at",
        "day",
        "api_key_id",
        "origin_place_id",
        "profile",
        "profile_source",
        "answers",
        "route",
        "do_now_at_france_services",
        "reasons",
        "rules_version",
        "theme",
        "urgent",
        "already_followed",
        "commune",
        "consent",
        "consent_at",
        "consent_text_version",
        "alternatives",
        "needs",
        "matching_version",
        "nearest_suitable",
    ),
    "_write_orientation",
)
NEW_CONTACT = RowShape.of(
    Contact, ("orientation_id", "first_name", "phone", "email", "availability"), "contact"
)
# The answer's fields named as the orientation's (or its referral's) columns are copied from
# the row; these are computed.
ORIENTATION_OUT = OutputShape(
    OrientationOut,
    Orientation,
    ("procedure", "consent", "referral", "alternatives", "nearest_suitable"),
)
REFERRAL_BRIEF = OutputShape(ReferralBrief, Referral, ("status", "place"))
PROCEDURE_OF_ORIENTATION = OutputShape(ProcedureOut, Orientation, ())


def _profile(payload: OrientationIn) -> tuple[Profile, ProfileSource]:
    assessment = payload.assessment
    if assessment.profile is not None:
        return assessment.profile, ProfileSource.DECLARED
    assert assessment.answers is not None
    try:
        return profile_from_answers(assessment.answers), ProfileSource.DIAGNOSTIC
    except DiagnosticError as exc:
        raise InvalidData(
            "Réponses au diagnostic incomplètes ou invalides : voir GET /v1/diagnostic.",
            errors=[
                {"loc": ["body", "assessment", "answers", q], "msg": msg}
                for q, msg in exc.problems.items()
            ],
        ) from exc


def create_orientation(
    session: Session,
    principal: Principal,
    payload: OrientationIn,
    settings: Settings,
    idempotency_key: str | None,
) -> dict[str, Any]:
    """Returns the orientation document; everything it writes commits together or not at all."""
    return idempotency.commit_once(
        session,
        principal.key_id,
        idempotency_key,
        "/v1/orientations",
        payload,
        lambda: _write_orientation(session, principal, payload, settings),
        is_redraw=is_code_collision,
        personal=OrientationAnswer(),
    )


def _write_orientation(
    session: Session, principal: Principal, payload: OrientationIn, settings: Settings
) -> dict[str, Any]:
    profile, source = _profile(payload)
    commune = get_commune(session, payload.person.commune, ["body", "person", "commune"])
    if principal.place_id is None:
        raise AccessDenied(
            "Cette clé d'agent n'est rattachée à aucun lieu France Services.",
        )
    decision = decide(
        profile, urgent=payload.procedure.urgent, already_followed=payload.already_followed
    )
    reasons = list(decision.reasons)

    chosen, alternatives = None, []
    needs = payload.needs.as_needs() if payload.needs else NO_NEEDS
    nearest_suitable: dict[str, Any] | None = None
    if decision.needs_referral:
        theme, max_km = payload.procedure.theme, settings.max_referral_distance_km
        found = match_places(session, commune, theme, max_km, settings.alternatives + 1, needs)
        reasons += [r for r in found.rules.reasons if r not in reasons]
        if found.chosen:
            chosen, alternatives = found.chosen[0], found.chosen[1:]
        elif NO_SUITABLE_PLACE not in found.rules.reasons:
            reasons.append(REASON_NO_PLACE_IN_RANGE)
        if not found.chosen and needs.any:
            # Beyond the distance: the nearest place that meets the needs, for the agent.
            farther = match_places(session, commune, theme, math.inf, 1, needs).chosen
            if farther:
                nearest_suitable = {
                    "id": farther[0].place.id,
                    "name": farther[0].place.name,
                    "distance_km": farther[0].distance_km,
                }

    now = utcnow()
    orientation = NEW_ORIENTATION.row(
        created_at=now,
        day=local_day(now),
        api_key_id=principal.key_id,
        origin_place_id=principal.place_id,
        profile=profile.value,
        profile_source=source.value,
        answers=payload.assessment.answers,
        route=decision.route.value,
        do_now_at_france_services=decision.do_now_at_france_services,
        reasons=reasons,
        rules_version=decision.rules_version,
        theme=payload.procedure.theme,
        urgent=payload.procedure.urgent,
        already_followed=payload.already_followed,
        commune=commune.code,
        consent=payload.person.consent,
        # Consent on record: when, and the wording shown (by default, the current one).
        consent_at=now if payload.person.consent else None,
        consent_text_version=(
            (payload.person.consent_text_version or CURRENT_CONSENT.version)
            if payload.person.consent
            else None
        ),
        alternatives=[
            {"id": a.place.id, "name": a.place.name, "distance_km": a.distance_km}
            for a in alternatives
        ],
        needs=payload.needs.stored() if payload.needs else None,
        matching_version=MATCHING_VERSION if decision.needs_referral else None,
        nearest_suitable=nearest_suitable,
    )
    insert_row(session, Orientation, orientation)
    person = payload.person
    if person.consent and person.has_contact:
        insert_row(
            session,
            Contact,
            NEW_CONTACT.row(
                orientation_id=orientation["id"],
                first_name=person.first_name,
                phone=person.phone,
                email=person.email,
                availability=person.availability,
            ),
        )
    referral: dict[str, Any] | None = None
    if chosen is not None:
        referral = new_referral(
            orientation_id=orientation["id"],
            place_id=chosen.place.id,
            distance_km=chosen.distance_km,
            now=now,
            ttl_days=settings.referral_ttl_days,
            **{name: orientation[name] for name in REFERRAL_INHERITS},
        )
        insert_row(session, Referral, referral)
        notify.queue(session, referral, ReferralStatus.EN_ATTENTE, now)
    record_handoff(
        session,
        orientation_id=orientation["id"],
        referral_id=referral["id"] if referral else None,
        at=now,
        kind="orientation",
        actor=principal,
        route=decision.route.value,
        to_status=referral["status"] if referral else None,
    )
    place = chosen.place if chosen else None
    return _document(orientation, referral, place).model_dump(mode="json")


def _document(
    orientation: dict[str, Any], referral: dict[str, Any] | None, place: PlaceOut | None
) -> OrientationOut:
    """The answer, from rows this service wrote or read: built without validating again."""
    brief = None
    if referral is not None:
        assert place is not None
        brief = REFERRAL_BRIEF.of_row(
            referral,
            status=effective_status(
                ReferralStatus(referral["status"]), referral["expires_at"], utcnow()
            ),
            place=place_summary(place, referral["distance_km"]),
        )
    return ORIENTATION_OUT.of_row(
        orientation,
        procedure=PROCEDURE_OF_ORIENTATION.of_row(orientation),
        consent=ConsentOut.model_construct(
            given=orientation["consent"],
            at=orientation["consent_at"],
            text_version=orientation["consent_text_version"],
        ),
        referral=brief,
        alternatives=[PlaceAlternative.model_construct(**a) for a in orientation["alternatives"]],
        nearest_suitable=(
            PlaceAlternative.model_construct(**orientation["nearest_suitable"])
            if orientation["nearest_suitable"]
            else None
        ),
    )


def get_orientation(session: Session, principal: Principal, orientation_id: str) -> OrientationOut:
    orientation = first_or_404(
        session,
        select(Orientation).where(Orientation.id == orientation_id, orientation_scope(principal)),
        orientation_id,
        "Aucune orientation avec cet identifiant.",
    )
    # The current referral: the last of the chain (a refused one re-oriented makes another).
    current = session.exec(
        select(Referral)
        .where(Referral.orientation_id == orientation.id, scope_filter(principal))
        .order_by(col(Referral.created_at).desc(), col(Referral.id).desc())
    ).first()
    place = None
    if current is not None:
        place = place_by_id(session, current.place_id)
    return _document(orientation.model_dump(), current.model_dump() if current else None, place)
