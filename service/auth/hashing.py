"""argon2id hashing (argon2-cffi) of passwords, client secrets and query codes. The query
codes themselves are derived from the registration number (security/query_code.py)."""

from __future__ import annotations

import asyncio
import secrets
from functools import lru_cache

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from security.query_code import QUERY_CODE_ALPHABET, QUERY_CODE_LENGTH, normalise_query_code

__all__ = ["QUERY_CODE_ALPHABET", "QUERY_CODE_LENGTH", "hash_secret", "hash_secret_async",
           "hasher", "new_client_secret", "normalise_query_code", "verify_secret",
           "verify_secret_async"]


@lru_cache(maxsize=1)
def hasher() -> PasswordHasher:
    return PasswordHasher(type=Type.ID)


@lru_cache(maxsize=1)
def _decoy() -> str:
    """Verified against when there is no account, so a missing one costs the same time."""
    return hasher().hash(secrets.token_urlsafe(16))


def hash_secret(secret: str) -> str:
    return hasher().hash(secret)


def verify_secret(stored: str | None, secret: str) -> bool:
    try:
        return hasher().verify(stored or _decoy(), secret) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def verify_secret_async(stored: str | None, secret: str) -> bool:
    return await asyncio.to_thread(verify_secret, stored, secret)


async def hash_secret_async(secret: str) -> str:
    return await asyncio.to_thread(hash_secret, secret)


def new_client_secret() -> str:
    return secrets.token_urlsafe(32)
