"""A clock's due, reminder and level-2 times, counted on a working-day calendar.

The workflow counts on the calendar snapshot frozen in its case (`CalendarSnapshot`,
taken once by the `DeadlineCalculator.calendar_snapshot` local activity); the legacy
importer and the tests count on the live `WorkingCalendar`. After go-live, a change to
this arithmetic changes what a replay computes: guard it with `workflow.patched` like any
other change to workflow code (docs/safe-changes.md).
"""

from __future__ import annotations

from datetime import datetime

from domain.calendar import WorkingCalendar
from domain.case import (
    CalendarSnapshot,
    CalendarYear,
    ClockRequest,
    ComputedClock,
)
from domain.policy import DeadlineProfile

SNAPSHOT_YEARS_AHEAD = 2  # a case's clocks rarely run past the year after next
MAX_SNAPSHOT_YEARS = 20  # a case's state carries no more (older years are dropped)


def compute_clock(profile: DeadlineProfile, request: ClockRequest,
                  calendar: WorkingCalendar) -> ComputedClock | None:
    """None when the profile does not run that clock."""
    policy = profile.clock(request.name)
    if policy is None:
        return None
    due: datetime | None
    if request.extend_by is not None:
        due = profile.extended_deadline(request.name, request.start, request.extend_by,
                                        calendar)
    elif request.renew:
        due = profile.next_repeat(request.name, request.start, calendar) or request.start
    else:
        due = profile.deadline(request.name, request.start, calendar)
    assert due is not None
    return ComputedClock(
        name=request.name, kind=policy.kind, article=policy.article,
        period=str(policy.period), started_at=request.start, due_at=due,
        reminder_at=profile.reminder_at(request.name, due, calendar),
        level2_at=profile.level2_at(request.name, due, calendar), unit=request.unit,
    )


def snapshot_of(calendar: WorkingCalendar, first_year: int, last_year: int,
                source: str) -> CalendarSnapshot:
    years = []
    for year in range(first_year, last_year + 1):
        schedule = calendar.schedule(year)
        years.append(CalendarYear(year=year, days_off=sorted(schedule.days_off),
                                  weekend_workdays=sorted(schedule.weekend_workdays),
                                  warning=schedule.warning))
    return CalendarSnapshot(source=source, years=years)
