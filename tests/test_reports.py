"""Issue 5: assessment figures on a hand-built data set whose right answers are known.

The rows go straight into the test database under a directory subtree of our own
(unique unit codes), so petitions of other tests in the same database cannot leak in.

    ROOT (petition bureau)
    ├── A (department)  ── A1 (its county department)
    ├── B (department)
    └── P (procuratorate, profile "procuratorate")

Its units record no territory, so every report here rolls up by line (the definitions
and the territory roll-up: tests/test_report_definitions.py).

Period under test: March 2025 (Beijing time); the report is taken as of
2025-04-05 12:00 Beijing, so "pending" and "missed" deadlines are fixed.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from dataclasses import fields
from datetime import datetime
from decimal import Decimal
from itertools import count
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from adapters.tables import (
    AssistanceApplication,
    AssistancePayment,
    Escalation,
    Hearing,
    Petition,
    PetitionEvent,
    Unit,
)
from reports.metrics import RATE_BY_KEY, RATES, Figures
from reports.periods import PeriodError, PeriodKind, parse_period
from reports.render import as_csv, as_json, as_table
from reports.report import RollUp, build_report, build_trend
from tests.cli import petition
from tests.desk_helpers import OPAQUE_PERSONAL_DATA

BJ = ZoneInfo("Asia/Shanghai")
AS_OF = datetime(2025, 4, 5, 12, 0, tzinfo=BJ)
MARCH = parse_period("2025-03")
LINE = RollUp.LINE


def bj(*args: int) -> datetime:
    return datetime(*args, tzinfo=BJ)  # type: ignore[misc]


class DataSet:
    """Builds rows; remembers the unit codes of this test's private subtree."""

    def __init__(self, session: AsyncSession):
        self.session = session
        self.tag = uuid.uuid4().hex[:6].upper()
        self.seq = count(1)

    def code(self, short: str) -> str:
        return f"R{self.tag}-{short}"

    def unit(self, short: str, parent: str | None, kind: str = "government_department",
             profile: str = "national") -> str:
        code = self.code(short)
        up = self.code(parent) if parent else None
        # This tree is a line (reports by line): each unit's line superior is its parent.
        self.session.add(Unit(code=code, name=f"Report test unit {short}", kind=kind,
                              level="county", parent_code=up, line_parent_code=up,
                              profile=profile))
        return code

    async def petition(self, unit: str, registered: datetime, *, received: datetime | None = None,
                       stage: str = "registered", profile: str = "national",
                       events: tuple[tuple[str, datetime], ...] = (),
                       refused: tuple[tuple[str, datetime], ...] = (),
                       **columns: Any) -> Petition:
        n = next(self.seq)
        wid = f"petition-rpt-{self.tag}-{n}"
        row = Petition(
            intake_id=f"rpt-{self.tag}-{n}", workflow_id=wid, registration_no=f"{wid}-no",
            registered_unit=self.code(unit), holding_unit=self.code(unit), channel="letter",
            category="other", law_related=False, profile=profile, persons=1,
            matter_key=f"m-{self.tag}-{n}", **OPAQUE_PERSONAL_DATA,
            stage=stage, received_at=received or registered, registered_at=registered,
            **columns)
        self.session.add(row)
        await self.session.flush()
        for i, (action, at) in enumerate(events, start=1):
            self.event(row, i, action, at, accepted=True)
        for j, (action, at) in enumerate(refused, start=100):
            self.event(row, j, action, at, accepted=False)
        return row

    def event(self, row: Petition, seq: int, action: str, at: datetime, accepted: bool) -> None:
        self.session.add(PetitionEvent(
            petition_id=row.id, workflow_id=row.workflow_id,
            idempotency_key=f"{row.workflow_id}:{seq}:{action}", seq=seq, action=action,
            actor_id="x", actor_role="handler", actor_unit=row.holding_unit, accepted=accepted,
            refusal=None if accepted else "refused", at=at))

    def escalation(self, row: Petition, clock: str, level: int, due: datetime,
                   at: datetime | None = None, unit: str | None = None) -> None:
        self.session.add(Escalation(
            idempotency_key=f"{row.workflow_id}:esc:{clock}:{level}:{uuid.uuid4().hex[:6]}",
            petition_id=row.id, clock=clock, level=level,
            unit_code=self.code(unit) if unit else row.holding_unit,
            due_at=due, escalated_at=at or due))

    async def payment(self, row: Petition, no: int, amount: str, persons: int,
                      at: datetime) -> None:
        app = AssistanceApplication(
            idempotency_key=f"{row.workflow_id}:app:{no}", petition_id=row.id, application_no=no,
            kind="judicial", amount_yuan=Decimal(amount), persons=persons, reason_sealed=b"\x00",
            requested_by="x", status="paid", approved_amount_yuan=Decimal(amount),
            requested_at=at, decided_at=at)
        self.session.add(app)
        await self.session.flush()
        self.session.add(AssistancePayment(
            idempotency_key=f"{row.workflow_id}:pay:{no}", application_id=app.id,
            petition_id=row.id, amount_yuan=Decimal(amount), persons=persons,
            payment_ref=f"PAY-{row.workflow_id}-{no}", paid_at=at))

    def hearing(self, row: Petition, no: int, starts: datetime, outcome: str | None) -> None:
        self.session.add(Hearing(
            idempotency_key=f"{row.workflow_id}:hearing:{no}", petition_id=row.id, hearing_no=no,
            venue=f"room {self.tag}-{row.id}-{no}", starts_at=starts,
            ends_at=starts.replace(hour=starts.hour + 2), officers=["HO-01"], outcome=outcome,
            status="held" if outcome else "scheduled"))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def data(sessions: async_sessionmaker[AsyncSession]) -> DataSet:
    async with sessions() as session:
        ds = DataSet(session)
        ds.unit("ROOT", None, kind="petition_bureau")
        await session.flush()
        for short in ("A", "B"):
            ds.unit(short, "ROOT")
        ds.unit("P", "ROOT", kind="procuratorate", profile="procuratorate")
        await session.flush()
        ds.unit("A1", "A")
        await session.flush()
        await _build(ds)
        await session.commit()
    return ds


async def _build(ds: DataSet) -> None:
    # ---- timely acceptance and on-schedule completion (national profile)
    # A1: accepted in time, replied in time, satisfied.
    await ds.petition("A1", bj(2025, 3, 3, 10), stage="replied",
                      acceptance_due=bj(2025, 3, 19), handling_due=bj(2025, 5, 3),
                      accepted_at=bj(2025, 3, 5), replied_at=bj(2025, 3, 20),
                      satisfaction="satisfied",
                      events=(("accept", bj(2025, 3, 5)), ("reply", bj(2025, 3, 20))))
    # A1: accepted in time; replied after the extended handling deadline; unsatisfied.
    await ds.petition("A1", bj(2025, 3, 4, 9), stage="replied", extension_days=10,
                      acceptance_due=bj(2025, 3, 20), handling_due=bj(2025, 3, 25),
                      accepted_at=bj(2025, 3, 6), replied_at=bj(2025, 3, 26),
                      satisfaction="unsatisfied",
                      events=(("accept", bj(2025, 3, 6)), ("reply", bj(2025, 3, 26))))
    # A1: declined after the acceptance deadline; closed without review; repeats a case.
    late = await ds.petition("A1", bj(2025, 3, 5, 9), stage="closed", outcome="not_accepted",
                             acceptance_due=bj(2025, 3, 21), closed_at=bj(2025, 3, 24),
                             repeat_of="EARLIER-2024-000001",
                             events=(("decline", bj(2025, 3, 24)),),
                             refused=(("accept", bj(2025, 3, 6)),))
    ds.escalation(late, "acceptance", 1, bj(2025, 3, 21))
    await ds.payment(late, 1, "1000.50", 1, bj(2025, 3, 28))
    await ds.payment(late, 2, "2000.00", 2, bj(2025, 3, 29))
    # A1: a repeat visit on an open matter, attached to that case: not a petition of its own.
    await ds.petition("A1", bj(2025, 3, 6, 9), stage="closed", repeat_of="EARLIER-2024-000002",
                      attached_to="petition-some-open-case", closed_at=bj(2025, 3, 6, 9))
    # A: undecided, its deadline passed before the report: a miss.
    missed = await ds.petition("A", bj(2025, 3, 10, 9), acceptance_due=bj(2025, 3, 26),
                               repeat_visits=2)
    ds.escalation(missed, "acceptance", 1, bj(2025, 3, 26))
    ds.escalation(missed, "acceptance", 2, bj(2025, 3, 26), at=bj(2025, 3, 31, 9))
    ds.escalation(missed, "acceptance", 2, bj(2025, 3, 26), at=bj(2025, 4, 2))  # April
    # A: registered at 23:30 on 31 March Beijing time: still March. Not yet due: pending.
    await ds.petition("A", bj(2025, 3, 31, 23, 30), acceptance_due=bj(2025, 4, 16))
    # A: in handling, its handling deadline passed: a completion miss. Hearings held.
    handling = await ds.petition("A", bj(2025, 3, 2, 9), stage="in_handling",
                                 acceptance_due=bj(2025, 3, 18), handling_due=bj(2025, 4, 1),
                                 accepted_at=bj(2025, 3, 3),
                                 events=(("accept", bj(2025, 3, 3)),))
    ds.escalation(handling, "handling", 1, bj(2025, 4, 1))  # April: not in March
    ds.hearing(handling, 1, bj(2025, 3, 12, 9), "supported")
    ds.hearing(handling, 2, bj(2025, 3, 20, 9), "not_supported")
    ds.hearing(handling, 3, bj(2025, 3, 27, 9), None)  # scheduled, not held
    ds.hearing(handling, 4, bj(2025, 2, 27, 9), "adjourned")  # February
    # A: in handling, handling deadline not yet come: pending.
    await ds.petition("A", bj(2025, 3, 3, 9), stage="in_handling",
                      acceptance_due=bj(2025, 3, 19), handling_due=bj(2025, 5, 2),
                      accepted_at=bj(2025, 3, 4), events=(("accept", bj(2025, 3, 4)),))
    # Registered at 00:10 on 1 April Beijing time (still 31 March in UTC): April.
    await ds.petition("A", bj(2025, 4, 1, 0, 10), acceptance_due=bj(2025, 4, 17))

    # B: transferred on time; the acceptance_due now shows the receiving unit's clock.
    await ds.petition("B", bj(2025, 3, 3, 9), acceptance_due=bj(2025, 4, 20),
                      events=(("transfer", bj(2025, 3, 10)),))
    # B: transferred after its routing deadline had passed (escalated), then accepted.
    slow = await ds.petition("B", bj(2025, 3, 3, 9), stage="in_handling",
                             acceptance_due=bj(2025, 4, 12), handling_due=bj(2025, 5, 28),
                             accepted_at=bj(2025, 3, 28),
                             events=(("transfer", bj(2025, 3, 25)),
                                     ("accept", bj(2025, 3, 28))))
    ds.escalation(slow, "routing", 1, bj(2025, 3, 19))
    await ds.payment(slow, 1, "500.00", 1, bj(2025, 4, 2))  # April
    # B: withdrawn before any decision: not in timely acceptance; closed first time.
    await ds.petition("B", bj(2025, 3, 4, 9), stage="closed", outcome="withdrawn",
                      acceptance_due=bj(2025, 3, 20), closed_at=bj(2025, 3, 5),
                      events=(("withdraw", bj(2025, 3, 5)),))
    # B: concluded after review and re-review: closed, but not the first time.
    await ds.petition("B", bj(2025, 3, 1, 9), stage="closed", outcome="concluded",
                      acceptance_due=bj(2025, 3, 17), handling_due=bj(2025, 4, 30),
                      accepted_at=bj(2025, 3, 2), replied_at=bj(2025, 3, 9), reviewed=True,
                      closed_at=bj(2025, 4, 1), satisfaction="basically_satisfied",
                      events=(("accept", bj(2025, 3, 2)), ("reply", bj(2025, 3, 9))))

    # ---- procuratorate: 7-day reply and 3-month settlement
    proc: dict[str, Any] = {"profile": "procuratorate"}
    # Progress reply at 23:30 of the 7th day: met. Result within 3 months: met.
    await ds.petition("P", bj(2025, 3, 3, 9), stage="replied", handling_due=bj(2025, 6, 4),
                      replied_at=bj(2025, 4, 1),
                      events=(("progress_reply", bj(2025, 3, 10, 23, 30)),
                              ("reply", bj(2025, 4, 1))), **proc)
    # First reply at 00:30 of the 8th day: missed (a refused reply earlier does not count).
    await ds.petition("P", bj(2025, 3, 3, 9), stage="in_handling", handling_due=bj(2025, 6, 4),
                      events=(("progress_reply", bj(2025, 3, 11, 0, 30)),),
                      refused=(("reply", bj(2025, 3, 4)),), **proc)
    # Received by letter in December, registered in March: both periods run from receipt.
    await ds.petition("P", bj(2025, 3, 2, 9), received=bj(2024, 12, 20, 10), stage="replied",
                      handling_due=bj(2025, 3, 21), replied_at=bj(2025, 4, 1),
                      events=(("accept", bj(2025, 3, 5)), ("reply", bj(2025, 4, 1))), **proc)
    # Received 31 March: its 7 days are not over at the report: pending everywhere.
    await ds.petition("P", bj(2025, 3, 31, 20), handling_due=bj(2025, 7, 1), **proc)
    # Received 25 March, no reply by 2 April: a 7-day miss; settlement still pending.
    await ds.petition("P", bj(2025, 3, 25, 9), handling_due=bj(2025, 6, 26), **proc)
    # Withdrawn before any reply: left out of both.
    await ds.petition("P", bj(2025, 3, 4, 9), stage="closed", outcome="withdrawn",
                      handling_due=bj(2025, 6, 5), closed_at=bj(2025, 3, 5),
                      events=(("withdraw", bj(2025, 3, 5)),), **proc)


def _rows(report) -> dict[tuple[str, str], Figures]:  # type: ignore[no-untyped-def]
    return {(r.unit, r.scope): r.figures for r in report.rows}


def _rate(figures: Figures, key: str) -> tuple[int, int]:
    rate = RATE_BY_KEY[key]
    return getattr(figures, rate.numerator), getattr(figures, rate.denominator)


async def test_every_rate_on_the_hand_built_month(sessions, data):
    report = await build_report(sessions, data.code("A"), MARCH, as_of=AS_OF, by=LINE)
    rows = _rows(report)
    a_own, a1 = rows[(data.code("A"), "own")], rows[(data.code("A1"), "total")]
    a = rows[(data.code("A"), "total")]
    assert a1.registered == 3 and a_own.registered == 4 and a.registered == 7
    assert _rate(a1, "timely_acceptance") == (2, 3)
    assert _rate(a_own, "timely_acceptance") == (2, 3)  # two timely, one miss, one pending
    assert _rate(a, "timely_acceptance") == (4, 6)
    assert _rate(a1, "on_schedule_completion") == (1, 2)
    assert _rate(a_own, "on_schedule_completion") == (0, 1)
    assert _rate(a1, "satisfaction") == (1, 2)
    # Both opinions are still within their review window (pending); the decline is not in
    # the one-time resolution rate at all.
    assert _rate(a1, "one_time_resolution") == (0, 0)
    assert _rate(a_own, "one_time_resolution") == (0, 0)
    assert a_own.rate(RATE_BY_KEY["one_time_resolution"]) is None
    assert _rate(a1, "repeat_petition") == (1, 3) and _rate(a_own, "repeat_petition") == (1, 4)
    # National petitions are not measured on the procuratorate's rates.
    assert a.reply7_due == a.settle3_due == 0
    # Activity in March only: one petition escalated twice at level 2 counts once.
    assert (a1.overdue, a1.escalated_level2) == (1, 0)
    assert (a_own.overdue, a_own.escalated_level2) == (1, 1)
    assert (a1.assistance_cases, a1.assistance_persons, a1.assistance_yuan) == (
        1, 3, Decimal("3000.50"))
    assert a_own.hearings_held == 2
    assert a_own.hearing_outcomes == {"supported": 1, "partly_supported": 0,
                                      "not_supported": 1, "adjourned": 0}
    assert a.open_cases == 6 and a.closed == 1

    b = (await build_report(sessions, data.code("B"), MARCH, AS_OF, by=LINE)).total.figures
    assert b.registered == 4
    # A transfer is not a decision: the one transferred on 10 March is undecided and its
    # receiving clock (20 April) has not run out: pending. The one transferred late was
    # accepted on 28 March within the receiving clock (12 April): timely. The concluded
    # one was accepted in time. B is a department, so no routing rate.
    assert _rate(b, "timely_acceptance") == (2, 2)
    assert _rate(b, "timely_routing") == (0, 0) and b.transfers == 2
    assert _rate(b, "on_schedule_completion") == (1, 1)
    assert _rate(b, "satisfaction") == (1, 1)
    # Of the opinions, only the concluded one is settled, and it went to review.
    assert _rate(b, "one_time_resolution") == (0, 1)
    assert (b.overdue, b.escalated_level2, b.assistance_cases) == (1, 0, 0)

    p = (await build_report(sessions, data.code("P"), MARCH, AS_OF, by=LINE)).total.figures
    assert p.registered == 6
    assert _rate(p, "seven_day_reply") == (1, 4)
    assert _rate(p, "three_month_settlement") == (1, 2)
    assert _rate(p, "on_schedule_completion") == (1, 2)
    assert p.accept_due == 0 and p.rate(RATE_BY_KEY["timely_acceptance"]) is None


async def test_roll_up_is_the_sum_of_its_parts(sessions, data):
    report = await build_report(sessions, data.code("ROOT"), MARCH, as_of=AS_OF, by=LINE)
    rows = _rows(report)
    root = data.code("ROOT")
    assert [r.unit for r in report.rows] == [root, root, data.code("A"), data.code("B"),
                                             data.code("P")]
    parts = [rows[(root, "own")]] + [rows[(data.code(s), "total")] for s in ("A", "B", "P")]
    total = rows[(root, "total")]
    for f in fields(Figures):
        values = [getattr(part, f.name) for part in parts]
        if f.name == "hearing_outcomes":
            for key in total.hearing_outcomes:
                assert total.hearing_outcomes[key] == sum(v[key] for v in values)
        else:
            assert getattr(total, f.name) == sum(values), f.name
    assert total.registered == 17
    for rate in RATES:
        numerator = sum(getattr(p, rate.numerator) for p in parts)
        denominator = sum(getattr(p, rate.denominator) for p in parts)
        expected = numerator / denominator if denominator else None
        assert total.rate(rate) == expected, rate.key
    # Recomputed, not averaged: on-schedule completion 1/3 (A), 1/1 (B), 1/2 (P) -> 3/6,
    # where the mean of the three rates would be 0.611.
    assert _rate(total, "on_schedule_completion") == (3, 6)
    assert _rate(total, "timely_acceptance") == (6, 8)
    assert rows[(root, "own")].registered == 0


async def test_periods_with_nothing_in_them_show_n_a(sessions, data):
    for text in ("2025-05", "2025-W20", "2025-03-15", "2019"):
        report = await build_report(sessions, data.code("ROOT"), parse_period(text), AS_OF,
                                    by=LINE)
        figures = report.total.figures
        assert figures.registered == 0
        assert all(figures.rate(rate) is None for rate in RATES), text
        rendered = json.loads(as_json(report))
        assert all(v is None for v in rendered["rows"][0]["rates"].values())
        assert "n/a" in as_table(report)
        line = next(csv.DictReader(io.StringIO(as_csv(report))))
        assert line["satisfaction"] == "n/a" and line["registered"] == "0"


async def test_period_kinds_and_beijing_boundaries(sessions, data):
    root = data.code("ROOT")

    async def total(text: str) -> Figures:
        report = await build_report(sessions, root, parse_period(text), AS_OF, by=LINE)
        return report.total.figures

    day = await total("2025-03-03")
    assert day.registered == 6  # 3 March: A1, A, B (two), P (two)
    week = await total("2025-W10")
    assert week.registered == 10  # Monday 3 to Sunday 9 March
    april = await total("2025-04")
    assert april.registered == 1  # registered 00:10 on 1 April Beijing time
    assert (april.overdue, april.escalated_level2, april.assistance_cases) == (1, 1, 1)
    year = await total("2025")
    assert year.registered == 18
    assert year.hearings_held == 3  # February's hearing too


def test_period_parsing():
    assert parse_period("2026-10").kind is PeriodKind.MONTH
    week = parse_period("2026-W43")
    assert (week.first_day.isoformat(), week.end.date().isoformat()) == ("2026-10-19",
                                                                          "2026-10-26")
    assert parse_period("2026-12").shifted(1).label == "2027-01"
    assert [p.label for p in parse_period("2026-02").trend(3)] == ["2025-12", "2026-01",
                                                                  "2026-02"]
    assert parse_period("2026-10-05").start.isoformat() == "2026-10-05T00:00:00+08:00"
    for bad in ("2026-13", "2026-W54", "26-10", "October", "2026-02-30", "", "9999", "1989"):
        with pytest.raises(PeriodError):
            parse_period(bad)


async def test_trend_gives_one_figure_set_per_period(sessions, data):
    trend = await build_trend(sessions, data.code("ROOT"), parse_period("2025-04"), count=3,
                              as_of=AS_OF, by=LINE)
    assert [p.label for p in trend.periods] == ["2025-02", "2025-03", "2025-04"]
    assert trend.units[0] == data.code("ROOT") and len(trend.units) == 4
    assert [f[data.code("ROOT")].registered for f in trend.figures] == [0, 17, 1]


@pytest.mark.cli
async def test_report_command_table_csv_json_chart(db_url, data, tmp_path):
    root = data.code("ROOT")
    common = {"db_url": db_url, "address": "127.0.0.1:1", "task_queue": "unused"}
    as_of = ["--as-of", AS_OF.isoformat(), "--by", "line"]  # this tree is a line
    shown = await petition("report", "--unit", root, "--period", "2025-03", *as_of, **common)
    assert shown.code == 0, shown.err
    assert "Timely acceptance" in shown.out and "75.0% (6/8)" in shown.out
    assert "n/a" in shown.out  # ROOT's own column has nothing to measure

    as_json_out = await petition("report", "--unit", root, "--period", "2025-03", *as_of,
                                 "--format", "json", **common)
    body = json.loads(as_json_out.out)
    assert body["rows"][0]["rates"]["timely_acceptance"] == pytest.approx(6 / 8)
    assert body["rows"][1]["scope"] == "own"
    assert body["rows"][1]["rates"]["satisfaction"] is None
    assert body["rows"][0]["counts"]["assistance_yuan"] == "3000.50"

    as_csv_out = await petition("report", "--unit", root, "--period", "2025-03", *as_of,
                                "--format", "csv", **common)
    lines = list(csv.DictReader(io.StringIO(as_csv_out.out)))
    assert [line["unit"] for line in lines][:2] == [root, root]
    assert float(lines[0]["timely_acceptance"]) == pytest.approx(6 / 8)

    chart = tmp_path / "trend.png"
    drawn = await petition("report", "--unit", root, "--period", "2025-04", *as_of,
                           "--chart", str(chart), **common)
    assert drawn.code == 0, drawn.err
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and chart.stat().st_size > 20_000


@pytest.mark.cli
@pytest.mark.parametrize(("args", "message"), [
    (["--period", "2025-13"], "period '2025-13'"),
    (["--period", "March"], "not understood"),
    (["--unit", "NO-SUCH-UNIT"], "unknown unit 'NO-SUCH-UNIT'"),
    (["--as-of", "yesterday"], "--as-of"),
])
async def test_report_command_refuses_bad_input_clearly(db_url, data, args, message):
    base = {"--unit": data.code("ROOT"), "--period": "2025-03"}
    argv = ["report", "--by", "line"]
    for flag, value in base.items():
        if flag not in args:
            argv += [flag, value]
    result = await petition(*argv, *args, db_url=db_url, address="127.0.0.1:1",
                            task_queue="unused")
    assert result.code == 2, result.out
    assert message in result.err and "Traceback" not in result.err
