"""Working-day calendar and statutory deadline arithmetic.

Every expected value is worked out by hand from the State Council schedule for
2026 and written as a literal, with the count in a comment:
  Spring Festival: Feb 15 (Sun) - Feb 23 (Mon) off; Feb 14 (Sat) and Feb 28 (Sat)
  are make-up working days.
  Mid-Autumn: Sep 25 (Fri) off. National Day: Oct 1 (Thu) - Oct 7 (Wed) off;
  Sep 20 (Sun) and Oct 10 (Sat) are make-up working days.
A deadline "end of day D" is 00:00 Asia/Shanghai of D + 1, i.e. 16:00 UTC on D.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from domain.calendar import (
    SHANGHAI,
    PeriodUnit,
    WorkingCalendar,
    deadline_for,
    extend_deadline,
    shift_months,
    subtract,
)


@dataclass(frozen=True)
class P:
    amount: int
    unit: PeriodUnit


DAYS, WORKING, MONTHS, HOURS = (
    PeriodUnit.DAYS,
    PeriodUnit.WORKING_DAYS,
    PeriodUnit.MONTHS,
    PeriodUnit.HOURS,
)


@pytest.fixture(scope="module")
def cal() -> WorkingCalendar:
    return WorkingCalendar()


def local(y: int, m: int, d: int, hh: int = 10, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=SHANGHAI)


def end_of(y: int, m: int, d: int) -> datetime:
    """24:00 Asia/Shanghai of the given day, as UTC."""
    return datetime(y, m, d, 16, 0, tzinfo=UTC)


# ------------------------------------------------------------------ working days


@pytest.mark.parametrize(
    ("day", "working"),
    [
        (date(2026, 2, 13), True),  # Friday before the holiday
        (date(2026, 2, 14), True),  # make-up Saturday
        (date(2026, 2, 15), False),  # Sunday, first day of the holiday
        (date(2026, 2, 17), False),  # Spring Festival
        (date(2026, 2, 20), False),  # Friday, substituted day off
        (date(2026, 2, 23), False),  # Monday, substituted day off
        (date(2026, 2, 24), True),  # first working day after
        (date(2026, 2, 28), True),  # make-up Saturday
        (date(2026, 3, 1), False),  # ordinary Sunday
        (date(2026, 9, 20), True),  # make-up Sunday
        (date(2026, 9, 25), False),  # Mid-Autumn Festival
        (date(2026, 10, 1), False),  # National Day
        (date(2026, 10, 7), False),  # Wednesday, substituted day off
        (date(2026, 10, 8), True),
        (date(2026, 10, 10), True),  # make-up Saturday
        (date(2026, 10, 11), False),  # ordinary Sunday
    ],
)
def test_is_working_day_follows_the_2026_schedule(cal, day, working):
    assert cal.is_working_day(day) is working


def test_add_working_days_across_spring_festival(cal):
    # Thu Feb 12 not counted; Feb 13 (1), Sat Feb 14 make-up (2), Feb 15-23 off,
    # Feb 24 (3), Feb 25 (4), Feb 26 (5).
    assert cal.add_working_days(date(2026, 2, 12), 5) == date(2026, 2, 26)


def test_add_working_days_lands_on_make_up_saturday(cal):
    # Wed Feb 11 not counted; Feb 12 (1), Feb 13 (2), Sat Feb 14 (3).
    assert cal.add_working_days(date(2026, 2, 11), 3) == date(2026, 2, 14)
    # Wed Feb 25 not counted; Feb 26 (1), Feb 27 (2), Sat Feb 28 (3).
    assert cal.add_working_days(date(2026, 2, 25), 3) == date(2026, 2, 28)


def test_add_working_days_across_national_day(cal):
    # Tue Sep 29 not counted; Sep 30 (1), Oct 1-7 off, Oct 8 (2), Oct 9 (3),
    # Sat Oct 10 make-up (4), Sun Oct 11 off, Oct 12 (5).
    assert cal.add_working_days(date(2026, 9, 29), 5) == date(2026, 10, 12)


def test_add_working_days_counts_make_up_sunday_and_skips_mid_autumn(cal):
    # Fri Sep 18 not counted; Sat Sep 19 off, Sun Sep 20 make-up (1), Sep 21 (2),
    # Sep 22 (3), Sep 23 (4), Sep 24 (5), Sep 25 Mid-Autumn off, Sep 26-27 weekend,
    # Sep 28 (6).
    assert cal.add_working_days(date(2026, 9, 18), 5) == date(2026, 9, 24)
    assert cal.add_working_days(date(2026, 9, 18), 6) == date(2026, 9, 28)


def test_add_working_days_from_a_holiday_starts_after_it(cal):
    # Feb 17 is a holiday: Feb 18-23 off, Feb 24 (1).
    assert cal.add_working_days(date(2026, 2, 17), 1) == date(2026, 2, 24)


def test_subtract_working_days_across_spring_festival(cal):
    # Before Wed Feb 25: Feb 24 (1), Feb 23-15 off, Sat Feb 14 make-up (2).
    assert cal.subtract_working_days(date(2026, 2, 25), 2) == date(2026, 2, 14)


def test_negative_working_days_refused(cal):
    with pytest.raises(ValueError, match="negative"):
        cal.add_working_days(date(2026, 2, 12), -1)


def test_next_working_day_on_or_after(cal):
    assert cal.next_working_day_on_or_after(date(2026, 10, 1)) == date(2026, 10, 8)
    assert cal.next_working_day_on_or_after(date(2026, 10, 10)) == date(2026, 10, 10)


# --------------------------------------------------------------------- deadlines


def test_working_day_deadline_ends_at_midnight_shanghai_as_utc(cal):
    # 5 working days from Thu Feb 12: last day Feb 26 (see above).
    due = deadline_for(local(2026, 2, 12), P(5, WORKING), calendar=cal, roll_to_working_day=True)
    assert due == end_of(2026, 2, 26)
    assert due.utcoffset() == timedelta(0)
    assert due.astimezone(SHANGHAI) == datetime(2026, 2, 27, 0, 0, tzinfo=SHANGHAI)


def test_working_day_deadline_on_make_up_saturday(cal):
    # 3 working days from Wed Feb 25: Feb 26 (1), Feb 27 (2), Sat Feb 28 (3).
    due = deadline_for(local(2026, 2, 25), P(3, WORKING), calendar=cal, roll_to_working_day=True)
    assert due == end_of(2026, 2, 28)


def test_calendar_days_roll_over_national_day(cal):
    # Sep 16 + 15 days = Oct 1, a holiday; Oct 1-7 off -> Oct 8.
    start = local(2026, 9, 16)
    rolled = deadline_for(start, P(15, DAYS), calendar=cal, roll_to_working_day=True)
    assert rolled == end_of(2026, 10, 8)
    assert deadline_for(start, P(15, DAYS), calendar=cal, roll_to_working_day=False) == end_of(
        2026, 10, 1
    )


def test_calendar_days_roll_over_spring_festival(cal):
    # Feb 1 + 15 days = Feb 16, a holiday; Feb 16-23 off -> Feb 24.
    due = deadline_for(local(2026, 2, 1), P(15, DAYS), calendar=cal, roll_to_working_day=True)
    assert due == end_of(2026, 2, 24)


def test_calendar_days_roll_over_a_weekend(cal):
    # Mar 6 + 15 days = Sat Mar 21 -> Mon Mar 23.
    due = deadline_for(local(2026, 3, 6), P(15, DAYS), calendar=cal, roll_to_working_day=True)
    assert due == end_of(2026, 3, 23)


def test_calendar_days_ending_on_make_up_saturday_do_not_roll(cal):
    # Jan 31 + 14 days = Sat Feb 14, a working day.
    due = deadline_for(local(2026, 1, 31), P(14, DAYS), calendar=cal, roll_to_working_day=True)
    assert due == end_of(2026, 2, 14)


def test_start_date_is_the_shanghai_date(cal):
    # 23:00 UTC Sep 15 is 07:00 Sep 16 in Shanghai: Sep 16 + 15 = Oct 1 -> Oct 8.
    late_utc = datetime(2026, 9, 15, 23, 0, tzinfo=UTC)
    assert deadline_for(late_utc, P(15, DAYS), calendar=cal, roll_to_working_day=True) == end_of(
        2026, 10, 8
    )
    # 15:00 UTC Sep 15 is 23:00 Sep 15 in Shanghai: Sep 15 + 15 = Wed Sep 30.
    early_utc = datetime(2026, 9, 15, 15, 0, tzinfo=UTC)
    assert deadline_for(early_utc, P(15, DAYS), calendar=cal, roll_to_working_day=True) == end_of(
        2026, 9, 30
    )


def test_month_clamps_to_month_end_and_make_up_saturday_stands(cal):
    # Jan 31 + 1 month: no Feb 31 -> Feb 28, a make-up Saturday (working), no roll.
    due = deadline_for(local(2026, 1, 31), P(1, MONTHS), calendar=cal, roll_to_working_day=True)
    assert due == end_of(2026, 2, 28)


def test_months_roll_over_national_day(cal):
    # Jul 1 + 3 months = Oct 1, a holiday -> Oct 8.
    due = deadline_for(local(2026, 7, 1), P(3, MONTHS), calendar=cal, roll_to_working_day=True)
    assert due == end_of(2026, 10, 8)


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (date(2026, 1, 31), 1, date(2026, 2, 28)),
        (date(2028, 1, 31), 1, date(2028, 2, 29)),  # leap year
        (date(2026, 3, 31), -1, date(2026, 2, 28)),
        (date(2026, 11, 30), 3, date(2027, 2, 28)),  # across the year end
        (date(2026, 1, 15), -1, date(2025, 12, 15)),
    ],
)
def test_shift_months(start, months, expected):
    assert shift_months(start, months) == expected


def test_hours_are_exact_even_on_a_holiday(cal):
    start = local(2026, 2, 17, 23, 30)  # Spring Festival, late evening
    due = deadline_for(start, P(2, HOURS), calendar=cal, roll_to_working_day=True)
    assert due == datetime(2026, 2, 17, 17, 30, tzinfo=UTC)  # 01:30 Feb 18 Shanghai


def test_any_time_zone_is_accepted_and_the_result_is_utc(cal):
    start = datetime(2026, 2, 12, 3, 0, tzinfo=timezone(timedelta(hours=-5)))  # 16:00 Shanghai
    due = deadline_for(start, P(5, WORKING), calendar=cal, roll_to_working_day=True)
    assert due == end_of(2026, 2, 26)
    assert due.tzinfo is UTC


def test_naive_start_refused(cal):
    with pytest.raises(ValueError, match="time zone"):
        deadline_for(datetime(2026, 2, 12, 10), P(5, DAYS), calendar=cal, roll_to_working_day=True)


def test_zero_period_refused(cal):
    with pytest.raises(ValueError, match="at least 1"):
        deadline_for(local(2026, 2, 12), P(0, DAYS), calendar=cal, roll_to_working_day=True)


# ------------------------------------------------------ chained periods, reminders


def test_extension_counts_from_the_last_day_of_the_original_period(cal):
    # Due end of Feb 26; + 30 days from Feb 26 = Sat Mar 28 -> Mon Mar 30.
    due = end_of(2026, 2, 26)
    extended = extend_deadline(due, P(30, DAYS), calendar=cal, roll_to_working_day=True)
    assert extended == end_of(2026, 3, 30)
    unrolled = extend_deadline(due, P(30, DAYS), calendar=cal, roll_to_working_day=False)
    assert unrolled == end_of(2026, 3, 28)


def test_extension_from_a_non_midnight_due_counts_from_its_own_day(cal):
    # An hours-based due at 15:00 Feb 26: Feb 26 is its day, + 2 days = Feb 28.
    due = datetime(2026, 2, 26, 7, 0, tzinfo=UTC)
    assert extend_deadline(due, P(2, DAYS), calendar=cal, roll_to_working_day=True) == end_of(
        2026, 2, 28
    )


def test_monthly_chain_keeps_the_day_of_month(cal):
    # Due end of Apr 30; + 1 month from Apr 30 = May 30 (no roll requested).
    due = end_of(2026, 4, 30)
    assert extend_deadline(due, P(1, MONTHS), calendar=cal, roll_to_working_day=False) == end_of(
        2026, 5, 30
    )


def test_extension_in_hours_is_exact(cal):
    due = end_of(2026, 2, 26)
    assert extend_deadline(due, P(3, HOURS), calendar=cal, roll_to_working_day=True) == datetime(
        2026, 2, 26, 19, 0, tzinfo=UTC
    )


def test_subtract_one_working_day_is_the_start_of_the_last_working_day(cal):
    # Due 00:00 Feb 27 (end of Feb 26): 1 working day before -> 00:00 Feb 26.
    reminder = subtract(end_of(2026, 2, 26), P(1, WORKING), calendar=cal)
    assert reminder == datetime(2026, 2, 26, 0, 0, tzinfo=SHANGHAI)


def test_subtract_working_days_backwards_across_spring_festival(cal):
    # Due 00:00 Feb 25: Feb 24 (1), Feb 23-15 off, Sat Feb 14 (2) -> 00:00 Feb 14.
    reminder = subtract(end_of(2026, 2, 24), P(2, WORKING), calendar=cal)
    assert reminder == datetime(2026, 2, 14, 0, 0, tzinfo=SHANGHAI)


def test_subtract_days_months_and_hours(cal):
    due = end_of(2026, 10, 8)  # 00:00 Oct 9 Shanghai
    assert subtract(due, P(3, DAYS), calendar=cal) == datetime(2026, 10, 6, 0, 0, tzinfo=SHANGHAI)
    assert subtract(due, P(2, HOURS), calendar=cal) == datetime(2026, 10, 8, 14, 0, tzinfo=UTC)
    noon = local(2026, 3, 31, 12, 0)
    assert subtract(noon, P(1, MONTHS), calendar=cal) == local(2026, 2, 28, 12, 0)


def test_subtract_refuses_naive(cal):
    with pytest.raises(ValueError, match="time zone"):
        subtract(datetime(2026, 2, 26), P(1, DAYS), calendar=cal)


# ---------------------------------------------------------------------- coverage


def test_published_year_has_no_coverage_warning(cal):
    assert cal.coverage_warning(date(2026, 6, 1)) is None


def test_year_without_a_published_schedule_is_flagged(cal):
    # 1960: holidays derived from the rules, no make-up working days in the data.
    warning = cal.coverage_warning(date(1960, 6, 1))
    assert warning is not None
    assert "make-up" in warning


def test_year_without_data_falls_back_to_weekdays(cal):
    warning = cal.coverage_warning(date(2104, 1, 1))
    assert warning is not None
    assert "Monday to Friday" in warning
    assert cal.is_working_day(date(2104, 1, 1))  # a Tuesday; New Year unknown to the data
    assert not cal.is_working_day(date(2104, 1, 5))  # a Saturday


def test_coverage_warnings_between_lists_each_uncovered_year(cal):
    assert cal.coverage_warnings(date(2026, 1, 1), date(2026, 12, 31)) == []
    assert len(cal.coverage_warnings(date(2103, 12, 1), date(2104, 1, 31))) == 2
