"""One counter per read-mostly table, bumped by every write to it, so that each process knows
when its in-memory copy is out of date."""

from sqlmodel import Field, SQLModel


class DataVersion(SQLModel, table=True):
    __tablename__ = "data_version"

    name: str = Field(primary_key=True, max_length=40)
    version: int = 0
