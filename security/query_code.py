"""The petitioner's query code (查询码), derived: a keyed HMAC of the registration number,
written in QUERY_CODE_ALPHABET, 8 characters.

Derived rather than drawn at random, so every written notice of a case can print it (the
delivery renders it again for each letter, SMS and e-mail) while the database still holds
no code: only the key (`PETITION_QUERY_CODE_KEY=qc:<base64 32 bytes>`) and the
registration number make it, and the key stays outside the database. A sign-in is checked
by recomputing it (`QueryCodes.matches`, a constant-time compare).

Changing the key changes every case's code: the notices already sent would print codes
that no longer sign in. So it is one key, never rotated without telling the petitioners.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache

from security.codec import CodecKeyError, configured_ring

# No I, L, O, 0 or 1: a query code is read off a letter and typed in by hand.
QUERY_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
QUERY_CODE_LENGTH = 8
_DOMAIN = b"petition-flow query code v1|"


def normalise_query_code(text: str) -> str:
    """What a petitioner typed, as the code is written: upper case, no spaces or dashes."""
    return "".join(ch for ch in text.upper() if ch not in " -")


class QueryCodes:
    def __init__(self, key: bytes):
        if len(key) < 32:
            raise CodecKeyError("the query code key must be at least 32 bytes")
        self._key = key

    def code_for(self, registration_no: str) -> str:
        """The case's query code: 8 characters of the alphabet (31^8, about 40 bits), from
        128 bits of the HMAC (the modulo bias is below 2^-88)."""
        mac = hmac.new(self._key, _DOMAIN + registration_no.strip().encode(),
                       hashlib.sha256).digest()
        number = int.from_bytes(mac[:16], "big")
        chars = []
        for _ in range(QUERY_CODE_LENGTH):
            number, digit = divmod(number, len(QUERY_CODE_ALPHABET))
            chars.append(QUERY_CODE_ALPHABET[digit])
        return "".join(chars)

    def matches(self, registration_no: str, typed: str) -> bool:
        """Whether `typed` is the case's code (however spaced or cased), in constant time."""
        expected = self.code_for(registration_no).encode()
        return hmac.compare_digest(expected, normalise_query_code(typed).encode("utf-8"))


def query_codes_from_settings(settings: object) -> QueryCodes:
    """The query code's one key (PETITION_QUERY_CODE_KEY; generated once into
    `query_code_key_file` where development keys are allowed)."""
    ring = configured_ring(settings, "query_code_key", "query code", plural=False)
    return _query_codes(ring.keys[ring.active])


@lru_cache(maxsize=4)
def _query_codes(key: bytes) -> QueryCodes:
    return QueryCodes(key)
