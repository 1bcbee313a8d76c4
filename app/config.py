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
    max_body_bytes: int = 64 * 1024


@lru_cache
def get_settings() -> Settings:
    return Settings()
