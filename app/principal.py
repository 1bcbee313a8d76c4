"""Who calls: the role and scope of a key or a membership, and the API tokens' hashing.

Plain data, no framework: services take a Principal and are called alike from the API, the
pages, the command line and tests (app.auth holds the FastAPI dependencies that build one)."""

import hashlib
import secrets
from dataclasses import dataclass
from enum import StrEnum

TOKEN_PREFIX = "psl_"


class Role(StrEnum):
    AGENT = "agent"
    MEDIATEUR = "mediateur"
    COORDINATEUR = "coordinateur"
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's role and scope. Plain data, usable without HTTP.

    A place acting from the link of an e-mail holds no key: `key_id` is None and `via` says
    how it acts ("lien_email"). A person signed in to the web pages holds no key either: they
    act in one of their memberships (`user_id`, `membership_id`), which the logs name."""

    key_id: str | None
    role: Role
    place_id: str | None
    territory: str | None
    via: str | None = None
    user_id: str | None = None
    membership_id: str | None = None

    @property
    def key(self) -> str:
        """The key's id, for what only a key's holder does (places, webhooks: the API)."""
        if self.key_id is None:
            raise LookupError("this action needs an API key")
        return self.key_id


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    # Tokens carry 256 random bits: a plain SHA-256 cannot be brute-forced, and lookups stay O(1).
    return hashlib.sha256(token.encode()).hexdigest()
