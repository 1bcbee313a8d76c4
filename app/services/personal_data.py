"""Personal data: erasure at the person's request, and the retention rules (`passerelle
purge`, and the running service). Who sees contact data, and the access log: app.services.contact.

Personal data lives in few places, on purpose: the `contact` row (first name, phone, e-mail,
availability), the diagnostic answers of an orientation, and the free text of the handoff log
(notes, and a reason other than a refusal's code). Idempotency records never keep contact
data (app.services.idempotency stores answers without it) and are deleted with it."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from app.config import Settings
from app.db import writing
from app.models import (
    Contact,
    HandoffEvent,
    IdempotencyRecord,
    Orientation,
    Principal,
    Referral,
)
from app.models.common import utcnow
from app.services.referrals import get_referral, record_handoff
from app.triage.lifecycle import FINAL, ReferralStatus

ERASED_ON_REQUEST = "demande_de_la_personne"
ERASED_AT_RETENTION = "duree_de_conservation"
FINAL_VALUES = [s.value for s in FINAL]
BATCH = 500


# --- erasure -----------------------------------------------------------------------------


def _erase_contact(
    session: Session,
    orientation_id: str,
    referral_id: str | None,
    actor: Principal | None,
    reason: str,
    now: datetime,
) -> bool:
    """Deletes the person's contact data and every record that held it; one handoff event
    says so. False if there was nothing left to erase."""
    gone = session.execute(delete(Contact).where(col(Contact.orientation_id) == orientation_id))
    session.execute(
        delete(IdempotencyRecord).where(col(IdempotencyRecord.orientation_id) == orientation_id)
    )
    if not gone.rowcount:  # type: ignore[attr-defined]
        return False
    session.execute(
        update(Orientation)
        .where(col(Orientation.id) == orientation_id)
        .values(contact_erased_at=now)
    )
    record_handoff(
        session,
        orientation_id=orientation_id,
        referral_id=referral_id,
        at=now,
        kind="erasure",
        actor=actor,
        to_status=None,
        reason=reason,
    )
    return True


def _erase_free_text(session: Session, orientation_ids: list[str]) -> None:
    """Erases what was typed about the person in the handoff log: notes, and reasons other
    than a refusal's code (a code of the contract, kept, as is the reason of an erasure).
    PostgreSQL's append-only trigger allows this one change."""
    events = col(HandoffEvent.orientation_id).in_(orientation_ids)
    session.execute(
        update(HandoffEvent).where(events, col(HandoffEvent.note).is_not(None)).values(note=None)
    )
    session.execute(
        update(HandoffEvent)
        .where(
            events,
            col(HandoffEvent.kind) == "transition",
            col(HandoffEvent.reason).is_not(None),
            col(HandoffEvent.to_status) != ReferralStatus.REFUSEE.value,
        )
        .values(reason=None)
    )


def erase_on_request(session: Session, principal: Principal, referral_id: str) -> bool:
    """DELETE /v1/referrals/{id}/person: the sending agent or the receiving médiateur erases
    the person's contact data at their request, and the notes typed about them (a phone
    number noted down is contact data too). Idempotent: erasing again changes nothing."""
    with writing(session):
        referral = get_referral(session, principal, referral_id)
        _erase_free_text(session, [referral.orientation_id])
        erased = _erase_contact(
            session, referral.orientation_id, referral.id, principal, ERASED_ON_REQUEST, utcnow()
        )
        session.commit()
    return erased


# --- retention ---------------------------------------------------------------------------


@dataclass
class PurgeReport:
    contacts_erased: int = 0
    records_stripped: int = 0
    accounts_erased: int = 0  # deactivated people past PASSERELLE_ACCOUNT_RETENTION_DAYS


def _contacts_due(session: Session, now: datetime, days: int) -> list[tuple[str, str | None]]:
    """Orientations whose contact data has outlived its use: every referral final for `days`
    (the last change of a final referral is its final transition), or, with no referral at
    all, `days` after the orientation."""
    limit = now - timedelta(days=days)
    still_needed = (
        select(Referral.id)
        .where(
            col(Referral.orientation_id) == col(Contact.orientation_id),
            ~col(Referral.status).in_(FINAL_VALUES) | (col(Referral.updated_at) > limit),
        )
        .exists()
    )
    last_referral = (
        select(Referral.id)
        .where(col(Referral.orientation_id) == col(Contact.orientation_id))
        .order_by(col(Referral.created_at).desc())
        .limit(1)
        .scalar_subquery()
    )
    # Each contact's orientation by its key (a subquery, not a join): joined, SQLite walked the
    # orientations by date and looked for a contact beside each (4.1 s at 1.5 M orientations,
    # the write lock held, at every start); the contacts are the few rows here.
    old_enough = (
        select(Orientation.id)
        .where(
            col(Orientation.id) == col(Contact.orientation_id),
            col(Orientation.created_at) <= limit,
        )
        .exists()
    )
    rows = session.execute(
        select(col(Contact.orientation_id), last_referral)
        .where(old_enough, ~still_needed)
        .limit(BATCH)
    ).all()
    return [(row[0], row[1]) for row in rows]


def purge(session: Session, settings: Settings, now: datetime | None = None) -> PurgeReport:
    """Applies the retention rules, in batches (no transaction holds the writer long):
    contact data `contact_retention_days` after the accompaniment ended; everything personal
    of orientations older than `record_retention_days` (diagnostic answers, contact, free
    text of the handoff log), keeping what statistics count. Statistics are unchanged."""
    now = now or utcnow()
    report = PurgeReport()
    while True:
        with writing(session):
            due = _contacts_due(session, now, settings.contact_retention_days)
            for orientation_id, referral_id in due:
                if _erase_contact(
                    session, orientation_id, referral_id, None, ERASED_AT_RETENTION, now
                ):
                    report.contacts_erased += 1
            session.commit()
        if len(due) < BATCH:
            break
    # Professionals' own data: a deactivated person's name and e-mail, after their period.
    from app.services.accounts import erase_deactivated

    report.accounts_erased = erase_deactivated(session, settings.account_retention_days, now)
    limit = now - timedelta(days=settings.record_retention_days)
    while True:
        with writing(session):
            old = list(
                session.exec(
                    select(Orientation.id)
                    .where(
                        col(Orientation.created_at) <= limit,
                        col(Orientation.purged_at).is_(None),
                    )
                    .limit(BATCH)
                ).all()
            )
            for orientation_id in old:
                _erase_contact(session, orientation_id, None, None, ERASED_AT_RETENTION, now)
            if old:
                session.execute(
                    update(Orientation)
                    .where(col(Orientation.id).in_(old))
                    .values(answers=None, purged_at=now)
                )
                _erase_free_text(session, old)
            report.records_stripped += len(old)
            session.commit()
        if len(old) < BATCH:
            return report
