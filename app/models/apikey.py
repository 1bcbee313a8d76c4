"""API keys: a role and a scope, the token stored only as its hash."""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlmodel import Field, SQLModel

from app.models.common import new_id, utcnow


class Role(StrEnum):
    AGENT = "agent"
    MEDIATEUR = "mediateur"
    COORDINATEUR = "coordinateur"
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's role and scope. Plain data, usable without HTTP.

    A place acting from the link of an e-mail holds no key: `key_id` is None and `via` says
    how it acts ("lien_email"). A person signed in to the web pages holds no key either: they
    act in one of their memberships (`user_id`, `membership_id`), which the logs name."""

    key_id: str | None
    role: Role
    place_id: str | None
    territory: str | None
    via: str | None = None
    user_id: str | None = None
    membership_id: str | None = None

    @property
    def key(self) -> str:
        """The key's id, for what only a key's holder does (places, webhooks: the API)."""
        if self.key_id is None:
            raise LookupError("this action needs an API key")
        return self.key_id


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
