"""Use cases of the referral lifecycle: a transition with its handoff event, and the log."""

from typing import Any

from sqlmodel import Session, col, or_, select, update

from app.db import insert_row
from app.errors import Problem
from app.models import HandoffEvent, Place, Principal, Referral, Role
from app.models.common import utcnow
from app.models.referral import HandoffEventOut, PlaceRef, TransitionIn
from app.services import idempotency
from app.services.referrals import etag, get_referral, referral_out
from app.triage.lifecycle import (
    REFUSAL_REASONS,
    Actor,
    ReferralStatus,
    Refusal,
    check,
    targets,
)

_ACTORS = {Role.AGENT: Actor.AGENT, Role.MEDIATEUR: Actor.MEDIATEUR}


def _refused(refusal: Refusal, referral: Referral, change: TransitionIn, actor: Actor) -> Problem:
    current = ReferralStatus(referral.status)
    if refusal is Refusal.NOT_FROM_STATUS:
        possible = ", ".join(t.value for t in targets(current, actor)) or "aucun (statut final)"
        return Problem(
            409,
            f"Impossible de passer de « {current.value} » à « {change.status.value} » ; "
            f"possible depuis ce statut pour votre rôle : {possible}.",
            slug="transition-refusee",
            current_status=current.value,
        )
    if refusal is Refusal.NOT_BY_ROLE:
        return Problem(
            403,
            f"Votre rôle « {actor.value} » ne peut pas passer une orientation "
            f"à « {change.status.value} ».",
            slug="acces-refuse",
        )
    return Problem(
        422,
        "Motif de refus obligatoire : " + ", ".join(REFUSAL_REASONS) + ".",
        slug="donnees-invalides",
        errors=[{"loc": ["body", "reason"], "msg": "Valeur non autorisée ; valeurs possibles : "
                 + ", ".join(REFUSAL_REASONS) + "."}],
    )


def _stale(referral_id: str, if_match: str | None, current: ReferralStatus) -> Problem:
    if if_match is not None:
        return Problem(
            412,
            "L'orientation a changé depuis votre lecture (ETag) : relisez-la avant d'agir.",
            slug="version-perimee",
            current_status=current.value,
        )
    return Problem(
        409,
        f"L'orientation {referral_id} vient d'être modifiée par ailleurs "
        f"(statut actuel : « {current.value} ») : relisez-la avant d'agir.",
        slug="transition-refusee",
        current_status=current.value,
    )


def move_referral(
    session: Session,
    principal: Principal,
    referral_id: str,
    change: TransitionIn,
    if_match: str | None,
    idempotency_key: str | None,
) -> dict[str, Any]:
    """Moves the referral and appends its handoff event in one transaction; returns the
    referral as answered (its `version` gives the new ETag)."""

    def write() -> dict[str, Any]:
        referral = get_referral(session, principal, referral_id)
        current = ReferralStatus(referral.status)
        if if_match is not None and if_match.strip() not in (etag(referral), "*"):
            raise _stale(referral_id, if_match, current)
        actor = _ACTORS[principal.role]
        refusal = check(current, change.status, actor, change.reason)
        if refusal is not None:
            raise _refused(refusal, referral, change, actor)
        now = utcnow()
        # One conditional update: of concurrent transitions from the same version, one wins.
        moved = session.execute(
            update(Referral)
            .where(col(Referral.id) == referral.id, col(Referral.version) == referral.version)
            .values(status=change.status.value, version=referral.version + 1, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            now_status = session.exec(
                select(Referral.status).where(Referral.id == referral.id)
            ).one()
            raise _stale(referral_id, if_match, ReferralStatus(now_status))
        insert_row(
            session,
            HandoffEvent,
            {
                "orientation_id": referral.orientation_id,
                "referral_id": referral.id,
                "at": now,
                "kind": "transition",
                "route": None,
                "actor_key_id": principal.key_id,
                "actor_role": principal.role.value,
                "actor_place_id": principal.place_id,
                "from_status": current.value,
                "to_status": change.status.value,
                "reason": change.reason,
                "note": change.note,
            },
        )
        session.refresh(referral)
        return referral_out(session, referral).model_dump(mode="json")

    return idempotency.commit_once(
        session,
        principal.key_id,
        idempotency_key,
        f"/v1/referrals/{referral_id}/events",
        change,
        write,
        status=200,
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
    place_ids = {e.actor_place_id for e in events if e.actor_place_id}
    names = {
        p.id: p.name for p in session.exec(select(Place).where(col(Place.id).in_(place_ids)))
    }
    return [
        HandoffEventOut(
            at=e.at,
            kind=e.kind,
            actor_role=e.actor_role,
            actor_place=(
                PlaceRef(id=e.actor_place_id, name=names.get(e.actor_place_id, ""))
                if e.actor_place_id
                else None
            ),
            from_status=e.from_status,
            to_status=e.to_status,
            reason=e.reason,
            note=e.note,
        )
        for e in events
    ]
