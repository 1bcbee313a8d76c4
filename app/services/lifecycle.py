"""Use cases of the referral lifecycle: a transition with its handoff event, and the log."""

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, or_, select, update

from app.config import Settings
from app.db import insert_row, writing
from app.models import HandoffEvent, Orientation, PlaceKind, Principal, Referral, Role
from app.models.common import utcnow
from app.models.orientation import NeedsIn
from app.models.referral import (
    REFERRAL_INHERITS,
    HandoffEventOut,
    PlaceRef,
    ReorientIn,
    TransitionIn,
)
from app.notifications import notify
from app.places.service import NO_NEEDS, place_by_id, place_index, suitable_places
from app.problems import (
    AccessDenied,
    AlreadyReoriented,
    InvalidData,
    NoPlaceNearby,
    Problem,
    TransitionRefused,
    VersionMismatch,
    invalid,
)
from app.services import idempotency
from app.services.communes import get_commune
from app.services.contact import ReferralAnswer, log_reads, reads_of
from app.services.referrals import (
    etag,
    get_referral,
    is_code_collision,
    new_referral,
    record_handoff,
    referral_out,
)
from app.services.scope import by_past_due_index, past_due
from app.triage.geo import distance_km
from app.triage.lifecycle import (
    REFUSAL_REASONS,
    REORIENTABLE,
    Actor,
    ReferralStatus,
    Refusal,
    check,
    effective_status,
    targets,
)

# The lifecycle's actor each role is (the service itself: Actor.SERVICE), for the API and
# the pages' buttons alike.
ACTORS = {Role.AGENT: Actor.AGENT, Role.MEDIATEUR: Actor.MEDIATEUR}


def _refused(
    refusal: Refusal, current: ReferralStatus, change: TransitionIn, actor: Actor
) -> Problem:
    if refusal is Refusal.NOT_FROM_STATUS:
        possible = ", ".join(t.value for t in targets(current, actor)) or "aucun (statut final)"
        return TransitionRefused(
            f"Impossible de passer de « {current.value} » à « {change.status.value} » ; "
            f"possible depuis ce statut pour votre rôle : {possible}.",
            current_status=current.value,
        )
    if refusal is Refusal.NOT_BY_ROLE:
        return AccessDenied(
            f"Votre rôle « {actor.value} » ne peut pas passer une orientation "
            f"à « {change.status.value} ».",
        )
    return InvalidData(
        "Motif de refus obligatoire : " + ", ".join(REFUSAL_REASONS) + ".",
        errors=[
            {
                "loc": ["body", "reason"],
                "msg": "Valeur non autorisée ; valeurs possibles : "
                + ", ".join(REFUSAL_REASONS)
                + ".",
            }
        ],
    )


def _stale(referral_id: str, if_match: str | None, current: ReferralStatus) -> Problem:
    if if_match is not None:
        return VersionMismatch(
            "L'orientation a changé depuis votre lecture (ETag) : relisez-la avant d'agir.",
            current_status=current.value,
        )
    return TransitionRefused(
        f"L'orientation {referral_id} vient d'être modifiée par ailleurs "
        f"(statut actuel : « {current.value} ») : relisez-la avant d'agir.",
        current_status=current.value,
    )


MOVE = "POST /v1/referrals/{id}/events"
REORIENT = "POST /v1/referrals/{id}/reorient"


def _milestones(
    referral: Referral, target: ReferralStatus, now: datetime, reason: str | None
) -> dict[str, Any]:
    """What statistics keep of a transition on the referral itself (app.services.stats)."""
    if target is ReferralStatus.ACCEPTEE:
        return {"accepted_at": now}
    if target is ReferralStatus.CONTACTEE:
        # Timestamps come back aware from either database (sqlmodel's UTCDateTime).
        hours = (now - referral.created_at).total_seconds() / 3600
        return {"first_contact_hours": round(hours, 2)}
    if target is ReferralStatus.REFUSEE:
        return {"refusal_reason": reason}
    return {}


def _apply(
    session: Session,
    referral: Referral,
    current: ReferralStatus,
    target: ReferralStatus,
    actor: Principal | None,
    now: datetime,
    reason: str | None = None,
    note: str | None = None,
    **values: Any,
) -> bool:
    """The write of a transition, the one place it is done: one conditional update (of
    concurrent transitions from the same version, one wins) and its handoff event. False if
    another transition won. On success `referral` holds the new values, as stored."""
    values = {
        "status": target.value,
        "version": referral.version + 1,
        "updated_at": now,
        **_milestones(referral, target, now, reason),
        **values,
    }
    moved = session.execute(
        update(Referral)
        .where(col(Referral.id) == referral.id, col(Referral.version) == referral.version)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        return False
    for name, value in values.items():  # what was written: no need to read it back
        set_committed_value(referral, name, value)
    record_handoff(
        session,
        orientation_id=referral.orientation_id,
        referral_id=referral.id,
        at=now,
        kind="transition",
        actor=actor,
        from_status=current.value,
        to_status=target.value,
        reason=reason,
        note=note,
    )
    notify.queue(
        session, referral, target, now, reason, cancelled_by=actor.role.value if actor else None
    )
    return True


def move_referral(
    session: Session,
    principal: Principal,
    referral_id: str,
    change: TransitionIn,
    if_match: str | None,
    idempotency_key: str | None,
    ttl_days: int,
    answered: bool = True,
) -> dict[str, Any]:
    """Moves the referral and appends its handoff event in one transaction; returns the
    referral as answered (its `version` gives the new ETag). `answered` False: the caller
    does not send that answer on (a web page redirects to a page that logs its own read), so
    it is no read of the contact data."""

    def write() -> dict[str, Any]:
        referral = get_referral(session, principal, referral_id)
        now = utcnow()
        current = effective_status(ReferralStatus(referral.status), referral.expires_at, now)
        if if_match is not None and if_match.strip() not in (etag(referral), "*"):
            raise _stale(referral_id, if_match, current)
        actor = ACTORS[principal.role]
        refusal = check(current, change.status, actor, change.reason)
        if refusal is not None:
            raise _refused(refusal, current, change, actor)
        renewed = {}
        if change.status is ReferralStatus.ACCEPTEE:
            # Accepted: the place has the same time again to make the first contact.
            renewed["expires_at"] = now + timedelta(days=ttl_days)
        if not _apply(
            session,
            referral,
            current,
            change.status,
            principal,
            now,
            change.reason,
            change.note,
            **renewed,
        ):
            now_status = session.exec(
                select(Referral.status).where(Referral.id == referral.id)
            ).one()
            raise _stale(referral_id, if_match, ReferralStatus(now_status))
        answer = referral_out(session, referral).model_dump(mode="json")
        if answered:
            log_reads(session, principal, reads_of([answer]), MOVE)
        return answer

    return idempotency.commit_once(
        session,
        principal.key_id,
        idempotency_key,
        f"/v1/referrals/{referral_id}/events",
        change,
        write,
        status=200,
        personal=ReferralAnswer(session, principal, MOVE),
    )


def referral_events(
    session: Session, principal: Principal, referral_id: str
) -> list[HandoffEventOut]:
    """The handoff log of a referral the caller may see, oldest first."""
    referral = get_referral(session, principal, referral_id)
    events = session.exec(
        select(HandoffEvent)
        .where(
            or_(
                col(HandoffEvent.referral_id) == referral.id,
                # The orientation's own event, when this referral is not the one it made.
                (col(HandoffEvent.orientation_id) == referral.orientation_id)
                & (col(HandoffEvent.kind) == "orientation"),
            )
        )
        .order_by(col(HandoffEvent.at), col(HandoffEvent.id))
    ).all()
    return [
        HandoffEventOut(
            at=e.at,
            kind=e.kind,
            actor_role=e.actor_role,
            actor_place=(
                PlaceRef(id=e.actor_place_id, name=place_by_id(session, e.actor_place_id).name)
                if e.actor_place_id
                else None
            ),
            via=e.actor_via,
            from_status=e.from_status,
            to_status=e.to_status,
            reason=e.reason,
            note=e.note,
        )
        for e in events
    ]


def expire_due(session: Session, now: datetime | None = None, batch: int = 500) -> int:
    """Moves every referral past its deadline, waiting or accepted, to `expiree`, each with its
    handoff event by the service; returns how many. Run by the service every minute and by
    `passerelle referrals expire`. Batches, so that no transaction holds the writer long."""
    now = now or utcnow()
    total = 0
    while True:
        with writing(session):
            query = by_past_due_index(select(Referral).where(past_due(now)).limit(batch))
            due = session.exec(query).all()
            for referral in due:
                # Moved meanwhile by its place: theirs is the last word.
                if not _apply(
                    session,
                    referral,
                    ReferralStatus(referral.status),
                    ReferralStatus.EXPIREE,
                    None,
                    now,
                ):
                    continue
                total += 1
            session.commit()
        if len(due) < batch:
            return total


def reorient(
    session: Session,
    principal: Principal,
    referral_id: str,
    place_id: str | None,
    settings: Settings,
    idempotency_key: str | None,
    answered: bool = True,
) -> dict[str, Any]:
    """A refused referral, sent again by its agent: a new referral linked to it, to the place
    named or else the nearest suitable one, never a place that already refused this person's
    orientation. Returns the new referral as answered (`answered`: as move_referral)."""

    def write() -> dict[str, Any]:
        referral = get_referral(session, principal, referral_id)
        now = utcnow()
        current = effective_status(ReferralStatus(referral.status), referral.expires_at, now)
        if current not in REORIENTABLE:
            raise TransitionRefused(
                f"Seule une orientation refusée se réoriente ; celle-ci est « {current.value} ».",
                current_status=current.value,
            )
        chain = session.exec(
            select(Referral).where(Referral.orientation_id == referral.orientation_id)
        ).all()
        if any(r.previous_referral_id == referral.id for r in chain):
            raise AlreadyReoriented(
                "Cette orientation a déjà été réorientée : suivez la nouvelle.",
                current_status=current.value,
            )
        refused = {r.place_id for r in chain if r.status == ReferralStatus.REFUSEE.value}
        commune = get_commune(session, referral.commune, ["body", "commune"])
        index = place_index(session)
        if place_id is not None:
            chosen = index.by_id.get(place_id)
            if chosen is None or chosen.kind != PlaceKind.MEDIATION.value:
                raise invalid(["body", "place_id"], "Lieu de médiation inconnu.")
            if not chosen.accepts_referrals or chosen.id in refused:
                raise invalid(
                    ["body", "place_id"],
                    "Ce lieu n'accepte pas d'orientation ou a déjà refusé celle-ci.",
                )
            distance = round(
                distance_km(commune.latitude, commune.longitude, chosen.latitude, chosen.longitude),
                1,
            )
            # The same limit as every referral's: a place the person cannot reach is none.
            limit = settings.max_referral_distance_km
            if distance > limit:
                raise invalid(
                    ["body", "place_id"],
                    f"Ce lieu est à {str(distance).replace('.', ',')} km de la commune de la "
                    f"personne, au-delà des {limit:g} km qu'une orientation peut parcourir "
                    "(PASSERELLE_MAX_REFERRAL_DISTANCE_KM, fixé par l'administrateur) : "
                    "choisissez un lieu plus proche.",
                )
        else:
            # The person's needs, as the first referral was matched on them.
            stated = session.get_one(Orientation, referral.orientation_id).needs
            candidates = suitable_places(
                session,
                commune,
                referral.theme,
                settings.max_referral_distance_km,
                len(refused) + 1,
                NeedsIn.model_validate(stated).as_needs() if stated else NO_NEEDS,
            )
            found = next((c for c in candidates if c.place.id not in refused), None)
            if found is None:
                raise NoPlaceNearby(
                    "Aucun autre lieu adapté à moins de "
                    f"{settings.max_referral_distance_km:g} km : choisissez un lieu (place_id).",
                    current_status=current.value,
                )
            chosen, distance = found.place, found.distance_km
        new = new_referral(
            orientation_id=referral.orientation_id,
            place_id=chosen.id,
            distance_km=distance,
            now=now,
            ttl_days=settings.referral_ttl_days,
            previous_referral_id=referral.id,
            **{name: getattr(referral, name) for name in REFERRAL_INHERITS},
        )
        insert_row(session, Referral, new)
        notify.queue(session, new, ReferralStatus.EN_ATTENTE, now)
        record_handoff(
            session,
            orientation_id=referral.orientation_id,
            referral_id=new["id"],
            at=now,
            kind="reorientation",
            actor=principal,
            to_status=new["status"],
        )
        answer = referral_out(session, Referral(**new)).model_dump(mode="json")
        if answered:
            log_reads(session, principal, reads_of([answer]), REORIENT)
        return answer

    return idempotency.commit_once(
        session,
        principal.key_id,
        idempotency_key,
        f"/v1/referrals/{referral_id}/reorient",
        ReorientIn(place_id=place_id),
        write,
        is_redraw=is_code_collision,
        personal=ReferralAnswer(session, principal, REORIENT),
    )
