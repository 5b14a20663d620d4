"""Issue 4: the outbox drainer delivers each notice once and marks it, with two drainers
racing and a gateway that fails the first attempt; a failing notice backs off instead of
blocking the queue (real PostgreSQL, a database of its own)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest_asyncio
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.contracts import (
    NoticeInput,
)
from activities.notices import FileGateway, NoticeDesk, OutboxDrainer, backoff
from adapters.data_keys import vault_from_settings
from adapters.settings import get_settings
from adapters.tables import Notice
from security.sealing import Vault
from tests.desk_helpers import run, scratch_database


def vault_of(sessions: async_sessionmaker[AsyncSession]) -> Vault:
    return vault_from_settings(get_settings(), sessions)


NO_REST = {"retry_after": lambda attempts: timedelta(0)}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def outbox() -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A database of its own: the drainers here must not deliver other tests' notices."""
    async with scratch_database("outbox") as (_, sessions):
        yield sessions


async def queue(sessions, n: int, tag: str) -> list[str]:
    desk, keys = NoticeDesk(sessions, vault_of(sessions)), []
    for i in range(n):
        key = f"{tag}:{i}:notice"
        await run(desk.send_notice, NoticeInput(
            idempotency_key=key, petition_id=None, recipient_kind="person",
            recipient_ref=f"p{i}", template="test", body=f"通知 notice {i}",
            at=datetime.now(UTC)))
        keys.append(key)
    return keys


async def undelivered(sessions, keys: list[str]) -> int:
    async with sessions() as session:
        return int(await session.scalar(
            select(func.count()).select_from(Notice).where(
                Notice.delivered_at.is_(None), Notice.idempotency_key.in_(keys))) or 0)


class FirstAttemptFails:
    """A gateway that loses every notice's first attempt; records who delivered what."""

    def __init__(self) -> None:
        self.attempts: Counter[str] = Counter()
        self.delivered: Counter[str] = Counter()
        self.by_drainer: Counter[str] = Counter()

    def as_drainer(self, name: str):
        gateway = self

        class Tagged:
            async def deliver(self, notice: Notice, body: str) -> None:
                key = notice.idempotency_key
                gateway.attempts[key] += 1
                await asyncio.sleep(0.001)  # give the other drainer every chance to race
                if gateway.attempts[key] == 1:
                    raise ConnectionError("SMS gateway timed out")
                gateway.delivered[key] += 1
                gateway.by_drainer[name] += 1

        return Tagged()


async def drain_until_empty(drainer: OutboxDrainer, sessions, keys: list[str]) -> None:
    for _ in range(500):
        if not await drainer.drain_once(batch=7) and not await undelivered(sessions, keys):
            return
        await asyncio.sleep(0)
    raise AssertionError("the outbox never emptied")


async def test_two_racing_drainers_and_a_failing_first_attempt_deliver_each_notice_once(
        outbox):
    keys = await queue(outbox, 40, f"race-{uuid.uuid4().hex[:6]}")
    gateway = FirstAttemptFails()
    drainers = [OutboxDrainer(outbox, vault_of(outbox), gateway.as_drainer(name), **NO_REST)
                for name in ("a", "b")]
    await asyncio.gather(*(drain_until_empty(d, outbox, keys) for d in drainers))
    assert gateway.delivered == Counter(dict.fromkeys(keys, 1))
    assert gateway.attempts == Counter(dict.fromkeys(keys, 2))
    assert gateway.by_drainer["a"] > 0 and gateway.by_drainer["b"] > 0, gateway.by_drainer
    async with outbox() as session:
        rows = (await session.scalars(select(Notice).where(Notice.idempotency_key.in_(keys))))
        rows = rows.all()
    assert len(rows) == 40
    assert all(r.delivered_at is not None and r.attempts == 2 and r.last_error is None
               for r in rows)


async def test_a_notice_that_keeps_failing_rests_and_does_not_block_the_others(outbox):
    keys = await queue(outbox, 5, f"stuck-{uuid.uuid4().hex[:6]}")
    stuck = keys[0]
    delivered: list[str] = []

    class OneBroken:
        async def deliver(self, notice: Notice, body: str) -> None:
            if notice.idempotency_key == stuck:
                raise ValueError("no such mailbox")
            delivered.append(notice.idempotency_key)

    now = datetime.now(UTC)
    clock = {"now": now}
    drainer = OutboxDrainer(outbox, vault_of(outbox), OneBroken(), clock=lambda: clock["now"])
    assert await drainer.drain_once() == 4
    assert await drainer.drain_once() == 0  # the broken one is resting, not retried at once
    assert delivered == keys[1:]
    async with outbox() as session:
        row = await session.scalar(select(Notice).where(Notice.idempotency_key == stuck))
    assert row is not None and row.delivered_at is None and row.attempts == 1
    assert row.last_error == "ValueError: no such mailbox"
    assert row.next_attempt_at == now + backoff(1)
    clock["now"] = now + backoff(1)
    assert await drainer.drain_once() == 0
    async with outbox() as session:
        row = await session.scalar(select(Notice).where(Notice.idempotency_key == stuck))
    assert row is not None and row.attempts == 2 and row.next_attempt_at == now + backoff(
        1) + backoff(2)
    assert backoff(2) == 2 * backoff(1) and backoff(30) == timedelta(minutes=30)


async def test_file_gateway_writes_one_file_per_notice_even_when_redelivered(outbox, tmp_path):
    keys = await queue(outbox, 3, f"file-{uuid.uuid4().hex[:6]}")
    files = FileGateway(tmp_path)
    crashed: list[str] = []

    class CrashAfterDelivering:
        """Delivered, then the drainer dies before marking it: the next drain redelivers."""

        async def deliver(self, notice: Notice, body: str) -> None:
            await files.deliver(notice, body)
            if not crashed:
                crashed.append(notice.idempotency_key)
                raise asyncio.CancelledError

    with contextlib.suppress(asyncio.CancelledError):
        await OutboxDrainer(outbox, vault_of(outbox), CrashAfterDelivering()).drain_once()
    assert crashed == [keys[0]]
    async with outbox() as session:
        first = await session.scalar(select(Notice).where(Notice.idempotency_key == keys[0]))
    assert first is not None and first.delivered_at is None  # the mark was rolled back
    await OutboxDrainer(outbox, vault_of(outbox), CrashAfterDelivering()).drain_once()
    written = sorted(tmp_path.glob("*.json"))
    assert len(written) == 3
    bodies = {json.loads(p.read_text(encoding="utf-8"))["key"] for p in written}
    assert bodies == set(keys)


async def test_the_drainer_loop_delivers_until_stopped(outbox, tmp_path):
    keys = await queue(outbox, 2, f"loop-{uuid.uuid4().hex[:6]}")
    stop = asyncio.Event()
    task = asyncio.create_task(OutboxDrainer(outbox, vault_of(outbox), FileGateway(tmp_path)).run(
        stop, interval_seconds=0.05))
    for _ in range(100):
        if not await undelivered(outbox, keys):
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, timeout=5)
    assert await undelivered(outbox, keys) == 0
    assert {p.name for p in tmp_path.glob("*.json")} >= {
        k.replace(":", "_") + ".json" for k in keys}
