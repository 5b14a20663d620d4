"""Official holiday notices: the file format, the calendar that counts with them, the
once-per-year warning for years without a schedule, and `petition holidays`.

Pure unit tests: no Temporal server, no database. The 2027 notice below is TEST DATA,
made up for these tests; it is not the State Council's 2027 schedule. `holidays` 0.108
has none for 2027: it estimates the statutory holidays (with substitute days off on
Feb 9-10 and May 3-4) and knows no make-up working day.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from pathlib import Path

import holidays
import pytest
from click.testing import CliRunner
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import async_sessionmaker
from temporalio.testing import ActivityEnvironment

from activities import build_desks
from activities.contracts import CalendarSnapshotInput
from activities.deadlines import CoverageWarnings, DeadlineCalculator
from activities.holiday_notices import (
    DEFAULT_DIRECTORY,
    ENVIRONMENT_VARIABLE,
    NoticeFileError,
    install_notice,
    load_notices,
    notices_directory,
)
from domain.calendar import SHANGHAI, PeriodUnit, WorkingCalendar, deadline_for
from domain.case import ClockRequest
from domain.deadlines import compute_clock, snapshot_of
from domain.holiday_notice import HolidayNotice, NoticeError, parse_notice
from domain.models import ClockName
from domain.policy import load_profile
from starter.holidays_cmd import holidays_cmd

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "holiday-notices" / "example-2027.toml"

# TEST DATA, not the official 2027 schedule. Feb 6 2027 is a Saturday, Feb 20 too.
NOTICE = """\
year = 2027
source = "TEST-2027"
published = 2026-11-10

[[holiday]]
name = "春节"
days_off = [2027-02-06, 2027-02-07, 2027-02-08, 2027-02-09, 2027-02-10, 2027-02-11,
            2027-02-12]
workdays = [2027-02-20]

[[holiday]]
name = "劳动节"
days_off = [2027-05-01, 2027-05-02, 2027-05-03]
"""


def notice(text: str = NOTICE) -> HolidayNotice:
    return parse_notice(text)


def end_of(y: int, m: int, d: int) -> datetime:
    """24:00 Asia/Shanghai of the day, as UTC."""
    return datetime(y, m, d, 16, tzinfo=UTC)


class Days:
    def __init__(self, amount: int, unit: PeriodUnit) -> None:
        self.amount, self.unit = amount, unit


# ------------------------------------------------------------------ the file format


def test_a_valid_notice_parses():
    parsed = notice()
    assert parsed.year == 2027 and parsed.source == "TEST-2027"
    assert parsed.published == date(2026, 11, 10)
    assert [h.name for h in parsed.holidays] == ["春节", "劳动节"]
    assert len(parsed.days_off) == 10 and parsed.workdays == {date(2027, 2, 20)}
    assert parsed.summary().startswith("2027: TEST-2027 (published 2026-11-10), 2 holidays")


def test_a_notice_is_immutable():
    with pytest.raises(ValidationError):
        notice().year = 2028


def test_the_example_file_parses_and_says_it_is_an_example():
    text = EXAMPLE.read_text(encoding="utf-8")
    assert parse_notice(text).year == 2027
    assert "EXAMPLE" in parse_notice(text).source
    assert "NOT THE OFFICIAL SCHEDULE" in text


@pytest.mark.parametrize(("change", "expected"), [
    # each rule of the format, broken once
    (("workdays = [2027-02-20]", "workdays = [2027-02-22]"),
     "holiday[0] (春节).workdays[0]: 2027-02-22 is a Monday; make-up working days (调休) "
     "are Saturdays or Sundays"),
    (("2027-05-03]", "2028-05-03]"),
     "holiday[1] (劳动节).days_off[2]: 2028-05-03 is not in 2027"),
    (("workdays = [2027-02-20]", "workdays = [2026-12-26]"),
     "holiday[0] (春节).workdays[0]: 2026-12-26 is not in 2027"),
    (("workdays = [2027-02-20]", "workdays = [2027-05-01]"),
     "holiday[0] (春节).workdays[0]: 2027-05-01 is also a day off of holiday[1] (劳动节)"),
    (("2027-05-03]", "2027-02-12]"),
     "holiday[1] (劳动节).days_off[2]: 2027-02-12 is already a day off of holiday[0] (春节)"),
    (("workdays = [2027-02-20]", "workdays = [2027-02-20, 2027-02-20]"),
     "holiday[0] (春节).workdays[1]: 2027-02-20 is already a make-up working day"),
    (("[[holiday]]", "[[holidays]]"), "holidays: Extra inputs are not permitted"),
    (("published = 2026-11-10", "published = 2028-01-05"),
     "published: 2028-01-05 is after 2027"),
    (("published = 2026-11-10\n", ""), "published: Field required"),
    (('source = "TEST-2027"\n', ""), "source: Field required"),
    (('source = "TEST-2027"', 'source = "  "'), "source: String should have at least 1"),
    (('name = "劳动节"', 'name = ""'), "holiday[1].name: String should have at least 1"),
    (("year = 2027", 'year = "2027"'), "year: Input should be a valid integer"),  # strict
    (("year = 2027", "year = 1900"), "year: Input should be greater than or equal to 1950"),
    (("workdays = [2027-02-20]", 'workdays = ["2027-02-20"]'),
     "holiday[0] (春节).workdays[0]: Input should be a valid date (write dates unquoted"),
    (("workdays = [2027-02-20]", "workday = [2027-02-20]"),
     "holiday[0] (春节).workday: Extra inputs are not permitted"),
    (("days_off = [2027-05-01, 2027-05-02, 2027-05-03]", "days_off = []"),
     "holiday[1] (劳动节).days_off: List should have at least 1 item"),
    (("year = 2027", "year = "), "not valid TOML"),
])
def test_an_invalid_notice_is_refused_in_one_line_naming_the_field(change, expected):
    old, new = change
    assert old in NOTICE
    with pytest.raises(NoticeError) as refused:
        parse_notice(NOTICE.replace(old, new, 1))
    assert str(refused.value).startswith(expected), str(refused.value)
    assert "\n" not in str(refused.value)


def test_a_notice_without_any_holiday_is_refused():
    head = NOTICE.split("[[holiday]]")[0]
    with pytest.raises(NoticeError, match=r"^holiday: Field required \(a notice has at least"):
        parse_notice(head)
    with pytest.raises(NoticeError, match=r"^holiday: List should have at least 1 item"):
        parse_notice(head + "holiday = []\n")


# ------------------------------------------------------------------ counting with a notice


def test_a_2027_period_counts_the_make_up_working_day_only_with_the_notice():
    # 5 working days from Monday 2027-02-15: Tue 16, Wed 17, Thu 18, Fri 19, then
    # the make-up Saturday 20 with the notice; without it, Monday 22.
    start, five = datetime(2027, 2, 15, 10, tzinfo=SHANGHAI), Days(5, PeriodUnit.WORKING_DAYS)
    with_notice = WorkingCalendar(notices=[notice()])
    assert deadline_for(start, five, calendar=with_notice,
                        roll_to_working_day=False) == end_of(2027, 2, 20)
    assert deadline_for(start, five, calendar=WorkingCalendar(),
                        roll_to_working_day=False) == end_of(2027, 2, 22)


def test_the_notice_replaces_the_library_estimate_of_its_year():
    library, noticed = WorkingCalendar(), WorkingCalendar(notices=[notice()])
    # The library guesses Tuesday 2027-05-04 is a substitute day off; the notice has not.
    assert not library.is_working_day(date(2027, 5, 4))
    assert noticed.is_working_day(date(2027, 5, 4))
    # ... nor New Year's Day, which this test notice leaves out: the notice is all there is.
    assert noticed.is_working_day(date(2027, 1, 1))
    assert noticed.is_working_day(date(2027, 2, 20)) and not library.is_working_day(
        date(2027, 2, 20))
    assert not noticed.is_working_day(date(2027, 2, 21))  # an ordinary Sunday stays off
    # Other years still come from the library.
    assert noticed.is_working_day(date(2026, 2, 14))  # the 2026 make-up Saturday


def test_a_year_with_a_notice_has_no_warning_and_the_others_keep_theirs():
    cal = WorkingCalendar(notices=[notice()])
    assert cal.coverage_warning(date(2027, 3, 1)) is None
    assert cal.coverage_warnings(date(2026, 1, 1), date(2027, 12, 31)) == []
    [warning] = cal.coverage_warnings(date(2027, 1, 1), date(2028, 12, 31))
    assert warning.startswith("no State Council holiday schedule for 2028")


def test_two_notices_for_one_year_are_refused():
    other = NOTICE.replace("TEST-2027", "TEST-2027-bis")
    with pytest.raises(ValueError, match="two holiday notices for 2027: TEST-2027 and"):
        WorkingCalendar(notices=[notice(), notice(other)])


def test_the_snapshot_of_a_noticed_year_freezes_the_notice():
    live = WorkingCalendar(notices=[notice()])
    snapshot = snapshot_of(live, 2026, 2028, source=live.source)
    assert snapshot.source == f"holidays {holidays.__version__}; notices: 2027 TEST-2027"
    year = next(y for y in snapshot.years if y.year == 2027)
    assert year.weekend_workdays == [date(2027, 2, 20)] and year.warning is None
    assert next(y for y in snapshot.years if y.year == 2028).warning is not None
    frozen = type(snapshot).model_validate_json(snapshot.model_dump_json()).calendar()
    start = datetime(2027, 2, 15, 10, tzinfo=SHANGHAI)
    assert deadline_for(start, Days(5, PeriodUnit.WORKING_DAYS), calendar=frozen,
                        roll_to_working_day=False) == end_of(2027, 2, 20)


# ------------------------------------------------------------------ the warning


def _calendar_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "activities.deadlines"]


async def test_a_year_without_a_schedule_is_warned_once_in_one_line_naming_the_command(caplog):
    caplog.set_level(logging.WARNING, logger="activities.deadlines")
    once, env = CoverageWarnings(), ActivityEnvironment()
    desk = DeadlineCalculator(WorkingCalendar(), once)
    years = CalendarSnapshotInput(first_year=2026, last_year=2028)
    await env.run(desk.calendar_snapshot, years)
    await env.run(desk.calendar_snapshot, years)
    # Another desk of the same process, and a deadline in 2027: still nothing new.
    other = DeadlineCalculator(WorkingCalendar(), once)
    await env.run(other.calendar_snapshot, CalendarSnapshotInput(first_year=2027,
                                                                 last_year=2027))
    computed = compute_clock(load_profile("national"), ClockRequest(
        name=ClockName.TRANSFER_OBJECTION, start=datetime(2027, 2, 15, 2, tzinfo=UTC),
        unit="QS-TEST"), WorkingCalendar())
    assert computed is not None
    assert computed.due_at == end_of(2027, 2, 22)  # no make-up Saturday without a notice

    lines = _calendar_lines(caplog)
    assert [line.split(" for ")[1][:4] for line in lines] == ["2027", "2028"]
    for line in lines:
        assert "\n" not in line and "{" not in line  # a line, not a dict
        assert "petition holidays load <file>" in line and "docs/holidays.md" in line
    assert lines[0] == (
        f"calendar: no State Council holiday schedule for 2027 (holidays {holidays.__version__} "
        "has none): deadlines in 2027 count statutory holidays without make-up working days "
        "(调休); load the official notice with: petition holidays load <file> "
        "(see docs/holidays.md)")


async def test_a_loaded_notice_silences_its_year_and_counts_the_make_up_day(caplog):
    caplog.set_level(logging.WARNING, logger="activities.deadlines")
    desk = DeadlineCalculator(WorkingCalendar(notices=[notice()]), CoverageWarnings())
    env = ActivityEnvironment()
    snapshot = await env.run(desk.calendar_snapshot,
                             CalendarSnapshotInput(first_year=2026, last_year=2028))
    assert "TEST-2027" in snapshot.source
    assert [line.split(" for ")[1][:4] for line in _calendar_lines(caplog)] == ["2028"]
    computed = compute_clock(load_profile("national"), ClockRequest(
        name=ClockName.TRANSFER_OBJECTION, start=datetime(2027, 2, 15, 2, tzinfo=UTC),
        unit="QS-TEST"), snapshot.calendar())  # counted as the workflow counts
    assert computed is not None
    assert computed.due_at == end_of(2027, 2, 20)


# ------------------------------------------------------------------ the directory


def _write(directory: Path, name: str, text: str = NOTICE) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def test_the_directory_comes_from_the_environment_or_the_repository(monkeypatch, tmp_path):
    monkeypatch.delenv(ENVIRONMENT_VARIABLE, raising=False)
    assert notices_directory() == DEFAULT_DIRECTORY == ROOT / ".data" / "holiday-notices"
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, str(tmp_path))
    assert notices_directory() == tmp_path


def test_load_notices_reads_every_toml_file_and_none_when_there_is_no_directory(tmp_path):
    assert load_notices(tmp_path / "missing") == []
    _write(tmp_path, "2027.toml")
    _write(tmp_path, "README.txt", "not a notice")
    _write(tmp_path, "2028.toml", NOTICE.replace("2027-", "2028-").replace("year = 2027",
                                                                           "year = 2028"))
    assert [n.year for n in load_notices(tmp_path)] == [2027, 2028]


def test_a_bad_file_fails_loudly_with_its_name_and_the_field(tmp_path):
    bad = _write(tmp_path, "2027.toml", NOTICE.replace("2027-02-20", "2027-02-22"))
    with pytest.raises(NoticeFileError) as refused:
        load_notices(tmp_path)
    assert str(refused.value).startswith(f"{bad}: holiday[0] (春节).workdays[0]: 2027-02-22")


def test_two_files_for_one_year_fail_loudly(tmp_path):
    _write(tmp_path, "2027.toml")
    _write(tmp_path, "notice-2027.toml", NOTICE.replace("TEST-2027", "TEST-2027-bis"))
    with pytest.raises(NoticeFileError, match="a second notice for 2027, after 2027.toml"):
        load_notices(tmp_path)


def test_the_worker_desks_count_with_the_notices_of_the_directory(monkeypatch, tmp_path):
    _write(tmp_path, "2027.toml")
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, str(tmp_path))
    desks = build_desks(async_sessionmaker())
    assert "TEST-2027" in desks.deadlines._calendar.source


# ------------------------------------------------------------------ petition holidays


@pytest.fixture
def run(tmp_path):
    runner, directory = CliRunner(), tmp_path / "notices"

    def invoke(*args: str):
        return runner.invoke(holidays_cmd, list(args),
                             env={ENVIRONMENT_VARIABLE: str(directory)})

    invoke.directory = directory
    return invoke


def test_cli_load_copies_a_valid_notice_into_the_directory(run, tmp_path):
    source = _write(tmp_path / "in", "any-name.toml")
    result = run("load", str(source))
    assert result.exit_code == 0, result.output
    assert "loaded 2027: TEST-2027" in result.output and "Restart the worker" in result.output
    assert (run.directory / "2027.toml").read_bytes() == source.read_bytes()
    again = run("load", str(source))
    assert again.exit_code == 0 and "already loaded, unchanged" in again.output


def test_cli_load_refuses_a_second_different_notice_unless_replace(run, tmp_path):
    assert run("load", str(_write(tmp_path / "in", "a.toml"))).exit_code == 0
    other = _write(tmp_path / "in", "b.toml", NOTICE.replace("TEST-2027", "TEST-2027-bis"))
    refused = run("load", str(other))
    assert refused.exit_code == 2
    assert "already holds a different notice for 2027 (TEST-2027)" in refused.output
    assert "--replace" in refused.output
    assert "TEST-2027-bis" not in (run.directory / "2027.toml").read_text(encoding="utf-8")
    replaced = run("load", "--replace", str(other))
    assert replaced.exit_code == 0, replaced.output
    assert "replacing TEST-2027 (published 2026-11-10)" in replaced.output
    assert [n.source for n in load_notices(run.directory)] == ["TEST-2027-bis"]


def test_cli_load_refuses_an_invalid_notice_naming_file_and_field(run, tmp_path):
    bad = _write(tmp_path / "in", "bad.toml", NOTICE.replace("2027-05-03]", "2028-05-03]"))
    result = run("load", str(bad))
    assert result.exit_code == 2
    assert f"error: {bad}: holiday[1] (劳动节).days_off[2]: 2028-05-03 is not in 2027" \
        in result.output
    assert not run.directory.exists()


def test_cli_load_refuses_the_example_file(run):
    result = run("load", str(EXAMPLE))
    assert result.exit_code == 2 and "not an official notice" in result.output
    with pytest.raises(NoticeFileError):
        install_notice(EXAMPLE, run.directory)


def test_cli_list_shows_the_years_of_the_notices_and_of_the_library(run, tmp_path):
    empty = run("list")
    assert empty.exit_code == 0, empty.output
    assert "library: holidays" in empty.output and "2001-" in empty.output
    assert "none loaded" in empty.output
    run("load", str(_write(tmp_path / "in", "a.toml")))
    listed = run("list")
    assert listed.exit_code == 0, listed.output
    assert "  2027: TEST-2027 (published 2026-11-10)" in listed.output
    assert "2027  notice TEST-2027" in listed.output
