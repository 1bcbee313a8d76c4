"""Settings read once from the environment (DATABASE_URL, PASSERELLE_*)."""

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PASSERELLE_", extra="ignore")

    database_url: str = Field(default="sqlite:///./passerelle.db", validation_alias="DATABASE_URL")
    # Farthest a médiation place may be from the person's commune to receive a referral.
    max_referral_distance_km: float = 30.0
    # How many other suitable places an orientation offers besides the chosen one.
    alternatives: int = 3
    # Days a médiation place has to act on a referral before it expires.
    referral_ttl_days: int = 14
    # How often the running service expires referrals past their deadline.
    expiry_check_seconds: float = Field(default=60.0, gt=0)
    # Personal data (contract, "Personal data"): contact data kept this long after the
    # accompaniment ended; orientations stripped of everything personal after this long.
    contact_retention_days: int = Field(default=30, ge=0)
    record_retention_days: int = Field(default=730, ge=1)
    # How often the running service applies them.
    purge_check_seconds: float = Field(default=3600.0, gt=0)
    # Notifications (app.notifications.outbox). Without an SMTP URL, e-mails wait in the outbox.
    smtp_url: str | None = None  # smtp://user:pass@host:587 (STARTTLS if offered), smtps://…:465
    mail_from: str = "Passerelle <ne-pas-repondre@passerelle.invalid>"
    public_url: str = "http://127.0.0.1:8000"  # links in e-mails
    outbox_check_seconds: float = Field(default=5.0, gt=0)
    outbox_max_attempts: int = Field(default=10, ge=1)
    # A delivery holds what it claimed for this long, renewed while it runs: a process that
    # dies mid-batch gives its messages back after it. A batch stops trying new messages after
    # outbox_batch_seconds and gives the rest back (a slow SMTP server, a stopping service).
    outbox_lease_seconds: float = Field(default=60.0, ge=3)
    outbox_batch_seconds: float = Field(default=60.0, gt=0)
    # On SIGTERM, the background jobs finish what they started for at most this long.
    shutdown_seconds: float = Field(default=10.0, ge=0)
    reminder_days_before: float = Field(default=3.0, ge=0)
    # The link of an e-mail (app.services.links): how long one works, and how long after its
    # referral is final.
    link_days: float = Field(default=30.0, gt=0)
    link_grace_days: float = Field(default=7.0, ge=0)
    # Webhooks to private, loopback or link-local addresses (an internal host): refused unless
    # an admin allows them (tests, a receiver on the same private network).
    webhook_allow_private: bool = False
    # Web pages (app.web): the key that signs their session cookies (without it, each process
    # draws one and sessions end with it), and how long a session lasts without a new login.
    secret_key: str | None = Field(default=None, min_length=32)
    web_session_hours: float = Field(default=10.0, gt=0)
    # The API-key form of the login page: for demos (serve --demo) and tests only; people sign
    # in as themselves (OpenID Connect, or a one-time link by e-mail).
    web_key_login: bool = False
    # Sign-in with OpenID Connect (ProConnect or any compliant provider): unset issuer, the
    # login page offers the e-mail link alone. The redirect URI to register with the provider
    # is PUBLIC_URL + /connexion/oidc/retour.
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = None
    oidc_scopes: str = "openid email given_name usual_name siret"
    oidc_acr_values: str | None = None  # e.g. "eidas1", what ProConnect asks for
    oidc_provider_name: str = "ProConnect"
    # A one-time sign-in link works this long (and once); an invitation's link, longer.
    login_link_minutes: float = Field(default=15.0, gt=0)
    invitation_days: float = Field(default=7.0, gt=0)
    # A deactivated person's name and e-mail are erased this long after deactivation.
    account_retention_days: int = Field(default=365, ge=0)
    max_body_bytes: int = 64 * 1024
    # Threads that serve requests, and as many database connections: a thread never waits for
    # a connection, so no request can hold one while waiting for a thread (the old stall).
    threads: int = Field(default=20, ge=1, le=200)
    # How often a process looks whether API keys, communes or places changed elsewhere
    # (another worker, the command line); a change made in this process is seen at once.
    cache_check_seconds: float = Field(default=1.0, gt=0)
    # Wrong tokens allowed per client address and minute before 429, counted in the database
    # for every process of a fleet.
    auth_failures_per_minute: int = Field(default=20, ge=1)
    # The reverse proxies (load balancers) whose X-Forwarded-For and X-Forwarded-Proto are
    # believed: comma-separated addresses or networks ("10.0.0.5,192.168.1.0/24", "*" for
    # any). Empty (the default): none, the client address is the TCP peer's.
    trusted_proxies: str = ""
    # Slow clients: the request line and headers, then the whole body, must arrive in time.
    max_header_bytes: int = Field(default=16 * 1024, ge=1024)
    request_read_timeout_seconds: float = Field(default=20.0, gt=0)


@lru_cache
def get_settings() -> Settings:
    return Settings()
