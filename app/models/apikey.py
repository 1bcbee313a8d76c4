"""API keys: a role and a scope, the token stored only as its hash."""

from datetime import datetime

from sqlmodel import Field, SQLModel

from app.models.common import new_id, utcnow
from app.principal import Principal, Role

__all__ = ["ApiKey", "Principal", "Role"]


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_key"

    id: str = Field(default_factory=lambda: new_id("cle"), primary_key=True)
    name: str = ""
    role: str
    place_id: str | None = Field(default=None, foreign_key="place.id")
    territory: str | None = None
    token_hash: str = Field(unique=True, index=True)
    prefix: str  # first characters of the token, to recognise a key in a list
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None
