"""Deadline arithmetic, run as a local activity so its result is recorded in history.

A calendar-library upgrade then cannot change a running case on replay: each
deadline is computed once, when its clock starts, and kept as an absolute time.
"""

from __future__ import annotations

from datetime import datetime

from temporalio import activity

from domain.calendar import WorkingCalendar
from domain.case import ClockRequest, ComputedClock, ComputeDeadlinesInput
from domain.policy import DeadlineProfile


class DeadlineCalculator:
    def __init__(self, calendar: WorkingCalendar):
        self._calendar = calendar
        self._warned: set[str] = set()  # once per worker: every deadline would repeat it

    @activity.defn
    async def compute_deadlines(self, request: ComputeDeadlinesInput) -> list[ComputedClock]:
        computed = (self._one(request.profile, clock) for clock in request.clocks)
        return [c for c in computed if c is not None]

    def _one(self, profile: DeadlineProfile, request: ClockRequest) -> ComputedClock | None:
        policy = profile.clock(request.name)
        if policy is None:
            return None  # this profile does not run that clock
        cal = self._calendar
        due: datetime | None
        if request.extend_by is not None:
            due = profile.extended_deadline(request.name, request.start, request.extend_by, cal)
        elif request.renew:
            due = profile.next_repeat(request.name, request.start, cal) or request.start
        else:
            due = profile.deadline(request.name, request.start, cal)
        assert due is not None
        for warning in cal.coverage_warnings(request.start.date(), due.date()):
            if warning not in self._warned:
                self._warned.add(warning)
                activity.logger.warning("calendar: %s", warning)
        return ComputedClock(
            name=request.name, kind=policy.kind, article=policy.article,
            period=str(policy.period), started_at=request.start, due_at=due,
            reminder_at=profile.reminder_at(request.name, due, cal),
            level2_at=profile.level2_at(request.name, due, cal), unit=request.unit,
        )
