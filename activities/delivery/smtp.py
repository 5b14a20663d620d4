"""E-mail over SMTP (aiosmtplib): the renderer's subject and text, the letter's PDF
attached. The Message-ID is derived from the notice's key and the channel, so a mail sent
again after a crash carries the same Message-ID: mail systems and clients that
de-duplicate by it show one message, and anyone can tell it is the same notice."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

import aiosmtplib

from activities.delivery.channels import EMAIL, Contact, DeliveryFailed, Parcel


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 587
    user: str | None = None
    password: str | None = None
    starttls: bool = True
    tls: bool = False  # implicit TLS (port 465)
    from_address: str = "notices@localhost"
    timeout_seconds: float = 30.0


def message_id(notice_key: str, from_address: str) -> str:
    """`<notice-<digest>@<the sender's domain>>`: the notice key hashed (it carries the
    workflow id, which is no business of a mailbox)."""
    domain = parseaddr(from_address)[1].rpartition("@")[2] or "localhost"
    digest = hashlib.sha256(f"{notice_key}:{EMAIL}".encode()).hexdigest()[:32]
    return f"<notice-{digest}@{domain}>"


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def attachment_name(parcel: Parcel) -> str:
    return f"{_UNSAFE.sub('_', parcel.registration_no)}-{_UNSAFE.sub('_', parcel.kind)}.pdf"


def build_message(parcel: Parcel, from_address: str) -> EmailMessage:
    if not parcel.contact.email:
        raise DeliveryFailed("email: the petitioner has no address", permanent=True)
    message = EmailMessage()
    message["From"] = from_address
    message["To"] = parcel.contact.email
    message["Subject"] = parcel.rendered.mail_subject
    message["Message-ID"] = message_id(parcel.notice_key, from_address)
    message["Date"] = format_datetime(parcel.created_at)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies, please
    message.set_content(parcel.rendered.mail_body, charset="utf-8")
    message.add_attachment(parcel.rendered.pdf, maintype="application", subtype="pdf",
                           filename=attachment_name(parcel))
    return message


class SmtpChannel:
    name = EMAIL

    def __init__(self, settings: SmtpSettings):
        self._settings = settings

    def ready_for(self, contact: Contact) -> bool:
        return bool(contact.email)

    async def send(self, parcel: Parcel) -> str | None:
        s = self._settings
        message = build_message(parcel, s.from_address)
        try:
            await aiosmtplib.send(
                message, hostname=s.host, port=s.port, username=s.user, password=s.password,
                start_tls=s.starttls and not s.tls, use_tls=s.tls,
                timeout=s.timeout_seconds)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = sorted({e.code for e in exc.recipients})
            raise DeliveryFailed(f"email: recipient refused ({', '.join(map(str, codes))})",
                                 permanent=all(c >= 500 for c in codes)) from None
        except aiosmtplib.SMTPResponseException as exc:
            # The server's message may quote the address: only its code.
            refused = isinstance(exc, aiosmtplib.SMTPRecipientRefused) and exc.code >= 500
            raise DeliveryFailed(f"email: SMTP {exc.code}", permanent=refused) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise DeliveryFailed(f"email: {type(exc).__name__}") from None
        return str(message["Message-ID"])
