"""Issue 4: hearings are never double-booked (venue or officer), sit only in working hours on
working days, and every refusal says why and which slot would fit (real PostgreSQL).
Issue 16: the database itself refuses a double booking (migration 0010's exclusion
constraint), however the row is written, and the booking maps its refusal to the same
business refusal."""

from __future__ import annotations

import asyncio
import itertools
import os
import uuid
from datetime import datetime, time, timedelta
from functools import partial

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from temporalio.exceptions import ApplicationError

from activities import build_desks
from activities.common import refusal_of, sqlstate
from activities.contracts import (
    HearingBooking,
)
from activities.hearings import HearingDesk, HearingRules, venue_key
from activities.notices import facts_where
from adapters.engine import create_engine
from adapters.petition_client import ActionRefused, PetitionClient
from adapters.settings import get_settings
from adapters.tables import Hearing, HearingSlot, Notice, NoticeDelivery, PetitionEvent
from devstack.roles import ensure_roles, login_url
from domain.models import Accept, Actor, Role, ScheduleHearing
from domain.rules import Refusal
from starter.runtime import migrate_async
from tests.desk_helpers import beijing, count, hearing_day, register, run, scratch_database

HANDLER = Actor(id="qs-xfj-h1", role=Role.HANDLER, unit="QS-XFJ")


@pytest.fixture
def desks(sessions):
    return build_desks(sessions)


def venue() -> str:
    return f"Qingshan hearing room {uuid.uuid4().hex[:6]}"


async def book(desks, *, venue: str, starts_at, officers, minutes: int = 120,
               desk: HearingDesk | None = None):
    reg = await register(desks)
    booking = HearingBooking(workflow_id=f"petition-{uuid.uuid4().hex[:10]}",
                             petition_id=reg.petition_id, seq=3, hearing_no=1, venue=venue,
                             starts_at=starts_at, duration_minutes=minutes, officers=officers)
    return await run((desk or desks.hearings).schedule_hearing, booking)


async def refused_with(coro) -> Refusal:
    with pytest.raises(ApplicationError) as refused:
        await coro
    assert refused.value.non_retryable and refused.value.type == "BusinessRefusal"
    found = refusal_of(refused.value)
    assert found.rule == "hearing", found
    return found


async def refusal(coro) -> str:
    return (await refused_with(coro)).message


async def test_a_booked_venue_is_refused_naming_the_clash_and_the_next_free_slot(desks):
    day, room = hearing_day(), venue()
    await book(desks, venue=room, starts_at=beijing(day, 9), officers=["HO-03"])
    # The same room however it is typed; other officers.
    found = await refused_with(book(desks, venue=f"  {room.upper()} ",
                                    starts_at=beijing(day, 10), officers=["HO-04"]))
    assert found.field == "starts_at"
    assert datetime.fromisoformat(found.details["earliest_free_slot"]) == beijing(day, 11)
    message = found.message
    assert f"venue {room!r} is already booked {day:%Y-%m-%d} 09:00-11:00" in message
    assert f"earliest free slot for this venue and these officers is {day:%Y-%m-%d} 11:00-13:00" \
        in message, message
    # Back to back is not a clash.
    assert await book(desks, venue=room, starts_at=beijing(day, 11), officers=["HO-04"]) == 1


async def test_a_busy_officer_is_refused_even_in_another_room(desks):
    day = hearing_day()
    await book(desks, venue=venue(), starts_at=beijing(day, 14), officers=["HO-05", "HO-06"])
    message = await refusal(book(desks, venue=venue(), starts_at=beijing(day, 15),
                                 officers=["HO-07", "HO-06"]))
    assert f"hearing officer(s) HO-06 already sit {day:%Y-%m-%d} 14:00-16:00" in message
    assert "earliest free slot" in message and "16:00-18:00" not in message  # past 17:30


async def test_racing_bookings_of_one_slot_book_exactly_one(desks, sessions):
    day, room = hearing_day(), venue()
    results = await asyncio.gather(
        *(book(desks, venue=room, starts_at=beijing(day, 9, 30), officers=[officer])
          for officer in ("HO-01", "HO-02", "HO-08", "HO-04")),
        return_exceptions=True)
    booked = [r for r in results if r == 1]
    refused = [r for r in results if isinstance(r, ApplicationError)]
    assert len(booked) == 1 and len(refused) == 3, results
    assert all("already booked" in r.message for r in refused)
    assert await count(sessions, Hearing, Hearing.venue == room) == 1


@pytest.mark.parametrize(("hour", "minute", "minutes", "expected"), [
    (8, 0, 60, "outside the sitting hours 08:30-17:30 (Asia/Shanghai time)"),
    (16, 30, 120, "outside the sitting hours 08:30-17:30"),
    (23, 0, 120, "outside the sitting hours"),
])
async def test_outside_sitting_hours_is_refused(desks, hour, minute, minutes, expected):
    day = hearing_day()
    message = await refusal(book(desks, venue=venue(), starts_at=beijing(day, hour, minute),
                                 officers=["HO-01"], minutes=minutes))
    assert expected in message, message
    assert "earliest free slot" in message


async def test_a_non_working_day_is_refused_and_the_next_working_day_offered(desks):
    calendar = desks.hearings._calendar
    day = hearing_day()
    while calendar.is_working_day(day):
        day += timedelta(days=1)
    found = await refused_with(book(desks, venue=venue(), starts_at=beijing(day, 9),
                                    officers=["HO-02"]))
    message = found.message
    assert f"falls on {day:%A} {day:%Y-%m-%d}, not a working day" in message
    nxt = calendar.next_working_day_on_or_after(day)
    assert datetime.fromisoformat(found.details["earliest_free_slot"]) == beijing(nxt, 8, 30)
    assert f"earliest free slot for this venue and these officers is {nxt:%Y-%m-%d} 08:30" \
        in message, message


async def test_when_no_slot_fits_the_refusal_says_so(sessions, desks):
    # Sitting hours are configuration: a one-day search and a room taken at noon leave no
    # room for an eight-hour hearing.
    desk = HearingDesk(sessions, rules=HearingRules(search_working_days=1), vault=desks.vault)
    day, room = hearing_day(), venue()
    await book(desks, venue=room, starts_at=beijing(day, 12), officers=["HO-08"], minutes=60)
    found = await refused_with(book(desks, venue=room, starts_at=beijing(day, 8, 30),
                                    officers=["HO-07"], minutes=480, desk=desk))
    assert found.details == {"earliest_free_slot": None}
    message = found.message
    assert "already booked" in message
    assert "no slot fits this venue and these officers within 1 working days" in message


async def test_sitting_hours_are_configurable(sessions, desks):
    desk = HearingDesk(sessions, rules=HearingRules(day_starts=time(9, 0), day_ends=time(12, 0)),
                       vault=desks.vault)
    day = hearing_day()
    message = await refusal(book(desks, venue=venue(), starts_at=beijing(day, 8, 30),
                                 officers=["HO-01"], minutes=60, desk=desk))
    assert "outside the sitting hours 09:00-12:00" in message


@pytest.mark.parametrize(("officers", "expected"), [
    (["HO-01", "HO-01"], "an officer is listed twice"),
    (["HO-01", "qs-xfj-h1"], "not registered hearing officers: qs-xfj-h1"),
])
async def test_officers_must_be_registered_and_distinct(desks, officers, expected):
    message = await refusal(book(desks, venue=venue(), starts_at=beijing(hearing_day(), 9),
                                 officers=officers))
    assert expected in message


async def test_double_booking_through_the_workflow_is_refused_and_audited(
        dev_env, running_worker, petitions, sessions):
    day, room = hearing_day(), venue()
    async with running_worker(dev_env.client):
        client = PetitionClient(dev_env.client, task_queue="")
        first = await petitions.start(dev_env)
        second = await petitions.start(dev_env)
        for handle in (first, second):
            await client.act(handle.id, Accept(actor=HANDLER))
        status = await client.act(first.id, ScheduleHearing(
            actor=HANDLER, venue=room, starts_at=beijing(day, 9), officers=["HO-02", "HO-03"]))
        assert status is not None and [h.hearing_no for h in status.hearings] == [1]
        with pytest.raises(ActionRefused) as refused:
            await client.act(second.id, ScheduleHearing(
                actor=HANDLER, venue=f"Room {uuid.uuid4().hex[:4]}", starts_at=beijing(day, 10),
                officers=["HO-03"]))
        refusal = refused.value.refusal
        assert (refusal.rule, refusal.field) == ("hearing", "starts_at")
        # HO-03 sits until 11:00: the first two free hours from 10:00 on start then.
        free = refusal.details["earliest_free_slot"]
        assert free is not None and datetime.fromisoformat(free) == beijing(day, 11)
        assert f"hearing officer(s) HO-03 already sit {day:%Y-%m-%d} 09:00-11:00" in str(refusal)
        assert (await client.status(second.id)).hearings == []
        # The workflow writes its audit records in batches after answering: wait for it.
        refusals = 0
        for _ in range(50):
            refusals = await count(sessions, PetitionEvent, PetitionEvent.workflow_id == second.id,
                                   PetitionEvent.action == "schedule_hearing",
                                   PetitionEvent.accepted.is_(False))
            if refusals:
                break
            await asyncio.sleep(0.2)
    assert refusals == 1


async def test_the_petitioners_hearing_notice_is_a_written_notice_with_its_deliveries(
        sessions, desks):
    """听证通知: the booking's notice to the petitioner carries its facts (the hearing
    number the booking drew) and goes out as a letter and an SMS, like every written
    notice; the officers' notices stay internal."""
    reg = await register(desks)
    day = hearing_day()
    facts = {"kind": "hearing", "hearing": {"hearing_no": None, "venue": venue()}}
    booking = HearingBooking(workflow_id=f"petition-{uuid.uuid4().hex[:10]}",
                             petition_id=reg.petition_id, seq=3, hearing_no=1,
                             venue=facts["hearing"]["venue"], starts_at=beijing(day, 9),
                             duration_minutes=60, officers=["HO-01"], facts=facts)
    await run(desks.hearings.schedule_hearing, booking)
    async with sessions() as session:
        notices = {n.recipient_kind: n for n in await session.scalars(
            select(Notice).where(Notice.petition_id == reg.petition_id))}
        channels = sorted(await session.scalars(select(NoticeDelivery.channel).where(
            NoticeDelivery.notice_id == notices["petitioner"].id)))
        officer_deliveries = await session.scalar(select(func.count()).select_from(
            NoticeDelivery).where(NoticeDelivery.notice_id == notices["person"].id))
    assert channels == ["letter", "sms"] and officer_deliveries == 0
    opened = await desks.vault.open_json(notices["petitioner"].facts_sealed,
                                         facts_where(notices["petitioner"].idempotency_key))
    assert opened["hearing"]["hearing_no"] == 1


# ------------------------------------------------- the database's guarantee (migration 0010)

INSERT_HEARING = text(
    "INSERT INTO hearings (idempotency_key, petition_id, hearing_no, venue, starts_at, "
    "ends_at, officers, status) VALUES (:key, :petition, :no, :venue, :starts, :ends, "
    "CAST(:officers AS varchar(64)[]), :status) RETURNING id")


_hearing_nos = itertools.count(100)


async def insert_hearing(session, petition_id: int, *, venue: str, starts_at, officers,
                         minutes: int = 120, status: str = "scheduled") -> int:
    """A hearing written straight into the table: none of the application's checks."""
    return await session.scalar(INSERT_HEARING, {
        "key": f"direct-{uuid.uuid4().hex}", "petition": petition_id, "venue": venue,
        "no": next(_hearing_nos),
        "starts": starts_at, "ends": starts_at + timedelta(minutes=minutes),
        "officers": officers, "status": status})


async def refused_by_the_database(sessions, write) -> str:
    """Run `write(session)` in a transaction of its own: the database must refuse it with
    an exclusion violation (23P01) of hearing_slots' constraint."""
    async with sessions() as session:
        with pytest.raises(IntegrityError) as refused:
            await write(session)
            await session.commit()
    assert sqlstate(refused.value) == "23P01", refused.value
    return str(refused.value.orig)


async def test_the_database_refuses_double_bookings_the_application_never_checked(
        sessions, desks):
    day, room = hearing_day(), venue()
    petition = (await register(desks)).petition_id
    await book(desks, venue=room, starts_at=beijing(day, 9), officers=["HO-05"])

    def insert(**kwargs):
        return lambda session: insert_hearing(session, petition, **kwargs)

    # The room however it is typed (case, runs of spaces, an ideographic space), or one of
    # its officers in another room, at an overlapping time.
    retyped = "  " + room.upper().replace(" ", " \u3000 ") + " "
    assert venue_key(retyped) == venue_key(room)
    for clash in (dict(venue=room, starts_at=beijing(day, 10), officers=["HO-06"]),
                  dict(venue=retyped,
                       starts_at=beijing(day, 10, 59), officers=["HO-06"]),
                  dict(venue=venue(), starts_at=beijing(day, 8), officers=["HO-06", "HO-05"])):
        message = await refused_by_the_database(sessions, insert(**clash))
        assert "ex_hearing_slots_no_double_booking" in message
    # Back to back, and a cancelled hearing, hold nothing against it.
    async with sessions() as session:
        await insert_hearing(session, petition, venue=room, starts_at=beijing(day, 11),
                             officers=["HO-05"], minutes=30)
        cancelled = await insert_hearing(session, petition, venue=room,
                                         starts_at=beijing(day, 9), officers=["HO-05"],
                                         status="cancelled")
        await session.commit()
    # Reinstating the cancelled one, or moving a hearing onto a taken slot, is refused too.
    await refused_by_the_database(sessions, lambda session: session.execute(
        text("UPDATE hearings SET status = 'scheduled' WHERE id = :id"), {"id": cancelled}))
    await refused_by_the_database(sessions, lambda session: session.execute(
        text("UPDATE hearings SET starts_at = starts_at - interval '1 hour', "
             "ends_at = ends_at - interval '1 hour' WHERE venue = :room AND status = 'scheduled' "
             "AND starts_at = :at"), {"room": room, "at": beijing(day, 11)}))
    # The application may read the slots, not write them (only the trigger does).
    async with sessions() as session:
        held = (await session.scalars(select(HearingSlot.resource).join(
            Hearing, Hearing.id == HearingSlot.hearing_id).where(Hearing.venue == room))).all()
        assert sorted(held) == ["officer:HO-05", "officer:HO-05",
                                f"venue:{venue_key(room)}", f"venue:{venue_key(room)}"]
        with pytest.raises(DBAPIError, match="permission denied"):
            await session.execute(text("DELETE FROM hearing_slots"))


async def test_concurrent_direct_bookings_of_one_officer_the_database_lets_one_through(
        sessions, desks):
    """Two transactions write overlapping hearings of one officer in two rooms, neither
    checking: the second waits for the first and is refused when it commits."""
    day = hearing_day()
    petition = (await register(desks)).petition_id
    async with sessions() as first, sessions() as second:
        await insert_hearing(first, petition, venue=venue(), starts_at=beijing(day, 14),
                             officers=["HO-07"])
        late = asyncio.create_task(insert_hearing(
            second, petition, venue=venue(), starts_at=beijing(day, 15), officers=["HO-07"]))
        await asyncio.sleep(0.5)
        assert not late.done(), "the second writer must wait for the first's outcome"
        await first.commit()
        with pytest.raises(IntegrityError) as refused:
            await late
        assert sqlstate(refused.value) == "23P01"
        await second.rollback()
    assert await count(sessions, Hearing, Hearing.officers.contains(["HO-07"]),
                       Hearing.starts_at >= beijing(day, 0), Hearing.starts_at < beijing(day, 23)
                       ) == 1


async def test_bookings_past_the_applications_check_are_refused_by_the_constraint(
        sessions, desks, monkeypatch):
    """With the advisory locks gone and both bookings checked before either writes (the
    race the locks exist for), the database refuses the second; the booking turns its
    exclusion violation into the same refusal the check gives, naming clash and slot."""
    day, room = hearing_day(), venue()
    check = HearingDesk._clash
    both_checked = asyncio.Barrier(2)
    raced: list[int] = []

    async def no_lock(session, name):
        return None

    async def racing_check(self, session, booking, starts_at, ends_at, others=None):
        if others is None and len(raced) < 2:  # the first check of each booking
            raced.append(booking.petition_id)
            problem = await check(self, session, booking, starts_at, ends_at, others)
            await both_checked.wait()
            return problem
        return await check(self, session, booking, starts_at, ends_at, others)

    monkeypatch.setattr("activities.hearings.advisory_lock", no_lock)
    monkeypatch.setattr(HearingDesk, "_clash", racing_check)
    results = await asyncio.gather(
        book(desks, venue=room, starts_at=beijing(day, 9), officers=["HO-01"]),
        book(desks, venue=f"{room} ", starts_at=beijing(day, 10), officers=["HO-02"]),
        return_exceptions=True)
    assert len(raced) == 2, "both bookings passed the application's check"
    booked = [r for r in results if r == 1]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(booked) == 1 and len(refused) == 1, results
    error = refused[0]
    assert isinstance(error, ApplicationError), error
    assert error.non_retryable and error.type == "BusinessRefusal"
    found = refusal_of(error)
    assert (found.rule, found.field) == ("hearing", "starts_at")
    assert f"venue {room!r} is already booked" in found.message or \
        f"venue '{room} ' is already booked" in found.message, found.message
    assert found.details["earliest_free_slot"] is not None
    assert await count(sessions, Hearing, func.trim(Hearing.venue) == room) == 1


async def test_migrating_as_the_owners_login_needs_btree_gist_from_a_superuser():
    """Compose's path: the owner role logs in itself (no superuser behind it) and may not
    create extensions in the database; 0010 says what to run, and after
    `devstack.roles.ensure_roles` (which creates btree_gist as the superuser) it migrates."""
    owner = get_settings().db_owner_role
    as_owner = partial(login_url, role=owner,
                       password=os.environ.get("PETITION_OWNER_PASSWORD") or None)
    async with scratch_database("hearings_gist", migrated=False) as (url, _):
        engine = create_engine(url, pool_size=1)
        try:
            async with engine.begin() as conn:  # what deploy/postgres-init gives the owner
                await conn.execute(text("REVOKE CREATE ON SCHEMA public FROM PUBLIC"))
                await conn.execute(text(f'GRANT CREATE ON SCHEMA public TO "{owner}"'))
            await migrate_async(as_owner(url), "0009")
            with pytest.raises(RuntimeError, match=r"btree_gist is not installed in database "
                               r".* `python -m devstack.roles"):
                await migrate_async(as_owner(url), "0010")
            await ensure_roles(url)
            await migrate_async(as_owner(url), "head")
            async with engine.connect() as conn:
                assert await conn.scalar(text(
                    "SELECT conname FROM pg_constraint WHERE contype = 'x' "
                    "AND conrelid = 'hearing_slots'::regclass")
                ) == "ex_hearing_slots_no_double_booking"
        finally:
            await engine.dispose()
