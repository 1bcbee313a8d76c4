"""Idempotency-Key handling: a retry returns the first answer, another body is refused."""

import hashlib
import json
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from app.errors import Problem
from app.models import IdempotencyRecord


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
        raise Problem(
            422,
            "Cette clé d'idempotence a déjà servi pour une autre requête : "
            "utilisez une nouvelle clé pour une nouvelle orientation.",
            slug="idempotence",
        )
    return record


def remember(
    session: Session, api_key_id: str, key: str, digest: str, status: int, body: dict[str, Any]
) -> None:
    """Adds the record to the current transaction: it commits with the work it describes."""
    session.add(
        IdempotencyRecord(
            api_key_id=api_key_id, key=key, request_hash=digest, status_code=status, response=body
        )
    )


def commit_once(
    session: Session,
    api_key_id: str,
    key: str | None,
    path: str,
    payload: dict[str, Any],
    write: Callable[[], dict[str, Any]],
    status: int = 201,
) -> dict[str, Any]:
    """Runs `write` (it adds rows to the session and returns the response body) and commits it
    together with its idempotency record: a retry with the same key gets the first body back."""
    if not key:
        body = write()
        session.commit()
        return body
    digest = request_hash(path, payload)
    record = replay(session, api_key_id, key, digest)
    if record is not None:
        return record.response
    body = write()
    remember(session, api_key_id, key, digest, status, body)
    try:
        session.commit()
    except IntegrityError:
        # A concurrent retry with the same key won the race: answer as it did.
        session.rollback()
        record = replay(session, api_key_id, key, digest)
        if record is None:
            raise
        return record.response
    return body
