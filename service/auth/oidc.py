"""OpenID Connect bearer tokens (the bureau's provider; Keycloak realm `petition-flow` in
development), verified against the provider's JWKS: signature, issuer, audience, expiry.
`preferred_username` is the directory person id."""

from __future__ import annotations

import asyncio
from typing import Any

import jwt
from jwt import PyJWKClient

from service.auth.tokens import TokenError
from service.config import ServiceSettings

ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]


class OidcVerifier:
    def __init__(self, issuer: str, audience: str, jwks_url: str | None = None) -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self.jwks = PyJWKClient(jwks_url or f"{self.issuer}/protocol/openid-connect/certs",
                                cache_keys=True, lifespan=300)

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> OidcVerifier | None:
        if not settings.oidc_issuer:
            return None
        return cls(settings.oidc_issuer, settings.oidc_audience, settings.oidc_jwks_url)

    def verify_sync(self, token: str) -> dict[str, Any]:
        """The token's claims, once signature, issuer, audience and expiry check out."""
        try:
            key = self.jwks.get_signing_key_from_jwt(token)
            claims = jwt.decode(token, key.key, algorithms=ALGORITHMS, audience=self.audience,
                                issuer=self.issuer,
                                options={"require": ["exp", "iss", "aud"]})
        except jwt.ExpiredSignatureError:
            raise TokenError("the token has expired") from None
        except jwt.PyJWTError as err:
            raise TokenError(f"invalid token ({type(err).__name__})") from None
        return dict(claims)

    async def verify(self, token: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.verify_sync, token)
