"""Who sees a person's contact data and when, and the access log of every answer that
carried it (the rest of personal data: app.services.personal_data)."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from app.db import insert_row, writing
from app.models import Contact, ContactRead, Orientation, Principal, Referral
from app.models.common import utcnow
from app.models.referral import PersonOut
from app.triage.lifecycle import FINAL, ReferralStatus, effective_status


def shows_contact(referral: Referral, now: datetime) -> bool:
    """The one rule of when a referral's answer carries the person's contact data (to the
    sending agent and the receiving médiateur, who alone see the referral): while it is open.
    Once it is final, nobody needs to reach the person through it any more."""
    status = effective_status(ReferralStatus(referral.status), referral.expires_at, now)
    return status not in FINAL


def person_out(
    session: Session, referral: Referral, orientation: Orientation, now: datetime
) -> PersonOut:
    """The person as the referral's answer shows them: the consent always, the contact data
    while shows_contact allows it (read only then)."""
    visible = orientation.consent and shows_contact(referral, now)
    shown = session.get(Contact, orientation.id) if visible else None
    return PersonOut.model_construct(
        consent=orientation.consent,
        consent_at=orientation.consent_at,
        consent_text_version=orientation.consent_text_version,
        erased_at=orientation.contact_erased_at,
        first_name=shown.first_name if shown else None,
        phone=shown.phone if shown else None,
        email=shown.email if shown else None,
        availability=shown.availability if shown else None,
    )


def carries_contact(person: PersonOut | dict[str, Any]) -> bool:
    values = person if isinstance(person, dict) else person.__dict__
    return any(values.get(f) for f in ("first_name", "phone", "email", "availability"))


# --- the access log ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Read:
    """One referral whose answer carried contact data."""

    referral_id: str
    orientation_id: str


def log_reads(session: Session, principal: Principal, reads: Iterable[Read], via: str) -> int:
    """Appends one access-log row per read, in the caller's transaction (app.db.writing)."""
    now = utcnow()
    n = 0
    for read in reads:
        insert_row(
            session,
            ContactRead,
            {
                "at": now,
                "api_key_id": principal.key_id,
                "role": principal.role.value,
                "place_id": principal.place_id,
                "referral_id": read.referral_id,
                "orientation_id": read.orientation_id,
                "via": via,
                "user_id": principal.user_id,
                "membership_id": principal.membership_id,
            },
        )
        n += 1
    return n


def record_reads(session: Session, principal: Principal, reads: list[Read], via: str) -> None:
    """The access log of a read-only use case: its own short write transaction, committed
    before the answer leaves (an answer whose read could not be logged is not sent)."""
    if not reads:
        return
    with writing(session):
        log_reads(session, principal, reads, via)
        session.commit()


def access_log(
    session: Session, referral_id: str | None = None, since: datetime | None = None
) -> list[ContactRead]:
    query = select(ContactRead)
    if referral_id:
        query = query.where(ContactRead.referral_id == referral_id)
    if since:
        query = query.where(col(ContactRead.at) >= since)
    return list(session.exec(query.order_by(col(ContactRead.at), col(ContactRead.id))).all())


def reads_of(answers: Iterable[Any]) -> list[Read]:
    """The referrals whose answers (ReferralOut, or their JSON) carry contact data."""
    reads = []
    for answer in answers:
        data = answer if isinstance(answer, dict) else answer.__dict__
        person = data["person"]
        if carries_contact(person):
            reads.append(Read(data["id"], data["orientation_id"]))
    return reads


CONTACT_FIELDS = ("first_name", "phone", "email", "availability")


@dataclass(frozen=True, slots=True)
class OrientationAnswer:
    """POST /v1/orientations: its answer never carries contact data; its idempotency record
    belongs to the orientation (erased with the person's data)."""

    def orientation_of(self, body: dict[str, Any]) -> str | None:
        return str(body["id"])

    def stored(self, body: dict[str, Any]) -> dict[str, Any]:
        return body

    def replayed(self, body: dict[str, Any]) -> dict[str, Any]:
        return body


@dataclass(frozen=True, slots=True)
class ReferralAnswer:
    """An answer that is a referral (a transition, a re-orientation): its idempotency record
    keeps it without the contact data; a replay shows the person as they are now, and is a
    read like any other."""

    session: Session
    principal: Principal
    via: str

    def orientation_of(self, body: dict[str, Any]) -> str | None:
        return str(body["orientation_id"])

    def stored(self, body: dict[str, Any]) -> dict[str, Any]:
        return {**body, "person": {**body["person"], **dict.fromkeys(CONTACT_FIELDS)}}

    def replayed(self, body: dict[str, Any]) -> dict[str, Any]:
        referral = self.session.get_one(Referral, body["id"])
        orientation = self.session.get_one(Orientation, body["orientation_id"])
        person = person_out(self.session, referral, orientation, utcnow()).model_dump(mode="json")
        answer = {**body, "person": person}
        log_reads(self.session, self.principal, reads_of([answer]), self.via)
        return answer
