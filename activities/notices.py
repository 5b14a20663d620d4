"""Notices through an outbox: activities write rows, a drainer delivers each once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.common import Clock, utc_now, write_once
from domain.case import NoticeInput
from domain.persistence.tables import Notice

log = logging.getLogger(__name__)


class NoticeDesk:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]):
        self._sessions = sessions

    @activity.defn
    async def send_notice(self, notice: NoticeInput) -> int:
        async def write(session: AsyncSession) -> int:
            row = Notice(
                idempotency_key=notice.idempotency_key, petition_id=notice.petition_id,
                recipient_kind=notice.recipient_kind, recipient_ref=notice.recipient_ref,
                template=notice.template, body=notice.body, created_at=notice.at,
            )
            session.add(row)
            await session.flush()
            return row.id

        return await write_once(self._sessions, Notice, notice.idempotency_key, write,
                                lambda row: row.id)


class NoticeGateway(Protocol):
    """SMS, letter or e-mail. `deliver` must be idempotent on the notice's key."""

    async def deliver(self, notice: Notice) -> None: ...


class FileGateway:
    """Writes one JSON file per notice, named by its key: a redelivery overwrites it."""

    def __init__(self, directory: Path):
        self._directory = directory

    async def deliver(self, notice: Notice) -> None:
        self._directory.mkdir(parents=True, exist_ok=True)
        name = notice.idempotency_key.replace(":", "_").replace("/", "_") + ".json"
        body = {"key": notice.idempotency_key, "to": f"{notice.recipient_kind}:"
                f"{notice.recipient_ref}", "template": notice.template, "body": notice.body}
        await asyncio.to_thread(
            (self._directory / name).write_text, json.dumps(body, ensure_ascii=False), "utf-8"
        )


class LogGateway:
    async def deliver(self, notice: Notice) -> None:
        log.info("notice %s to %s: %s", notice.id, notice.recipient_kind, notice.template)


class OutboxDrainer:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], gateway: NoticeGateway,
                 clock: Clock = utc_now):
        self._sessions = sessions
        self._gateway = gateway
        self._clock = clock

    async def drain_once(self, batch: int = 100) -> int:
        """Deliver up to `batch` undelivered notices; several drainers may run at once."""
        delivered = 0
        async with self._sessions() as session:
            rows = (await session.scalars(
                select(Notice).where(Notice.delivered_at.is_(None)).order_by(Notice.id)
                .limit(batch).with_for_update(skip_locked=True)
            )).all()
            for row in rows:
                try:
                    await self._gateway.deliver(row)
                except Exception as exc:  # a gateway failure must not stop the others
                    row.attempts += 1
                    row.last_error = str(exc)[:500]
                    continue
                row.attempts += 1
                row.delivered_at = self._clock()
                delivered += 1
            await session.commit()
        return delivered

    async def run(self, stop: asyncio.Event, interval_seconds: float = 2.0) -> None:
        while not stop.is_set():
            try:
                while await self.drain_once():
                    pass
            except Exception:
                log.exception("outbox drain failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_seconds)
