"""What a channel is handed and what it answers: one rendered notice to one address.

A channel either confirms (returns the provider's message id, or the archived letter's
path) or raises `DeliveryFailed` with a reason of its own making. The reason is stored in
`notice_deliveries.last_error` and logged: it names what went wrong (`sms: HTTP 503`,
`smtp: 450`) and never quotes a provider's or server's text, which may echo the number
or the address.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

LETTER, SMS, EMAIL = "letter", "sms", "email"
CHANNELS = (LETTER, SMS, EMAIL)

# The namespace of the ids derived from a delivery (provider idempotency ids, Message-IDs).
DELIVERY_NAMESPACE = uuid.UUID("6f3c1d2e-8a47-5b0e-9c61-2f4d7a9b1e35")


class RenderedNotice(Protocol):
    """documents.render.RenderedNotice: the letter's PDF and the short texts."""

    @property
    def pdf(self) -> bytes: ...

    @property
    def sms(self) -> str: ...

    @property
    def mail_subject(self) -> str: ...

    @property
    def mail_body(self) -> str: ...


@dataclass(frozen=True)
class Contact:
    """Where the petitioner asked to be told: opened from `petitions.petitioner_sealed` at
    send time, never stored with the delivery. `repr` shows nothing of it."""

    phone: str | None = field(default=None, repr=False)
    email: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Parcel:
    """One delivery of one notice through one channel."""

    delivery_id: int
    delivery_key: str  # `<notice key>:<channel>`, unique
    notice_key: str
    kind: str  # the notice's kind (NoticeFacts.kind), else its template
    registration_no: str
    created_at: datetime
    rendered: RenderedNotice = field(repr=False)
    contact: Contact = field(repr=False)

    @property
    def idempotency_id(self) -> str:
        """The provider's idempotency id: the same for every attempt of this delivery, and
        for no other delivery."""
        return str(uuid.uuid5(DELIVERY_NAMESPACE, f"delivery:{self.delivery_key}"))

    @property
    def short_key(self) -> str:
        return hashlib.sha256(self.notice_key.encode()).hexdigest()[:10]


class DeliveryFailed(Exception):  # noqa: N818 - what a channel answers, not a bug
    """The channel did not confirm. `permanent`: retrying cannot help (no such number, the
    mailbox refused); otherwise the delivery rests and is tried again."""

    def __init__(self, reason: str, *, permanent: bool = False):
        super().__init__(reason)
        self.reason = safe_reason(reason)
        self.permanent = permanent


class Channel(Protocol):
    """Letter, SMS or e-mail. `send` returns the provider's message id (or the letter's
    archived path) once the channel confirmed, and must be safe to repeat for the same
    parcel: a drainer that died after the provider accepted sends it again."""

    @property
    def name(self) -> str: ...

    def ready_for(self, contact: Contact) -> bool:
        """Whether this parcel can go this way at all (an SMS needs a phone)."""
        ...

    async def send(self, parcel: Parcel) -> str | None: ...


_EMAIL = re.compile(r"[^\s@<>\"']+@[^\s@<>\"']+")
_DIGITS = re.compile(r"\+?[0-9][0-9 -]{4,}[0-9]")


def safe_reason(reason: str) -> str:
    """A reason fit for `last_error` and logs: no address, no number of five digits or
    more (a provider's id is no business of the reason either), at most 300 characters."""
    reason = _EMAIL.sub("<address>", reason)
    reason = _DIGITS.sub("<number>", reason)
    return reason[:300]


def failure_reason(channel: str, exc: BaseException) -> DeliveryFailed:
    """Any other exception a channel or the rendering raised: its type, never its text."""
    if isinstance(exc, DeliveryFailed):
        return exc
    if isinstance(exc, TimeoutError):
        return DeliveryFailed(f"{channel}: timed out")
    return DeliveryFailed(f"{channel}: {type(exc).__name__}")
