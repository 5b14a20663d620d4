"""Request body limit (413) and a per-client rate limit (429 with Retry-After), as plain
ASGI middleware answering problem+json before the application sees the request."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from service.problems import MEDIA_TYPE, problem_body

Scope = dict[str, Any]
ASGIApp = Callable[..., Any]


async def _send_problem(send: Any, status: int, detail: str, path: str,
                        headers: dict[str, str] | None = None, **extra: Any) -> None:
    body = json.dumps(problem_body(status, detail, instance=path, **extra)).encode()
    raw = [(b"content-type", MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Reads the body (at most `limit` bytes) before the application does; larger: 413."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
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
