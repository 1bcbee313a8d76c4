"""Idempotency-Key handling and the commit of a POST: a retry returns the first answer, another
body is refused, and a use case that drew an id already taken is run again."""

import hashlib
import json
from collections.abc import Callable
from typing import Any, Protocol

from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from app.db import writing
from app.models import IdempotencyRecord
from app.problems import IdempotencyKeyReused

# A use case may draw random values that must be unique (a referral code): when the commit
# fails on that constraint, the use case runs again with a new draw.
ATTEMPTS = 5


def request_hash(path: str, body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{path}\n{canonical}".encode()).hexdigest()


def replay(session: Session, api_key_id: str, key: str, digest: str) -> IdempotencyRecord | None:
    """The stored first answer for this key, or None; 422 if the key came with another body."""
    record = session.exec(
        select(IdempotencyRecord).where(
            IdempotencyRecord.api_key_id == api_key_id, IdempotencyRecord.key == key
        )
    ).first()
    if record is not None and record.request_hash != digest:
        raise IdempotencyKeyReused(
            "Cette clé d'idempotence a déjà servi pour une autre requête : "
            "utilisez une nouvelle clé pour une nouvelle orientation.",
        )
    return record


class PersonalAnswer(Protocol):
    def orientation_of(self, body: dict[str, Any]) -> str | None: ...

    def stored(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def replayed(self, body: dict[str, Any]) -> dict[str, Any]: ...


def _replayed(
    session: Session, record: IdempotencyRecord, personal: "PersonalAnswer | None"
) -> dict[str, Any]:
    if personal is None:
        return record.response
    body = personal.replayed(record.response)  # may log a read of contact data
    session.commit()
    return body


def commit_once(
    session: Session,
    api_key_id: str | None,
    key: str | None,
    path: str,
    payload: BaseModel,
    write: Callable[[], dict[str, Any]],
    status: int = 201,
    is_redraw: Callable[[IntegrityError], bool] = lambda _: False,
    personal: "PersonalAnswer | None" = None,
) -> dict[str, Any]:
    """Runs `write` (it adds rows to the session and returns the response body) in one write
    transaction (app.db.writing) and commits it together with its idempotency record: a retry
    with the same key gets the first body back. An IntegrityError that `is_redraw` recognises
    runs `write` again, at most ATTEMPTS times. `personal`: how an answer that may carry a
    person's contact data is stored without it and completed again on replay."""
    # Without a key's id (a place acting from its e-mail's link), no record: the pages guard
    # with the version read instead.
    keyed = (api_key_id, key) if api_key_id and key else None
    digest = request_hash(path, payload.model_dump(mode="json")) if keyed else ""
    for _ in range(ATTEMPTS):
        with writing(session):
            if keyed:
                record = replay(session, *keyed, digest)
                if record is not None:
                    return _replayed(session, record, personal)
            try:
                reserved = None
                if keyed:
                    # Reserved before the work runs: a concurrent request with the same key
                    # (another process) waits here for this one's commit, then replays it,
                    # instead of doing the work again and meeting its effects (a 409).
                    reserved = IdempotencyRecord(
                        api_key_id=keyed[0],
                        key=keyed[1],
                        request_hash=digest,
                        status_code=status,
                        response={},
                    )
                    session.add(reserved)
                    session.flush()
                body = write()
                if reserved is not None:
                    reserved.response = personal.stored(body) if personal else body
                    reserved.orientation_id = personal.orientation_of(body) if personal else None
                    session.add(reserved)
                session.commit()
                return body
            except IntegrityError as exc:
                session.rollback()
                if is_redraw(exc):
                    continue
                # A concurrent retry with the same key (another process) won the race.
                record = replay(session, *keyed, digest) if keyed else None
                if record is None:
                    raise
                return _replayed(session, record, personal)
    raise RuntimeError(f"no unique value after {ATTEMPTS} draws")
