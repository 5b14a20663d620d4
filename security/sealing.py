"""Envelope encryption of personal-data columns (petitioner, letter, attachments, notices,
the free text of the audit trail).

Each value is sealed with a *data key* (AES-256-GCM); data keys are stored in the
database wrapped by a *key-encryption key* (KEK) that never reaches the database:
`PETITION_DATA_KEYS=kek1:<base64 32 bytes>,...` (`PETITION_DATA_ACTIVE_KEY` names the one
that wraps new data keys), or a KMS/HSM behind `KeyWrapper`. Retiring a KEK rewraps the
data keys (a few rows); retiring a data key re-encrypts the values it sealed
(`petition keys`, starter/keys_cmd.py).

A sealed value is `0x01 | data key id (16 ASCII bytes) | nonce (12) | ciphertext+tag`.
The associated data binds it to its data key and to its place -- table, column and the
row's natural key (`petitions.content:<intake id>`) -- so a ciphertext copied into another
row or column does not open.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from security.codec import KeyRing, configured_ring

VERSION = b"\x01"
KEY_ID_BYTES = 16
NONCE_BYTES = 12
HEADER_BYTES = 1 + KEY_ID_BYTES + NONCE_BYTES
CIPHERS = ("aes-256-gcm", "sm4-gcm")


class SealingError(ValueError):
    """A value does not open: wrong key, moved, tampered, or its data key is unknown."""


@dataclass(frozen=True)
class StoredDataKey:
    id: str
    kek_id: str
    wrapped: bytes
    created_at: datetime
    retired_at: datetime | None = None
    cipher: str = "aes-256-gcm"


class Aead(Protocol):
    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes: ...

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes: ...


class Sm4Gcm:
    """SM4 (GB/T 32907) in GCM mode, for a bureau whose commercial-cryptography review
    requires the national algorithm (`PETITION_DATA_CIPHER=sm4-gcm`); 128-bit keys."""

    KEY_BYTES = 16
    TAG_BYTES = 16

    def __init__(self, key: bytes):
        if len(key) != self.KEY_BYTES:
            raise SealingError("an SM4 key is 16 bytes")
        self._key = key

    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes:
        encryptor = Cipher(algorithms.SM4(self._key), modes.GCM(nonce)).encryptor()
        encryptor.authenticate_additional_data(associated_data or b"")
        return encryptor.update(data) + encryptor.finalize() + encryptor.tag

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes:
        if len(data) < self.TAG_BYTES:
            raise InvalidTag
        body, tag = data[:-self.TAG_BYTES], data[-self.TAG_BYTES:]
        decryptor = Cipher(algorithms.SM4(self._key), modes.GCM(nonce, tag)).decryptor()
        decryptor.authenticate_additional_data(associated_data or b"")
        return decryptor.update(body) + decryptor.finalize()


def _aead(cipher: str, key: bytes) -> Aead:
    if cipher == "sm4-gcm":
        return Sm4Gcm(key)
    if cipher == "aes-256-gcm":
        return AESGCM(key)
    raise SealingError(f"unknown data cipher {cipher!r} (one of {', '.join(CIPHERS)})")


def _new_key(cipher: str) -> bytes:
    _aead(cipher, b"\x00" * (16 if cipher == "sm4-gcm" else 32))  # refuses an unknown one
    return os.urandom(Sm4Gcm.KEY_BYTES if cipher == "sm4-gcm" else 32)


class KeyWrapper(Protocol):
    """Wraps and unwraps data keys: a local KEK ring here; a KMS or HSM in its place."""

    @property
    def active_id(self) -> str: ...

    def ids(self) -> list[str]: ...

    def wrap(self, key_id: str, key: bytes) -> tuple[str, bytes]: ...

    def unwrap(self, kek_id: str, key_id: str, wrapped: bytes) -> bytes: ...


class DataKeyStore(Protocol):
    """Where the wrapped data keys live (adapters/data_keys.py: the `data_keys` table)."""

    async def get(self, key_id: str) -> StoredDataKey | None: ...

    async def newest_usable(self, kek_id: str, cipher: str) -> StoredDataKey | None: ...

    async def add(self, key: StoredDataKey) -> None: ...


class LocalKeyWrapper:
    """KEKs from settings; each wrap is AES-256-GCM bound to the data key's id."""

    def __init__(self, ring: KeyRing):
        self._ring = ring
        self._ciphers = {kid: AESGCM(key) for kid, key in ring.keys.items()}

    @property
    def active_id(self) -> str:
        return self._ring.active

    def ids(self) -> list[str]:
        return sorted(self._ring.keys)

    def wrap(self, key_id: str, key: bytes) -> tuple[str, bytes]:
        nonce = os.urandom(NONCE_BYTES)
        kek = self._ring.active
        return kek, nonce + self._ciphers[kek].encrypt(nonce, key, _wrap_aad(key_id))

    def unwrap(self, kek_id: str, key_id: str, wrapped: bytes) -> bytes:
        cipher = self._ciphers.get(kek_id)
        if cipher is None:
            raise SealingError(f"data key {key_id} is wrapped by key-encryption key "
                               f"{kek_id!r}, which is not configured (PETITION_DATA_KEYS)")
        try:
            return cipher.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:],
                                  _wrap_aad(key_id))
        except InvalidTag:
            raise SealingError(f"data key {key_id} does not unwrap with {kek_id!r}") from None


def _wrap_aad(key_id: str) -> bytes:
    return b"petition-flow/data-key/" + key_id.encode()


def new_key_id() -> str:
    return secrets.token_hex(KEY_ID_BYTES // 2)


def key_id_of(sealed: bytes) -> str:
    if len(sealed) <= HEADER_BYTES or sealed[:1] != VERSION:
        raise SealingError("not a sealed value")
    try:
        return sealed[1:1 + KEY_ID_BYTES].decode("ascii")
    except UnicodeDecodeError:
        raise SealingError("not a sealed value") from None


class Vault:
    """Seals and opens values. The active data key is reused for `active_for` seconds, then
    looked up again, so a data key the key tool retired stops sealing new values within
    that time; a data key that does not exist yet is created and wrapped on first use."""

    def __init__(self, wrapper: KeyWrapper, store: DataKeyStore, *, active_for: float = 60.0,
                 monotonic: Callable[[], float] = time.monotonic,
                 cipher: str = "aes-256-gcm"):
        _new_key(cipher)  # an unknown cipher is refused at once, not at the first seal
        self._cipher_name = cipher
        self._wrapper = wrapper
        self._store = store
        self._active_for = active_for
        self._monotonic = monotonic
        self._active: tuple[str, Aead, float] | None = None
        # One lookup (and at most one new data key) at a time per process: activities
        # starting together on a fresh database would otherwise each create a key.
        self._choosing = asyncio.Lock()
        self._refresh: asyncio.Future[tuple[str, Aead, float]] | None = None
        self._opened: dict[str, Aead] = {}

    @property
    def wrapper(self) -> KeyWrapper:
        return self._wrapper

    async def active_key_id(self) -> str:
        return (await self._active_key())[0]

    async def seal(self, plain: bytes, where: str) -> bytes:
        key_id, cipher, _ = await self._active_key()
        nonce = os.urandom(NONCE_BYTES)
        header = VERSION + key_id.encode("ascii") + nonce
        return header + cipher.encrypt(nonce, plain, _aad(key_id, where))

    async def open(self, sealed: bytes, where: str) -> bytes:
        key_id = key_id_of(sealed)
        cipher = await self._cipher(key_id)
        try:
            return cipher.decrypt(sealed[1 + KEY_ID_BYTES:HEADER_BYTES], sealed[HEADER_BYTES:],
                                  _aad(key_id, where))
        except InvalidTag:
            raise SealingError(f"a value sealed for {where.partition(':')[0]} does not open "
                               "here: moved from another row or tampered with") from None

    async def seal_json(self, value: Any, where: str) -> bytes:
        return await self.seal(json.dumps(value, ensure_ascii=False, sort_keys=True,
                                          separators=(",", ":")).encode(), where)

    async def open_json(self, sealed: bytes, where: str) -> Any:
        return json.loads(await self.open(sealed, where))

    async def reseal(self, sealed: bytes, where: str) -> bytes:
        """The same value under the active data key (the key tool's re-encryption)."""
        return await self.seal(await self.open(sealed, where), where)

    def forget_active(self) -> None:
        self._active = None

    async def _active_key(self) -> tuple[str, Aead, float]:
        now = self._monotonic()
        if self._active is not None:
            if now - self._active[2] >= self._active_for and self._refresh is None:
                # Looked up again in the background, never by a caller that may hold a
                # database connection of the same pool: activities seal inside their
                # transactions, and a pool they all wait in would starve the lookup.
                self._refresh = asyncio.ensure_future(self._choose())
            return self._active
        return await self._choose()

    async def _choose(self) -> tuple[str, Aead, float]:
        try:
            return await self._lookup()
        finally:
            self._refresh = None

    async def _lookup(self) -> tuple[str, Aead, float]:
        async with self._choosing:
            now = self._monotonic()
            if self._active is not None and now - self._active[2] < self._active_for:
                return self._active
            stored = await self._store.newest_usable(self._wrapper.active_id,
                                                     self._cipher_name)
            if stored is None:
                stored = await self._create()
            self._active = (stored.id, await self._cipher(stored.id, stored), now)
            return self._active

    async def _create(self) -> StoredDataKey:
        key_id, key = new_key_id(), _new_key(self._cipher_name)
        kek_id, wrapped = self._wrapper.wrap(key_id, key)
        stored = StoredDataKey(key_id, kek_id, wrapped, created_at=_utc_now(),
                               cipher=self._cipher_name)
        await self._store.add(stored)
        self._opened[key_id] = _aead(stored.cipher, key)
        return stored

    async def _cipher(self, key_id: str, stored: StoredDataKey | None = None) -> Aead:
        cipher = self._opened.get(key_id)
        if cipher is None:
            stored = stored or await self._store.get(key_id)
            if stored is None:
                raise SealingError(f"data key {key_id} is not in the database (shredded?)")
            cipher = _aead(stored.cipher,
                           self._wrapper.unwrap(stored.kek_id, key_id, stored.wrapped))
            self._opened[key_id] = cipher
        return cipher


def _aad(key_id: str, where: str) -> bytes:
    return b"petition-flow/v1|" + key_id.encode() + b"|" + where.encode()


def _utc_now() -> datetime:
    from datetime import UTC

    return datetime.now(UTC)


def kek_ring_from_settings(settings: object) -> KeyRing:
    """The key-encryption keys (PETITION_DATA_KEYS, PETITION_DATA_ACTIVE_KEY)."""
    return configured_ring(settings, "data_key", "data")
