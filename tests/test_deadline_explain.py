"""How a deadline was counted (domain/deadline_explain.py), and the sentences the workbench
makes of it: a working-day period across the 2025 National Day holiday names the days it
skipped and the make-up Saturday it counted; a calendar-day period says calendar days and
that the holiday inside it counts; a last day on a holiday rolls on; an extension and a
hearing's pause are told apart; the case's frozen calendar is what is counted on."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from domain.calendar import SHANGHAI, WorkingCalendar
from domain.case import CalendarSnapshot, CaseState, Clock, ClockRequest, UnitFacts, open_case
from domain.deadline_explain import days_left, explain_case, explain_clock, last_day_of
from domain.deadlines import compute_clock, snapshot_of
from domain.models import ClockName
from domain.policy import ClockPolicy, DeadlineProfile, Period, PeriodUnit, load_profile
from service.pages_workbench import explanation_words
from tests.conftest import make_intake

SNAPSHOT: CalendarSnapshot = snapshot_of(WorkingCalendar(), 2025, 2026, source="test")
FROZEN = SNAPSHOT.calendar()
# Tuesday 30 September 2025, the day before National Day.
EVE = datetime(2025, 9, 30, 10, 0, tzinfo=SHANGHAI)


def _clock(profile: DeadlineProfile, name: ClockName, start: datetime) -> Clock:
    computed = compute_clock(profile, ClockRequest(name=name, start=start, unit="QS-XFJ"),
                             FROZEN)
    assert computed is not None
    return Clock(**computed.model_dump())


def _case(profile: str) -> CaseState:
    unit = UnitFacts(code="QS-XFJ", name="青山县信访局", kind="petition_bureau", level="county")
    return open_case(workflow_id="petition-test", petition_id=1, registration_no="QS-XFJ-1",
                     profile=load_profile(profile), intake=make_intake(), unit=unit)


def _policy(profile: DeadlineProfile, name: ClockName) -> ClockPolicy:
    policy = profile.clock(name)
    assert policy is not None
    return policy


def test_a_working_day_deadline_across_national_day_names_what_it_skipped() -> None:
    zhejiang = load_profile("zhejiang")  # routes in 5 working days
    clock = _clock(zhejiang, ClockName.ROUTING, EVE)
    found = explain_clock(clock, _policy(zhejiang, ClockName.ROUTING), FROZEN)
    counted = found.counting
    assert found.consistent and counted.unit is PeriodUnit.WORKING_DAYS
    assert counted.anchor == date(2025, 9, 30)  # the day of the event is not counted
    # 1 to 8 October off (National Day and Mid-Autumn, the weekend inside), then Thu 9,
    # Fri 10, the make-up Saturday 11, Mon 13, Tue 14: the fifth working day.
    assert [(s.first, s.last) for s in counted.holidays] == [(date(2025, 10, 1),
                                                               date(2025, 10, 8))]
    assert counted.holidays[0].names_zh == ("国庆节", "中秋节")
    assert counted.makeup_days == (date(2025, 10, 11),)
    assert counted.weekend_days == 1  # Sunday 12 October
    assert counted.due_day == date(2025, 10, 14) == last_day_of(clock.due_at)

    words = explanation_words(found, "zh")
    assert words[0] == "按工作日计算：5 个工作日，自2025年9月30日的次日起算，当日不计入。"
    assert "跳过法定节假日：国庆节、中秋节（10月1日至10月8日，共 8 天）。" in words
    assert "调休上班日计入工作日：10月11日（星期六）。" in words
    assert "跳过周末休息日 1 天。" in words
    english = " ".join(explanation_words(found, "en"))
    assert "Counted in working days: 5 working days" in english
    assert "National Day" in english and "11 Oct (Saturday)" in english


def test_a_calendar_day_deadline_says_calendar_days_and_counts_the_holiday() -> None:
    national = load_profile("national")
    clock = _clock(national, ClockName.ACCEPTANCE, EVE)  # 15 days
    found = explain_clock(clock, _policy(national, ClockName.ACCEPTANCE), FROZEN)
    assert found.consistent and found.counting.unit is PeriodUnit.DAYS
    assert found.counting.due_day == date(2025, 10, 15) and not found.counting.rolled
    assert found.counting.makeup_days == ()
    words = explanation_words(found, "zh")
    assert words[0].startswith("按自然日计算：15 日")
    assert any(w.startswith("期间的节假日照常计入：国庆节、中秋节") for w in words)
    assert not any("跳过" in w for w in words)


def test_a_last_day_on_a_holiday_rolls_on_to_the_next_working_day() -> None:
    national = load_profile("national")
    start = datetime(2025, 9, 17, 9, 0, tzinfo=SHANGHAI)  # + 15 days = 2 October, a holiday
    clock = _clock(national, ClockName.ACCEPTANCE, start)
    found = explain_clock(clock, _policy(national, ClockName.ACCEPTANCE), FROZEN)
    assert found.consistent and found.counting.rolled
    assert found.counting.last_day == date(2025, 10, 2)
    assert found.counting.due_day == date(2025, 10, 9)
    assert found.counting.rolled_over[0] == date(2025, 10, 2)
    assert "最后一日2025年10月2日不是工作日，顺延至节假日后的第一个工作日2025年10月9日。" \
        in explanation_words(found, "zh")


def test_an_extension_is_counted_on_from_the_original_last_day() -> None:
    national = load_profile("national")
    policy = _policy(national, ClockName.HANDLING)
    clock = _clock(national, ClockName.HANDLING, EVE)  # 60 days: 29 November (a Saturday)
    extension = Period(amount=30, unit=PeriodUnit.DAYS)
    clock.due_at = national.extended_deadline(ClockName.HANDLING, clock.due_at, extension,
                                              FROZEN)
    found = explain_clock(clock, policy, FROZEN, extension=extension)
    assert found.consistent and found.extension is not None and found.extension_days == 30
    assert found.counting.due_day == date(2025, 12, 1)  # rolled from Saturday 29 November
    assert found.extension.anchor == date(2025, 12, 1)
    assert found.due_day == found.extension.due_day == date(2025, 12, 31)
    assert any(w.startswith("经批准延期 30 日：按自然日计算：30 日，自2025年12月1日（原期限的"
                            "最后一日）的次日起算") for w in explanation_words(found, "zh"))


def test_a_hearing_pause_is_said_and_a_recount_that_differs_is_flagged() -> None:
    national = load_profile("national")
    policy = _policy(national, ClockName.RE_REVIEW)
    clock = _clock(national, ClockName.RE_REVIEW, EVE)
    clock.due_at += timedelta(hours=3)  # resumed after a three-hour hearing
    found = explain_clock(clock, policy, FROZEN)
    assert found.paused_for == timedelta(hours=3) and found.consistent
    assert "听证期间（约 3 小时）不计入，期限相应顺延。" in explanation_words(found, "zh")
    other = _clock(national, ClockName.HANDLING, EVE)
    other.due_at += timedelta(days=2)  # not what the profile counts: said, not hidden
    differs = explain_clock(other, _policy(national, ClockName.HANDLING), FROZEN)
    assert not differs.consistent
    assert any("以记载的期限为准" in w for w in explanation_words(differs, "zh"))


def test_exact_periods_say_they_are_exact() -> None:
    demo = load_profile("demo")
    clock = _clock(demo, ClockName.HANDLING, EVE)
    found = explain_clock(clock, _policy(demo, ClockName.HANDLING), FROZEN)
    assert found.consistent and not found.counting.counted_in_days
    assert explanation_words(found, "zh")[0].startswith("按秒精确计算")


def test_a_case_is_explained_on_its_frozen_calendar() -> None:
    case = _case("zhejiang")
    case.calendar = SNAPSHOT
    case.clocks = {ClockName.ROUTING: _clock(case.profile, ClockName.ROUTING, EVE)}
    [found] = explain_case(case)
    assert found.clock is ClockName.ROUTING and found.calendar_note is None
    assert found.counting.makeup_days == (date(2025, 10, 11),)
    # A case whose snapshot lacks the year: counted on the live calendar, and said so.
    case.calendar = snapshot_of(WorkingCalendar(), 2027, 2027, source="test")
    [noted] = explain_case(case)
    assert noted.calendar_note is not None and noted.consistent


@pytest.mark.parametrize("now, left", [
    (datetime(2025, 10, 14, 8, 0, tzinfo=SHANGHAI), 0),  # due today (24:00)
    (datetime(2025, 10, 11, 23, 0, tzinfo=SHANGHAI), 3),
    (datetime(2025, 10, 16, 9, 0, tzinfo=SHANGHAI), -2),
])
def test_days_left_count_beijing_days(now: datetime, left: int) -> None:
    due = datetime(2025, 10, 15, 0, 0, tzinfo=SHANGHAI)  # 24:00 on 14 October
    assert days_left(due, now) == left
