"""Issue 17: every deadline the workflow's timers fire -- a clock's reminder, its level-1
and level-2 escalations, a review window's lapse -- is counted once and its lateness
observed (`petitionflow_deadline_lateness_seconds`): the workflow's time at firing minus
the instant its timer was due, which the workflow passes in the activity's input.

A retried activity (the same input again, or racing the first) finds its row written and
counts nothing more; an input without the due instant (scheduled by older workflow code,
or a deadline already past when the workflow began waiting) is counted without lateness.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import REGISTRY

from activities import build_desks
from activities.contracts import EscalationInput, NoticeInput, TransitionBatch
from activities.records import TIMER_DUE_AT
from domain.case import TransitionRecord
from domain.models import SYSTEM_ACTOR, Action, ClockName, Stage
from tests.conftest import make_intake
from tests.desk_helpers import register, run
from tests.lifecycle_helpers import (
    Case,
    clock,
    eventually,
    finished,
    pg_fetch,
    sleep_until,
)

KINDS = ("reminder", "escalation_1", "escalation_2", "lapse")
DUE = datetime(2026, 11, 2, 1, 30, tzinfo=UTC)
# How late a timer may fire on the dev server of a busy two-core test machine: a workflow
# task's round trip, not minutes.
SANE_SECONDS = 10.0


def observed() -> dict[str, tuple[float, float, float]]:
    """Per kind: (deadlines fired, lateness observations, their sum in seconds)."""
    def get(name: str, kind: str) -> float:
        return REGISTRY.get_sample_value(name, {"kind": kind}) or 0.0

    return {kind: (get("petitionflow_deadlines_fired_total", kind),
                   get("petitionflow_deadline_lateness_seconds_count", kind),
                   get("petitionflow_deadline_lateness_seconds_sum", kind))
            for kind in KINDS}


def moved(before: dict[str, tuple[float, ...]]) -> dict[str, tuple[float, ...]]:
    after = observed()
    return {kind: tuple(round(a - b, 6) for a, b in zip(after[kind], before[kind],
                                                          strict=True))
            for kind in KINDS}


async def retried(fn: Any, arg: Any) -> Any:
    """The same input again after the first attempt, then twice at once (a retry racing
    the original): what a crash between the commit and the answer leads to."""
    first = await run(fn, arg)
    again = await run(fn, arg)
    raced = await asyncio.gather(run(fn, arg), run(fn, arg))
    assert [again, *raced] == [first] * 3
    return first


# ------------------------------------------------ each activity, retried (PostgreSQL)


async def test_a_retried_escalation_counts_its_deadline_once(sessions):
    desks = build_desks(sessions)
    reg = await register(desks, unit="QS-T1")
    level2_due = DUE + timedelta(days=15)
    base = EscalationInput(workflow_id=f"petition-{uuid.uuid4().hex[:8]}",
                           petition_id=reg.petition_id, registration_no=reg.registration_no,
                           clock=ClockName.ACCEPTANCE, level=1, unit="QS-T1", due_at=DUE,
                           at=DUE + timedelta(seconds=90), timer_due_at=DUE)
    before = observed()
    await retried(desks.escalation.escalate, base)
    # Level 2: its timer was due level2_at, long after the deadline (due_at).
    await retried(desks.escalation.escalate, base.model_copy(update={
        "level": 2, "timer_due_at": level2_due, "at": level2_due + timedelta(seconds=3)}))
    assert moved(before) == {"reminder": (0, 0, 0), "escalation_1": (1, 1, 90.0),
                             "escalation_2": (1, 1, 3.0), "lapse": (0, 0, 0)}


async def test_an_escalation_without_its_timer_due_instant_is_counted_without_lateness(
        sessions):
    """An input scheduled before workflows passed `timer_due_at` (its JSON has no such
    field), or for a deadline already past when the workflow began waiting."""
    desks = build_desks(sessions)
    reg = await register(desks, unit="QS-T1")
    old = EscalationInput.model_validate_json(json.dumps({
        "workflow_id": f"petition-{uuid.uuid4().hex[:8]}", "petition_id": reg.petition_id,
        "registration_no": reg.registration_no, "clock": "acceptance", "level": 1,
        "unit": "QS-T1", "due_at": DUE.isoformat(),
        "at": (DUE + timedelta(days=40)).isoformat()}))
    assert old.timer_due_at is None
    before = observed()
    await retried(desks.escalation.escalate, old)
    assert moved(before)["escalation_1"] == (1, 0, 0)


async def test_a_retried_reminder_counts_its_deadline_once(sessions):
    desks = build_desks(sessions)
    reg = await register(desks)
    reminder = NoticeInput(idempotency_key=f"test:{uuid.uuid4().hex}:reminder",
                           petition_id=reg.petition_id, recipient_kind="unit",
                           recipient_ref="QS-XFJ", template="reminder",
                           body="acceptance due soon", at=DUE + timedelta(seconds=2.5),
                           timer_due_at=DUE)
    other = reminder.model_copy(update={"idempotency_key": f"test:{uuid.uuid4().hex}:accept",
                                        "template": "accept", "timer_due_at": None})
    before = observed()
    await retried(desks.notices.send_notice, reminder)
    await retried(desks.notices.send_notice, other)  # not a deadline: not counted
    assert moved(before)["reminder"] == (1, 1, 2.5)


async def test_a_lapse_recorded_again_counts_its_deadline_once(sessions):
    desks = build_desks(sessions)
    reg = await register(desks)
    wf = f"petition-{uuid.uuid4().hex[:8]}"
    lapse = TransitionRecord(workflow_id=wf, petition_id=reg.petition_id, seq=7,
                             action=Action.REVIEW_WINDOW_LAPSED, actor=SYSTEM_ACTOR,
                             at=DUE + timedelta(seconds=4), from_stage=Stage.REPLIED,
                             to_stage=Stage.CLOSED, detail={TIMER_DUE_AT: DUE.isoformat()})
    # Its record travels again with a later one (a batch resent after continue-as-new).
    later = lapse.model_copy(update={"seq": 8, "action": Action.ADD_NOTE, "detail": {}})
    before = observed()
    await retried(desks.records.record_transitions, TransitionBatch(records=[lapse]))
    await run(desks.records.record_transitions, TransitionBatch(records=[lapse, later]))
    assert moved(before)["lapse"] == (1, 1, 4.0)


# ------------------------------------------------------- through the workflow's timers


async def test_reminder_and_both_escalations_report_their_lateness_on_the_dev_server(
        dev_env, running_worker, petitions):
    """A neglected case under the demo profile, in real time: the acceptance reminder at
    12 s, level 1 at 20 s, level 2 at 30 s; each observed once, a little late."""
    before = observed()
    async with running_worker(dev_env.client):
        await petitions.start(dev_env, make_intake(unit="QS-HRSS", profile="demo"))

        async def level_2_fired() -> bool:
            return moved(before)["escalation_2"][0] >= 1

        assert await eventually(level_2_fired, within=50), moved(before)
    fired = moved(before)
    for kind in ("reminder", "escalation_1", "escalation_2"):
        count, observations, seconds = fired[kind]
        assert (count, observations) == (1, 1), (kind, fired)
        # A timer fires after its instant, never before: a sign error would read 0 here.
        assert 0 < seconds < SANE_SECONDS, (kind, fired)
    assert fired["lapse"] == (0, 0, 0)


async def test_a_lapsing_review_window_reports_its_lateness(ts_env, running_worker, petitions,
                                                             db_url):
    """National profile in virtual time: the reply opens the 30-day review window; its
    lapse closes the case, names the window's due instant in its audit row and is
    observed once."""
    async with running_worker(ts_env.client):
        case = await Case.start(ts_env, petitions, unit="QS-HRSS")
        await case.act(Action.ACCEPT)
        status = await case.act(Action.REPLY)
        window = clock(status, ClockName.REVIEW_REQUEST).due_at
        before = observed()
        await sleep_until(ts_env, window + timedelta(seconds=1))
        assert (await finished(case.handle)).stage is Stage.CLOSED
    [row] = await pg_fetch(db_url, "SELECT detail FROM petition_events WHERE workflow_id = $1 "
                           "AND action = 'review_window_lapsed'", case.handle.id)
    detail = json.loads(row["detail"]) if isinstance(row["detail"], str) else row["detail"]
    assert datetime.fromisoformat(detail[TIMER_DUE_AT]) == window
    fired = moved(before)
    assert fired["lapse"][:2] == (1, 1), fired
    assert 0 <= fired["lapse"][2] < SANE_SECONDS, fired
