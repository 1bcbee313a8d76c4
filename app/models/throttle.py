"""Wrong API tokens counted per client address and window of a minute, in the database, so
that every process of a fleet counts towards the same limit (app.auth.FailureThrottle)."""

from datetime import datetime

from sqlmodel import Field, SQLModel


class AuthFailure(SQLModel, table=True):
    __tablename__ = "auth_failure"

    # The client address as the service sees it (app.auth.client_address): never a token.
    address: str = Field(primary_key=True, max_length=64)
    window_start: datetime  # its first failure of the current window (one minute)
    failures: int = 0
