"""Deadline arithmetic and the calendar snapshot, run as local activities so their
results are recorded in history.

A calendar-library upgrade then cannot change a running case on replay: each
deadline is computed once, when its clock starts, and kept as an absolute time;
a snapshot of the calendar, once taken, is part of the case's state.

A year the calendar has no State Council schedule for (neither in `holidays` nor in a
loaded notice, see docs/holidays.md) is logged once per process, as one line.
"""

from __future__ import annotations

import logging
from datetime import date

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import (
    CalendarSnapshotInput,
)
from domain.calendar import WorkingCalendar
from domain.case import (
    CalendarSnapshot,
)
from domain.deadlines import MAX_SNAPSHOT_YEARS, snapshot_of

# A plain logger, not `activity.logger`: that one appends the activity's info as a dict
# to every message, and the warning is about the process's calendar, not one activity.
log = logging.getLogger(__name__)


class CoverageWarnings:
    """The years whose coverage warning has been logged: each year once.

    One per process (`PROCESS_WARNINGS`), shared by every desk: every deadline in
    an uncovered year would otherwise repeat the same line.
    """

    def __init__(self) -> None:
        self._years: set[int] = set()

    def check(self, calendar: WorkingCalendar, first: date, last: date) -> list[str]:
        """Log the warning of each year from `first` to `last` not logged before."""
        logged = []
        for year in range(first.year, last.year + 1):
            if year in self._years:
                continue
            warning = calendar.coverage_warning(date(year, 1, 1))
            if warning is not None:
                self._years.add(year)
                log.warning("calendar: %s", warning)
                logged.append(warning)
        return logged


PROCESS_WARNINGS = CoverageWarnings()


class DeadlineCalculator:
    def __init__(self, calendar: WorkingCalendar, warnings: CoverageWarnings | None = None):
        self._calendar = calendar
        self._warnings = PROCESS_WARNINGS if warnings is None else warnings

    @activity.defn
    async def calendar_snapshot(self, request: CalendarSnapshotInput) -> CalendarSnapshot:
        if not 0 <= request.last_year - request.first_year < MAX_SNAPSHOT_YEARS:
            raise ApplicationError(f"a calendar snapshot spans 1 to {MAX_SNAPSHOT_YEARS} "
                                   f"years, not {request.first_year}-{request.last_year}",
                                   non_retryable=True)
        self._warn(date(request.first_year, 1, 1), date(request.last_year, 1, 1))
        return snapshot_of(self._calendar, request.first_year, request.last_year,
                           source=self._calendar.source)

    def _warn(self, first: date, last: date) -> None:
        self._warnings.check(self._calendar, first, last)
