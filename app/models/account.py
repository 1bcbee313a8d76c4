"""People who sign in to the web pages as themselves: their memberships (a role and a scope,
as a key's), invitations, one-time sign-in links, sessions and requests to join a place."""

from datetime import datetime

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from app.models.common import new_id, utcnow


class User(SQLModel, table=True):
    """A professional: an agent, a médiateur, a coordinator or an admin. Known by e-mail until
    their first sign-in through OpenID Connect, then by the provider's `sub` as well."""

    __tablename__ = "user_account"

    id: str = Field(default_factory=lambda: new_id("usr"), primary_key=True)
    # Lower-cased; None once erased (a deactivated account past its retention period).
    email: str | None = Field(default=None, unique=True, index=True)
    first_name: str | None = None
    last_name: str | None = None
    oidc_sub: str | None = Field(default=None, unique=True, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    last_login_at: datetime | None = None
    deactivated_at: datetime | None = None
    erased_at: datetime | None = None


class Membership(SQLModel, table=True):
    """One role of a person, with its scope exactly as an API key's: a France Services place
    (agent), a médiation place (médiateur), a territory (coordinateur), or all (admin). An
    invitation is a membership not yet accepted (`accepted_at` None)."""

    __table_args__ = (Index("ix_membership_place", "place_id", "removed_at"),)

    id: str = Field(default_factory=lambda: new_id("mbr"), primary_key=True)
    user_id: str = Field(foreign_key="user_account.id", index=True)
    role: str
    place_id: str | None = Field(default=None, foreign_key="place.id")
    territory: str | None = None
    responsable: bool = False  # may invite to and remove from the place's team
    created_at: datetime = Field(default_factory=utcnow)
    invited_by_user_id: str | None = Field(default=None, foreign_key="user_account.id")
    invited_by_key_id: str | None = Field(default=None, foreign_key="api_key.id")
    accepted_at: datetime | None = None
    removed_at: datetime | None = None


class LoginLink(SQLModel, table=True):
    """A one-time sign-in link sent by e-mail: short-lived, used once (`used_at`). The e-mail
    carries the link signed from this id; only its hash is looked up."""

    __tablename__ = "login_link"

    id: str = Field(default_factory=lambda: new_id("lnk"), primary_key=True)
    user_id: str = Field(foreign_key="user_account.id", index=True)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    used_at: datetime | None = None
    next_path: str | None = None


class WebSession(SQLModel, table=True):
    """A person's session of the web pages, kept server-side: logging out, removing the
    member or deactivating the person ends it at once. The cookie holds a random token whose
    hash is this id."""

    __tablename__ = "web_session"

    id: str = Field(primary_key=True)  # SHA-256 of the cookie's token
    user_id: str = Field(foreign_key="user_account.id", index=True)
    membership_id: str | None = Field(default=None, foreign_key="membership.id")
    via: str  # "oidc" or "email"
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    ended_at: datetime | None = None


class JoinRequest(SQLModel, table=True):
    """A person whose ProConnect SIRET matches a place asks to join it; the place's
    responsable accepts or refuses from an e-mail."""

    __tablename__ = "join_request"

    id: str = Field(default_factory=lambda: new_id("dem"), primary_key=True)
    user_id: str = Field(foreign_key="user_account.id", index=True)
    place_id: str = Field(foreign_key="place.id", index=True)
    role: str
    created_at: datetime = Field(default_factory=utcnow)
    decided_at: datetime | None = None
    accepted: bool | None = None
    decided_by_user_id: str | None = Field(default=None, foreign_key="user_account.id")
