"""Helpers shared by the models: opaque ids and UTC timestamps written as RFC 3339."""

import re
import secrets
from datetime import UTC, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, PlainSerializer

# Every id and referral code this service hands out matches this; nothing else names a resource.
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


def utcnow() -> datetime:
    return datetime.now(UTC)


def rfc3339(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


UtcDatetime = Annotated[datetime, PlainSerializer(rfc3339, return_type=str)]


class InputModel(BaseModel):
    """Base of every request body: unknown fields refused. (NUL characters, which PostgreSQL
    cannot store, never get this far: app.guard refuses them.)"""

    model_config = ConfigDict(extra="forbid")
