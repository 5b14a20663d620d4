"""The delivery drainer: each due delivery claimed, rendered, sent through its channel,
and recorded -- every attempt, its result, the backoff after a failure.

One delivery in three steps, so nothing is lost and nothing is sent twice to a channel
that honours idempotency ids:

1. claim (one transaction): the oldest due `pending` delivery, `FOR UPDATE SKIP LOCKED`
   (racing drainers never take the same one); its attempt is counted and recorded as
   `started`, and it is leased -- `next_attempt_at` moves past the longest the attempt can
   take -- then committed;
2. send, holding no lock: the facts and the petitioner's contact opened with the vault,
   the notice rendered, the channel called with the delivery's idempotency id (SMS), the
   Message-ID derived from the notice (e-mail), or the same file name (letter);
3. finish (one transaction): `sent` only once the channel confirmed; a failure rests by
   `backoff`, a permanent one (no such number, the mailbox refused) is `failed`.

A drainer that dies between 2 and 3 leaves the delivery `pending` with its lease: once the
lease ends another drainer takes it up, marks the dead attempt `interrupted` and sends
again with the same idempotency id, which the provider answers without a second message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.common import Clock, utc_now
from activities.delivery.channels import (
    Channel,
    Contact,
    DeliveryFailed,
    Parcel,
    failure_reason,
)
from activities.delivery.rendering import NoticeRenderer, RenderContext
from activities.notices import backoff, drain_batch, drain_until_stopped, facts_where
from adapters.directory import unit_names
from adapters.tables import Notice, NoticeDelivery, NoticeDeliveryAttempt, Petition
from observability import metrics
from security.sealing import Vault

log = logging.getLogger(__name__)


class QueryCodes(Protocol):
    """The petitioner's query code printed on a notice, where it can be had (it is stored
    only as a hash, `query_codes`); None: the notice says where to ask for it."""

    async def query_code(self, petition_id: int, registration_no: str) -> str | None: ...


class NoQueryCodes:
    async def query_code(self, petition_id: int, registration_no: str) -> str | None:
        return None


class DerivedQueryCodes:
    """security/query_code.py: the code is a keyed HMAC of the registration number, so
    every notice can print it though the database holds none."""

    def __init__(self, codes: Any):  # security.query_code.QueryCodes
        self._codes = codes

    async def query_code(self, petition_id: int, registration_no: str) -> str | None:
        return str(self._codes.code_for(registration_no))


@dataclass(frozen=True)
class _Claim:
    delivery_id: int
    delivery_key: str
    channel: str
    attempt: int
    notice_id: int
    notice_key: str
    template: str
    created_at: datetime
    facts_sealed: bytes
    petition_id: int
    intake_id: str
    registration_no: str
    petitioner_sealed: bytes


INTERRUPTED = "the drainer stopped before the channel answered"
NO_FACTS = "the notice has no facts or no petition"
_BROKEN = object()  # a delivery claimed and failed for good at once (see _claim)


class DeliveryDrainer:
    """Delivers `notice_deliveries` through the channels given (a delivery of a channel not
    configured stays pending, untouched, until a worker has that channel)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], vault: Vault,
                 renderer: NoticeRenderer, channels: Iterable[Channel], *,
                 track_url: str, clock: Clock = utc_now,
                 retry_after: Callable[[int], timedelta] = backoff,
                 delivery_timeout: timedelta = timedelta(seconds=60),
                 lease: timedelta | None = None,
                 query_codes: QueryCodes | None = None,
                 petition_ids: Collection[int] | None = None,
                 unit_names_ttl_seconds: float = 300.0):
        self._sessions = sessions
        self._vault = vault
        self._renderer = renderer
        self._channels = {c.name: c for c in channels}
        self._track_url = track_url
        self._clock = clock
        self._retry_after = retry_after
        self._timeout = delivery_timeout.total_seconds()
        # Past the longest an attempt can take (rendering and the channel, each bounded
        # by the timeout): a live drainer's delivery is never taken up by another.
        self._lease = lease if lease is not None else delivery_timeout * 2 + timedelta(
            seconds=30)
        self._query_codes = query_codes or NoQueryCodes()
        self._petition_ids = list(petition_ids) if petition_ids is not None else None
        self._unit_names: dict[str, str] = {}
        self._unit_names_at = float("-inf")
        self._unit_names_ttl = unit_names_ttl_seconds

    async def drain_once(self, batch: int = 50) -> int:
        """Deliver up to `batch` due deliveries; returns how many were sent."""
        return await drain_batch(self._deliver_next, batch)

    async def run(self, stop: asyncio.Event, interval_seconds: float = 2.0) -> None:
        await drain_until_stopped(self.drain_once, stop, interval_seconds,
                                  "notice delivery drain")

    # ------------------------------------------------------------------ one delivery

    async def _deliver_next(self) -> int | None:
        """1 sent, 0 not (resting or failed), None when nothing is due."""
        claim = await self._claim()
        if claim is None:
            return None
        if not isinstance(claim, _Claim):
            return 0
        channel = self._channels[claim.channel]
        try:
            parcel = await asyncio.wait_for(self._parcel(claim), timeout=self._timeout)
            provider_id = await asyncio.wait_for(channel.send(parcel), timeout=self._timeout)
        except Exception as exc:  # one delivery's failure must not stop the others
            await self._finish(claim, failure=failure_reason(claim.channel, exc))
            return 0
        await self._finish(claim, provider_id=provider_id)
        return 1

    async def _claim(self) -> _Claim | object | None:
        async with self._sessions() as session:
            now = self._clock()
            query = (select(NoticeDelivery)
                     .where(NoticeDelivery.state == "pending",
                            NoticeDelivery.channel.in_(list(self._channels)),
                            or_(NoticeDelivery.next_attempt_at.is_(None),
                                NoticeDelivery.next_attempt_at <= now))
                     .order_by(NoticeDelivery.id).limit(1)
                     .with_for_update(skip_locked=True))
            if self._petition_ids is not None:
                query = query.where(NoticeDelivery.notice_id.in_(
                    select(Notice.id).where(Notice.petition_id.in_(self._petition_ids))))
            row = await session.scalar(query)
            if row is None:
                return None
            await session.execute(
                update(NoticeDeliveryAttempt)
                .where(NoticeDeliveryAttempt.delivery_id == row.id,
                       NoticeDeliveryAttempt.result == "started")
                .values(result="interrupted", finished_at=now, error=INTERRUPTED))
            row.attempts += 1
            notice = await session.get(Notice, row.notice_id)
            petition = (await session.get(Petition, notice.petition_id)
                        if notice is not None and notice.petition_id is not None else None)
            broken = notice is None or petition is None or notice.facts_sealed is None
            session.add(NoticeDeliveryAttempt(
                delivery_id=row.id, attempt=row.attempts, started_at=now,
                **({"result": "failed", "finished_at": now, "error": NO_FACTS}
                   if broken else {})))
            if broken:  # not a petitioner's notice with facts: send_notice makes none
                row.state, row.next_attempt_at, row.last_error = "failed", None, NO_FACTS
                await session.commit()
                return _BROKEN
            assert notice is not None and petition is not None
            assert notice.facts_sealed is not None
            row.next_attempt_at = now + self._lease
            claim = _Claim(
                delivery_id=row.id, delivery_key=row.idempotency_key, channel=row.channel,
                attempt=row.attempts, notice_id=notice.id, notice_key=notice.idempotency_key,
                template=notice.template, created_at=notice.created_at,
                facts_sealed=notice.facts_sealed, petition_id=petition.id,
                intake_id=petition.intake_id, registration_no=petition.registration_no,
                petitioner_sealed=petition.petitioner_sealed)
            await session.commit()
            return claim

    async def _parcel(self, claim: _Claim) -> Parcel:
        facts = json.loads(await self._vault.open(claim.facts_sealed,
                                                  facts_where(claim.notice_key)))
        petitioner = await self._vault.open_json(
            claim.petitioner_sealed, f"petitions.petitioner:{claim.intake_id}")
        contact = Contact(phone=petitioner.get("phone"), email=petitioner.get("email"))
        context = RenderContext(
            unit_names=await self._names(),
            query_code=await self._query_codes.query_code(claim.petition_id,
                                                          claim.registration_no),
            track_url=self._track_url, addressee=petitioner.get("name"))
        rendered = await self._renderer.render(facts, context)
        return Parcel(delivery_id=claim.delivery_id, delivery_key=claim.delivery_key,
                      notice_key=claim.notice_key,
                      kind=str(facts.get("kind") or claim.template),
                      registration_no=str(facts.get("registration_no")
                                          or claim.registration_no),
                      created_at=claim.created_at, rendered=rendered, contact=contact)

    async def _names(self) -> Mapping[str, str]:
        """Unit names from the directory (`units`), re-read every few minutes."""
        if time.monotonic() - self._unit_names_at > self._unit_names_ttl:
            async with self._sessions() as session:
                self._unit_names = await unit_names(session)
            self._unit_names_at = time.monotonic()
        return self._unit_names

    async def _finish(self, claim: _Claim, *, provider_id: str | None = None,
                      failure: DeliveryFailed | None = None) -> None:
        async with self._sessions() as session:
            now = self._clock()
            row = await session.get(NoticeDelivery, claim.delivery_id, with_for_update=True)
            attempt = await session.scalar(select(NoticeDeliveryAttempt).where(
                NoticeDeliveryAttempt.delivery_id == claim.delivery_id,
                NoticeDeliveryAttempt.attempt == claim.attempt))
            assert row is not None and attempt is not None
            attempt.finished_at = now
            if failure is None:
                attempt.result, attempt.provider_message_id = "sent", provider_id
                if row.state == "pending":
                    row.state, row.sent_at, row.last_error = "sent", now, None
                    row.next_attempt_at, row.provider_message_id = None, provider_id
                    await self._mark_notice_if_all_sent(session, claim.notice_id, now)
            else:
                attempt.error = failure.reason
                attempt.result = "failed" if failure.permanent else "retry"
                # Only the latest attempt decides (an older one whose lease ran out and
                # was taken up by another drainer records its result alone).
                if row.state == "pending" and row.attempts == claim.attempt:
                    row.last_error = failure.reason
                    if failure.permanent:
                        row.state, row.next_attempt_at = "failed", None
                    else:
                        row.next_attempt_at = now + self._retry_after(row.attempts)
            await session.commit()
        metrics.delivery_finished(claim.channel, "sent" if failure is None else
                                  "failed" if failure.permanent else "retry")
        if failure is not None:
            log.warning("notice delivery %s (%s) attempt %s %s: %s", claim.delivery_id,
                        claim.channel, claim.attempt,
                        "failed for good" if failure.permanent else "failed, will retry",
                        failure.reason)
        else:
            log.info("notice delivery %s (%s) sent on attempt %s", claim.delivery_id,
                     claim.channel, claim.attempt)

    @staticmethod
    async def _mark_notice_if_all_sent(session: AsyncSession, notice_id: int,
                                       now: datetime) -> None:
        await session.flush()
        unsent = await session.scalar(select(func.count()).select_from(NoticeDelivery).where(
            NoticeDelivery.notice_id == notice_id, NoticeDelivery.state != "sent"))
        if not unsent:
            await session.execute(update(Notice).where(Notice.id == notice_id,
                                                       Notice.delivered_at.is_(None))
                                  .values(delivered_at=now))


# ------------------------------------------------------------ visible delivery state


@dataclass(frozen=True)
class ChannelState:
    channel: str  # letter, sms, email
    state: str  # pending, sent, failed
    attempts: int
    sent_at: datetime | None
    last_error: str | None
    next_attempt_at: datetime | None
    printed_at: datetime | None  # letters: when the post room printed it


@dataclass(frozen=True)
class NoticeDeliveryState:
    notice_id: int
    kind: str  # the notice's template
    recipient_kind: str  # petitioner, unit, person
    created_at: datetime
    state: str  # sent (every channel), pending (one still going), failed (none pending)
    attempts: int
    sent_at: datetime | None  # every channel sent
    channels: list[ChannelState]


def overall_state(states: Iterable[str]) -> str:
    states = list(states)
    if all(s == "sent" for s in states):
        return "sent"
    return "pending" if "pending" in states else "failed"


async def delivery_states(sessions: async_sessionmaker[AsyncSession],
                          petition_id: int) -> list[NoticeDeliveryState]:
    """Each notice of a petition, oldest first, with the state of each of its channels.
    A notice with no deliveries (to staff, or written before notices carried their facts)
    shows the file outbox's state and no channels."""
    async with sessions() as session:
        notices = (await session.scalars(select(Notice).where(
            Notice.petition_id == petition_id).order_by(Notice.id))).all()
        deliveries = (await session.scalars(select(NoticeDelivery).where(
            NoticeDelivery.notice_id.in_([n.id for n in notices]))
            .order_by(NoticeDelivery.id))).all()
    by_notice: dict[int, list[NoticeDelivery]] = {}
    for d in deliveries:
        by_notice.setdefault(d.notice_id, []).append(d)
    order = {"letter": 0, "sms": 1, "email": 2}
    result = []
    for n in notices:
        rows = sorted(by_notice.get(n.id, []), key=lambda d: order.get(d.channel, 9))
        channels = [ChannelState(d.channel, d.state, d.attempts, d.sent_at, d.last_error,
                                 d.next_attempt_at, d.printed_at) for d in rows]
        if channels:
            state = overall_state(c.state for c in channels)
            attempts = sum(c.attempts for c in channels)
        else:
            state = "sent" if n.delivered_at is not None else "pending"
            attempts = n.attempts
        result.append(NoticeDeliveryState(
            notice_id=n.id, kind=n.template, recipient_kind=n.recipient_kind,
            created_at=n.created_at, state=state, attempts=attempts,
            sent_at=n.delivered_at if state == "sent" else None, channels=channels))
    return result


def describe(states: list[NoticeDeliveryState]) -> list[dict[str, Any]]:
    """JSON-ready (for the service's documents listing)."""
    def iso(at: datetime | None) -> str | None:
        return at.isoformat() if at else None

    return [{"notice_id": s.notice_id, "kind": s.kind, "recipient_kind": s.recipient_kind,
             "created_at": iso(s.created_at), "state": s.state, "attempts": s.attempts,
             "sent_at": iso(s.sent_at),
             "channels": [{"channel": c.channel, "state": c.state, "attempts": c.attempts,
                           "sent_at": iso(c.sent_at), "printed_at": iso(c.printed_at)}
                          for c in s.channels]} for s in states]
