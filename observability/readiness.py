"""Readiness: may this process take work? Three checks, run side by side, each within a
short timeout:

- `database`: PostgreSQL answers and its schema is at the head revision of migrations/
  (`alembic_version` equals it);
- `temporal`: the frontend answers its gRPC health check and knows the namespace;
- `keys`: every key the process needs is configured (`security.codec.require_keys`, and
  the service's token keys).

The service answers them at GET /readyz (service/health.py), the worker with
`python -m worker --check` (worker.py). A failing check's `detail` says what is wrong in
words of its own: the names of settings, revisions, the class of an error -- never a
URL, a password, a key or an error's text (which could quote any of those)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client

from adapters.engine import alembic_head
from security.codec import CodecKeyError

DEFAULT_TIMEOUT = 3.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Readiness:
    checks: list[Check] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def failing(self) -> list[str]:
        return [check.name for check in self.checks if not check.ok]

    def body(self) -> dict[str, Any]:
        return {"ready": self.ready, "failing": self.failing,
                "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in self.checks}}


@functools.lru_cache(maxsize=1)
def head_revision() -> str:
    return alembic_head()


def _failure(what: str, exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"{what}: no answer in time"
    return f"{what}: {type(exc).__name__}"


async def check_database(sessions: async_sessionmaker[AsyncSession],
                         within: float = DEFAULT_TIMEOUT) -> Check:
    head = head_revision()
    try:
        async with asyncio.timeout(within), sessions() as session:
            exists = await session.scalar(
                text("SELECT to_regclass('alembic_version') IS NOT NULL"))
            current = (await session.scalar(text("SELECT version_num FROM alembic_version"))
                       if exists else None)
    except Exception as exc:  # noqa: BLE001 - any failure is "not ready"
        return Check("database", False, _failure("unreachable", exc))
    if current != head:
        return Check("database", False,
                     f"schema at {current or 'nothing'}, code expects {head}: migrate")
    return Check("database", True, f"schema at head {head}")


TemporalSource = Client | Callable[[], Awaitable[Client]] | None


async def check_temporal(temporal: TemporalSource, within: float = DEFAULT_TIMEOUT) -> Check:
    if temporal is None:
        return Check("temporal", False, "not connected yet")
    try:
        async with asyncio.timeout(within):
            client = temporal if isinstance(temporal, Client) else await temporal()
            rpc_timeout = timedelta(seconds=within)
            if not await client.service_client.check_health(timeout=rpc_timeout):
                return Check("temporal", False, "frontend reports not serving")
            await client.workflow_service.describe_namespace(
                DescribeNamespaceRequest(namespace=client.namespace), timeout=rpc_timeout)
    except Exception as exc:  # noqa: BLE001
        return Check("temporal", False, _failure("unreachable", exc))
    return Check("temporal", True, f"frontend serving, namespace {client.namespace} found")


def check_keys(require: Callable[[], object]) -> Check:
    """`require` raises CodecKeyError naming the missing or refused setting (its message
    names settings and key ids, never key material)."""
    try:
        require()
    except CodecKeyError as exc:
        return Check("keys", False, str(exc))
    except Exception as exc:  # noqa: BLE001
        return Check("keys", False, _failure("unreadable", exc))
    return Check("keys", True, "configured")


async def readiness(*, sessions: async_sessionmaker[AsyncSession], temporal: TemporalSource,
                    keys: Callable[[], object], within: float = DEFAULT_TIMEOUT) -> Readiness:
    database, temporal_check = await asyncio.gather(
        check_database(sessions, within), check_temporal(temporal, within))
    return Readiness([database, temporal_check, check_keys(keys)])


__all__ = ["Check", "Readiness", "check_database", "check_keys", "check_temporal",
           "readiness"]
