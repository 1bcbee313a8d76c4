"""Sign-in with OpenID Connect (ProConnect, or any compliant provider), with Authlib's
Starlette client: the authorization-code flow with PKCE (S256), `state` and `nonce`; the ID
token's signature (the provider's published keys) and claims (iss, aud, exp, iat, nonce,
at_hash) checked by Authlib; userinfo read as JSON or, as ProConnect sends it, as a JWT signed
with the same keys (checked by joserfc, Authlib's JOSE library). No JOSE is written here.

The state, nonce and PKCE verifier of a flow travel in a signed cookie of their own (the
pages have no server-side session before sign-in); nothing of the provider's answer is
logged."""

import logging
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.integrations.starlette_client import OAuth, OAuthError
from joserfc import jwt as jose_jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from app.config import Settings

logger = logging.getLogger("passerelle")

CALLBACK = "/connexion/oidc/retour"


class OidcRefused(Exception):
    """The provider's answer cannot sign anyone in; `words` say why, in French, for the page."""

    def __init__(self, words: str) -> None:
        super().__init__(words)
        self.words = words


@dataclass(frozen=True)
class Started:
    url: str
    state: str
    nonce: str
    code_verifier: str


def configured(settings: Settings) -> bool:
    return bool(settings.oidc_issuer and settings.oidc_client_id)


class Oidc:
    """One provider's client for the process: its metadata and keys are read once (again
    when an unknown key id appears), on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        issuer = (settings.oidc_issuer or "").rstrip("/")
        self.issuer = issuer
        self.client: Any = OAuth().register(
            "oidc",
            client_id=settings.oidc_client_id,
            client_secret=settings.oidc_client_secret,
            server_metadata_url=f"{issuer}/.well-known/openid-configuration",
            client_kwargs={
                "scope": settings.oidc_scopes,
                "code_challenge_method": "S256",
                "timeout": 10.0,
            },
        )

    def redirect_uri(self) -> str:
        return self.settings.public_url.rstrip("/") + CALLBACK

    async def _metadata(self) -> dict[str, Any]:
        try:
            metadata: dict[str, Any] = await self.client.load_server_metadata()
        except (httpx.HTTPError, ValueError) as error:
            logger.warning("Fournisseur d'identité injoignable (%s).", type(error).__name__)
            raise OidcRefused(
                f"{self.settings.oidc_provider_name} ne répond pas pour le moment : réessayez "
                "dans quelques minutes, ou recevez un lien de connexion par e-mail."
            ) from error
        if metadata.get("issuer", "").rstrip("/") != self.issuer:
            raise OidcRefused("Le fournisseur d'identité configuré ne se présente pas comme tel.")
        methods = metadata.get("token_endpoint_auth_methods_supported") or []
        if "client_secret_basic" not in methods and "client_secret_post" in methods:
            self.client.client_kwargs["token_endpoint_auth_method"] = "client_secret_post"
        return metadata

    async def start(self) -> Started:
        await self._metadata()
        extra = (
            {"acr_values": self.settings.oidc_acr_values} if self.settings.oidc_acr_values else {}
        )
        found = await self.client.create_authorization_url(self.redirect_uri(), **extra)
        return Started(found["url"], found["state"], found["nonce"], found["code_verifier"])

    async def finish(self, code: str, nonce: str, code_verifier: str) -> dict[str, Any]:
        """The claims of the person the provider signed in: the ID token's, then userinfo's
        (its `sub` must be the ID token's)."""
        metadata = await self._metadata()
        try:
            token = await self.client.fetch_access_token(
                redirect_uri=self.redirect_uri(), code=code, code_verifier=code_verifier
            )
        except (OAuthError, httpx.HTTPError, ValueError) as error:
            logger.info("Code d'autorisation refusé (%s).", type(error).__name__)
            raise OidcRefused(
                "La connexion n'a pas abouti : le fournisseur d'identité a refusé le code "
                "(déjà utilisé ou trop ancien). Recommencez depuis la page de connexion."
            ) from error
        if "id_token" not in token:
            raise OidcRefused("Le fournisseur d'identité n'a pas envoyé de jeton d'identité.")
        try:
            id_claims = dict(await self.client.parse_id_token(token, nonce=nonce))
        except (JoseError, ValueError, KeyError, httpx.HTTPError) as error:
            logger.info("Jeton d'identité refusé (%s).", type(error).__name__)
            raise OidcRefused(
                "Le jeton d'identité reçu n'est pas valide (signature, émetteur, destinataire, "
                "date ou nonce) : personne n'a été connecté. Recommencez depuis la page de "
                "connexion."
            ) from error
        claims = dict(id_claims)
        if metadata.get("userinfo_endpoint"):
            userinfo = await self._userinfo(metadata, token)
            if str(userinfo.get("sub")) != str(id_claims.get("sub")):
                raise OidcRefused("Les informations du compte ne correspondent pas au jeton reçu.")
            claims.update(userinfo)
        return claims

    async def _userinfo(self, metadata: dict[str, Any], token: dict[str, Any]) -> dict[str, Any]:
        try:
            answer = await self.client.get(metadata["userinfo_endpoint"], token=token)
            answer.raise_for_status()
        except (OAuthError, httpx.HTTPError) as error:
            raise OidcRefused(
                "Le fournisseur d'identité n'a pas donné les informations du compte : "
                "recommencez dans quelques minutes."
            ) from error
        if not answer.headers.get("content-type", "").startswith("application/jwt"):
            found = answer.json()
            if not isinstance(found, dict):
                raise OidcRefused("Informations du compte illisibles.")
            return found
        # Signed userinfo (ProConnect): the provider's keys, its issuer, this client.
        algorithms = metadata.get("userinfo_signing_alg_values_supported") or ["RS256", "ES256"]
        try:
            keys = KeySet.import_key_set(await self.client.fetch_jwk_set())
            decoded = jose_jwt.decode(
                answer.text.strip(), keys, registry=JWSRegistry(algorithms=algorithms)
            )
            jose_jwt.JWTClaimsRegistry(
                leeway=120,
                iss={"essential": True, "value": metadata["issuer"]},
                aud={"essential": True, "value": self.settings.oidc_client_id or ""},
            ).validate(decoded.claims)
        except (JoseError, ValueError) as error:
            raise OidcRefused(
                "Les informations du compte reçues ne sont pas signées comme attendu."
            ) from error
        return dict(decoded.claims)
