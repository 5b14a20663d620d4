"""Assessment periods: a day, an ISO week, a month, a quarter or a year, in Beijing time.

Units are judged "daily scheduling, weekly circular report and monthly
assessment" (seeds); the bounds of every period are midnights in Asia/Shanghai,
whatever the time zone of the machine running the report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

BEIJING = ZoneInfo("Asia/Shanghai")

__all__ = ["BEIJING", "PeriodError", "PeriodKind", "ReportPeriod", "current_period",
           "parse_period"]


class PeriodError(ValueError):
    """A period that cannot be read: the message says which forms are accepted."""


class PeriodKind(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"


_FORMS = ("YYYY (year), YYYY-Qn (quarter, e.g. 2026-Q3), YYYY-MM (month), YYYY-Www (ISO "
          "week, e.g. 2026-W43), YYYY-MM-DD (day)")
_PATTERNS = (
    (PeriodKind.YEAR, re.compile(r"^(\d{4})$")),
    (PeriodKind.QUARTER, re.compile(r"^(\d{4})-Q([1-4])$")),
    (PeriodKind.MONTH, re.compile(r"^(\d{4})-(\d{2})$")),
    (PeriodKind.WEEK, re.compile(r"^(\d{4})-W(\d{2})$")),
    (PeriodKind.DAY, re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")),
)


@dataclass(frozen=True)
class ReportPeriod:
    """`[start, end)`: aware datetimes at Beijing midnight; `first_day` is its first local day."""

    kind: PeriodKind
    first_day: date

    @property
    def label(self) -> str:
        d = self.first_day
        if self.kind is PeriodKind.YEAR:
            return f"{d.year:04d}"
        if self.kind is PeriodKind.MONTH:
            return f"{d.year:04d}-{d.month:02d}"
        if self.kind is PeriodKind.QUARTER:
            return f"{d.year:04d}-Q{(d.month - 1) // 3 + 1}"
        if self.kind is PeriodKind.WEEK:
            year, week, _ = d.isocalendar()
            return f"{year:04d}-W{week:02d}"
        return d.isoformat()

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first_day, datetime.min.time(), BEIJING)

    @property
    def end(self) -> datetime:
        return self.shifted(1).start

    def shifted(self, n: int) -> ReportPeriod:
        """The period `n` steps later (negative: earlier) of the same kind."""
        d = self.first_day
        if self.kind is PeriodKind.DAY:
            return ReportPeriod(self.kind, d + timedelta(days=n))
        if self.kind is PeriodKind.WEEK:
            return ReportPeriod(self.kind, d + timedelta(weeks=n))
        if self.kind in (PeriodKind.MONTH, PeriodKind.QUARTER):
            months = 3 if self.kind is PeriodKind.QUARTER else 1
            index = d.year * 12 + d.month - 1 + n * months
            return ReportPeriod(self.kind, date(index // 12, index % 12 + 1, 1))
        return ReportPeriod(self.kind, date(d.year + n, 1, 1))

    def trend(self, count: int) -> list[ReportPeriod]:
        """The last `count` periods, oldest first, ending with this one."""
        return [self.shifted(-i) for i in range(count - 1, -1, -1)]

    def __str__(self) -> str:
        return self.label


def parse_period(text: str) -> ReportPeriod:
    """`2026`, `2026-Q4`, `2026-10`, `2026-W43` or `2026-10-05`; anything else is a
    PeriodError."""
    value = text.strip()
    for kind, pattern in _PATTERNS:
        match = pattern.match(value)
        if match is None:
            continue
        numbers = [int(g) for g in match.groups()]
        try:
            if kind is PeriodKind.YEAR:
                first = date(numbers[0], 1, 1)
            elif kind is PeriodKind.MONTH:
                first = date(numbers[0], numbers[1], 1)
            elif kind is PeriodKind.QUARTER:
                first = date(numbers[0], 3 * numbers[1] - 2, 1)
            elif kind is PeriodKind.WEEK:
                first = date.fromisocalendar(numbers[0], numbers[1], 1)
            else:
                first = date(numbers[0], numbers[1], numbers[2])
        except ValueError as err:
            raise PeriodError(f"period {text!r}: {err}") from None
        if first.year < 1990:
            raise PeriodError(f"period {text!r}: before 1990, no petition data can exist")
        if first.year > 2099:
            # Past 2099 the end of a year period would overflow Python's dates.
            raise PeriodError(f"period {text!r}: after 2099, no petition data can exist")
        return ReportPeriod(kind, first)
    raise PeriodError(f"period {text!r} not understood; use {_FORMS}")


def current_period(kind: PeriodKind, now: datetime | None = None) -> ReportPeriod:
    """The period of `kind` that contains `now` (Beijing time)."""
    today = (now or datetime.now(BEIJING)).astimezone(BEIJING).date()
    if kind is PeriodKind.DAY:
        return ReportPeriod(kind, today)
    if kind is PeriodKind.WEEK:
        return ReportPeriod(kind, today - timedelta(days=today.weekday()))
    if kind is PeriodKind.MONTH:
        return ReportPeriod(kind, today.replace(day=1))
    if kind is PeriodKind.QUARTER:
        return ReportPeriod(kind, date(today.year, (today.month - 1) // 3 * 3 + 1, 1))
    return ReportPeriod(kind, date(today.year, 1, 1))
