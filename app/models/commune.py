"""Communes and the territories above them: the INSEE reference that locates a person and
groups statistics."""

from sqlalchemy import Column, LargeBinary
from sqlmodel import Field, SQLModel

# An INSEE commune code: five digits, or 2A/2B and three digits in Corsica.
COMMUNE_PATTERN = r"^(\d{5}|2[AB]\d{3})$"


class Region(SQLModel, table=True):
    code: str = Field(primary_key=True, max_length=3)
    name: str


class Departement(SQLModel, table=True):
    code: str = Field(primary_key=True, max_length=3)
    name: str
    region: str = Field(max_length=3)


class Epci(SQLModel, table=True):
    siren: str = Field(primary_key=True, max_length=9)
    name: str
    kind: str = Field(default="", max_length=4)  # ME, CU, CA, CC


class Commune(SQLModel, table=True):
    code: str = Field(primary_key=True, max_length=5)
    # COM (commune), ARM (arrondissement of Paris, Lyon, Marseille), COMD (commune déléguée)
    # or COMA (commune associée): the last three belong to `parent` and share its territories.
    kind: str = Field(default="COM", max_length=4)
    parent: str | None = Field(default=None, max_length=5)
    name: str
    postal_codes: str = ""  # space-separated
    departement: str = Field(index=True, max_length=3)
    region: str = Field(default="", index=True, max_length=3)
    epci: str = Field(default="", index=True, max_length=9)  # SIREN
    population: int | None = None
    # The routing point: where distances are measured from.
    latitude: float
    longitude: float
    # Where the point comes from: "mairie" (the town hall), "polygone" (a point inside the
    # commune's outline), "communes_deleguees" (inside the union of its delegated communes),
    # "commune_parente" (its parent's point), "code_postal" (a commune with the same postal
    # code: four communes restored in 2024 have neither) or "fichier" (an imported file).
    point_source: str = Field(default="mairie", max_length=20)
    # The outline, simplified (about 100 m), as WKB: enough for a map of a département.
    shape: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
