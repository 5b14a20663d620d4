"""Public hearings (公开听证): venue, time, third-party officers, no double booking."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.common import find_by_key, refuse
from domain.case import HearingBooking, HearingRecordInput
from domain.persistence.tables import Hearing, Person


def _lock_key(kind: str, name: str) -> str:
    return f"hearing:{kind}:{name}"


class HearingDesk:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]):
        self._sessions = sessions

    @activity.defn
    async def schedule_hearing(self, booking: HearingBooking) -> int:
        key = f"{booking.workflow_id}:{booking.seq}:hearing"
        ends_at = booking.starts_at + timedelta(minutes=booking.duration_minutes)
        async with self._sessions() as session:
            earlier = await find_by_key(session, Hearing, key)
            if earlier is not None:
                return earlier.hearing_no
            await self._check_officers(session, booking.officers)
            # Serialise bookings of the same venue and officers: without btree_gist an
            # exclusion constraint is unavailable, so transaction-scoped advisory locks
            # make the overlap check and the insert atomic.
            for name in sorted([_lock_key("venue", booking.venue)]
                               + [_lock_key("officer", o) for o in booking.officers]):
                await session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"),
                                      {"k": name})
            await self._check_free(session, booking, ends_at)
            session.add(Hearing(
                idempotency_key=key, petition_id=booking.petition_id,
                hearing_no=booking.hearing_no, venue=booking.venue,
                starts_at=booking.starts_at, ends_at=ends_at, officers=booking.officers,
            ))
            await session.commit()
        return booking.hearing_no

    async def _check_officers(self, session: AsyncSession, officers: list[str]) -> None:
        if len(set(officers)) != len(officers):
            raise refuse("hearing", "an officer is listed twice")
        known = set(await session.scalars(
            select(Person.id).where(Person.id.in_(officers), Person.is_hearing_officer)
        ))
        missing = [o for o in officers if o not in known]
        if missing:
            raise refuse("hearing", f"not registered hearing officers: {', '.join(missing)}")

    async def _check_free(
        self, session: AsyncSession, booking: HearingBooking, ends_at: datetime
    ) -> None:
        overlapping = (
            select(Hearing)
            .where(Hearing.starts_at < ends_at, Hearing.ends_at > booking.starts_at,
                   Hearing.status == "scheduled")
        )
        for other in await session.scalars(overlapping):
            if other.venue == booking.venue:
                raise refuse("hearing", f"venue {booking.venue!r} is booked "
                             f"{other.starts_at:%Y-%m-%d %H:%M}-{other.ends_at:%H:%M} UTC; "
                             "choose another time or venue")
            busy = sorted(set(other.officers) & set(booking.officers))
            if busy:
                raise refuse("hearing", f"hearing officer(s) {', '.join(busy)} already sit "
                             f"{other.starts_at:%Y-%m-%d %H:%M}-{other.ends_at:%H:%M} UTC")

    @activity.defn
    async def record_hearing_outcome(self, record: HearingRecordInput) -> int:
        async with self._sessions() as session:
            hearing = await session.scalar(
                select(Hearing).where(Hearing.petition_id == record.petition_id,
                                      Hearing.hearing_no == record.hearing_no)
                .with_for_update()
            )
            if hearing is None:
                raise refuse("hearing", f"no hearing no. {record.hearing_no} on this case")
            if hearing.status == "held" and hearing.outcome != record.outcome:
                raise refuse("hearing", f"hearing no. {record.hearing_no} already recorded")
            hearing.status, hearing.outcome, hearing.summary = "held", record.outcome, record.summary
            await session.commit()
            return hearing.hearing_no
