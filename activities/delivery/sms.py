"""SMS through a provider's gateway. The gateway is an interface; `HttpSmsGateway` is the
adapter of a provider with a JSON API that honours an `Idempotency-Key` header (the
shape of most Chinese and international SMS APIs: 阿里云/腾讯云 take an out-id, others the
header). The key is derived from the delivery, so a send repeated after a crash is the
same request to the provider, which answers it without sending a second message."""

from __future__ import annotations

from typing import Protocol

import httpx

from activities.delivery.channels import SMS, Contact, DeliveryFailed, Parcel


class SmsGateway(Protocol):
    async def send(self, *, to: str, text: str, idempotency_id: str) -> str:
        """Send one message; returns the provider's message id. Raises DeliveryFailed."""
        ...


# Answers worth another try: the provider is busy, overloaded, or still working on the
# same idempotency key (409, as Stripe-style APIs answer a concurrent duplicate).
TRANSIENT_STATUS = frozenset({408, 409, 425, 429})


class HttpSmsGateway:
    """`POST <url>` with `{"to", "text", "sender"}` and the header `Idempotency-Key`;
    a 2xx answer's JSON `message_id` (or `id`) is the provider's id."""

    def __init__(self, url: str, *, token: str | None = None, sender: str | None = None,
                 timeout_seconds: float = 15.0, client: httpx.AsyncClient | None = None):
        self._url = url
        self._token = token
        self._sender = sender
        self._timeout = timeout_seconds
        self._client = client

    async def send(self, *, to: str, text: str, idempotency_id: str) -> str:
        headers = {"Idempotency-Key": idempotency_id}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        body = {"to": to, "text": text, "sender": self._sender}
        try:
            if self._client is not None:
                response = await self._client.post(self._url, json=body, headers=headers,
                                                   timeout=self._timeout)
            else:
                async with httpx.AsyncClient(timeout=self._timeout) as client:
                    response = await client.post(self._url, json=body, headers=headers)
        except httpx.TimeoutException:
            raise DeliveryFailed("sms: timed out") from None
        except httpx.TransportError as exc:
            raise DeliveryFailed(f"sms: {type(exc).__name__}") from None
        status = response.status_code
        if 200 <= status < 300:
            try:
                answer = response.json()
                message_id = answer.get("message_id") or answer.get("id")
            except (ValueError, AttributeError):
                message_id = None
            if not message_id:
                # Accepted, but no id: still sent (the provider confirmed).
                return f"accepted:{idempotency_id}"
            return str(message_id)[:200]
        # Never the body: providers echo the number in their errors.
        permanent = 400 <= status < 500 and status not in TRANSIENT_STATUS
        raise DeliveryFailed(f"sms: HTTP {status}", permanent=permanent)


class SmsChannel:
    name = SMS

    def __init__(self, gateway: SmsGateway):
        self._gateway = gateway

    def ready_for(self, contact: Contact) -> bool:
        return bool(contact.phone)

    async def send(self, parcel: Parcel) -> str | None:
        if not parcel.contact.phone:
            raise DeliveryFailed("sms: the petitioner has no phone", permanent=True)
        return await self._gateway.send(to=parcel.contact.phone, text=parcel.rendered.sms,
                                        idempotency_id=parcel.idempotency_id)
