"""How a case's deadline was counted, in facts a page can put into words.

A clock's due time is computed once, when it starts, on the case's frozen calendar
(`CalendarSnapshot`) and its profile's period (domain/clocks.py, domain/deadlines.py).
This module counts the same period again on the same calendar and keeps what the count
went through: calendar days or working days, the day counting started after (the day of
the event is not counted), the statutory holidays skipped (or, for calendar days, lying
inside the period without stopping it), the make-up working days (调休) counted, a last
day that rolled on past a day off, an approved extension, and time a hearing paused the
clock. Pure: the case, its profile and its calendar in; dates out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from functools import cache

import holidays

from domain.calendar import (
    EXACT_UNITS,
    SHANGHAI,
    OutsideSnapshot,
    PeriodUnit,
    WorkingCalendar,
    _last_day,
    deadline_for,
    extend_deadline,
)
from domain.case import CaseState, Clock
from domain.lifecycle import TABLE
from domain.models import Action, ClockName
from domain.policy import ClockKind, ClockPolicy, Period

# The clocks an approved extension runs on (the decide_extension row).
EXTENDED_CLOCKS = frozenset(TABLE[Action.DECIDE_EXTENSION].extends)
# The clocks a hearing pauses (the schedule_hearing row): its time is not counted.
PAUSED_CLOCKS = frozenset(TABLE[Action.SCHEDULE_HEARING].pauses)
# Names the `holidays` package gives a substituted day off: the span names the holiday.
_NOT_A_HOLIDAY_NAME = re.compile(r"休息日|调休|Day off|substitut", re.IGNORECASE)
_OBSERVED = re.compile(r"\s*(（补假）|\(observed\)|（观察日）)$")


@dataclass(frozen=True)
class DaySpan:
    """Consecutive days off (a holiday with the weekend days inside it)."""

    first: date
    last: date
    names_zh: tuple[str, ...] = ()
    names_en: tuple[str, ...] = ()

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1


@dataclass(frozen=True)
class Counting:
    """One period counted from one day."""

    amount: int
    unit: PeriodUnit
    anchor: date  # the day counting starts after (itself not counted), Beijing
    last_day: date  # the period's last day as counted, before any roll-on
    due_day: date  # the deadline's day (ends 24:00 Beijing)
    # Working days: the holidays skipped. Calendar days and months: the holidays that lie
    # inside the period and do not stop it.
    holidays: tuple[DaySpan, ...] = ()
    weekend_days: int = 0  # ordinary weekend days skipped (working days)
    makeup_days: tuple[date, ...] = ()  # weekend days worked (调休), counted
    rolled_over: tuple[date, ...] = ()  # days off the last day rolled on past

    @property
    def rolled(self) -> bool:
        return self.due_day != self.last_day

    @property
    def counted_in_days(self) -> bool:
        return self.unit not in EXACT_UNITS


@dataclass(frozen=True)
class DeadlineExplanation:
    clock: ClockName
    kind: ClockKind
    article: str
    started_at: datetime
    due_at: datetime
    counting: Counting  # the period itself
    extension: Counting | None = None  # an approved extension counted on from it
    extension_days: int = 0
    paused_for: timedelta | None = None  # a hearing's time not counted
    repeat: bool = False  # a recurring clock's next period, run on from the previous one
    consistent: bool = True  # the recount gives the due time the case holds
    calendar_note: str | None = None  # the snapshot lacked a year: counted on the live one

    @property
    def due_day(self) -> date:
        return last_day_of(self.due_at)


def last_day_of(due: datetime) -> date:
    """A deadline at 00:00 Beijing is 24:00 of the day before: its last day."""
    local = due.astimezone(SHANGHAI)
    if local.time() == time(0):
        return local.date() - timedelta(days=1)
    return local.date()


def beijing_day(at: datetime) -> date:
    return at.astimezone(SHANGHAI).date()


def days_left(due: datetime, now: datetime) -> int:
    """Days from today (Beijing) to the deadline's last day: 0 due today, < 0 overdue."""
    return (last_day_of(due) - beijing_day(now)).days


# ------------------------------------------------------------------- holiday names


@cache
def _library_names(year: int, language: str) -> dict[date, str]:
    try:
        return dict(holidays.China(years=year, language=language).items())
    except (KeyError, NotImplementedError):  # a year or language the package lacks
        return {}


def _names(days: list[date], language: str) -> tuple[str, ...]:
    found: list[str] = []
    for day in days:
        name = _library_names(day.year, language).get(day)
        for part in (name or "").split(";"):
            part = _OBSERVED.sub("", part.strip())
            if part and not _NOT_A_HOLIDAY_NAME.search(part) and part not in found:
                found.append(part)
    return tuple(found)


# ------------------------------------------------------------------- counting


def _days_off(calendar: WorkingCalendar, day: date) -> bool:
    return day in calendar.schedule(day.year).days_off


def _spans(calendar: WorkingCalendar, first: date, last: date) -> tuple[DaySpan, ...]:
    """The runs of non-working days between `first` and `last` (inclusive) that hold a
    holiday, each widened to the whole run (the weekend inside a holiday)."""
    spans: list[DaySpan] = []
    day = first
    while day <= last:
        if calendar.is_working_day(day):
            day += timedelta(days=1)
            continue
        run = [day]
        while not calendar.is_working_day(run[-1] + timedelta(days=1)):
            run.append(run[-1] + timedelta(days=1))
        while not calendar.is_working_day(run[0] - timedelta(days=1)):
            run.insert(0, run[0] - timedelta(days=1))
        off = [d for d in run if _days_off(calendar, d)]
        if off:
            spans.append(DaySpan(run[0], run[-1], _names(off, "zh_CN"), _names(off, "en_US")))
        day = run[-1] + timedelta(days=1)
    merged: list[DaySpan] = []
    for span in spans:  # a run found twice (widened backwards) is one span
        if not merged or span.first > merged[-1].last:
            merged.append(span)
    return tuple(merged)


def count(anchor: date, period: Period, calendar: WorkingCalendar,
          roll_to_working_day: bool) -> Counting:
    """`period` counted from the day after `anchor`, as domain/calendar.py counts it."""
    if period.unit in EXACT_UNITS:
        return Counting(period.amount, period.unit, anchor, anchor, anchor)
    last = _last_day(anchor, period, calendar)
    due = last
    if roll_to_working_day and period.unit is not PeriodUnit.WORKING_DAYS:
        due = calendar.next_working_day_on_or_after(last)
    counted = [anchor + timedelta(days=i) for i in range(1, (last - anchor).days + 1)]
    rolled = tuple(last + timedelta(days=i) for i in range((due - last).days))
    if period.unit is not PeriodUnit.WORKING_DAYS:
        return Counting(period.amount, period.unit, anchor, last, due,
                        holidays=_spans(calendar, counted[0], last) if counted else (),
                        rolled_over=rolled)
    skipped = [d for d in counted if not calendar.is_working_day(d)]
    spans = _spans(calendar, counted[0], last) if counted else ()
    in_spans = {s.first + timedelta(days=i) for s in spans for i in range(s.days)}
    return Counting(
        period.amount, period.unit, anchor, last, due, holidays=spans,
        weekend_days=sum(1 for d in skipped if d not in in_spans),
        makeup_days=tuple(d for d in counted if d.weekday() >= 5
                          and calendar.is_working_day(d)))


def _anchor_after(due: datetime) -> date:
    """A period run on from a deadline counts from that deadline's last day."""
    return last_day_of(due)


def _fresh(clock: Clock, policy: ClockPolicy, calendar: WorkingCalendar
           ) -> tuple[Counting, datetime]:
    due = deadline_for(clock.started_at, policy.period, calendar=calendar,
                       roll_to_working_day=policy.roll_to_working_day)
    return count(beijing_day(clock.started_at), policy.period, calendar,
                 policy.roll_to_working_day), due


def _run_on(due: datetime, period: Period, policy: ClockPolicy, calendar: WorkingCalendar
            ) -> tuple[Counting, datetime]:
    later = extend_deadline(due, period, calendar=calendar,
                            roll_to_working_day=policy.roll_to_working_day)
    return count(_anchor_after(due), period, calendar, policy.roll_to_working_day), later


def explain_clock(clock: Clock, policy: ClockPolicy, calendar: WorkingCalendar, *,
                  extension: Period | None = None) -> DeadlineExplanation:
    """How `clock`'s due time was counted under `policy` on `calendar`; `extension`: the
    approved extension it was run on by (the handling clock's)."""
    counting, due = _fresh(clock, policy, calendar)
    repeat = False
    if policy.repeat_every is not None and due != clock.due_at:
        again, chained = _run_on(clock.started_at, policy.repeat_every, policy, calendar)
        if chained == clock.due_at:
            counting, due, repeat = again, chained, True
    extended: Counting | None = None
    if extension is not None and clock.name in EXTENDED_CLOCKS:
        extended, due = _run_on(due, extension, policy, calendar)
    paused = clock.due_at - due if clock.due_at > due and clock.name in PAUSED_CLOCKS \
        else None
    return DeadlineExplanation(
        clock=clock.name, kind=clock.kind, article=clock.article, started_at=clock.started_at,
        due_at=clock.due_at, counting=counting, extension=extended,
        extension_days=extension.amount if extension is not None and extended is not None
        else 0, paused_for=paused,
        repeat=repeat, consistent=due + (paused or timedelta(0)) == clock.due_at)


def _extension(case: CaseState) -> Period | None:
    if not case.extension_days:
        return None
    return Period(amount=case.extension_days, unit=case.profile.extension.max_period.unit)


def explain_case(case: CaseState, live: WorkingCalendar | None = None
                 ) -> list[DeadlineExplanation]:
    """Every running clock of the case explained, soonest first. Counted on the case's
    frozen calendar; a year it does not hold (an old case) on `live`, and said so."""
    frozen = case.calendar.calendar() if case.calendar is not None else None
    explained = []
    for clock in sorted(case.clocks.values(), key=lambda c: c.due_at):
        policy = case.profile.clock(clock.name)
        if policy is None:
            continue
        note = None
        try:
            if frozen is None:
                raise OutsideSnapshot(beijing_day(clock.started_at).year)
            found = explain_clock(clock, policy, frozen, extension=_extension(case))
        except OutsideSnapshot as err:
            note = f"the case's calendar snapshot lacks {err.year}"
            found = explain_clock(clock, policy, live or WorkingCalendar(),
                                  extension=_extension(case))
        explained.append(found if note is None else replace(found, calendar_note=note))
    return explained
