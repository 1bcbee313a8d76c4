"""Helpers shared by the models: opaque ids and UTC timestamps written as RFC 3339."""

import re
import secrets
from datetime import UTC, date, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, PlainSerializer

# Every id and referral code this service hands out matches this; nothing else names a resource.
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


def utcnow() -> datetime:
    return datetime.now(UTC)


# Days, weeks and months of statistics are those of the people served, in mainland French time.
LOCAL_TZ = ZoneInfo("Europe/Paris")


def local_day(value: datetime) -> date:
    """The day in Europe/Paris of a UTC timestamp (naive ones are UTC, as stored)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(LOCAL_TZ).date()


def rfc3339(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


UtcDatetime = Annotated[datetime, PlainSerializer(rfc3339, return_type=str)]


class InputModel(BaseModel):
    """Base of every request body: unknown fields refused. (NUL characters, which PostgreSQL
    cannot store, never get this far: app.guard refuses them.)"""

    model_config = ConfigDict(extra="forbid")
