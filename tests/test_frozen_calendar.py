"""Deadlines counted in the workflow on a calendar snapshot frozen into the case.

The snapshot must count exactly as the live calendar does for the years it holds,
refuse to guess for years it lacks, and a case must take one snapshot, not one per
clock, and count an accept's deadline without a local activity.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.contracts import (
    CalendarSnapshotInput,
)
from activities.deadlines import DeadlineCalculator
from domain.calendar import OutsideSnapshot, WorkingCalendar
from domain.case import (
    CalendarSnapshot,
    ClockRequest,
)
from domain.deadlines import MAX_SNAPSHOT_YEARS, compute_clock, snapshot_of
from domain.models import Action, ClockName, Stage
from domain.policy import available_profiles, load_profile
from tests.lifecycle_helpers import COMPETENT_UNIT, Case, clock

LIVE = WorkingCalendar()
YEARS = (2025, 2027)


def _frozen() -> CalendarSnapshot:
    # Through JSON, as it travels in workflow state and across continue-as-new.
    snapshot = snapshot_of(LIVE, *YEARS, source="test")
    return CalendarSnapshot.model_validate_json(snapshot.model_dump_json())


def test_the_snapshot_knows_every_day_of_its_years_as_the_live_calendar_does():
    frozen = _frozen().calendar()
    day, differences = date(YEARS[0], 1, 1), []
    while day.year <= YEARS[1]:
        if frozen.is_working_day(day) != LIVE.is_working_day(day):
            differences.append(day)
        day += timedelta(days=1)
    assert differences == []
    # The 2026 make-up Saturday before Spring Festival (调休) came through the snapshot.
    assert frozen.is_working_day(date(2026, 2, 14)) and date(2026, 2, 14).weekday() == 5


def test_a_year_outside_the_snapshot_is_refused_not_guessed():
    frozen = _frozen().calendar()
    with pytest.raises(OutsideSnapshot) as refused:
        frozen.is_working_day(date(YEARS[1] + 1, 1, 4))
    assert refused.value.year == YEARS[1] + 1


async def test_a_snapshot_past_its_bound_is_refused_for_good_not_retried():
    desk, env = DeadlineCalculator(LIVE), ActivityEnvironment()
    widest = CalendarSnapshotInput(first_year=2026, last_year=2026 + MAX_SNAPSHOT_YEARS - 1)
    assert len((await env.run(desk.calendar_snapshot, widest)).years) == MAX_SNAPSHOT_YEARS
    with pytest.raises(ApplicationError, match="spans 1 to 20 years") as refused:
        await env.run(desk.calendar_snapshot, CalendarSnapshotInput(
            first_year=2026, last_year=2026 + MAX_SNAPSHOT_YEARS))
    assert refused.value.non_retryable


@pytest.mark.parametrize("profile_name", available_profiles())
def test_every_clock_counts_the_same_on_the_snapshot(profile_name):
    profile, frozen = load_profile(profile_name), _frozen().calendar()
    starts = [datetime(2026, 1, 1, 3, tzinfo=UTC) + timedelta(days=d, hours=d % 11)
              for d in range(0, 300, 7)]
    compared = 0
    for name in profile.clocks:
        for start in starts:
            for request in (ClockRequest(name=name, start=start, unit="U"),
                            ClockRequest(name=name, start=start, unit="U", renew=True)):
                assert compute_clock(profile, request, frozen) == \
                    compute_clock(profile, request, LIVE), (name, start)
                compared += 1
    assert compared >= len(profile.clocks) * len(starts)


async def _local_activities(case: Case) -> list[str]:
    """The activity type of every local activity marker in the case's history."""
    found = []
    async for event in case.handle.fetch_history_events():
        marker = event.marker_recorded_event_attributes
        if marker.marker_name == "core_local_activity":
            data = json.loads(marker.details["data"].payloads[0].data)
            found.append(data["activity_type"])
    return found


async def test_a_case_freezes_its_calendar_once_and_counts_its_accept_in_the_workflow(
        ts_env, running_worker, petitions):
    profile = load_profile("national")
    async with running_worker(ts_env.client):
        case = await Case.start(ts_env, petitions, unit=COMPETENT_UNIT, profile="national")
        before = await _local_activities(case)
        status = await case.act(Action.ACCEPT)
        assert status.stage is Stage.IN_HANDLING
        accepted = (await case.last_entry(Action.ACCEPT)).at
        handling = clock(status, ClockName.HANDLING)
        live = compute_clock(profile, ClockRequest(name=ClockName.HANDLING, start=accepted,
                                                   unit=COMPETENT_UNIT), LIVE)
        assert live is not None and handling.due_at == live.due_at
        after = await _local_activities(case)
    assert before.count("calendar_snapshot") == 1, before
    assert "compute_deadlines" not in after, after
    # The accept runs no local activity: the calendar is the frozen one, and its audit
    # record is written by an ordinary activity after the Update is stored
    # (tests/test_update_settles.py).
    assert after[len(before):] == [], after
