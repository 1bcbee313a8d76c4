"""Secrets the service draws once and keeps in its database, shared by every instance."""

from datetime import datetime

from sqlmodel import Field, SQLModel

from app.models.common import utcnow


class ServerSecret(SQLModel, table=True):
    __tablename__ = "server_secret"

    name: str = Field(primary_key=True)
    value: str
    created_at: datetime = Field(default_factory=utcnow)
