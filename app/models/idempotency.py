"""Stored first answers to POST requests made with an Idempotency-Key."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from app.models.common import utcnow


class IdempotencyRecord(SQLModel, table=True):
    __tablename__ = "idempotency_record"
    __table_args__ = (UniqueConstraint("api_key_id", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    api_key_id: str = Field(foreign_key="api_key.id")
    key: str = Field(max_length=200)
    request_hash: str
    status_code: int
    # Stored without the person's contact data (filled again from the current rows on replay);
    # the orientation, so that erasing a person's data removes their request's records too.
    response: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    orientation_id: str | None = Field(default=None, index=True)
    created_at: datetime = Field(default_factory=utcnow)
