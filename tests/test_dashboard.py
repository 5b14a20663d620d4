"""Issue 15: the supervisors' dashboard (/dashboard) against the report it shows.

Hand-built rows (tests/test_reports.py's builder) on units of the sample directory, which
records territories and lines, in May 2024. The real application answers through ASGI
(PostgreSQL only, no Temporal): the page's figures are `build_report`'s, read back from the
`data-value` of every cell and compared with `as_json` for the same unit, period and
roll-up; every figure of every row lists exactly as many cases as it counts; the period,
roll-up, figure and row are checked; a handler of another unit is refused.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from zoneinfo import ZoneInfo

import httpx
import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from reports.metrics import COUNT_KEYS, FIGURE_KEYS, RATE_BY_KEY, RATES
from reports.periods import PeriodError, PeriodKind, current_period, parse_period
from reports.render import as_json
from reports.report import RollUp, build_case_list, build_report
from reports.svg import ChartText, Series, line_chart
from service.app import create_app
from service.auth.principal import SESSION_COOKIE
from service.pages_dashboard import SHOWN_COUNTS
from tests.service_helpers import service_settings
from tests.test_reports import DataSet

BJ = ZoneInfo("Asia/Shanghai")
MAY = "2024-05"
SUPERVISOR = "YZ-XFJ.sup"  # Yunzhou City bureau: the city and both counties below it


def may(day: int, hour: int = 9) -> datetime:
    return datetime(2024, 5, day, hour, tzinfo=BJ)


class SampleUnits(DataSet):
    """The builder of tests/test_reports.py on the sample directory's own unit codes."""

    def code(self, short: str) -> str:
        return short


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def may_2024(sessions: async_sessionmaker[AsyncSession]) -> SampleUnits:
    async with sessions() as session:
        ds = SampleUnits(session)
        # Qingshan's bureau routes one to the county HRSS in time; HRSS accepts it in time
        # and has not answered by its handling deadline (July 2024): a completion miss.
        await ds.petition("QS-XFJ", may(6), stage="in_handling", responsible_unit="QS-HRSS",
                          acceptance_due=may(28), handling_due=datetime(2024, 7, 1, tzinfo=BJ),
                          accepted_at=may(10), events=(("transfer", may(8)), ("accept", may(10))))
        # The bureau leaves one unrouted past its routing deadline: overdue, then level 2.
        late = await ds.petition("QS-XFJ", may(7), acceptance_due=may(10))
        ds.escalation(late, "routing", 1, may(10))
        ds.escalation(late, "routing", 2, may(10), at=may(20))
        # HRSS: accepted and answered in time, satisfied, closed without review.
        await ds.petition("QS-HRSS", may(8), stage="closed", outcome="resolved",
                          acceptance_due=may(24), handling_due=datetime(2024, 7, 8, tzinfo=BJ),
                          accepted_at=may(9), replied_at=may(30),
                          closed_at=datetime(2024, 6, 20, tzinfo=BJ), satisfaction="satisfied",
                          events=(("accept", may(9)), ("reply", may(30))))
        # HRSS: declined after its acceptance deadline; repeats an earlier case.
        await ds.petition("QS-HRSS", may(13), stage="closed", outcome="not_accepted",
                          acceptance_due=may(29), closed_at=may(31),
                          repeat_of="QS-HRSS-2023-000001", events=(("decline", may(31)),))
        # HRSS: in handling, a hearing held, assistance paid to two persons.
        held = await ds.petition("QS-HRSS", may(14), stage="in_handling", acceptance_due=may(30),
                                 handling_due=datetime(2024, 7, 12, tzinfo=BJ),
                                 accepted_at=may(15), events=(("accept", may(15)),))
        ds.hearing(held, 1, may(24), "supported")
        await ds.payment(held, 1, "1200.00", 2, may(27))
        # Qingshan's procuratorate answers a letter within 7 days.
        await ds.petition("QS-PROC", may(6), profile="procuratorate", stage="replied",
                          handling_due=datetime(2024, 8, 6, tzinfo=BJ), replied_at=may(30),
                          events=(("progress_reply", may(10)), ("reply", may(30))))
        # A township diverts a law-related matter; Baishui's HRSS accepts one.
        await ds.petition("QS-T1", may(20), stage="closed", outcome="diverted",
                          acceptance_due=datetime(2024, 6, 5, tzinfo=BJ), closed_at=may(22),
                          events=(("divert", may(22)),))
        await ds.petition("BS-HRSS", may(21), stage="in_handling", acceptance_due=datetime(
            2024, 6, 6, tzinfo=BJ), handling_due=datetime(2024, 7, 20, tzinfo=BJ),
            accepted_at=may(23), events=(("accept", may(23)),))
        await session.commit()
    return ds


@pytest_asyncio.fixture(loop_scope="session")
async def app(sessions: async_sessionmaker[AsyncSession]):  # type: ignore[no-untyped-def]
    return create_app(service_settings(), sessions=sessions, petitions=None)


async def _browser_of(app, person: str | None) -> httpx.AsyncClient:  # type: ignore[no-untyped-def]
    cookies = {}
    if person is not None:
        token, _ = app.state.ctx.tokens.issue("staff", person, timedelta(minutes=15))
        cookies[SESSION_COOKIE] = token
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test",
                             cookies=cookies)


class Cells(HTMLParser):
    """The figures table: (row key, figure) -> data-value; the case rows; the links."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[tuple[str, str], str] = {}
        self.cases: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "td" and a.get("data-figure") and a.get("data-row"):
            self.values[(str(a["data-row"]), str(a["data-figure"]))] = str(a["data-value"])
        if tag == "tr" and a.get("data-registration-no"):
            self.cases.append(str(a["data-registration-no"]))
        if tag == "a" and a.get("href"):
            self.links.append(str(a["href"]).replace("&amp;", "&"))


def _parsed(html: str) -> Cells:
    cells = Cells()
    cells.feed(html)
    return cells


CASES = [("YZ-XFJ", MAY, "territory"), ("QS-XFJ", "2024-Q2", "territory"),
         ("QS-HRSS", "2024", "territory"), ("YZ-XFJ", MAY, "line")]


@pytest.mark.parametrize(("unit", "period", "by"), CASES)
async def test_the_page_shows_exactly_the_reports_figures(sessions, may_2024, app, unit,
                                                          period, by):
    async with await _browser_of(app, SUPERVISOR) as http:
        page = await http.get("/dashboard", params={"unit": unit, "period": period, "by": by})
    assert page.status_code == 200, page.text
    shown = _parsed(page.text).values
    expected = json.loads(as_json(await build_report(sessions, unit, parse_period(period),
                                                     by=RollUp(by))))
    compared = 0
    for row in expected["rows"]:
        key = f"{row['unit']}:{row['scope']}"
        for rate in RATES:
            assert shown[(key, rate.key)] == json.dumps(row["rates"][rate.key]), (key, rate.key)
            compared += 1
        for count in SHOWN_COUNTS:
            assert shown[(key, count)] == json.dumps(row["counts"][count]), (key, count)
            compared += 1
    assert compared == len(shown)  # nothing on the page the report does not have
    if by == "territory" and unit != "QS-HRSS":
        assert expected["rows"][0]["counts"]["registered"] >= 7
    assert "—" in page.text or "%" in page.text


async def test_the_page_reads_as_a_chinese_supervisor_expects(may_2024, app):
    async with await _browser_of(app, SUPERVISOR) as http:
        page = await http.get("/dashboard", params={"unit": "QS-XFJ", "period": MAY})
    text = page.text
    assert page.status_code == 200
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert "<script" not in text
    for words in ("及时受理率", "按期办结率", "群众满意率", "一次性化解率", "青山县", "2024年5月",
                  "按属地汇总", "青山县人力资源和社会保障局", "比率（%）", "件数（件）",
                  "统计周期（月）", "2023年6月"):
        assert words in text, words
    # Rates as percentages: Qingshan decided 5 on acceptance, 4 in time (the decline was
    # late; the bureau's unrouted one is judged on routing, the procuratorate's letter on
    # its 7-day reply).
    assert re.search(r'data-row="QS:total" data-figure="timely_acceptance" '
                     r'data-value="0.8"><a href="[^"]+">80.0%</a><span class="detail">4/5', text)
    # The trend: two inline SVG charts with their accessible names, in the CJK font.
    assert text.count('<svg xmlns="http://www.w3.org/2000/svg"') == 2
    assert 'role="img"' in text and "<title id=\"trend-rates-title\">" in text
    assert "Noto Sans CJK SC" in text
    for technical in ("in_handling", "QS-HRSS:", "petition-rpt", "None", "null"):
        assert technical not in re.sub(r'data-[a-z-]+="[^"]*"|href="[^"]*"', "", text), technical


async def test_every_figure_lists_exactly_the_cases_it_counts(sessions, may_2024):
    period = parse_period(MAY)
    for unit, by in (("QS-XFJ", RollUp.TERRITORY), ("YZ-XFJ", RollUp.LINE)):
        report = await build_report(sessions, unit, period, by=by)
        nonzero = 0
        for row in report.rows:
            counts = row.figures.counts()
            for figure in FIGURE_KEYS:
                listed = await build_case_list(sessions, unit, period, figure, by=by,
                                               row=row.unit, scope=row.scope)
                met = sum(1 for e in listed.entries if e.met)
                rate = RATE_BY_KEY.get(figure)
                if rate is not None:
                    assert len(listed.entries) == counts[rate.denominator], (row, figure)
                    assert met == counts[rate.numerator], (row, figure)
                elif figure == "assistance_persons":
                    assert sum(e.persons or 0 for e in listed.entries) == counts[figure]
                elif figure == "assistance_yuan":
                    total = sum((e.yuan or Decimal(0) for e in listed.entries), Decimal(0))
                    assert total == counts[figure]
                else:
                    assert len(listed.entries) == counts[figure], (row.unit, row.scope, figure)
                nonzero += bool(listed.entries)
        assert nonzero >= 10  # the data set reaches most figures
    assert set(FIGURE_KEYS) == {*RATE_BY_KEY, *COUNT_KEYS}


async def test_a_figures_link_lists_its_cases_with_their_links(sessions, may_2024, app):
    async with await _browser_of(app, SUPERVISOR) as http:
        page = await http.get("/dashboard", params={"unit": "QS-XFJ", "period": MAY})
        links = [link for link in _parsed(page.text).links if link.startswith("/dashboard/cases")]
        assert links
        report = await build_report(sessions, "QS-XFJ", parse_period(MAY))
        checked = 0
        for link in links:
            query = dict(httpx.URL(link).params)
            answer = await http.get(link)
            assert answer.status_code == 200, (link, answer.text)
            row = next(r for r in report.rows
                       if (r.unit, r.scope) == (query["row"], query["scope"]))
            rate = RATE_BY_KEY.get(query["figure"])
            expected = row.figures.counts()[rate.denominator if rate else query["figure"]]
            cases = _parsed(answer.text).cases
            if query["figure"] not in ("assistance_persons", "assistance_yuan"):
                assert len(cases) == expected, link
            assert f'data-count="{len(cases)}"' in answer.text
            checked += 1
    assert checked >= 10
    # One list in full: the bureau's transfer, its workbench page and its Temporal history.
    async with await _browser_of(app, SUPERVISOR) as http:
        answer = await http.get("/dashboard/cases", params={
            "unit": "QS-XFJ", "period": MAY, "figure": "timely_acceptance", "row": "QS",
            "scope": "total"})
    text = answer.text
    assert "按期决定" in text and "未达标" in text and "达标" in text
    assert "/workbench/cases/petition-rpt-" in text
    assert f"http://localhost:8233/namespaces/default/workflows/petition-rpt-{may_2024.tag}-" \
        in text
    assert "2024年5月13日" in text  # registered, Beijing date


@pytest.mark.parametrize(("params", "status"), [
    ({"period": "2024-13"}, 400),
    ({"period": "2024-W10"}, 400),  # weeks and days are not dashboard periods
    ({"period": "2024-05-01"}, 400),
    ({"period": "May"}, 400),
    ({"by": "province"}, 400),
    ({"unit": "NO-SUCH-UNIT"}, 403),
    ({"unit": "PROV-XFJ"}, 403),  # above the supervisor's unit
])
async def test_the_period_rollup_and_unit_are_checked(may_2024, app, params, status):
    async with await _browser_of(app, SUPERVISOR) as http:
        page = await http.get("/dashboard", params={"unit": "QS-XFJ", "period": MAY, **params})
        cases = await http.get("/dashboard/cases", params={
            "unit": "QS-XFJ", "period": MAY, "figure": "registered", **params})
    assert page.status_code == status, page.text
    assert cases.status_code == status, cases.text
    assert "Traceback" not in page.text and "返回考核统计" in page.text


@pytest.mark.parametrize(("params", "status"), [
    ({"figure": "no_such_figure"}, 400),
    ({"figure": "registered", "scope": "everything"}, 400),
    ({"figure": "registered", "row": "BS"}, 404),  # not a row of Qingshan's report
    ({"figure": "registered", "row": "QS", "scope": "own"}, 404),  # a territory: no own row
])
async def test_a_drill_down_names_a_figure_and_a_row_of_the_report(may_2024, app, params,
                                                                   status):
    async with await _browser_of(app, SUPERVISOR) as http:
        answer = await http.get("/dashboard/cases",
                                params={"unit": "QS-XFJ", "period": MAY, **params})
    assert answer.status_code == status, answer.text


async def test_who_may_watch_which_unit(may_2024, app):
    async with await _browser_of(app, None) as http:
        anonymous = await http.get("/dashboard")
    assert anonymous.status_code == 303
    assert anonymous.headers["location"].startswith("/signin?next=%2Fdashboard")
    async with await _browser_of(app, "BS-HRSS.h1") as http:
        other = await http.get("/dashboard", params={"unit": "QS-HRSS", "period": MAY})
        other_cases = await http.get("/dashboard/cases", params={
            "unit": "QS-HRSS", "period": MAY, "figure": "registered"})
        own = await http.get("/dashboard", params={"period": MAY})
    assert other.status_code == 403 and "无权查看" in other.text
    assert other_cases.status_code == 403
    assert own.status_code == 200 and "白水县人力资源和社会保障局" in own.text
    # A handler chooses only their own unit; a supervisor their unit and those below.
    assert own.text.count("<option value=\"BS-") == 1
    async with await _browser_of(app, "QS-HRSS.h1") as http:
        above = await http.get("/dashboard", params={"unit": "QS-XFJ", "period": MAY})
    assert above.status_code == 403
    async with await _browser_of(app, SUPERVISOR) as http:
        page = await http.get("/dashboard", params={"period": MAY})
    options = re.findall(r'<option value="([A-Z0-9-]+)"', page.text)
    assert options[0] == "YZ-XFJ" and {"QS-HRSS", "BS-T2", "QS-XFJ"} <= set(options)
    assert "YZ-HRSS" not in options and "PROV-XFJ" not in options


async def test_the_views_open_the_temporal_ui_filtered_on_the_reports_units(may_2024, app):
    async with await _browser_of(app, SUPERVISOR) as http:
        page = await http.get("/dashboard", params={"unit": "QS-HRSS", "period": MAY})
    views = [link for link in _parsed(page.text).links if "/namespaces/default/workflows?query="
             in link]
    assert len(views) == 7
    query = httpx.URL(views[0]).params["query"]
    assert query == ("WorkflowType = 'PetitionWorkflow' AND ExecutionStatus = 'Running' AND "
                     "ResponsibleUnit = 'QS-HRSS'")


def test_quarters_are_periods():
    q = parse_period("2026-Q3")
    assert (q.kind, q.label, q.start.isoformat(), q.end.isoformat()) == (
        PeriodKind.QUARTER, "2026-Q3", "2026-07-01T00:00:00+08:00", "2026-10-01T00:00:00+08:00")
    assert [p.label for p in q.trend(3)] == ["2026-Q1", "2026-Q2", "2026-Q3"]
    assert q.shifted(2).label == "2027-Q1"
    assert current_period(PeriodKind.QUARTER, datetime(2026, 12, 31, 20, tzinfo=BJ)).label \
        == "2026-Q4"
    for bad in ("2026-Q0", "2026-Q5", "2026-q1"):
        with pytest.raises(PeriodError):
            parse_period(bad)


def test_the_line_chart_breaks_where_nothing_was_measured():
    text = ChartText("c", "标题 <&>", "说明", "统计周期（月）", "比率（%）", "无数据")
    svg = line_chart(text, ["1月", "2月", "3月", "4月"],
                     [Series("及时受理率", [0.5, None, 1.0, 0.75])])
    assert svg.count("<polyline") == 1  # 3月-4月; 1月 stands alone
    assert "标题 &lt;&amp;&gt;" in svg and 'aria-labelledby="c-title c-desc"' in svg
    assert svg.count("<circle") == 1 + 3  # the legend's marker and three points
    empty = line_chart(text, ["1月"], [Series("及时受理率", [None])])
    assert "无数据" in empty and "<polyline" not in empty
