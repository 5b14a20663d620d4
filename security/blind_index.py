"""The blind index: keyed HMACs that let the database find equal values without holding
them -- the matter key (same petitioner, category and respondent), and exact lookups by
ID number and by phone.

An unkeyed hash of an ID number is no protection: there are about 10^11 plausible ID
numbers, so a digest is confirmed or brute-forced in minutes. The key
(`PETITION_INDEX_KEY=ix:<base64 32 bytes>`) stays outside the database; without it the
index reveals only which rows are equal.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from domain.case import matter_digest
from domain.models import PetitionIntake
from security.codec import CodecKeyError, configured_ring

DIGEST_CHARS = 40
_NOT_DIGIT = re.compile(r"[^0-9]")


class BlindIndex:
    def __init__(self, key: bytes):
        if len(key) < 32:
            raise CodecKeyError("the blind index key must be at least 32 bytes")
        self._key = key

    def _mac(self, kind: str, value: str) -> str:
        return hmac.new(self._key, f"{kind}|{value}".encode(),
                        hashlib.sha256).hexdigest()[:DIGEST_CHARS]

    def matter_key(self, intake: PetitionIntake) -> str:
        return self.matter_key_of(matter_digest(intake))

    def matter_key_of(self, digest: str) -> str:
        """Keyed over the core's digest (domain.case.matter_digest), which stays pure."""
        return self._mac("matter", digest)

    def id_number(self, id_number: str) -> str:
        return self._mac("id", id_number.strip().upper())

    def phone(self, phone: str) -> str:
        """Digits only, and the national number for +86/0086 numbers: `+86 138-0013-8000`
        and `13800138000` are one phone."""
        digits = _NOT_DIGIT.sub("", phone)
        if phone.strip().startswith("+86") or digits.startswith("0086"):
            digits = digits[2:] if phone.strip().startswith("+86") else digits[4:]
        return self._mac("phone", digits)


def index_from_settings(settings: object) -> BlindIndex:
    """The blind index's one key (PETITION_INDEX_KEY)."""
    ring = configured_ring(settings, "index_key", "blind index", plural=False)
    return BlindIndex(ring.keys[ring.active])
