"""Finding one resource by what a caller typed, or answering 404."""

from typing import TypeVar

from sqlmodel import Session
from sqlmodel.sql.expression import SelectOfScalar

from app.models.common import ID_PATTERN
from app.problems import NotFound

T = TypeVar("T")


def first_or_404(session: Session, query: SelectOfScalar[T], typed: str, detail: str) -> T:
    """The first row of `query`, or a 404 with `detail`. `typed` is the id or code the caller
    sent: one that cannot be ours (a NUL byte, which PostgreSQL refuses, say) is not found
    without asking the database. Out of scope and missing answer alike, as the contract says."""
    found = session.exec(query).first() if ID_PATTERN.match(typed) else None
    if found is None:
        raise NotFound(detail)
    return found
