"""The service's own bearer tokens: HS256 JWTs signed with a rotating key ring.

Subject: a directory person id (`kind` staff), an intake client id (`client`), or
`petitioner-<registration no>` bound to one workflow (`petitioner`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import jwt

from security.codec import CodecKeyError, KeyRing, dev_keyring, refuse_public_keys
from service.config import ServiceSettings

ISSUER = "petition-flow-service"
AUDIENCE = "petition-flow-service"
Kind = Literal["staff", "client", "petitioner"]


class TokenError(ValueError):
    """Not a valid token of this service."""


def token_ring(settings: ServiceSettings) -> KeyRing:
    """The configured keys; a generated one only where development keys are allowed
    (`PETITION_DEV_KEYS`, as for every other key)."""
    from adapters.settings import get_settings

    if settings.token_keys:
        return refuse_public_keys(KeyRing.parse(settings.token_keys, settings.token_active_key),
                                  "service token")
    if not get_settings().dev_keys:
        raise CodecKeyError("no service token keys configured: set "
                            "PETITION_SERVICE_TOKEN_KEYS")
    return dev_keyring(settings.token_key_file)


@dataclass(frozen=True)
class Claims:
    kind: Kind
    subject: str
    expires_at: datetime
    workflow_id: str | None = None  # petitioner: the one case
    registration_no: str | None = None


class TokenIssuer:
    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring

    def issue(self, kind: Kind, subject: str, lifetime: timedelta, *,
              now: datetime | None = None, **extra: str) -> tuple[str, int]:
        now = now or datetime.now(UTC)
        claims: dict[str, Any] = {
            "iss": ISSUER, "aud": AUDIENCE, "sub": subject, "kind": kind,
            "iat": int(now.timestamp()), "exp": int((now + lifetime).timestamp()),
            "jti": uuid.uuid4().hex, **extra}
        token = jwt.encode(claims, self.ring.keys[self.ring.active], algorithm="HS256",
                           headers={"kid": self.ring.active})
        return token, int(lifetime.total_seconds())

    def is_ours(self, token: str) -> bool:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return False
        return header.get("alg") == "HS256"

    def verify(self, token: str) -> Claims:
        try:
            key_id = jwt.get_unverified_header(token).get("kid")
            key = self.ring.keys.get(str(key_id))
            if key is None:
                raise TokenError("signed with an unknown key")
            claims = jwt.decode(token, key, algorithms=["HS256"], audience=AUDIENCE,
                                issuer=ISSUER, options={"require": ["exp", "sub", "iss",
                                                                    "aud"]})
        except jwt.ExpiredSignatureError:
            raise TokenError("the token has expired") from None
        except jwt.PyJWTError as err:
            raise TokenError(f"invalid token ({type(err).__name__})") from None
        kind = claims.get("kind")
        if kind not in ("staff", "client", "petitioner"):
            raise TokenError("invalid token kind")
        if kind == "petitioner" and not claims.get("wf"):
            raise TokenError("a petitioner token must name its case")
        return Claims(kind=kind, subject=str(claims["sub"]),
                      expires_at=datetime.fromtimestamp(claims["exp"], UTC),
                      workflow_id=claims.get("wf"), registration_no=claims.get("reg"))
