"""The access log of personal data: every answer that carried a person's contact data."""

from datetime import datetime

from sqlmodel import Field, SQLModel

from app.models.common import utcnow


class ContactRead(SQLModel, table=True):
    """Append-only (PostgreSQL refuses UPDATE and DELETE, see migration 0006): who read the
    contact data of which referral, when, and through which request."""

    __tablename__ = "contact_read"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    # None for a read through the link of an e-mail (no key): `via` says so.
    api_key_id: str | None = Field(default=None, foreign_key="api_key.id")
    role: str
    place_id: str | None = None
    referral_id: str = Field(foreign_key="referral.id", index=True)
    orientation_id: str = Field(foreign_key="orientation.id")
    via: str  # the request, e.g. "GET /v1/referrals/{id}"
    # The person who read, signed in to the web pages, and in which membership.
    user_id: str | None = Field(default=None, foreign_key="user_account.id")
    membership_id: str | None = Field(default=None, foreign_key="membership.id")
