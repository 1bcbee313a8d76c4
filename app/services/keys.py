"""API key management: create (the token is shown once), list, revoke."""

from contextlib import AbstractContextManager

from sqlmodel import Session, col, select

from app.db import writing
from app.models import ApiKey, Place, PlaceKind, Role
from app.models.common import utcnow
from app.principal import hash_token, new_token
from app.problems import Problem
from app.services.cache import bump
from app.services.territories import EXAMPLES, parse_territory


class KeyError_(ValueError):
    """A key request that does not fit the role's scope rules (message in French)."""


def _writing(session: Session) -> AbstractContextManager[None]:
    """The write lock, as every writer of the service takes it (on SQLite, a read that then
    writes fails at once when another process holds the lock). Callers (the CLI, the demo,
    tests) may have read first: these functions always committed the session, they still do."""
    if session.in_transaction():
        session.commit()
    return writing(session)


def resolve_scope(
    session: Session, role: Role, place_id: str | None, territory: str | None
) -> tuple[str | None, str | None]:
    """The scope of a key or a membership, checked against the reference: (place id, territory).
    A place may be named by its id in the imported source; a territory by its code or name."""
    if role in (Role.AGENT, Role.MEDIATEUR):
        if not place_id:
            raise KeyError_(f"Le rôle {role.value} exige --place (l'identifiant du lieu).")
        # The place's id here, or its id in the imported source (what an admin has at hand).
        place = session.get(Place, place_id)
        if place is None:
            same_source_id = session.exec(select(Place).where(Place.source_id == place_id)).all()
            if len(same_source_id) > 1:
                raise KeyError_(
                    f"{len(same_source_id)} lieux de sources différentes ont l'identifiant "
                    f"{place_id} : donnez l'identifiant Passerelle du lieu (lieu_…)."
                )
            place = same_source_id[0] if same_source_id else None
        if place is None:
            raise KeyError_(f"Lieu inconnu : {place_id}.")
        expected = PlaceKind.FRANCE_SERVICES if role is Role.AGENT else PlaceKind.MEDIATION
        if place.kind != expected.value:
            raise KeyError_(
                f"Le rôle {role.value} se rattache à un lieu de type {expected.value} ; "
                f"« {place.name} » est de type {place.kind}."
            )
        place_id, territory = place.id, None
    elif role is Role.COORDINATEUR:
        if not territory:
            raise KeyError_(f"Le rôle coordinateur exige --territory : {EXAMPLES}.")
        try:
            territory = str(parse_territory(session, territory, ["territory"]))
        except Problem as problem:
            raise KeyError_(problem.detail) from problem
        place_id = None
    else:
        place_id, territory = None, None
    return place_id, territory


def create_key(
    session: Session,
    role: Role,
    *,
    place_id: str | None = None,
    territory: str | None = None,
    name: str = "",
) -> tuple[ApiKey, str]:
    with _writing(session):
        place_id, territory = resolve_scope(session, role, place_id, territory)
        token = new_token()
        key = ApiKey(
            name=name,
            role=role.value,
            place_id=place_id,
            territory=territory,
            token_hash=hash_token(token),
            prefix=token[:8],
        )
        session.add(key)
        bump(session, "api_key")
        session.commit()
    session.refresh(key)
    return key, token


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.exec(select(ApiKey).order_by(col(ApiKey.created_at))).all())


def revoke_key(session: Session, key_id: str) -> ApiKey | None:
    with _writing(session):
        key = session.get(ApiKey, key_id)
        if key is None:
            return None
        if key.revoked_at is None:
            key.revoked_at = utcnow()
            session.add(key)
            bump(session, "api_key")
            session.commit()
    return key
