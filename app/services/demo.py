"""Demo data for Corrèze: sixteen places on real communes and one key per role."""

from pathlib import Path

from sqlmodel import Session

from app.db import engine_of
from app.models import Role
from app.services.communes import has_national_reference, import_communes
from app.services.keys import create_key, list_keys, revoke_key
from app.services.place_import import ImportReport, import_places
from app.services.place_sources import read_source

DEMO_PLACES = Path(__file__).resolve().parent.parent / "data" / "lieux-demo-19.csv"
DEMO_AGENT_PLACE = "demo-fs-tulle"
DEMO_MEDIATEUR_PLACE = "demo-med-tulle"


def load_demo(session: Session) -> ImportReport:
    """Loads every commune of France (once) and the demo places (again: a no-op if unchanged)."""
    engine = engine_of(session)
    if not has_national_reference(engine):
        import_communes(session)
    return import_places(session, read_source(DEMO_PLACES))


def demo_keys(session: Session) -> dict[str, str]:
    """Creates one key per role, attached to demo places; returns role -> token. The demo keys
    of an earlier start are revoked first: only the keys just printed open the demo."""
    demo_names = {f"démo {role.value}" for role in Role}
    for key in list_keys(session):
        if key.name in demo_names and key.revoked_at is None:
            revoke_key(session, key.id)
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
