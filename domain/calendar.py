"""Working days and statutory deadlines for mainland China (time zone Asia/Shanghai).

Counting follows Chinese statutory practice (Civil Code Arts. 201-203, and the
same rule in the procedure laws):

* the day of the starting event is not counted; counting starts the next day;
* a period of N days ends at 24:00 Asia/Shanghai of the N-th day, which we
  store as 00:00 of the following local day, converted to UTC;
* working days count only days the State Council calendar makes working days
  (make-up Saturdays and Sundays, 调休, count; holidays and substituted days
  off do not);
* a period of N months ends with the same day of the month N months later, or
  the last day of that month if it has no such day;
* if the last day of a calendar-day or month period is not a working day, the
  period may roll on to the end of the next working day (期间届满的最后一日是
  节假日的，以节假日后的第一日为期间届满的日期); the caller decides.
* a period in hours, minutes or seconds is exact (start + N units); these
  exist so tests, benchmarks and the demonstration profile (`demo`) can run a
  case in minutes.

Holiday data come from the `holidays` package. It only knows the make-up
working days of years for which the State Council schedule has been published
and packaged; for other years it either estimates the statutory holidays (no
make-up days) or has nothing at all, in which case this module counts Monday
to Friday as working days. `WorkingCalendar.coverage_warning` says which case a
date falls into, so callers can log it next to the deadline they store.

An operator fills the gap with the official notice itself (`domain.holiday_notice`,
`petition holidays load`, docs/holidays.md): `WorkingCalendar(notices=...)` takes a
noticed year's days off and make-up working days from the notice alone.
"""

from __future__ import annotations

import calendar as _gregorian
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Protocol
from zoneinfo import ZoneInfo

import holidays

from domain.holiday_notice import HolidayNotice

SHANGHAI = ZoneInfo("Asia/Shanghai")
_SATURDAY = 5


class PeriodUnit(StrEnum):
    """How a period is counted. Re-exported by `domain.policy`."""

    DAYS = "days"
    WORKING_DAYS = "working_days"
    MONTHS = "months"
    HOURS = "hours"
    MINUTES = "minutes"
    SECONDS = "seconds"


# Units counted exactly on the clock, with no calendar: start + N units.
EXACT_UNITS = frozenset({PeriodUnit.HOURS, PeriodUnit.MINUTES, PeriodUnit.SECONDS})


def _exact(period: PeriodLike) -> timedelta:
    return timedelta(**{period.unit.value: period.amount})


class PeriodLike(Protocol):
    """What the calendar needs of a period; `domain.policy.Period` satisfies it.

    A protocol rather than an import keeps the calendar free of the policy
    module, which itself depends on the calendar.
    """

    @property
    def amount(self) -> int: ...

    @property
    def unit(self) -> PeriodUnit: ...


@dataclass(frozen=True)
class YearSchedule:
    """One year of the State Council calendar, from `holidays` or an official notice."""

    days_off: frozenset[date]
    weekend_workdays: frozenset[date]
    warning: str | None


# What an operator does about a year without a schedule; part of every warning.
LOAD_NOTICE_ADVICE = ("load the official notice with: petition holidays load <file> "
                      "(see docs/holidays.md)")


def library_source() -> str:
    return f"holidays {holidays.__version__}"


def _load_year(year: int) -> YearSchedule:
    table = holidays.China(years=year)
    days_off = frozenset(d for d in table if d.year == year)
    workdays = frozenset(d for d in table.weekend_workdays if d.year == year)
    return YearSchedule(days_off, workdays, _warning_for(year, days_off, workdays))


def _notice_year(notice: HolidayNotice) -> YearSchedule:
    # The notice's days off include the weekend days inside each holiday, as the
    # library's do; ordinary weekends stay days off unless listed as make-up days.
    return YearSchedule(notice.days_off, notice.workdays, None)


def library_has_schedule(year: int) -> bool:
    """Whether `holidays` packages the State Council's published schedule for `year`."""
    return _load_year(year).warning is None


def _warning_for(year: int, days_off: frozenset[date], workdays: frozenset[date]) -> str | None:
    library = f"{library_source()} has none"
    if not days_off:
        return (
            f"no Chinese holiday data for {year} ({library}): deadlines in {year} count "
            f"Monday to Friday as working days; {LOAD_NOTICE_ADVICE}"
        )
    # Every published schedule moves at least one working day onto a weekend;
    # a year without any is one the library only derived from the statutory rules.
    if not workdays:
        return (
            f"no State Council holiday schedule for {year} ({library}): deadlines in {year} "
            f"count statutory holidays without make-up working days (调休); {LOAD_NOTICE_ADVICE}"
        )
    return None


class WorkingCalendar:
    """China's working days, loaded one year at a time and cached.

    A year comes from its official notice when one is given (`notices`), otherwise
    from `holidays`. A notice replaces the library's year, it is not merged with it:
    for a year without a published schedule the library's days off are an estimate,
    with substitute days (observed) guessed from the statutory rules, and a union
    would keep every guessed day the State Council did not grant (and a day off
    cannot be taken back by a list of make-up days, which are weekend days only).
    For a year the library does know, the notice is the same document; loading one
    anyway is the operator's explicit choice, e.g. to correct a packaging error.

    Construct once and share: loading a year costs a few milliseconds.
    """

    def __init__(self, notices: Iterable[HolidayNotice] = ()) -> None:
        self._years: dict[int, YearSchedule] = {}
        self._notices: dict[int, HolidayNotice] = {}
        for notice in notices:
            other = self._notices.setdefault(notice.year, notice)
            if other is not notice:
                raise ValueError(f"two holiday notices for {notice.year}: "
                                 f"{other.source} and {notice.source}")

    @property
    def notices(self) -> list[HolidayNotice]:
        """The official notices this calendar counts with, by year."""
        return [self._notices[y] for y in sorted(self._notices)]

    @property
    def source(self) -> str:
        """Where the days come from, e.g. for a calendar snapshot."""
        noticed = ", ".join(f"{n.year} {n.source}" for n in self.notices)
        return f"{library_source()}; notices: {noticed}" if noticed else library_source()

    def _year(self, year: int) -> YearSchedule:
        data = self._years.get(year)
        if data is None:
            notice = self._notices.get(year)
            data = _notice_year(notice) if notice is not None else _load_year(year)
            self._years[year] = data
        return data

    def schedule(self, year: int) -> YearSchedule:
        """The year's days off and make-up working days, e.g. to freeze into a case."""
        return self._year(year)

    def is_working_day(self, d: date) -> bool:
        data = self._year(d.year)
        if d.weekday() >= _SATURDAY:
            return d in data.weekend_workdays
        return d not in data.days_off

    def coverage_warning(self, d: date) -> str | None:
        """None when the official schedule for `d`'s year is known, else why not."""
        return self._year(d.year).warning

    def coverage_warnings(self, first: date, last: date) -> list[str]:
        """The warnings of every year from `first` to `last`, for logging a deadline."""
        found = (self.coverage_warning(date(y, 1, 1)) for y in range(first.year, last.year + 1))
        return [w for w in found if w is not None]

    def add_working_days(self, start: date, n: int) -> date:
        """The n-th working day after `start` (`start` itself is never counted)."""
        return self._step_working_days(start, n, timedelta(days=1))

    def subtract_working_days(self, end: date, n: int) -> date:
        """The n-th working day before `end` (`end` itself is never counted)."""
        return self._step_working_days(end, n, timedelta(days=-1))

    def next_working_day_on_or_after(self, d: date) -> date:
        while not self.is_working_day(d):
            d += timedelta(days=1)
        return d

    def _step_working_days(self, d: date, n: int, step: timedelta) -> date:
        if n < 0:
            raise ValueError(f"a number of working days cannot be negative, got {n}")
        while n:
            d += step
            if self.is_working_day(d):
                n -= 1
        return d


class OutsideSnapshot(LookupError):
    """A frozen calendar was asked about a year it does not hold."""

    def __init__(self, year: int) -> None:
        super().__init__(f"the calendar snapshot holds no data for {year}")
        self.year = year


class FrozenCalendar(WorkingCalendar):
    """Working days from a fixed set of years, never from the library.

    A workflow computes its deadlines with one, built from a snapshot kept in its
    state: replaying it gives the same deadlines whatever `holidays` says later.
    """

    def __init__(self, years: dict[int, YearSchedule]) -> None:
        super().__init__()
        self._years = dict(years)

    @property
    def source(self) -> str:
        return "calendar snapshot"

    def _year(self, year: int) -> YearSchedule:
        data = self._years.get(year)
        if data is None:
            raise OutsideSnapshot(year)
        return data


def shift_months(d: date, months: int) -> date:
    """The same day of the month `months` later (or earlier), clamped to month end."""
    index = d.year * 12 + d.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    return date(year, month, min(d.day, _gregorian.monthrange(year, month)[1]))


def deadline_for(
    start: datetime,
    period: PeriodLike,
    *,
    calendar: WorkingCalendar,
    roll_to_working_day: bool,
) -> datetime:
    """When a period that starts at `start` ends, as an aware UTC datetime."""
    _require_aware(start, "start")
    _require_positive(period)
    if period.unit in EXACT_UNITS:
        return start.astimezone(UTC) + _exact(period)
    return _period_end(_local(start).date(), period, calendar, roll_to_working_day)


def extend_deadline(
    due: datetime,
    period: PeriodLike,
    *,
    calendar: WorkingCalendar,
    roll_to_working_day: bool,
) -> datetime:
    """When a period that runs on from a previous deadline `due` ends.

    For extensions, level-2 escalation and repeating clocks. The new period is
    counted from the last day of the previous one: `due` at 00:00 local time
    is 24:00 of the day before, so chaining never loses or gains a day.
    """
    _require_aware(due, "due")
    _require_positive(period)
    if period.unit in EXACT_UNITS:
        return due.astimezone(UTC) + _exact(period)
    return _period_end(_day_ended_by(due), period, calendar, roll_to_working_day)


def subtract(instant: datetime, period: PeriodLike, *, calendar: WorkingCalendar) -> datetime:
    """`instant` moved back by `period` (for reminders), as an aware UTC datetime.

    The local time of day is kept. Working days go back to the n-th working day
    before `instant`'s local date, so a reminder one working day before a
    deadline of 24:00 fires at 00:00 of the last working day. No rolling: a
    reminder is a notice, not a legal time limit.
    """
    _require_aware(instant, "instant")
    _require_positive(period)
    local = _local(instant)
    if period.unit in EXACT_UNITS:
        return instant.astimezone(UTC) - _exact(period)
    if period.unit is PeriodUnit.DAYS:
        day = local.date() - timedelta(days=period.amount)
    elif period.unit is PeriodUnit.MONTHS:
        day = shift_months(local.date(), -period.amount)
    else:
        day = calendar.subtract_working_days(local.date(), period.amount)
    return datetime.combine(day, local.time(), SHANGHAI).astimezone(UTC)


def _period_end(
    anchor: date, period: PeriodLike, calendar: WorkingCalendar, roll: bool
) -> datetime:
    last = _last_day(anchor, period, calendar)
    if roll and period.unit is not PeriodUnit.WORKING_DAYS:
        last = calendar.next_working_day_on_or_after(last)
    return _end_of_day(last)


def _last_day(anchor: date, period: PeriodLike, calendar: WorkingCalendar) -> date:
    if period.unit is PeriodUnit.DAYS:
        return anchor + timedelta(days=period.amount)
    if period.unit is PeriodUnit.MONTHS:
        return shift_months(anchor, period.amount)
    if period.unit is PeriodUnit.WORKING_DAYS:
        return calendar.add_working_days(anchor, period.amount)
    raise ValueError(f"{period.unit!r} is not counted in days")


def _end_of_day(d: date) -> datetime:
    # 24:00 does not exist in datetime; 00:00 of the next day is the same instant.
    return datetime.combine(d + timedelta(days=1), time(0), SHANGHAI).astimezone(UTC)


def _day_ended_by(instant: datetime) -> date:
    local = _local(instant)
    if local.time() == time(0):
        return local.date() - timedelta(days=1)
    return local.date()


def _local(instant: datetime) -> datetime:
    return instant.astimezone(SHANGHAI)


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must carry a time zone, got naive {value.isoformat()}")


def _require_positive(period: PeriodLike) -> None:
    if period.amount < 1:
        raise ValueError(f"a period must be at least 1, got {period.amount} {period.unit}")
