"""An official holiday notice: one year of the State Council calendar, typed in by an operator.

Every year the General Office of the State Council publishes 国务院办公厅关于<year>年部分
节假日安排的通知: for each holiday, the days off (放假) and the make-up working days
(调休上班, Saturdays or Sundays worked instead). The `holidays` package only knows a year
once a release has packaged that notice; until then `WorkingCalendar` can take the notice
from a file instead. The file is TOML:

    year = 2027
    source = "国办发明电〔2026〕N号"        # the notice's reference number
    published = 2026-11-10                 # the day it was published

    [[holiday]]
    name = "春节"
    days_off = [2027-02-06, 2027-02-07, ...]   # every day off, weekend days included
    workdays = [2027-02-20]                    # make-up working days, if any

This module is the model and the parser only (no files, no directories): see
`activities/holiday_notices.py` for where notices live and `docs/holidays.md`.
"""

from __future__ import annotations

import tomllib
from datetime import date
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_SATURDAY = 5

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class NoticeError(ValueError):
    """A notice that cannot be used; the message is one line naming the field."""


class Holiday(BaseModel):
    """One holiday of the notice, e.g. 春节: its days off and make-up working days."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    name: Text
    days_off: list[date] = Field(min_length=1)
    workdays: list[date] = Field(default_factory=list)


class HolidayNotice(BaseModel):
    """The State Council's holiday arrangements for one year.

    Checked on construction: every day off and make-up working day lies in `year`,
    make-up working days are Saturdays or Sundays, no date is listed twice, none is
    both a day off and a working day, and there is at least one holiday.
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True,
                              validate_by_name=True, validate_by_alias=True)

    year: int = Field(ge=1950, le=2200)
    source: Text
    published: date
    holidays: list[Holiday] = Field(alias="holiday", min_length=1)

    @property
    def days_off(self) -> frozenset[date]:
        return frozenset(d for h in self.holidays for d in h.days_off)

    @property
    def workdays(self) -> frozenset[date]:
        return frozenset(d for h in self.holidays for d in h.workdays)

    def summary(self) -> str:
        """One line for listings: `2027: 国办发明电〔2026〕N号 (published 2026-11-10), ...`."""
        return (f"{self.year}: {self.source} (published {self.published.isoformat()}), "
                f"{_count(len(self.holidays), 'holiday')}, "
                f"{_count(len(self.days_off), 'day')} off, "
                f"{_count(len(self.workdays), 'make-up working day')}")

    @model_validator(mode="after")
    def _check(self) -> HolidayNotice:
        if self.published.year > self.year:
            raise ValueError(f"published: {self.published.isoformat()} is after {self.year}; "
                             "a year's notice is published before the year ends")
        off: dict[date, str] = {}
        for i, holiday in enumerate(self.holidays):
            for j, day in enumerate(holiday.days_off):
                field = f"holiday[{i}] ({holiday.name}).days_off[{j}]"
                self._require_in_year(field, day)
                _require_unlisted(field, day, off, "a day off")
                off[day] = f"holiday[{i}] ({holiday.name})"
        working: dict[date, str] = {}
        for i, holiday in enumerate(self.holidays):
            for j, day in enumerate(holiday.workdays):
                field = f"holiday[{i}] ({holiday.name}).workdays[{j}]"
                self._require_in_year(field, day)
                if day.weekday() < _SATURDAY:
                    raise ValueError(f"{field}: {day.isoformat()} is a {_WEEKDAYS[day.weekday()]};"
                                     " make-up working days (调休) are Saturdays or Sundays")
                if day in off:
                    raise ValueError(f"{field}: {day.isoformat()} is also a day off of "
                                     f"{off[day]}; a date is either off or working")
                _require_unlisted(field, day, working, "a make-up working day")
                working[day] = f"holiday[{i}] ({holiday.name})"
        return self

    def _require_in_year(self, field: str, day: date) -> None:
        if day.year != self.year:
            raise ValueError(f"{field}: {day.isoformat()} is not in {self.year}; a notice "
                             f"lists only dates of its own year (see docs/holidays.md)")


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _require_unlisted(field: str, day: date, seen: dict[date, str], what: str) -> None:
    if day in seen:
        raise ValueError(f"{field}: {day.isoformat()} is already {what} of {seen[day]}")


def parse_notice(text: str) -> HolidayNotice:
    """A notice from the text of its TOML file; every problem is a one-line `NoticeError`."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise NoticeError(f"not valid TOML: {err}") from None
    try:
        return HolidayNotice.model_validate(raw, by_alias=True, by_name=False)  # files: `holiday`
    except ValidationError as err:
        raise NoticeError(_one_line(raw, err)) from None


def _one_line(raw: dict[str, Any], err: ValidationError) -> str:
    first = err.errors(include_url=False)[0]
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] in {"date_type", "date_parsing"} and isinstance(first["input"], str):
        message += f" (write dates unquoted, as TOML dates: {first['input']}, not \"...\")"
    loc = first["loc"]
    if loc == ("holiday",):
        message += " (a notice has at least one [[holiday]] table with name and days_off)"
    if loc:  # a cross-field check names its own field at the start of its message
        message = f"{_location(raw, loc)}: {message}"
    more = err.error_count() - 1
    tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return message + tail


def _location(raw: dict[str, Any], loc: tuple[int | str, ...]) -> str:
    """`holiday[1] (春节).workdays[0]` rather than `holiday.1.workdays.0`."""
    parts: list[str] = []
    node: Any = raw
    for step in loc:
        if isinstance(step, int) and parts:
            parts[-1] += f"[{step}]"
            node = node[step] if isinstance(node, list) and step < len(node) else None
            name = node.get("name") if isinstance(node, dict) else None
            if isinstance(name, str) and name.strip():
                parts[-1] += f" ({name.strip()})"
        else:
            parts.append(str(step))
            node = node.get(step) if isinstance(node, dict) else None
    return ".".join(parts) or "(file)"
