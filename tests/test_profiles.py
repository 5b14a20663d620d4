"""Deadline profiles: the packaged files load, the national periods are the law's,
and a malformed profile is refused with an error naming the field and the file."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from importlib import resources
from pathlib import Path

import pytest
from pydantic import ValidationError

from domain.calendar import SHANGHAI, WorkingCalendar
from domain.models import ClockName
from domain.policy import (
    ClockKind,
    DeadlineProfile,
    Period,
    PeriodUnit,
    ProfileError,
    available_profiles,
    load_profile,
    load_profile_file,
)

PROFILES = ["bench", "demo", "national", "procuratorate", "shandong", "sichuan", "zhejiang"]
NATIONAL_TOML = resources.files("domain").joinpath("profiles/national.toml").read_text("utf-8")
ARTICLE = "Regulations on the Work of Letters and Visits (2022) Art. "


@pytest.fixture(scope="module")
def cal() -> WorkingCalendar:
    return WorkingCalendar()


def end_of(y: int, m: int, d: int) -> datetime:
    """24:00 Asia/Shanghai of the given day, as UTC."""
    return datetime(y, m, d, 16, 0, tzinfo=UTC)


# --------------------------------------------------------------------- loading


def test_the_expected_profiles_are_packaged():
    assert available_profiles() == PROFILES


@pytest.mark.parametrize("name", PROFILES)
def test_profile_loads_and_declares_its_own_name(name):
    profile = load_profile(name)
    assert profile.name == name
    assert profile.clocks
    assert load_profile(name) is profile  # cached


@pytest.mark.parametrize("name", ["zhejiang", "shandong", "sichuan"])
def test_local_profiles_restate_every_national_clock(name):
    assert set(load_profile(name).clocks) == set(load_profile("national").clocks)


def test_unknown_profile_lists_the_available_ones():
    with pytest.raises(ProfileError, match="available: bench, demo, national, procuratorate"):
        load_profile("hainan")


@pytest.mark.parametrize("name", ["../national", "National", "", "a/b", "national.toml"])
def test_unsafe_profile_name_refused(name):
    with pytest.raises(ProfileError, match="invalid profile name"):
        load_profile(name)


# ------------------------------------------------------ the national periods (law)

NATIONAL = [
    (ClockName.ROUTING, 15, PeriodUnit.DAYS, "22"),
    (ClockName.ACCEPTANCE, 15, PeriodUnit.DAYS, "23"),
    (ClockName.TRANSFER_OBJECTION, 5, PeriodUnit.WORKING_DAYS, "23"),
    (ClockName.HANDLING, 60, PeriodUnit.DAYS, "34"),
    (ClockName.REVIEW_REQUEST, 30, PeriodUnit.DAYS, "35"),
    (ClockName.REVIEW, 30, PeriodUnit.DAYS, "35"),
    (ClockName.RE_REVIEW_REQUEST, 30, PeriodUnit.DAYS, "36"),
    (ClockName.RE_REVIEW, 30, PeriodUnit.DAYS, "36"),
]


@pytest.mark.parametrize(
    ("clock", "amount", "unit", "art"),
    NATIONAL,
    ids=[f"{c.value} {amount} {unit.value} ({ARTICLE}{art})" for c, amount, unit, art in NATIONAL],
)
def test_national_period_is_the_statutory_one(clock, amount, unit, art):
    policy = load_profile("national").clocks[clock]
    assert policy.period == Period(amount=amount, unit=unit)
    assert policy.article == f"{ARTICLE}{art}"


def test_national_has_exactly_the_statutory_clocks():
    assert set(load_profile("national").clocks) == {clock for clock, *_ in NATIONAL}


def test_national_extension_is_30_days_once():
    extension = load_profile("national").extension
    assert extension.max_period == Period(amount=30, unit=PeriodUnit.DAYS)
    assert extension.max_times == 1
    assert extension.article == f"{ARTICLE}34"


def test_re_review_description_says_hearing_time_is_not_counted():
    assert "hearing" in load_profile("national").clocks[ClockName.RE_REVIEW].description


@pytest.mark.parametrize(
    "clock", [ClockName.REVIEW_REQUEST, ClockName.RE_REVIEW_REQUEST, ClockName.TRANSFER_OBJECTION]
)
def test_rights_of_the_petitioner_or_unit_are_windows(clock):
    policy = load_profile("national").clocks[clock]
    assert policy.kind is ClockKind.WINDOW
    assert policy.reminder_before is None


# ----------------------------------------------------------- local and procuratorate


def test_local_overrides():
    zhejiang, shandong, sichuan = (load_profile(n) for n in ("zhejiang", "shandong", "sichuan"))
    assert zhejiang.clocks[ClockName.ROUTING].period == Period(amount=5, unit="working_days")
    assert zhejiang.clocks[ClockName.HANDLING].period == Period(amount=30, unit="days")
    assert zhejiang.extension.max_period == Period(amount=60, unit="days")
    assert shandong.clocks[ClockName.REVIEW].period == Period(amount=3, unit="working_days")
    assert sichuan.clocks[ClockName.HANDLING].period == Period(amount=30, unit="days")


def test_procuratorate_clocks():
    profile = load_profile("procuratorate")
    assert profile.clocks[ClockName.PROCEDURAL_REPLY].period == Period(amount=7, unit="days")
    assert profile.clocks[ClockName.SETTLEMENT].period == Period(amount=3, unit="months")
    progress = profile.clocks[ClockName.PROGRESS_REPLY]
    assert progress.repeat_every == Period(amount=1, unit="months")
    assert "件件有回复" in progress.article
    national = load_profile("national")
    for clock in (ClockName.REVIEW_REQUEST, ClockName.REVIEW, ClockName.RE_REVIEW):
        assert profile.clocks[clock].period == national.clocks[clock].period


def test_assistance_cap_is_36_monthly_wages():
    assistance = load_profile("national").assistance
    assert assistance.cap_yuan == Decimal("9000.00") * 36
    assert assistance.leader_threshold_yuan == Decimal("50000.00")


@pytest.mark.parametrize(
    ("period", "text"),
    [
        (Period(amount=15, unit="days"), "15 days"),
        (Period(amount=1, unit="days"), "1 day"),
        (Period(amount=5, unit="working_days"), "5 working days"),
        (Period(amount=1, unit="working_days"), "1 working day"),
        (Period(amount=3, unit="months"), "3 months"),
        (Period(amount=2, unit="hours"), "2 hours"),
    ],
)
def test_period_in_plain_words(period, text):
    assert str(period) == text


# ------------------------------------------------------------ profile arithmetic


def test_handling_deadline_reminder_and_level2(cal):
    profile = load_profile("national")
    accepted = datetime(2026, 8, 3, 10, 0, tzinfo=SHANGHAI)
    # Aug 3 + 60 days = Oct 2, National Day; Oct 1-7 off -> Oct 8.
    due = profile.deadline(ClockName.HANDLING, accepted, cal)
    assert due == end_of(2026, 10, 8)
    # 5 days before 00:00 Oct 9 -> 00:00 Oct 4 (a reminder is not rolled).
    assert profile.reminder_at(ClockName.HANDLING, due, cal) == datetime(
        2026, 10, 4, tzinfo=SHANGHAI
    )
    # Oct 8 + 10 days = Sun Oct 18 -> Mon Oct 19.
    assert profile.level2_at(ClockName.HANDLING, due, cal) == end_of(2026, 10, 19)


def test_window_has_no_reminder_or_level2(cal):
    profile = load_profile("national")
    due = end_of(2026, 3, 2)
    assert profile.reminder_at(ClockName.REVIEW_REQUEST, due, cal) is None
    assert profile.level2_at(ClockName.REVIEW_REQUEST, due, cal) is None


def test_missing_clock_gives_none(cal):
    start = datetime(2026, 3, 2, 9, tzinfo=SHANGHAI)
    assert load_profile("procuratorate").deadline(ClockName.HANDLING, start, cal) is None
    assert load_profile("national").deadline(ClockName.SETTLEMENT, start, cal) is None


def test_zhejiang_routing_in_working_days(cal):
    start = datetime(2026, 2, 12, 9, tzinfo=SHANGHAI)
    # Feb 13 (1), Sat Feb 14 make-up (2), Feb 15-23 off, Feb 24 (3), 25 (4), 26 (5).
    due = load_profile("zhejiang").deadline(ClockName.ROUTING, start, cal)
    assert due == end_of(2026, 2, 26)
    # 1 working day before -> 00:00 Feb 26.
    reminder = load_profile("zhejiang").reminder_at(ClockName.ROUTING, due, cal)
    assert reminder == datetime(2026, 2, 26, tzinfo=SHANGHAI)


def test_procuratorate_progress_reply_repeats_monthly(cal):
    profile = load_profile("procuratorate")
    received = datetime(2026, 1, 31, 15, tzinfo=SHANGHAI)
    # Jan 31 + 3 months = Apr 30 (Thu).
    settlement = profile.deadline(ClockName.SETTLEMENT, received, cal)
    assert settlement == end_of(2026, 4, 30)
    # Apr 30 + 1 month = Sat May 30 -> Mon Jun 1.
    assert profile.next_repeat(ClockName.PROGRESS_REPLY, settlement, cal) == end_of(2026, 6, 1)
    assert profile.next_repeat(ClockName.SETTLEMENT, settlement, cal) is None


def test_extension_up_to_the_maximum(cal):
    profile = load_profile("national")
    due = end_of(2026, 2, 26)
    # Feb 26 + 30 days = Sat Mar 28 -> Mon Mar 30.
    thirty = Period(amount=30, unit="days")
    assert profile.extended_deadline(ClockName.HANDLING, due, thirty, cal) == end_of(2026, 3, 30)
    with pytest.raises(ValueError, match="exceeds the maximum of 30 days"):
        profile.extended_deadline(ClockName.HANDLING, due, Period(amount=40, unit="days"), cal)
    sixty = Period(amount=60, unit="days")
    # Feb 26 + 60 days = Mon Apr 27.
    assert load_profile("zhejiang").extended_deadline(
        ClockName.HANDLING, due, sixty, cal
    ) == end_of(2026, 4, 27)


# ---------------------------------------------------------------- invalid profiles


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "candidate.toml"
    path.write_text(text, encoding="utf-8")
    return path


def mutated(old: str, new: str) -> str:
    assert old in NATIONAL_TOML, f"fixture drifted: {old!r} not in national.toml"
    return NATIONAL_TOML.replace(old, new, 1)


def test_unchanged_copy_is_valid(tmp_path):
    # The control for the cases below: only the mutation makes them fail.
    assert isinstance(load_profile_file(write(tmp_path, NATIONAL_TOML)), DeadlineProfile)


INVALID = {
    "window clock with reminder": (
        '[clocks.review_request]\nkind = "window"\n',
        '[clocks.review_request]\nkind = "window"\n'
        'reminder_before = { amount = 3, unit = "days" }\n',
        "clocks.review_request.reminder_before",
        "window",
    ),
    "deadline clock without level 2": (
        'level2_after = { amount = 10, unit = "days" }\n',
        "",
        "clocks.routing.level2_after",
        "required",
    ),
    "zero period": (
        'period = { amount = 15, unit = "days" }',
        'period = { amount = 0, unit = "days" }',
        "clocks.routing.period.amount",
        "greater than 0",
    ),
    "unknown clock name": (
        "[clocks.routing]",
        "[clocks.routeing]",
        "clocks.routeing",
        "Input should be 'routing'",
    ),
    "unknown field": (
        "[extension]\n",
        '[extension]\ncolour = "red"\n',
        "extension.colour",
        "Extra inputs are not permitted",
    ),
    "unknown unit": (
        'period = { amount = 15, unit = "days" }',
        'period = { amount = 15, unit = "weeks" }',
        "clocks.routing.period.unit",
        "working_days",
    ),
    "review request as a deadline": (
        '[clocks.review_request]\nkind = "window"\n',
        '[clocks.review_request]\nkind = "deadline"\n'
        'reminder_before = { amount = 3, unit = "days" }\n'
        'level2_after = { amount = 10, unit = "days" }\n',
        "clocks.review_request.kind must be 'window'",
        "",
    ),
    "reminder longer than the period": (
        'reminder_before = { amount = 3, unit = "days" }',
        'reminder_before = { amount = 20, unit = "days" }',
        "clocks.routing",
        "reminder_before (20 days) must be shorter than the period (15 days)",
    ),
}


@pytest.mark.parametrize(("old", "new", "where", "why"), INVALID.values(), ids=INVALID.keys())
def test_invalid_profile_refused_naming_field_and_file(tmp_path, old, new, where, why):
    path = write(tmp_path, mutated(old, new))
    with pytest.raises(ValidationError) as caught:
        load_profile_file(path)
    message = str(caught.value)
    assert where in message
    assert why in message
    assert str(path) in message


def test_broken_toml_names_the_file(tmp_path):
    path = write(tmp_path, "name = \n")
    with pytest.raises(ProfileError, match="candidate.toml: not valid TOML"):
        load_profile_file(path)
