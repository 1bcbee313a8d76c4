"""API keys -> Principal(role, scope), and the dependencies that enforce roles."""

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlmodel import Session, select

from app.db import get_session
from app.errors import Problem
from app.models import ApiKey, Role

TOKEN_PREFIX = "psl_"


@dataclass(frozen=True)
class Principal:
    key_id: str
    role: Role
    place_id: str | None
    territory: str | None


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    # Tokens carry 256 random bits: a plain SHA-256 cannot be brute-forced, and lookups stay O(1).
    return hashlib.sha256(token.encode()).hexdigest()


def _unauthorized(detail: str) -> Problem:
    return Problem(401, detail, slug="authentification", headers={"WWW-Authenticate": "Bearer"})


def current_principal(
    request: Request, session: Annotated[Session, Depends(get_session)]
) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized(
            "Jeton d'accès manquant : ajoutez l'en-tête « Authorization: Bearer <jeton> »."
        )
    key = session.exec(select(ApiKey).where(ApiKey.token_hash == hash_token(token.strip()))).first()
    if key is None or key.revoked_at is not None:
        raise _unauthorized("Jeton d'accès inconnu ou révoqué.")
    return Principal(key.id, Role(key.role), key.place_id, key.territory)


def require(*roles: Role) -> Callable[[Principal], Principal]:
    def dependency(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if principal.role not in roles:
            allowed = ", ".join(r.value for r in roles)
            raise Problem(
                403,
                f"Votre rôle « {principal.role.value} » ne permet pas cette action "
                f"(rôles autorisés : {allowed}).",
                slug="acces-refuse",
            )
        return principal

    return dependency


AnyRole = Annotated[Principal, Depends(current_principal)]
Agent = Annotated[Principal, Depends(require(Role.AGENT))]
Mediateur = Annotated[Principal, Depends(require(Role.MEDIATEUR))]
AgentOrMediateur = Annotated[Principal, Depends(require(Role.AGENT, Role.MEDIATEUR))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
