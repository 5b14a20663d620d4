"""AES-GCM payload codec: every payload Temporal stores is encrypted, key id alongside.

Each encrypted payload carries `encryption-key-id` in its metadata, so keys rotate
without a migration: new payloads are written with the active key, old ones decode
with whichever configured key wrote them. Keys come from settings
(`PETITION_CODEC_KEYS=k1:<base64 32 bytes>,k2:...`, `PETITION_CODEC_ACTIVE_KEY=k2`);
with none configured, a development key is generated once into `.data/codec-keys`
(git-ignored). No key is ever written into code.

Search attributes are never passed through a codec: they must hold no personal data.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
NONCE_BYTES = 12
KEY_BYTES = 32
TEST_ONLY_PREFIX = "test-only"  # the replay tests' key: committed, so public
# SHA-256 of the committed TEST-ONLY keys (tests/histories/TEST_ONLY_*_key.txt): refused
# whatever id an operator configures them under, since their bytes are public.
PUBLIC_KEY_FINGERPRINTS = frozenset({
    "4a9d0e1f48563617df2e8a9c32bc567525fda14a382f976945be45d20793cb08",  # codec
    "37a57b4a5c388aa051d24957c797c252a436e3c0dec2ecf60aa58f2ec857046f",  # assertions
})


def refuse_public_keys(ring: KeyRing, what: str) -> KeyRing:
    """A configured key ring, unless a key is one of the committed TEST-ONLY keys."""
    for key_id, key in ring.keys.items():
        if (key_id.startswith(TEST_ONLY_PREFIX)
                or hashlib.sha256(key).hexdigest() in PUBLIC_KEY_FINGERPRINTS):
            raise CodecKeyError(f"{what} key {key_id!r} is a TEST-ONLY key: it is public "
                                "(committed under tests/histories); never use it for real")
    return ring
_KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class CodecKeyError(ValueError):
    """The codec keys are misconfigured, or a payload names a key that is not configured."""


@dataclass(frozen=True)
class KeyRing:
    """Named 256-bit keys; `active` encrypts, all of them decrypt."""

    keys: dict[str, bytes]
    active: str

    def __post_init__(self) -> None:
        if not self.keys:
            raise CodecKeyError("no codec keys configured")
        for key_id, key in self.keys.items():
            if not _KEY_ID.match(key_id):
                raise CodecKeyError(f"codec key id {key_id!r}: use letters, digits, _ . -")
            if len(key) != KEY_BYTES:
                raise CodecKeyError(f"codec key {key_id!r} must be {KEY_BYTES} bytes, "
                                    f"not {len(key)}")
        if self.active not in self.keys:
            raise CodecKeyError(f"active codec key {self.active!r} is not among the configured "
                                f"keys ({', '.join(sorted(self.keys))})")

    @classmethod
    def parse(cls, spec: str, active: str | None = None) -> KeyRing:
        """`k1:<base64>,k2:<base64>`; the active key must be named when there are several."""
        keys: dict[str, bytes] = {}
        lines = [line for line in spec.splitlines() if not line.lstrip().startswith("#")]
        for part in (p.strip() for p in ",".join(lines).split(",")):
            if not part:
                continue
            key_id, sep, encoded = part.partition(":")
            if not sep:
                raise CodecKeyError("codec keys must be ID:BASE64 pairs separated by commas")
            try:
                key = base64.b64decode(encoded.strip(), validate=True)
            except binascii.Error:
                raise CodecKeyError(f"codec key {key_id.strip()!r} is not valid base64") from None
            if key_id.strip() in keys:
                raise CodecKeyError(f"codec key id {key_id.strip()!r} is given twice")
            keys[key_id.strip()] = key
        if active is None:
            if len(keys) > 1:
                raise CodecKeyError("several codec keys are configured: name the one that "
                                    "encrypts in PETITION_CODEC_ACTIVE_KEY")
            active = next(iter(keys), "")
        return cls(keys=keys, active=active)

    def spec(self) -> str:
        return ",".join(f"{k}:{base64.b64encode(v).decode()}" for k, v in self.keys.items())


def generate_key() -> bytes:
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


def dev_keyring(path: Path) -> KeyRing:
    """The development key in `path`, generated on first use (only this process's user can
    read it). Two processes racing to create it agree: the loser reads the winner's file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        spec = f"dev-{binascii.hexlify(os.urandom(4)).decode()}:" \
               f"{base64.b64encode(generate_key()).decode()}\n"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(spec)
        try:
            os.link(tmp, path)  # atomic, and fails if another process got there first
        except FileExistsError:
            pass
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    return KeyRing.parse(path.read_text(encoding="ascii"))


def keyring_from_settings(settings: object) -> KeyRing:
    """Configured keys if any, else the generated development key."""
    spec = getattr(settings, "codec_keys", None)
    if spec:
        return refuse_public_keys(
            KeyRing.parse(spec, getattr(settings, "codec_active_key", None)), "codec")
    if not getattr(settings, "dev_keys", False):
        raise CodecKeyError("no codec keys configured: set PETITION_CODEC_KEYS (and "
                            "PETITION_CODEC_ACTIVE_KEY when there are several)")
    return dev_keyring(Path(getattr(settings, "codec_key_file")))  # noqa: B009


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM over the whole serialised payload (metadata included, so the
    encoding and the type hints are hidden too). The key id is the associated data:
    a payload whose key id was tampered with fails to decrypt."""

    def __init__(self, keyring: KeyRing):
        self._ring = keyring
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keyring.keys.items()}

    @property
    def active_key_id(self) -> str:
        return self._ring.active

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        key_id = self._ring.active
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[key_id].encrypt(nonce, payload.SerializeToString(),
                                               key_id.encode())
        return Payload(metadata={"encoding": ENCODING, KEY_ID_METADATA: key_id.encode()},
                       data=nonce + sealed)

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            # Written before encryption was switched on (or by a tool without the codec):
            # passed through so such histories still replay.
            return payload
        key_id = payload.metadata.get(KEY_ID_METADATA, b"").decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise CodecKeyError(f"payload was encrypted with codec key {key_id!r}, which is not "
                                "configured (PETITION_CODEC_KEYS)")
        data = payload.data
        try:
            plain = cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], key_id.encode())
        except InvalidTag:
            raise CodecKeyError(f"payload does not decrypt with codec key {key_id!r}: "
                                "wrong key or tampered data") from None
        return Payload.FromString(plain)
