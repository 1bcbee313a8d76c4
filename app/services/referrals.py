"""Referrals: codes, scope, reading and listing for the sending agent and the receiving place."""

import base64
import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, false, func, or_
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.db import insert_row
from app.models import Contact, HandoffEvent, Orientation, Referral, ReferralStatus, Role
from app.models.columns import OutputShape, RowShape
from app.models.common import ID_PATTERN, utcnow
from app.models.orientation import ProcedureOut
from app.models.referral import REFERRAL_INHERITS, PlaceRef, ReferralOut, ReferralPage
from app.places.service import place_by_id, place_summary
from app.principal import Principal
from app.problems import InvalidCursor
from app.services.contact import person_out, reads_of, record_reads
from app.services.lookup import first_or_404
from app.services.scope import past_due, scope_filter
from app.services.stats_tally import place_tally
from app.triage.lifecycle import EXPIRABLE, OPEN, effective_status, shown_status

# Read aloud and typed at a desk: no 0/O, 1/I/L, 5/S, 8/B, Z/2 or U/V pairs to confuse.
CODE_ALPHABET = "ACDEFGHJKMNPQRTWXY34679"


def new_code() -> str:
    # 64 random bits in base 23: six digits, with a bias below 1e-10 (23**6 is about 2**27).
    number = int.from_bytes(secrets.token_bytes(8))
    chars = []
    for _ in range(6):
        number, digit = divmod(number, len(CODE_ALPHABET))
        chars.append(CODE_ALPHABET[digit])
    return "".join(chars[:3]) + "-" + "".join(chars[3:])


def is_code_collision(exc: IntegrityError) -> bool:
    """The commit failed because the drawn code is taken (SQLite and PostgreSQL wordings)."""
    message = str(exc.orig)
    return "referral.code" in message or "ix_referral_code" in message


# The row of a new referral (new_referral); status, version and the transitions' columns take
# the model's defaults.
NEW_REFERRAL = RowShape.of(
    Referral,
    (
        "orientation_id",
        "previous_referral_id",
        "code",
        "place_id",
        "distance_km",
        "created_at",
        "updated_at",
        "expires_at",
        *REFERRAL_INHERITS,
    ),
    "new_referral",
)


def new_referral(
    *,
    orientation_id: str,
    place_id: str,
    distance_km: float,
    now: datetime,
    ttl_days: int,
    previous_referral_id: str | None = None,
    **inherited: Any,
) -> dict[str, Any]:
    """The row of a new referral, waiting for its place until the deadline. `inherited`: the
    columns REFERRAL_INHERITS, from the orientation or from the referral it follows."""
    return NEW_REFERRAL.row(
        orientation_id=orientation_id,
        previous_referral_id=previous_referral_id,
        code=new_code(),  # unique: a taken code fails the insert and is drawn again
        place_id=place_id,
        distance_km=distance_km,
        created_at=now,
        updated_at=now,
        expires_at=now + timedelta(days=ttl_days),
        **inherited,
    )


def record_handoff(
    session: Session,
    *,
    orientation_id: str,
    referral_id: str | None,
    at: datetime,
    kind: str,
    actor: Principal | None,
    to_status: str | None,
    from_status: str | None = None,
    route: str | None = None,
    reason: str | None = None,
    note: str | None = None,
) -> None:
    """Appends one entry to the handoff log, in the caller's transaction. `actor` None: the
    service itself (expiry)."""
    insert_row(
        session,
        HandoffEvent,
        {
            "orientation_id": orientation_id,
            "referral_id": referral_id,
            "at": at,
            "kind": kind,
            "route": route,
            "actor_key_id": actor.key_id if actor else None,
            "actor_role": actor.role.value if actor else "service",
            "actor_place_id": actor.place_id if actor else None,
            "actor_via": actor.via if actor else None,
            "actor_user_id": actor.user_id if actor else None,
            "actor_membership_id": actor.membership_id if actor else None,
            "from_status": from_status,
            "to_status": to_status,
            "reason": reason,
            "note": note,
        },
    )


def get_referral(session: Session, principal: Principal, referral_id: str) -> Referral:
    return first_or_404(
        session,
        select(Referral).where(Referral.id == referral_id, scope_filter(principal)),
        referral_id,
        "Aucune orientation vers un médiateur avec cet identifiant.",
    )


def normalize_code(raw: str) -> str | None:
    """The code as typed at a desk: any case, with or without the dash or spaces."""
    compact = "".join(ch for ch in raw.upper() if ch not in " -")
    if len(compact) != 6 or any(ch not in CODE_ALPHABET for ch in compact):
        return None
    return f"{compact[:3]}-{compact[3:]}"


def get_referral_by_code(session: Session, principal: Principal, raw_code: str) -> Referral:
    code = normalize_code(raw_code) or ""
    return first_or_404(
        session,
        select(Referral).where(Referral.code == code, scope_filter(principal)),
        code,
        "Aucune orientation avec ce code pour votre lieu : vérifiez le code du coupon.",
    )


# The answer's fields named as the referral's columns are copied from it; these are computed.
REFERRAL_OUT = OutputShape(
    ReferralOut, Referral, ("status", "place", "origin_place", "procedure", "person")
)
PROCEDURE_OF_REFERRAL = OutputShape(ProcedureOut, Referral, ())


def referral_out(session: Session, referral: Referral) -> ReferralOut:
    """The referral as answered, from stored rows: built without validating them again (a
    page of 200 spent most of its time there)."""
    place = place_by_id(session, referral.place_id)
    origin = place_by_id(session, referral.origin_place_id)
    orientation = session.get_one(Orientation, referral.orientation_id)
    now = utcnow()
    return REFERRAL_OUT.of_object(
        referral,
        status=effective_status(ReferralStatus(referral.status), referral.expires_at, now),
        place=place_summary(place, referral.distance_km),
        origin_place=PlaceRef.model_construct(id=origin.id, name=origin.name),
        procedure=PROCEDURE_OF_REFERRAL.of_object(referral),
        person=person_out(session, referral, orientation, now),
    )


def read_referral(session: Session, referral: Referral) -> tuple[ReferralOut, str]:
    """The referral as answered, and its ETag."""
    return referral_out(session, referral), etag(referral)


def readable_referral(
    session: Session, principal: Principal, referral_id: str, via: str
) -> tuple[ReferralOut, str]:
    """The read of one referral, for the API and the pages alike: within the caller's scope
    (404 otherwise), as answered with its ETag, its read of the contact data logged as `via`
    before it is returned."""
    found = read_referral(session, get_referral(session, principal, referral_id))
    _log_reads(session, principal, [found[0]], via)
    return found


def readable_referral_by_code(
    session: Session, principal: Principal, raw_code: str, via: str
) -> tuple[ReferralOut, str]:
    """readable_referral, found by the code of the coupon."""
    found = read_referral(session, get_referral_by_code(session, principal, raw_code))
    _log_reads(session, principal, [found[0]], via)
    return found


def readable_referrals(
    session: Session,
    principal: Principal,
    via: str,
    *,
    statuses: list[ReferralStatus],
    urgent: bool | None = None,
    urgent_first: bool = False,
    limit: int,
    cursor: str | None,
) -> dict[str, Any]:
    """A page of the caller's referrals (list_referrals) as JSON, the reads of the contact
    data it carries logged as `via`."""
    page = list_referrals(
        session,
        principal,
        statuses=statuses,
        urgent=urgent,
        urgent_first=urgent_first,
        limit=limit,
        cursor=cursor,
    ).model_dump(mode="json")
    _log_reads(session, principal, page["items"], via)
    return page


def _log_reads(session: Session, principal: Principal, answers: list[Any], via: str) -> None:
    """Logs the answers that carry contact data (an answer whose read could not be logged is
    not sent: the error goes up instead)."""
    reads = reads_of(answers)
    if reads:
        # The read wrote nothing: its transaction ends, and the log writes in its own
        # (app.db.writing starts one; from Db.read's thread it waits for the write lock as
        # Db.write's threads do).
        session.rollback()
        record_reads(session, principal, reads, via)


def etag(referral: Referral) -> str:
    return etag_of(referral.id, referral.version)


def etag_of(referral_id: str, version: int) -> str:
    return f'"{referral_id}.{version}"'


def _encode_cursor(referral: Referral, urgent_first: bool) -> str:
    raw = f"{referral.created_at.isoformat()}|{referral.id}"
    if urgent_first:
        raw = f"u{int(referral.urgent)}|{raw}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, urgent_first: bool) -> tuple[bool | None, datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        parts = raw.split("|")
        urgent = None
        if urgent_first:
            flag = parts.pop(0)
            if flag not in ("u0", "u1"):
                raise ValueError(flag)
            urgent = flag == "u1"
        created, referral_id = parts
        if not ID_PATTERN.match(referral_id):
            raise ValueError(referral_id)
        at = datetime.fromisoformat(created)
        if at.tzinfo is None:  # every cursor this service writes carries its offset
            raise ValueError(created)
        return urgent, at, referral_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidCursor(
            "Curseur de pagination invalide : reprenez la valeur « next_cursor » d'une réponse "
            "(avec le même tri).",
        ) from exc


def _preload(session: Session, referrals: list[Referral]) -> list[object]:
    """Loads what referral_out reads into the session's identity map, in two queries for the
    whole page instead of several per referral. The identity map holds objects weakly: the
    caller keeps the returned list alive while it reads."""
    orientation_ids = {r.orientation_id for r in referrals}
    return [
        *session.exec(select(Orientation).where(col(Orientation.id).in_(orientation_ids))),
        *session.exec(select(Contact).where(col(Contact.orientation_id).in_(orientation_ids))),
    ]


def status_filter(statuses: list[ReferralStatus]) -> ColumnElement[bool]:
    """Referrals whose status as shown (app.triage.lifecycle.effective_status) is one of
    `statuses`: past its deadline, an open referral is expired even before the service
    writes it."""
    now = utcnow()
    wanted = {s.value for s in statuses}
    still = [s.value for s in statuses if s in EXPIRABLE]
    others = [s for s in wanted if s not in still]
    clauses = []
    if still:
        clauses.append(and_(col(Referral.status).in_(still), col(Referral.expires_at) > now))
    if others:
        clauses.append(col(Referral.status).in_(others))
    if ReferralStatus.EXPIREE.value in wanted:
        clauses.append(past_due(now))
    if wanted <= {s.value for s in OPEN}:
        # Open referrals are few (the service expires and closes them), so the stored
        # statuses go first, implied by the clauses: the index on (place, status) then reads
        # only those rows, where the OR alone made SQLite read every referral of the place
        # and sort them (an inbox at 100,000: 60 -> 1.3 ms). Final ones are most of the
        # history: newest first finds a page of them sooner.
        return and_(col(Referral.status).in_(sorted(wanted)), or_(*clauses))
    return or_(*clauses)


def shown_status_column(now: datetime) -> ColumnElement[str]:
    """The status as shown (app.triage.lifecycle.effective_status), computed by the database:
    for statistics over many referrals."""
    return case((past_due(now), ReferralStatus.EXPIREE.value), else_=col(Referral.status))


def list_referrals(
    session: Session,
    principal: Principal,
    *,
    statuses: list[ReferralStatus],
    urgent: bool | None = None,
    urgent_first: bool = False,
    limit: int,
    cursor: str | None,
) -> ReferralPage:
    query = select(Referral).where(scope_filter(principal))
    if statuses:
        query = query.where(status_filter(statuses))
    if urgent is not None:
        query = query.where(Referral.urgent == urgent)
    if cursor:
        urgent_at, created, referral_id = _decode_cursor(cursor, urgent_first)
        after = or_(
            col(Referral.created_at) < created,
            and_(col(Referral.created_at) == created, col(Referral.id) < referral_id),
        )
        if urgent_at is not None:  # urgent ones first: after an urgent one come the others
            after = and_(col(Referral.urgent) == urgent_at, after)
            if urgent_at:
                after = or_(after, col(Referral.urgent) == false())
        query = query.where(after)
    order: list[Any] = [col(Referral.created_at).desc(), col(Referral.id).desc()]
    if urgent_first:
        order.insert(0, col(Referral.urgent).desc())
    query = query.order_by(*order).limit(limit + 1)
    rows = list(session.exec(query).all())
    page, more = rows[:limit], len(rows) > limit
    loaded = _preload(session, page)
    items = [referral_out(session, r) for r in page]
    del loaded
    return ReferralPage(
        items=items, next_cursor=_encode_cursor(page[-1], urgent_first) if more else None
    )


def referral_summary(session: Session, principal: Principal) -> dict[str, Any]:
    """Counts by status as shown, for the caller's place, and how many open ones are urgent:
    what an inbox shows ("3 en attente, 1 urgente"). Only the referrals that may still expire
    are counted row by row (whether their deadline passed decides how they show: few, since
    the service expires them every minute); the others come from the tally, so the cost does
    not grow with the place's history."""
    now = utcnow()
    past = past_due(now).label("past")
    expirable = [s.value for s in EXPIRABLE]
    rows = list(
        session.exec(
            select(Referral.status, Referral.urgent, past, func.count())
            .where(scope_filter(principal), col(Referral.status).in_(expirable))
            .group_by(col(Referral.status), col(Referral.urgent), past)
        ).all()
    )
    if principal.role in (Role.MEDIATEUR, Role.AGENT):
        side = "received" if principal.role is Role.MEDIATEUR else "sent"
        rows += session.exec(
            select(
                place_tally.c.status, place_tally.c.urgent, false(), place_tally.c["count"]
            ).where(
                place_tally.c.side == side,
                place_tally.c.place_id == principal.place_id,
                place_tally.c.status.not_in(expirable),
                place_tally.c["count"] != 0,
            )
        ).all()
    by_status = dict.fromkeys((s.value for s in ReferralStatus), 0)
    urgent_open = 0
    for status, urgent, is_past, number in rows:
        shown = shown_status(ReferralStatus(status), bool(is_past))
        by_status[shown.value] += number
        urgent_open += number if urgent and shown in OPEN else 0
    return {
        "by_status": by_status,
        "open": sum(by_status[s.value] for s in OPEN),
        "urgent_open": urgent_open,
    }
