"""Notices through an outbox: activities write rows, a drainer delivers each once.

A petitioner's notice with facts gets one `notice_deliveries` row per channel (letter,
SMS, e-mail), which `activities.delivery.drainer.DeliveryDrainer` sends; every other
notice (to a unit or a person) goes through `OutboxDrainer` and its gateway, as before
(docs/delivery.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.common import Clock, lateness, utc_now, write_or_find
from activities.contracts import (
    NoticeInput,
)
from activities.delivery.channels import EMAIL, LETTER, SMS, safe_reason
from adapters.tables import Notice, NoticeDelivery, Petition
from observability import metrics
from security.sealing import Vault

log = logging.getLogger(__name__)


def notice_where(idempotency_key: str) -> str:
    return f"notices.body:{idempotency_key}"


def facts_where(idempotency_key: str) -> str:
    return f"notices.facts:{idempotency_key}"


def channels_for(petitioner: dict[str, Any]) -> list[str]:
    """A written notice to the petitioner: a letter always, an SMS to a phone, an e-mail
    to an address (docs/delivery.md)."""
    return [LETTER] + ([SMS] if petitioner.get("phone") else []) + (
        [EMAIL] if petitioner.get("email") else [])


async def sealed_notice(vault: Vault, *, body: str, facts: dict[str, Any] | None = None,
                        **columns: Any) -> Notice:
    """An outbox row with its body (and its facts, for a written notice) sealed, bound to
    its idempotency key."""
    key = columns["idempotency_key"]
    sealed_facts = (await vault.seal(json.dumps(facts, ensure_ascii=False, default=str)
                                     .encode(), facts_where(key))
                    if facts is not None else None)
    return Notice(body_sealed=await vault.seal(body.encode(), notice_where(key)),
                  facts_sealed=sealed_facts, **columns)


async def add_deliveries(session: AsyncSession, vault: Vault, row: Notice,
                         at: datetime) -> None:
    """A written notice to the petitioner (it has facts): one delivery per channel."""
    if row.recipient_kind != "petitioner" or row.facts_sealed is None \
            or row.petition_id is None:
        return
    petition = await session.get(Petition, row.petition_id)
    if petition is None:
        return
    petitioner = await vault.open_json(petition.petitioner_sealed,
                                       f"petitions.petitioner:{petition.intake_id}")
    for channel in channels_for(petitioner):
        session.add(NoticeDelivery(notice_id=row.id, idempotency_key=f"{row.idempotency_key}"
                                   f":{channel}", channel=channel, state="pending",
                                   next_attempt_at=at))


class NoticeDesk:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], vault: Vault):
        self._sessions = sessions
        self._vault = vault

    @activity.defn
    async def send_notice(self, notice: NoticeInput) -> int:
        """The notice and, for a petitioner's notice with facts, its deliveries (one per
        channel), in one transaction. Any other notice (to a unit or a person, or written
        before notices carried facts) has no delivery rows: the file outbox
        (`OutboxDrainer`) delivers it, as before."""

        async def write(session: AsyncSession) -> int:
            row = await sealed_notice(
                self._vault, body=notice.body, facts=notice.facts,
                idempotency_key=notice.idempotency_key, petition_id=notice.petition_id,
                recipient_kind=notice.recipient_kind, recipient_ref=notice.recipient_ref,
                template=notice.template, created_at=notice.at)
            session.add(row)
            await session.flush()
            await add_deliveries(session, self._vault, row, notice.at)
            await session.flush()
            return row.id

        notice_id, written = await write_or_find(self._sessions, Notice,
                                                 notice.idempotency_key, write,
                                                 lambda row: row.id)
        if written and notice.template == "reminder":  # a clock's reminder: a deadline fired
            metrics.deadline_fired("reminder", lateness(notice.at, notice.timer_due_at))
        return notice_id


class NoticeGateway(Protocol):
    """SMS, letter or e-mail. `deliver` must be idempotent on the notice's key; `body` is
    the notice's opened text (the row holds it sealed)."""

    async def deliver(self, notice: Notice, body: str) -> None: ...


class FileGateway:
    """Writes one JSON file per notice, named by its key: a redelivery overwrites it."""

    def __init__(self, directory: Path):
        self._directory = directory

    async def deliver(self, notice: Notice, body: str) -> None:
        self._directory.mkdir(parents=True, exist_ok=True)
        name = notice.idempotency_key.replace(":", "_").replace("/", "_") + ".json"
        letter = {"key": notice.idempotency_key, "to": f"{notice.recipient_kind}:"
                f"{notice.recipient_ref}", "template": notice.template, "body": body}
        await asyncio.to_thread(
            (self._directory / name).write_text, json.dumps(letter, ensure_ascii=False), "utf-8"
        )


class LogGateway:
    async def deliver(self, notice: Notice, body: str) -> None:
        log.info("notice %s to %s: %s", notice.id, notice.recipient_kind, notice.template)


def backoff(attempts: int, first: timedelta = timedelta(seconds=5),
            longest: timedelta = timedelta(minutes=30)) -> timedelta:
    """How long a notice rests after its `attempts`-th failed delivery: doubling, capped."""
    return min(first * (2 ** max(attempts - 1, 0)), longest)



async def drain_batch(deliver_next: Callable[[], Awaitable[int | None]], batch: int) -> int:
    """Up to `batch` calls of `deliver_next` (1 delivered, 0 failed, None: nothing due);
    how many were delivered. Shared by the file outbox and the channels' drainer."""
    delivered = 0
    for _ in range(batch):
        outcome = await deliver_next()
        if outcome is None:
            break
        delivered += outcome
    return delivered


async def drain_until_stopped(drain_once: Callable[[], Awaitable[int]], stop: asyncio.Event,
                              interval_seconds: float, what: str) -> None:
    """Drain while there is work, rest `interval_seconds`, until `stop`; a failed round is
    logged and retried, never the end of the loop."""
    while not stop.is_set():
        try:
            while await drain_once() and not stop.is_set():
                pass
        except Exception:
            log.exception("%s failed; retrying", what)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_seconds)

class OutboxDrainer:
    """Delivers each notice once and marks it; any number of drainers may run at once.
    Notices with deliveries (a petitioner's, with facts) are the DeliveryDrainer's.

    A notice is claimed with `FOR UPDATE SKIP LOCKED`, delivered and marked in its own
    transaction, so racing drainers never take the same notice and a crash redelivers
    at most the one notice in flight (the gateway is idempotent on the notice's key).
    A failed delivery is counted and rests (`backoff`) so it cannot block the queue.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession], vault: Vault,
                 gateway: NoticeGateway, clock: Clock = utc_now, *,
                 retry_after: Callable[[int], timedelta] = backoff,
                 delivery_timeout: timedelta = timedelta(seconds=30)):
        self._sessions = sessions
        self._vault = vault
        self._gateway = gateway
        self._clock = clock
        self._retry_after = retry_after
        self._timeout = delivery_timeout.total_seconds()

    async def drain_once(self, batch: int = 100) -> int:
        """Deliver up to `batch` due notices; returns how many were delivered."""
        return await drain_batch(self._deliver_next, batch)

    async def _deliver_next(self) -> int | None:
        """1 delivered, 0 failed (and rescheduled), None when nothing is due."""
        async with self._sessions() as session:
            now = self._clock()
            row = await session.scalar(
                select(Notice)
                .where(Notice.delivered_at.is_(None),
                       or_(Notice.next_attempt_at.is_(None), Notice.next_attempt_at <= now),
                       ~exists().where(NoticeDelivery.notice_id == Notice.id))
                .order_by(Notice.id).limit(1).with_for_update(skip_locked=True)
            )
            if row is None:
                return None
            row.attempts += 1
            try:
                body = (await self._vault.open(row.body_sealed,
                                               notice_where(row.idempotency_key))).decode()
                await asyncio.wait_for(self._gateway.deliver(row, body), timeout=self._timeout)
            except Exception as exc:  # a gateway failure must not stop the others
                row.last_error = safe_reason(f"{type(exc).__name__}: {exc}")
                row.next_attempt_at = self._clock() + self._retry_after(row.attempts)
                log.warning("notice %s: delivery attempt %s failed: %s", row.id, row.attempts,
                            row.last_error)
                await session.commit()
                return 0
            row.delivered_at, row.last_error = self._clock(), None
            await session.commit()
            return 1

    async def run(self, stop: asyncio.Event, interval_seconds: float = 2.0) -> None:
        await drain_until_stopped(self.drain_once, stop, interval_seconds, "outbox drain")
