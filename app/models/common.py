"""Helpers shared by the models: opaque ids and UTC timestamps written as RFC 3339."""

import re
import secrets
from datetime import UTC, date, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer

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

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _written_as_a_day(value: object) -> object:
    # Pydantic would take 0 (or « 0 ») for 1970-01-01, a Unix time: the document says
    # AAAA-MM-JJ, and so do we.
    if isinstance(value, date) or (isinstance(value, str) and _DAY.fullmatch(value)):
        return value
    raise ValueError("Date invalide (attendu AAAA-MM-JJ).")


# A day sent to the API (a body's field, a query's parameter): AAAA-MM-JJ only.
Day = Annotated[date, BeforeValidator(_written_as_a_day)]


class InputModel(BaseModel):
    """Base of every request body: unknown fields refused. (NUL characters, which PostgreSQL
    cannot store, never get this far: app.guard refuses them.)"""

    model_config = ConfigDict(extra="forbid")
