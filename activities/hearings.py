"""Public hearings (公开听证): venue, time, third-party officers, no double booking."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.common import (
    Clock,
    advisory_lock,
    find_by_key,
    integrity_refusal,
    refuse,
    sqlstate,
    utc_now,
)
from activities.contracts import (
    HearingBooking,
    HearingRecordInput,
)
from activities.notices import add_deliveries, sealed_notice
from adapters.engine import unit_of_work
from adapters.tables import Hearing, Person, Petition
from domain.calendar import WorkingCalendar
from security.sealing import Vault


@dataclass(frozen=True)
class HearingRules:
    """When hearings may sit: the one place to change the sitting hours."""

    time_zone: ZoneInfo = ZoneInfo("Asia/Shanghai")
    day_starts: time = time(8, 30)
    day_ends: time = time(17, 30)
    # Suggested free slots start on this grid, and are searched this many working days on.
    slot_step: timedelta = timedelta(minutes=30)
    search_working_days: int = 10


HEARING_RULES = HearingRules()

# Hearings that no longer hold their venue and officers (migration 0010's trigger writes
# slots for every other status: change both together).
RELEASED = ("cancelled",)

# PostgreSQL's exclusion_violation: hearing_slots' constraint refused an overlapping booking.
EXCLUSION_VIOLATION = "23P01"


def venue_key(venue: str) -> str:
    """`Room 3`, ` room  3 ` and `ROOM 3` are one room (migration 0010's VENUE_KEY is the
    database's: the same whitespace, lower() where this folds case)."""
    return " ".join(venue.split()).casefold()


class HearingDesk:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        calendar: WorkingCalendar | None = None,
        rules: HearingRules = HEARING_RULES,
        clock: Clock = utc_now,
        *,
        vault: Vault,
    ):
        self._sessions = sessions
        self._vault = vault
        self._clock = clock
        self._calendar = calendar or WorkingCalendar()
        self._rules = rules

    @activity.defn
    async def schedule_hearing(self, booking: HearingBooking) -> int:
        """Book the hearing, or refuse naming the clash and the earliest slot that fits.

        The database guarantees no double booking: migration 0010's exclusion constraint on
        `hearing_slots` (a trigger writes a hearing's venue and officers there) refuses an
        overlapping hearing, whoever writes it. In front of it, transaction-scoped advisory
        locks on the venue and each officer make this check and the insert atomic, so the
        refusal names the clash and the earliest free slot; should a booking get past them
        (another writer, a change that skipped them), the constraint's violation (SQLSTATE
        23P01) is the same non-retryable refusal, its clash read again after the rollback.
        A retry (same key) finds its booking even after waiting on the locks.
        """
        key = f"{booking.workflow_id}:{booking.seq}:hearing"
        ends_at = booking.starts_at + timedelta(minutes=booking.duration_minutes)
        async with unit_of_work(self._sessions) as session:
            earlier = await find_by_key(session, Hearing, key)
            if earlier is not None:
                return earlier.hearing_no
            await self._check_officers(session, booking.officers)
            registration_no = await session.scalar(
                select(Petition.registration_no).where(Petition.id == booking.petition_id))
            if registration_no is None:
                raise refuse("hearing", f"no petition {booking.petition_id}")
            for name in sorted([f"hearing:venue:{venue_key(booking.venue)}"]
                               + [f"hearing:officer:{o}" for o in booking.officers]):
                await advisory_lock(session, name)
            earlier = await find_by_key(session, Hearing, key)
            if earlier is not None:  # a concurrent attempt of this very booking won
                return earlier.hearing_no
            problem = self._outside_hours(booking.starts_at, ends_at)
            if problem is None:
                problem = await self._clash(session, booking, booking.starts_at, ends_at)
            if problem is not None:
                raise await self._refusal(session, booking, problem)
            session.add(Hearing(
                idempotency_key=key, petition_id=booking.petition_id,
                hearing_no=booking.hearing_no, venue=booking.venue,
                starts_at=booking.starts_at, ends_at=ends_at, officers=booking.officers,
            ))
            try:
                await self._notices(session, booking, key, registration_no, ends_at)
                await session.commit()
            except IntegrityError as err:
                failure = err
            else:
                return booking.hearing_no
        # The transaction is rolled back: what refused it is read afresh.
        async with unit_of_work(self._sessions) as session:
            earlier = await find_by_key(session, Hearing, key)
            if earlier is not None:  # this very booking, written by a concurrent attempt
                return earlier.hearing_no
            if sqlstate(failure) != EXCLUSION_VIOLATION:
                raise integrity_refusal(failure, f"hearing booking {key}") from None
            problem = await self._clash(session, booking, booking.starts_at, ends_at)
            raise await self._refusal(session, booking, problem or (
                f"the venue or an officer is already booked "
                f"{self._span(booking.starts_at, ends_at)} (the database refused the "
                "double booking)")) from None

    async def _refusal(self, session: AsyncSession, booking: HearingBooking,
                       problem: str) -> ApplicationError:
        """The booking refused for `problem`, naming the earliest slot that fits."""
        duration = timedelta(minutes=booking.duration_minutes)
        free = await self._earliest_free_slot(session, booking)
        suggestion = (f"the earliest free slot for this venue and these officers is "
                      f"{self._span(free, free + duration)}"
                      if free else
                      f"no slot fits this venue and these officers within "
                      f"{self._rules.search_working_days} working days; choose "
                      "another venue or officers")
        return refuse("hearing", f"{problem}; {suggestion}", "starts_at",
                      earliest_free_slot=free.isoformat() if free else None)

    # ----------------------------------------------------------------- the rules

    async def _check_officers(self, session: AsyncSession, officers: list[str]) -> None:
        if len(set(officers)) != len(officers):
            raise refuse("hearing", "an officer is listed twice")
        known = set(await session.scalars(
            select(Person.id).where(Person.id.in_(officers), Person.is_hearing_officer)
        ))
        missing = [o for o in officers if o not in known]
        if missing:
            raise refuse("hearing", f"not registered hearing officers: {', '.join(missing)}")

    def _outside_hours(self, starts_at: datetime, ends_at: datetime) -> str | None:
        rules, local = self._rules, starts_at.astimezone(self._rules.time_zone)
        end_local = ends_at.astimezone(rules.time_zone)
        when = self._span(starts_at, ends_at)
        if not self._calendar.is_working_day(local.date()):
            return f"{when} falls on {local:%A} {local:%Y-%m-%d}, not a working day"
        if (local.time() < rules.day_starts or end_local.date() != local.date()
                or end_local.time() > rules.day_ends):
            return (f"{when} is outside the sitting hours {rules.day_starts:%H:%M}-"
                    f"{rules.day_ends:%H:%M} ({rules.time_zone.key} time)")
        return None

    async def _clash(self, session: AsyncSession, booking: HearingBooking,
                     starts_at: datetime, ends_at: datetime,
                     others: Sequence[Hearing] | None = None) -> str | None:
        if others is None:
            others = await self._booked(session, starts_at, ends_at)
        venue = venue_key(booking.venue)
        for other in others:
            if other.starts_at >= ends_at or other.ends_at <= starts_at:
                continue
            when = self._span(other.starts_at, other.ends_at)
            if venue_key(other.venue) == venue:
                return f"venue {other.venue!r} is already booked {when}"
            busy = sorted(set(other.officers) & set(booking.officers))
            if busy:
                return f"hearing officer(s) {', '.join(busy)} already sit {when}"
        return None

    async def _booked(self, session: AsyncSession, start: datetime,
                      end: datetime) -> Sequence[Hearing]:
        return (await session.scalars(
            select(Hearing)
            .where(Hearing.starts_at < end, Hearing.ends_at > start,
                   Hearing.status.not_in(RELEASED))
            .order_by(Hearing.starts_at)
        )).all()

    async def _earliest_free_slot(self, session: AsyncSession,
                                  booking: HearingBooking) -> datetime | None:
        """The earliest start on the slot grid, from the requested time on, that fits."""
        rules = self._rules
        duration = timedelta(minutes=booking.duration_minutes)
        day = booking.starts_at.astimezone(rules.time_zone).date()
        days = self._working_days_from(day, rules.search_working_days)
        window_start = datetime.combine(days[0], rules.day_starts, rules.time_zone)
        window_end = datetime.combine(days[-1], rules.day_ends, rules.time_zone)
        others = await self._booked(session, window_start, window_end)
        for d in days:
            start = datetime.combine(d, rules.day_starts, rules.time_zone)
            last = datetime.combine(d, rules.day_ends, rules.time_zone) - duration
            while start <= last:
                if (start >= booking.starts_at
                        and self._outside_hours(start, start + duration) is None
                        and await self._clash(session, booking, start, start + duration,
                                              others) is None):
                    return start
                start += rules.slot_step
        return None

    def _working_days_from(self, day: date, count: int) -> list[date]:
        days: list[date] = []
        while len(days) < count:
            day = self._calendar.next_working_day_on_or_after(day)
            days.append(day)
            day += timedelta(days=1)
        return days

    def _span(self, starts_at: datetime, ends_at: datetime) -> str:
        zone = self._rules.time_zone
        start, end = starts_at.astimezone(zone), ends_at.astimezone(zone)
        return f"{start:%Y-%m-%d %H:%M}-{end:%H:%M} ({zone.key} time)"

    async def _notices(self, session: AsyncSession, booking: HearingBooking, key: str,
                       registration_no: str, ends_at: datetime) -> None:
        """Notices to the parties, in the booking's own transaction (the outbox)."""
        now = self._clock()
        what = (f"Hearing no. {booking.hearing_no} on case {registration_no}: "
                f"{self._span(booking.starts_at, ends_at)} at {booking.venue}.")
        facts = booking.facts
        if facts is not None and isinstance(facts.get("hearing"), dict):
            facts = {**facts, "hearing": {**facts["hearing"], "hearing_no": booking.hearing_no}}
        notice = await sealed_notice(
            self._vault, idempotency_key=f"{key}:notice:petitioner",
            petition_id=booking.petition_id, facts=facts,
            recipient_kind="petitioner", recipient_ref=registration_no,
            template="hearing_scheduled", body=what, created_at=now)
        session.add(notice)
        await session.flush()
        await add_deliveries(session, self._vault, notice, now)  # letter, SMS, e-mail
        for officer in booking.officers:
            session.add(await sealed_notice(
                self._vault, idempotency_key=f"{key}:notice:officer:{officer}",
                petition_id=booking.petition_id, recipient_kind="person",
                recipient_ref=officer, template="hearing_scheduled", body=what,
                created_at=now))

    @activity.defn
    async def record_hearing_outcome(self, record: HearingRecordInput) -> int:
        async with unit_of_work(self._sessions) as session:
            hearing = await session.scalar(
                select(Hearing).where(Hearing.petition_id == record.petition_id,
                                      Hearing.hearing_no == record.hearing_no)
                .with_for_update()
            )
            if hearing is None:
                raise refuse("hearing", f"no hearing no. {record.hearing_no} on this case")
            if hearing.status == "held" and hearing.outcome != record.outcome:
                raise refuse("hearing", f"hearing no. {record.hearing_no} already recorded")
            hearing.status, hearing.outcome = "held", record.outcome
            hearing.summary_sealed = await self._vault.seal(
                record.summary.encode(), f"hearings.summary:{hearing.idempotency_key}")
            await session.commit()
            return hearing.hearing_no
