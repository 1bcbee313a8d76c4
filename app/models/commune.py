"""Communes: the INSEE reference that locates a person and groups statistics."""

from sqlmodel import Field, SQLModel


class Commune(SQLModel, table=True):
    code: str = Field(primary_key=True, max_length=5)
    name: str
    postal_codes: str = ""  # space-separated
    departement: str = Field(index=True, max_length=3)
    region: str = Field(default="", max_length=3)
    epci: str = Field(default="", index=True, max_length=9)  # SIREN
    epci_name: str = ""
    population: int | None = None
    latitude: float
    longitude: float
    # How the centroid was obtained: "commune" (its own), or approximated from its
    # "code_postal" or "epci" neighbours. See app/data/README.md.
    centroid_precision: str = "commune"
