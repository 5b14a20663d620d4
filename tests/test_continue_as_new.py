"""Cases that live long: thousands of notes and repeat visits, continue-as-new, and a case
that keeps its stage, deadlines and timeline across runs.

The flood is sent as Signals (fire and forget), in concurrent batches, with an Update
arriving in the middle of it. Every run must stay under 10,000 history events; each note
and visit must reach the audit trail exactly once; and after the runs have turned over,
the handling deadline still fires at its original time.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, timedelta
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from devstack.temporal_server import settled
from domain.case import PetitionStatus, TimelineEntry
from domain.models import Action, AddNote, Channel, ClockName, Command, RepeatVisit, Stage
from domain.policy import load_profile
from tests.lifecycle_helpers import (
    CALENDAR,
    PETITIONER,
    Case,
    clock,
    eventually,
    handler,
    head,
    pg_fetch,
    sleep_until,
)
from workflows.petition import CONTINUE_AS_NEW_AFTER_EVENTS

NOTES = 1_300
VISITS = 900
BATCH = 250
HISTORY_LIMIT = 10_000
NATIONAL = load_profile("national")


async def runs_of(client: Client, workflow_id: str, first_run: str) -> list[list[int]]:
    """The event types of every run of the workflow, first to latest."""
    runs: list[list[int]] = []
    run_id = first_run
    while run_id:
        events = [e async for e in
                  client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history_events()]
        runs.append([int(e.event_type) for e in events])
        last = events[-1]
        run_id = (last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
                  if last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
                  else "")
    return runs


def _transitions(timeline: list[TimelineEntry]) -> list[tuple[Any, ...]]:
    return [(e.seq, e.action, e.from_stage, e.to_stage, e.at) for e in timeline
            if e.accepted and e.action not in (Action.ADD_NOTE, Action.REPEAT_VISIT)]


async def test_a_flood_of_notes_and_visits_continues_as_new_and_keeps_the_case(
        dev_env, running_worker, petitions, db_url, capsys):
    """On the real dev server: continue-as-new while signals keep arriving is where the
    server's own rules matter (the Java test server mishandles it)."""
    async with running_worker(dev_env.client):
        case = await Case.start(dev_env, petitions)
        await case.act(Action.ACCEPT)
        await case.act(Action.REQUEST_EXTENSION)
        await case.act(Action.DECIDE_EXTENSION, head(case.last.holding_unit or ""))
        await case.act(Action.SCHEDULE_HEARING)
        before = await case.refresh()
        timeline_before = await case.timeline()
        unit = before.holding_unit or ""
        first_run = (await case.handle.describe()).run_id  # the only run so far
        assert first_run

        signals: list[Command] = (
            [AddNote(actor=handler(unit), text=f"第{n}份补充材料 note {n}") for n in range(NOTES)]
            + [RepeatVisit(actor=PETITIONER, channel=Channel.VISIT, summary=f"visit {n}")
               for n in range(VISITS)])
        signals = signals[::2] + signals[1::2]  # notes and visits interleaved
        started = time.perf_counter()
        assign: asyncio.Task[PetitionStatus | None] | None = None
        for n in range(0, len(signals), BATCH):
            await asyncio.gather(*(case.petitions.act(case.handle.id, command, as_signal=True)
                                   for command in signals[n:n + BATCH]))
            if assign is None and n >= len(signals) // 2:
                # An Update in the middle of the flood: continue-as-new waits for it.
                assign = asyncio.create_task(case.petitions.act(
                    case.handle.id, case.command(Action.ASSIGN, handler_id=f"{unit}.h3")))
        sent = time.perf_counter() - started

        async def all_counted() -> bool:
            status = await case.refresh()
            return status.notes == NOTES and status.repeat_visits == VISITS

        async def turned_over() -> bool:
            return (await case.refresh()).runs >= 2

        assert await eventually(all_counted, within=120), case.last
        processed = time.perf_counter() - started
        # The run that passed the threshold continues as new once its handlers finish.
        assert await eventually(turned_over), case.last
        assigned = await assign if assign is not None else None
        assert assigned is not None and assigned.handler_id == f"{unit}.h3"
        after = case.last
        timeline_after = await case.timeline()
        runs = await runs_of(dev_env.client, case.handle.id, first_run)

        # Every run under the limit; the case has continued as new more than once.
        sizes = [len(r) for r in runs]
        assert len(runs) >= 2 and after.runs == len(runs), sizes
        assert max(sizes) < HISTORY_LIMIT, sizes
        # Each run turned over after passing the threshold, by what one workflow task of
        # the flood brought in (the signals that arrived while a batch was written).
        assert all(s > CONTINUE_AS_NEW_AFTER_EVENTS for s in sizes[:-1]), sizes
        with capsys.disabled():
            print(f"\n{NOTES + VISITS} signals: sent in {sent:.1f} s, all handled after "
                  f"{processed:.1f} s; {len(runs)} runs of {sizes} events")

        # The case itself is unchanged: stage, deadlines, extension, hearing, timeline.
        assert after.stage is Stage.IN_HANDLING
        assert [(c.name, c.started_at, c.due_at, c.level, c.paused) for c in after.clocks] == [
            (c.name, c.started_at, c.due_at, c.level, c.paused) for c in before.clocks]
        assert (after.extension_days, after.hearings) == (before.extension_days, before.hearings)
        assert _transitions(timeline_after)[:len(timeline_before)] == _transitions(
            timeline_before)
        assert _transitions(timeline_after)[-1][1] is Action.ASSIGN
        assert len(timeline_after) - len(_transitions(timeline_after)) <= 20  # notes: counted

        # Each note and visit reached the audit trail exactly once (signals are fire and
        # forget: their records follow in batches, those still queued by the next run).
        async def audited() -> dict[str, int]:
            [counts] = await pg_fetch(
                db_url, "SELECT count(*) FILTER (WHERE action = 'add_note') AS notes, "
                "count(*) FILTER (WHERE action = 'repeat_visit') AS visits, count(DISTINCT seq) "
                "FILTER (WHERE action IN ('add_note', 'repeat_visit')) AS seqs "
                "FROM petition_events WHERE workflow_id = $1 AND accepted", case.handle.id)
            return dict(counts)

        everything = {"notes": NOTES, "visits": VISITS, "seqs": NOTES + VISITS}
        await eventually(lambda: _equal(audited(), everything))
        assert await audited() == everything
        [row] = await pg_fetch(db_url, "SELECT repeat_visits, handler_id FROM petitions "
                               "WHERE workflow_id = $1", case.handle.id)
        assert dict(row) == {"repeat_visits": VISITS, "handler_id": f"{unit}.h3"}

        # The latest run waits for the same deadline: its timer fires at the kept due time.
        due = clock(after, ClockName.HANDLING).due_at
        reminder = NATIONAL.reminder_at(ClockName.HANDLING, due, CALENDAR)
        latest = [e async for e in case.handle.fetch_history_events()]
        timers = [(e.event_time.ToDatetime(tzinfo=UTC)
                   + e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta())
                  for e in latest if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED]
        assert timers and all(abs(t - reminder) < timedelta(seconds=1) for t in timers), (
            timers, reminder)


async def test_a_case_continued_as_new_keeps_its_deadlines_and_they_fire(
        ts_env, running_worker, petitions):
    """In virtual time. Notes arrive in bursts while the history is short, then one at a
    time with the case quiet in between, as Updates: the Java test server drops the
    headers of signals (so their signed assertions) and loses a continue-as-new that races
    with an arriving signal (the dev-server test above floods with signals)."""
    async with running_worker(ts_env.client):
        case = await Case.start(ts_env, petitions)
        await case.act(Action.ACCEPT)
        await case.act(Action.REQUEST_EXTENSION)
        await case.act(Action.DECIDE_EXTENSION, head(case.last.holding_unit or ""))
        before = await case.refresh()
        timeline_before = await case.timeline()
        actor = handler(before.holding_unit or "")
        sent = 0
        while (await case.refresh()).runs < 2:
            length = (await case.handle.describe()).history_length
            burst = 200 if length < CONTINUE_AS_NEW_AFTER_EVENTS - 300 else 1
            await asyncio.gather(*(case.petitions.act(
                case.handle.id, AddNote(actor=actor, text=f"note {sent + n}"))
                for n in range(burst)))
            sent += burst
            assert await settled(case.env.client, case.handle.id), "the case never went quiet"
            assert sent < 4 * CONTINUE_AS_NEW_AFTER_EVENTS, "never continued as new"
        after = await case.refresh()
        assert after.notes == sent and after.stage is Stage.IN_HANDLING
        assert [c.model_dump() for c in after.clocks] == [c.model_dump() for c in before.clocks]
        assert after.extension_days == before.extension_days > 0
        assert _transitions(await case.timeline()) == _transitions(timeline_before)

        due = clock(after, ClockName.HANDLING).due_at
        await sleep_until(ts_env, due - timedelta(seconds=1))
        assert not (await case.refresh()).overdue
        await ts_env.sleep(timedelta(seconds=2))
        status = await case.refresh()
        assert status.overdue and clock(status, ClockName.HANDLING).level == 1
        assert status.runs >= 2


async def _equal(found: Any, expected: dict[str, int]) -> bool:
    return await found == expected
