"""Request body limit (413) and a per-client rate limit (429 with Retry-After), as plain
ASGI middleware answering problem+json before the application sees the request.

One route takes more than the general limit: a document upload (`POST /api/v1/documents`,
service/documents.py), up to 20 MiB a file plus a multipart envelope. Its body is not
buffered here but streamed to the route, counted as it goes: past the limit, 413."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from domain.models import MAX_ATTACHMENT_BYTES
from service.problems import MEDIA_TYPE, Problem, problem_body

Scope = dict[str, Any]
ASGIApp = Callable[..., Any]


async def _send_problem(send: Any, status: int, detail: str, path: str,
                        headers: dict[str, str] | None = None, **extra: Any) -> None:
    body = json.dumps(problem_body(status, detail, instance=path, **extra)).encode()
    raw = [(b"content-type", MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


# A multipart envelope around one file: boundaries, part headers, a few small fields.
MULTIPART_ALLOWANCE = 64 * 1024
UPLOAD_BODY_BYTES = MAX_ATTACHMENT_BYTES + MULTIPART_ALLOWANCE
# The online intake form (service/pages_intake.py): its files together, its texts, the
# envelope. Past it the form answers its own Chinese page from the declared length.
PORTAL_FILES_BYTES = 30 * 1024 * 1024
PORTAL_FORM_BYTES = PORTAL_FILES_BYTES + 4 * MULTIPART_ALLOWANCE
# (method, path) -> the body limit of that route, streamed rather than buffered.
STREAMED_ROUTES: dict[tuple[str, str], int] = {
    ("POST", "/api/v1/documents"): UPLOAD_BODY_BYTES,
    ("POST", "/petition"): 2 * PORTAL_FORM_BYTES}


def body_too_large(limit: int, what: str = "the request body") -> Problem:
    return Problem(413, f"{what} is larger than {limit} bytes", kind="body-too-large",
                   limit_bytes=limit)


class BodyLimit:
    """Reads the body (at most `limit` bytes) before the application does; larger: 413.
    The routes of `streamed` get their own limit and read their body as it arrives."""

    def __init__(self, app: ASGIApp, limit: int,
                 streamed: dict[tuple[str, str], int] | None = None) -> None:
        self.app = app
        self.limit = limit
        self.streamed = STREAMED_ROUTES if streamed is None else streamed

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        route_limit = self.streamed.get((scope.get("method", ""), path.rstrip("/") or "/"))
        if route_limit is not None:
            await self._streamed(scope, receive, send, route_limit)
            return
        too_large = (f"the request body is larger than {self.limit} bytes: send large "
                     "attachments by reference")
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _send_problem(send, 400, "invalid Content-Length", path)
                    return
                if declared > self.limit:
                    await _send_problem(send, 413, too_large, path, kind="body-too-large",
                                        limit_bytes=self.limit)
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await _send_problem(send, 413, too_large, path, kind="body-too-large",
                                    limit_bytes=self.limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _streamed(self, scope: Scope, receive: Any, send: Any, limit: int) -> None:
        """The body passes through as it arrives, counted: a declared length over the
        limit is refused at once; a body that grows past it fails the route's read with
        413 (the route answers nothing before it has read its body)."""
        path = scope.get("path", "")
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _send_problem(send, 400, "invalid Content-Length", path)
                    return
                if declared > limit:
                    problem = body_too_large(limit)
                    await _send_problem(send, 413, problem.detail, path, kind="body-too-large",
                                        limit_bytes=limit)
                    return
        size = 0
        started = False

        async def counted() -> dict[str, Any]:
            nonlocal size
            message: dict[str, Any] = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > limit:
                    raise body_too_large(limit)
            return message

        async def watched(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except Problem as problem:  # raised outside the application's handlers
            if started or problem.status != 413:
                raise
            await _send_problem(send, 413, problem.detail, path, kind="body-too-large",
                                limit_bytes=limit)


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimit:
    """A token bucket per client: the bearer token (hashed) when there is one, else the
    peer address. In memory, per process; the least recently seen buckets are forgotten."""

    MAX_CLIENTS = 50_000

    def __init__(self, app: ASGIApp, rate: float, burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    @staticmethod
    def client_key(scope: Scope) -> str:
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                return "t:" + hashlib.sha256(value).hexdigest()[:32]
        client = scope.get("client")
        return f"a:{client[0] if client else 'unknown'}"

    def take(self, key: str) -> float:
        """0 if the request may go ahead, else the seconds until it may."""
        now = self.clock()
        bucket = self._buckets.pop(key, None) or _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        self._buckets[key] = bucket
        while len(self._buckets) > self.MAX_CLIENTS:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            wait = self.take(self.client_key(scope))
            if wait > 0:
                retry = max(1, math.ceil(wait))
                await _send_problem(send, 429, f"too many requests from this client; retry "
                                    f"after {retry} s", scope.get("path", ""),
                                    headers={"Retry-After": str(retry)}, kind="rate-limited",
                                    retry_after=retry)
                return
        await self.app(scope, receive, send)
