"""One test per deadline of each profile, named by its article or rule, in virtual time.

For each clock: it starts when the table says (and not before), its due time equals
`profile.deadline(...)` computed here from the starting action's time, and it fires at
that time, not a second earlier: a deadline goes overdue and escalates to level 1, a
window lapses. The re-review clock is also stopped by a hearing, and shifts by exactly
the time the hearing took.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest

from domain.lifecycle import LAPSE_ACTIONS
from domain.models import Action, ClockName, Outcome, Stage
from domain.policy import ClockKind, DeadlineProfile, available_profiles, load_profile
from tests.lifecycle_helpers import (
    BUREAU,
    CALENDAR,
    COMPETENT_UNIT,
    Case,
    clock,
    clock_names,
    finished,
    sleep_until,
)

# Where each clock starts (DOMAIN.md, "Deadlines"): the unit the petition is registered
# at, and the ordinary-path stage the case must reach; `None`: at registration.
STARTS: dict[ClockName, tuple[str, Stage, Action | None]] = {
    ClockName.ROUTING: (BUREAU, Stage.REGISTERED, None),
    ClockName.ACCEPTANCE: (COMPETENT_UNIT, Stage.REGISTERED, None),
    ClockName.TRANSFER_OBJECTION: (BUREAU, Stage.REGISTERED, Action.TRANSFER),
    ClockName.HANDLING: (COMPETENT_UNIT, Stage.IN_HANDLING, Action.ACCEPT),
    ClockName.REVIEW_REQUEST: (COMPETENT_UNIT, Stage.REPLIED, Action.REPLY),
    ClockName.REVIEW: (COMPETENT_UNIT, Stage.UNDER_REVIEW, Action.REQUEST_REVIEW),
    ClockName.RE_REVIEW_REQUEST: (COMPETENT_UNIT, Stage.REVIEW_REPLIED, Action.REVIEW_OPINION),
    ClockName.RE_REVIEW: (COMPETENT_UNIT, Stage.UNDER_RE_REVIEW, Action.REQUEST_RE_REVIEW),
    ClockName.PROCEDURAL_REPLY: (COMPETENT_UNIT, Stage.REGISTERED, None),
    ClockName.SETTLEMENT: (COMPETENT_UNIT, Stage.REGISTERED, None),
    # Handed over when the settlement period ends met by a progress reply: see the test.
    ClockName.PROGRESS_REPLY: (COMPETENT_UNIT, Stage.REGISTERED, None),
}
BEFORE = {Action.TRANSFER: Stage.REGISTERED, Action.ACCEPT: Stage.REGISTERED,
          Action.REPLY: Stage.IN_HANDLING, Action.REQUEST_REVIEW: Stage.REPLIED,
          Action.REVIEW_OPINION: Stage.UNDER_REVIEW,
          Action.REQUEST_RE_REVIEW: Stage.REVIEW_REPLIED}


def _cite(article: str) -> str:
    """A short citation for the test id: the instrument's first words, year, article."""
    instrument = article.split(";")[0].split(",")[0]
    words = re.findall(r"[A-Z][A-Za-z']*", instrument.split("(")[0])[:3]
    year = re.search(r"\((\d{4})\)", instrument)
    number = re.search(r"Art\. ?(\d+)", instrument)
    return "-".join([*words, *([year.group(1)] if year else []),
                     *([f"Art{number.group(1)}"] if number else [])])


CASES = [(name, clock_name)
         for name in available_profiles()
         for clock_name in load_profile(name).clocks]


def _id(case: tuple[str, ClockName]) -> str:
    name, clock_name = case
    return f"{name}-{clock_name.value}-{_cite(load_profile(name).clocks[clock_name].article)}"


def test_ids_name_the_article():
    ids = [_id(c) for c in CASES]
    assert "national-handling-Regulations-Work-Letters-2022-Art34" in ids
    assert "zhejiang-handling-Zhejiang-Provincial-Regulations" in ids
    assert "procuratorate-procedural_reply-Supreme-People's-Procuratorate" in ids
    assert len(set(ids)) == len(ids)


async def _fires_at(case: Case, profile: DeadlineProfile, name: ClockName,
                    due: datetime) -> None:
    """Nothing at one second before `due`; at `due` the deadline escalates or the window
    lapses."""
    env = case.env
    await sleep_until(env, due - timedelta(seconds=1))
    status = await case.refresh()
    ticking = clock(status, name)
    assert ticking.due_at == due and ticking.level == 0 and not ticking.overdue
    assert status.stage is not Stage.CLOSED
    await env.sleep(timedelta(seconds=2))
    if profile.clocks[name].kind is ClockKind.DEADLINE:
        status = await case.refresh()
        fired = clock(status, name)
        assert fired.overdue and fired.level == 1
        assert status.overdue and status.escalation_level >= 1
    elif name in LAPSE_ACTIONS:
        status = await finished(case.handle)
        assert (status.stage, status.outcome) == (Stage.CLOSED, Outcome.RESOLVED)
    else:  # the transfer objection window closes: the transfer stands
        status = await case.refresh()
        assert name not in clock_names(status) and status.stage is Stage.REGISTERED
        await case.expect_refused(Action.REJECT_TRANSFER,
                                  case.actor_for(Action.REJECT_TRANSFER), "transfer_objection")


@pytest.mark.parametrize("profile_clock", CASES, ids=_id)
async def test_deadline(profile_clock, ts_env, running_worker, petitions):
    name, clock_name = profile_clock
    profile = load_profile(name)
    policy = profile.clocks[clock_name]
    unit, stage, action = STARTS[clock_name]
    async with running_worker(ts_env.client):
        case = await Case.start(ts_env, petitions, unit=unit, profile=name)
        if action is not None:
            await case.walk_to(BEFORE[action])
            assert clock_name not in clock_names(case.last), "started too early"
            await case.act(action)
        await case.walk_to(stage)
        started = (await case.last_entry(action or Action.REGISTER)).at
        if clock_name is ClockName.PROGRESS_REPLY:
            started = await _hand_over_to_progress_replies(case, profile)
            due = profile.next_repeat(clock_name, started, CALENDAR)
        else:
            due = profile.deadline(clock_name, started, CALENDAR)
        assert due is not None
        running = clock(case.last, clock_name)
        assert (running.kind, running.article, running.period) == (
            policy.kind, policy.article, str(policy.period))
        assert running.started_at == started and running.due_at == due
        if clock_name is ClockName.RE_REVIEW:
            due = await _hearing_is_not_counted(case, due, policy.period.nominal_hours())
        await _fires_at(case, profile, clock_name, due)


async def _hand_over_to_progress_replies(case: Case, profile: DeadlineProfile) -> datetime:
    """A progress reply in the settlement period's last month meets it; at its end the
    monthly progress reply clock runs on from it (procuratorate)."""
    settlement = clock(case.last, ClockName.SETTLEMENT)
    assert ClockName.PROGRESS_REPLY not in clock_names(case.last)
    await sleep_until(case.env, settlement.due_at - timedelta(days=10))
    await case.act(Action.PROGRESS_REPLY)
    assert ClockName.PROGRESS_REPLY not in clock_names(case.last)
    await sleep_until(case.env, settlement.due_at + timedelta(seconds=1))
    status = await case.refresh()
    assert ClockName.SETTLEMENT not in clock_names(status), "met, so not overdue"
    assert not status.overdue
    return settlement.due_at


async def _hearing_is_not_counted(case: Case, due: datetime, period_hours: float) -> datetime:
    """A re-review hearing stops the clock; the due time shifts by exactly its length."""
    period = timedelta(hours=period_hours)
    await case.env.sleep(period / 10)
    await case.act(Action.SCHEDULE_HEARING)
    assert clock(case.last, ClockName.RE_REVIEW).paused
    # Far past the original due time: a stopped clock neither escalates nor reminds.
    await case.env.sleep(period * 1.5)
    assert not (await case.refresh()).overdue
    await case.act(Action.RECORD_HEARING)
    scheduled = (await case.last_entry(Action.SCHEDULE_HEARING)).at
    recorded = (await case.last_entry(Action.RECORD_HEARING)).at
    shifted = clock(case.last, ClockName.RE_REVIEW).due_at
    assert recorded - scheduled >= period * 1.5
    assert shifted == due + (recorded - scheduled)
    return shifted


async def test_a_late_progress_reply_meets_an_overdue_settlement(
        ts_env, running_worker, petitions):
    """Procuratorate: the 3 months passed without a reply (level 1); a progress reply then
    meets it, and the monthly progress replies run from that reply."""
    profile = load_profile("procuratorate")
    async with running_worker(ts_env.client):
        case = await Case.start(ts_env, petitions, unit=COMPETENT_UNIT, profile="procuratorate")
        settlement = clock(case.last, ClockName.SETTLEMENT)
        await sleep_until(ts_env, settlement.due_at + timedelta(days=3))
        assert clock(await case.refresh(), ClockName.SETTLEMENT).level == 1
        status = await case.act(Action.PROGRESS_REPLY)
        replied = (await case.last_entry(Action.PROGRESS_REPLY)).at
        assert clock_names(status) == {ClockName.PROGRESS_REPLY}
        monthly = clock(status, ClockName.PROGRESS_REPLY)
        assert monthly.started_at == replied
        assert monthly.due_at == profile.deadline(ClockName.PROGRESS_REPLY, replied, CALENDAR)
        assert not status.overdue and status.escalation_level == 0
        await _fires_at(case, profile, ClockName.PROGRESS_REPLY, monthly.due_at)
