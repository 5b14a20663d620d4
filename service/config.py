"""The service's own settings (environment prefix PETITION_SERVICE_).

Kept apart from `adapters.settings.Settings` for now (that module is shared); the database
and Temporal addresses still come from there.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from adapters.settings import PROJECT_ROOT
from domain.models import MAX_INTAKE_JSON_BYTES


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PETITION_SERVICE_", env_file=".env",
                                      extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000
    # HS256 keys for the service's own bearer tokens: `k1:<base64 32 bytes>,k2:...` (the
    # active one signs, all verify: rotation). Unset in development: generated once into
    # `token_key_file` where development keys are allowed (PETITION_DEV_KEYS).
    token_keys: str | None = None
    token_active_key: str | None = None
    token_key_file: Path = PROJECT_ROOT / ".data" / "service-keys"
    staff_token_minutes: int = Field(default=15, ge=1, le=24 * 60)
    client_token_minutes: int = Field(default=15, ge=1, le=24 * 60)
    petitioner_token_minutes: int = Field(default=30, ge=1, le=24 * 60)
    # Local accounts and query codes: locked for `lockout_minutes` after
    # `lockout_failures` failures in a row.
    lockout_failures: int = Field(default=5, ge=1)
    lockout_minutes: int = Field(default=15, ge=1)
    # Per client (bearer token, else address): a token bucket.
    rate_per_second: float = Field(default=20.0, gt=0)
    rate_burst: int = Field(default=60, ge=1)
    # The largest valid intake plus headroom for JSON escaping.
    max_body_bytes: int = MAX_INTAKE_JSON_BYTES + 100_000
    # OpenID Connect bearer tokens (Keycloak realm `petition-flow` in development):
    # `preferred_username` is the directory person id. Unset issuer: OIDC is off.
    oidc_issuer: str | None = None
    oidc_audience: str = "petition-flow"
    oidc_jwks_url: str | None = None  # default: <issuer>/protocol/openid-connect/certs
