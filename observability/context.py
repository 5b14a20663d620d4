"""The request a log line belongs to: a context variable the service's middleware sets
for each HTTP request (RequestIdMiddleware), read by the JSON formatter (logs.py).

The id comes from the caller's X-Request-ID header when it is a plain token (letters,
digits, `-`, `_`, `.`, at most 64) that holds nothing the redaction would remove (an ID
number or a phone number sent as a request id), else a fresh one; it is echoed in the
response's X-Request-ID header."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar
from typing import Any

from security.redact import redact

HEADER = "x-request-id"
REQUEST_ID: ContextVar[str | None] = ContextVar("petitionflow_request_id", default=None)
_TOKEN = re.compile(r"[A-Za-z0-9._-]{1,64}")


def request_id_from(header: str | None) -> str:
    """The caller's id if it is an acceptable one, else a new one."""
    if header and _TOKEN.fullmatch(header) and redact(header) == header:
        return header
    return uuid.uuid4().hex


def current_request_id() -> str | None:
    return REQUEST_ID.get()


class RequestIdMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware): the context variable is set in the task that
    runs the application, so every log line of the request -- uvicorn's access line
    too, written when the response starts -- carries it."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        header = None
        for name, value in scope.get("headers") or ():
            if name.lower() == HEADER.encode():
                header = value.decode("latin-1")
                break
        request_id = request_id_from(header)

        async def send_with_id(message: dict[str, Any]) -> None:
            if message.get("type") == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers") or ()
                           if k.lower() != HEADER.encode()]
                headers.append((HEADER.encode(), request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        token = REQUEST_ID.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)
