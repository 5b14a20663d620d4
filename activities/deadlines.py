"""Deadline arithmetic and the calendar snapshot, run as local activities so their
results are recorded in history.

A calendar-library upgrade then cannot change a running case on replay: each
deadline is computed once, when its clock starts, and kept as an absolute time;
a snapshot of the calendar, once taken, is part of the case's state.
"""

from __future__ import annotations

from datetime import date

import holidays
from temporalio import activity
from temporalio.exceptions import ApplicationError

from domain.calendar import WorkingCalendar
from domain.case import (
    CalendarSnapshot,
    ComputedClock,
)
from activities.contracts import (
    CalendarSnapshotInput,
    ComputeDeadlinesInput,
)
from domain.deadlines import MAX_SNAPSHOT_YEARS, compute_clock, snapshot_of


class DeadlineCalculator:
    def __init__(self, calendar: WorkingCalendar):
        self._calendar = calendar
        self._warned: set[str] = set()  # once per worker: every deadline would repeat it

    @activity.defn
    async def compute_deadlines(self, request: ComputeDeadlinesInput) -> list[ComputedClock]:
        computed = []
        for clock in request.clocks:
            one = compute_clock(request.profile, clock, self._calendar)
            if one is not None:
                self._warn(one.started_at.date(), one.due_at.date())
                computed.append(one)
        return computed

    @activity.defn
    async def calendar_snapshot(self, request: CalendarSnapshotInput) -> CalendarSnapshot:
        if not 0 <= request.last_year - request.first_year < MAX_SNAPSHOT_YEARS:
            raise ApplicationError(f"a calendar snapshot spans 1 to {MAX_SNAPSHOT_YEARS} "
                                   f"years, not {request.first_year}-{request.last_year}",
                                   non_retryable=True)
        self._warn(date(request.first_year, 1, 1), date(request.last_year, 1, 1))
        return snapshot_of(self._calendar, request.first_year, request.last_year,
                           source=f"holidays {holidays.__version__}")

    def _warn(self, first: date, last: date) -> None:
        for warning in self._calendar.coverage_warnings(first, last):
            if warning not in self._warned:
                self._warned.add(warning)
                activity.logger.warning("calendar: %s", warning)
