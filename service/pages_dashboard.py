"""The supervisors' dashboard (issue 15): the assessment figures of a unit and a period, their
trend, the cases behind each figure, and the supervisor views of the Temporal Web UI.

- `GET /dashboard?unit=&period=&by=`: a unit the person may watch (supervisors, leaders
  and unit heads: their unit and every unit below it -- in the escalation chain, the
  superior bureau's or the line's -- leaders also the units they supervise; handlers and
  clerks their own unit), a month, quarter or year, rolled up by territory or by line.
  The figures are `reports.report.build_report`'s, exactly those of `petition report`;
  the trend is `build_trend`'s, drawn as inline SVG (reports/svg.py) with the same
  figures in a table.
- `GET /dashboard/cases?unit=&period=&by=&figure=&row=&scope=`: the cases behind one figure
  of one row of that report (`build_case_list`: the very rows the figure counts), each with
  its workbench page and its history in the Temporal Web UI (PETITION_SERVICE_TEMPORAL_UI_URL;
  the workflow id is a keyed hash, no personal data).

No script (CSP default-src 'none'): plain GET forms and links.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Request, Response
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import select

from adapters.tables import Unit
from documents.render import beijing_date as deadline_date
from documents.render import beijing_datetime
from domain.models import Actor, HearingOutcome, Outcome, Role, Stage
from reports.metrics import COUNT_KEYS, RATE_BY_KEY, RATES, Rate, UnknownUnitError
from reports.periods import (
    BEIJING,
    PeriodError,
    PeriodKind,
    ReportPeriod,
    current_period,
    parse_period,
)
from reports.render import to_dict
from reports.report import (
    CaseList,
    Report,
    RollUp,
    Trend,
    build_case_list,
    build_report,
    build_trend,
)
from reports.svg import ChartText, Series, bar_chart, line_chart
from reports.views import saved_views, ui_link
from service.access import unit_refusal
from service.context import ServiceContext, context
from service.i18n import N_, gettext
from service.pages import (
    PageRoute,
    _split_bilingual,
    language,
    message_page,
    render,
    signed_in_staff,
    staff_frame,
    to_signin,
)
from service.pages_track import beijing_date as day_of

LOG = logging.getLogger("petition.service.dashboard")

Ctx = Annotated[ServiceContext, Depends(context)]
router = APIRouter(route_class=PageRoute, include_in_schema=False)


class DashboardSettings(BaseSettings):
    """Where the supervisors' Temporal Web UI is (environment prefix PETITION_SERVICE_)."""

    model_config = SettingsConfigDict(env_prefix="PETITION_SERVICE_", env_file=".env",
                                      extra="ignore")
    temporal_ui_url: str = "http://localhost:8233"
    temporal_namespace: str = "default"


@lru_cache(maxsize=1)
def dashboard_settings() -> DashboardSettings:
    return DashboardSettings()


PERIOD_KINDS = (PeriodKind.MONTH, PeriodKind.QUARTER, PeriodKind.YEAR)
TREND_LENGTH = {PeriodKind.MONTH: 12, PeriodKind.QUARTER: 8, PeriodKind.YEAR: 6}
CHOICES = {PeriodKind.MONTH: 24, PeriodKind.QUARTER: 8, PeriodKind.YEAR: 6}
OVERVIEW_ROLES = frozenset({Role.SUPERVISOR, Role.LEADER, Role.UNIT_HEAD})
MAX_LISTED = 1000

# The figures in the words of the assessment (信访工作条例, the procuratorate's 7日内程序性回复
# and 3个月内办理结果答复), with what each counts.
RATE_WORDS: dict[str, tuple[str, str]] = {
    "timely_acceptance": (
        N_("及时受理率"),
        N_("已决定是否受理的事项中，在决定单位受理期限内作出决定的比例（含逾期仍未决定的事项）")),
    "timely_routing": (
        N_("按期转送交办率"),
        N_("信访部门转送、交办的事项中，在转送交办期限内办理的比例")),
    "on_schedule_completion": (
        N_("按期办结率"),
        N_("在办理期限（含经批准延长的期限）内出具处理意见的比例")),
    "seven_day_reply": (
        N_("7日内程序性回复率"),
        N_("检察机关：收到信访之日起7日内作出程序性回复的比例")),
    "three_month_settlement": (
        N_("3个月内办理结果答复率"),
        N_("检察机关：收到信访之日起3个月内答复办理结果的比例")),
    "satisfaction": (
        N_("群众满意率"),
        N_("参评事项中，评价为满意或基本满意的比例")),
    "one_time_resolution": (
        N_("一次性化解率"),
        N_("已出具处理意见的事项中，未经复查即办结的比例")),
    "repeat_petition": (
        N_("重复信访率"),
        N_("登记事项中，重复信访或有重复来访的比例")),
}
COUNT_WORDS: dict[str, str] = {
    "registered": N_("登记信访事项"),
    "accept_timely": N_("按期决定是否受理"),
    "accept_due": N_("应决定是否受理"),
    "route_timely": N_("按期转送交办"),
    "route_due": N_("应转送交办"),
    "complete_on_time": N_("按期办结"),
    "complete_due": N_("应办结"),
    "reply7_met": N_("7日内程序性回复"),
    "reply7_due": N_("应作程序性回复"),
    "settle3_met": N_("3个月内答复办理结果"),
    "settle3_due": N_("应答复办理结果"),
    "content": N_("满意或基本满意"),
    "rated": N_("参评满意度"),
    "resolved_first_time": N_("一次性化解"),
    "opinions_settled": N_("已出具处理意见且已定"),
    "repeats": N_("重复信访"),
    "open_cases": N_("尚未办结"),
    "closed": N_("已办结"),
    "transfers": N_("转送、交办（次）"),
    "diversions": N_("诉访分离，导入法定途径"),
    "overdue": N_("超期（向包案领导预警）"),
    "escalated_level2": N_("上级信访部门督办"),
    "assistance_cases": N_("发放救助（件）"),
    "assistance_persons": N_("发放救助（人）"),
    "assistance_yuan": N_("发放救助金额（元）"),
    "hearings_held": N_("举行听证（场）"),
    "hearings_supported": N_("听证结论：支持"),
    "hearings_partly_supported": N_("听证结论：部分支持"),
    "hearings_not_supported": N_("听证结论：不支持"),
    "hearings_adjourned": N_("听证结论：休会再议"),
}
# The counts the dashboard shows (the components of the rates are reached from the rates).
SHOWN_COUNTS = ("registered", "open_cases", "closed", "transfers", "diversions", "overdue",
                "escalated_level2", "assistance_cases", "assistance_persons", "assistance_yuan",
                "hearings_held", *(f"hearings_{o.value}" for o in HearingOutcome))
MAIN_RATES = ("timely_acceptance", "timely_routing", "on_schedule_completion", "satisfaction",
              "one_time_resolution", "repeat_petition")
CHARTED_RATES = ("timely_acceptance", "on_schedule_completion", "satisfaction",
                 "one_time_resolution")
CHARTED_COUNTS = ("registered", "closed", "overdue")
STAGE_NAMES: dict[str, str] = {
    Stage.REGISTERED: N_("已登记，待决定是否受理"),
    Stage.IN_HANDLING: N_("办理中"),
    Stage.REPLIED: N_("已出具处理意见"),
    Stage.UNDER_REVIEW: N_("复查中"),
    Stage.REVIEW_REPLIED: N_("已出具复查意见"),
    Stage.UNDER_RE_REVIEW: N_("复核中"),
    Stage.CLOSED: N_("已办结"),
}
OUTCOME_NAMES: dict[str, str] = {
    Outcome.RESOLVED: N_("已办结（已化解）"),
    Outcome.NOT_ACCEPTED: N_("已办结（不予受理）"),
    Outcome.DIVERTED: N_("已办结（导入法定途径）"),
    Outcome.WITHDRAWN: N_("已办结（已撤回）"),
    Outcome.CONCLUDED: N_("已办结（复核终结）"),
}
VIEW_WORDS: dict[str, tuple[str, str]] = {
    "open": (N_("在办信访事项"), N_("尚未办结的全部事项")),
    "overdue": (N_("超期事项"), N_("期限已过、已向包案领导预警的在办事项")),
    "escalated_level2": (N_("上级督办事项"), N_("超期后已报上级信访部门督办的在办事项")),
    "due_this_week": (N_("本周到期事项"), N_("下一期限在本周（北京时间）届满的在办事项")),
    "diverted_law_related": (N_("诉访分离事项"), N_("涉法涉诉、已导入诉讼等法定途径的事项")),
    "concluded_this_month": (N_("本月复核终结事项"), N_("本月出具复核意见、已终结的事项")),
    "closed_this_month": (N_("本月办结事项"), N_("本月办结的全部事项，不论结果")),
}
BY_WORDS = {RollUp.TERRITORY: N_("按属地汇总（本地区全部单位）"),
            RollUp.LINE: N_("按条线汇总（本系统上下级单位）")}
KIND_WORDS = {PeriodKind.MONTH: N_("月度"), PeriodKind.QUARTER: N_("季度"),
              PeriodKind.YEAR: N_("年度")}
AXIS_WORDS = {PeriodKind.MONTH: N_("统计周期（月）"), PeriodKind.QUARTER: N_("统计周期（季度）"),
              PeriodKind.YEAR: N_("统计周期（年）")}
MONTHS_EN = ("January", "February", "March", "April", "May", "June", "July", "August",
             "September", "October", "November", "December")


def period_name(period: ReportPeriod, lang: str) -> str:
    """2026年3月 / 2026年第1季度 / 2026年 (English: March 2026 / Q1 2026 / 2026)."""
    d = period.first_day
    if period.kind is PeriodKind.MONTH:
        return f"{MONTHS_EN[d.month - 1]} {d.year}" if lang == "en" else f"{d.year}年{d.month}月"
    if period.kind is PeriodKind.QUARTER:
        q = (d.month - 1) // 3 + 1
        return f"Q{q} {d.year}" if lang == "en" else f"{d.year}年第{q}季度"
    if period.kind is PeriodKind.YEAR:
        return str(d.year) if lang == "en" else f"{d.year}年"
    return period.label


def _name(text: str, lang: str) -> str:
    """A directory name ("中文名 English name") in the page's language."""
    zh, en = _split_bilingual(text)
    return (en or zh) if lang == "en" else zh


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _amount(value: Any) -> str:
    if isinstance(value, Decimal | str) and not isinstance(value, int):
        return f"{Decimal(value):,.2f}"
    return f"{value:,}"


# ------------------------------------------------------------------- who may watch what


async def watchable_units(ctx: ServiceContext, actor: Actor) -> list[str]:
    """The units `actor` may watch: their own; for supervisors, leaders and unit heads
    also every unit below it along the links `service.access` walks up (parent, superior
    bureau, line superior), and for a leader the units they supervise and those below."""
    async with ctx.sessions() as session:
        rows = (await session.execute(select(
            Unit.code, Unit.parent_code, Unit.superior_bureau_code, Unit.line_parent_code,
            Unit.supervising_leader_id))).all()
    known = {r.code for r in rows}
    if actor.unit not in known:
        return []
    if actor.role not in OVERVIEW_ROLES:
        return [actor.unit]
    below: dict[str, set[str]] = {}
    for r in rows:
        for up in (r.parent_code, r.superior_bureau_code, r.line_parent_code):
            if up:
                below.setdefault(up, set()).add(r.code)
    start = {actor.unit}
    if actor.role is Role.LEADER:
        start |= {r.code for r in rows if r.supervising_leader_id == actor.id}
    seen, stack = set(start), list(start)
    while stack:
        for code in below.get(stack.pop(), ()):
            if code not in seen:
                seen.add(code)
                stack.append(code)
    return sorted(seen)


async def _unit_names(ctx: ServiceContext) -> dict[str, str]:
    async with ctx.sessions() as session:
        return {code: name for code, name in (await session.execute(
            select(Unit.code, Unit.name))).all()}


@dataclass(frozen=True)
class _Asked:
    unit: str
    period: ReportPeriod
    by: RollUp


async def _ask(request: Request, ctx: ServiceContext, actor: Actor, unit: str | None,
               period: str | None, by: str | None) -> _Asked | Response:
    """The unit, period and roll-up asked for, or the page that says why not."""
    chosen = (unit or actor.unit or "").strip()
    try:
        asked = parse_period(period) if period else current_period(PeriodKind.MONTH)
    except PeriodError:
        asked = None
    if asked is None or asked.kind not in PERIOD_KINDS:
        return _refusal(request, 400, N_("统计周期无效"),
                        N_("请选择月度（如 2026-03）、季度（如 2026-Q1）或年度（如 2026）"
                           "统计周期。"))
    if by not in (None, "", *RollUp):
        return _refusal(request, 400, N_("汇总方式无效"), N_("请选择按属地或按条线汇总。"))
    allowed = await watchable_units(ctx, actor)
    if chosen not in allowed or await unit_refusal(ctx, actor, chosen) is not None:
        LOG.info("dashboard of %r refused to %s (%s, %s)", chosen[:64], actor.id,
                 actor.role.value, actor.unit)
        return _refusal(request, 403, N_("无权查看"),
                        N_("您只能查看本单位及下级单位的考核数据。"))
    return _Asked(chosen, asked, RollUp(by) if by else RollUp.TERRITORY)


async def _watcher(request: Request, ctx: ServiceContext, unit: str | None,
                   period: str | None, by: str | None) -> tuple[Actor, _Asked] | Response:
    """Who is signed in and what they asked for, or the page to answer instead (the
    sign-in, or why not)."""
    actor = await signed_in_staff(request, ctx)
    if actor is None:
        return to_signin(request)
    asked = await _ask(request, ctx, actor, unit, period, by)
    return asked if isinstance(asked, Response) else (actor, asked)


def _here(request: Request) -> str:
    """This page with its query: where the language switch comes back to."""
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def _refusal(request: Request, status: int, heading: str, message: str,
             back: str = "/dashboard") -> Response:
    return message_page(status, heading, message, link=back, link_text=N_("返回考核统计"),
                        request=request)


def _query(asked: _Asked, **more: str) -> str:
    return urlencode({"unit": asked.unit, "period": asked.period.label, "by": str(asked.by),
                      **more})


# ------------------------------------------------------------------- the dashboard


def _period_choices(chosen: ReportPeriod, lang: str) -> list[dict[str, Any]]:
    groups = []
    for kind in PERIOD_KINDS:
        latest = current_period(kind)
        options = [latest.shifted(-i) for i in range(CHOICES[kind])]
        if chosen.kind is kind and chosen not in options:
            options.append(chosen)
        groups.append({"label": KIND_WORDS[kind], "options": [
            {"value": p.label, "text": period_name(p, lang), "selected": p == chosen}
            for p in options]})
    return groups


def _cells(report: Report, asked: _Asked, lang: str) -> dict[str, Any]:
    """The report as the page shows it: per figure, per row, the value of `as_json` (the
    `data-value` a test compares), its text and the link to the cases behind it."""
    data = to_dict(report)
    columns = [{"key": f"{r['unit']}:{r['scope']}", "name": _name(r["name"], lang),
                "scope": r["scope"], "node": r["node"]} for r in data["rows"]]

    def link(row: dict[str, Any], figure: str) -> str:
        return "/dashboard/cases?" + _query(asked, figure=figure, row=row["unit"],
                                            scope=row["scope"])

    rates = []
    for rate in RATES:
        cells = []
        for row, shown in zip(data["rows"], report.rows, strict=True):
            value = row["rates"][rate.key]
            num, den = getattr(shown.figures, rate.numerator), getattr(shown.figures,
                                                                       rate.denominator)
            cells.append({"value": json.dumps(value), "text": _percent(value),
                          "detail": f"{num}/{den}" if den else "",
                          "href": link(row, rate.key) if den else ""})
        rates.append({"key": rate.key, "label": RATE_WORDS[rate.key][0],
                      "definition": RATE_WORDS[rate.key][1], "cells": cells})
    counts = []
    for key in SHOWN_COUNTS:
        cells = []
        for row in data["rows"]:
            value = row["counts"][key]
            cells.append({"value": json.dumps(value), "text": _amount(value), "detail": "",
                          "href": link(row, key) if Decimal(str(value)) else ""})
        counts.append({"key": key, "label": COUNT_WORDS[key], "cells": cells})
    return {"columns": columns, "rates": rates, "counts": counts}


def _parts(rate: Rate) -> tuple[str, str]:
    """A rate's numerator and denominator in words."""
    return COUNT_WORDS[rate.numerator], COUNT_WORDS[rate.denominator]


def _tiles(report: Report, asked: _Asked) -> list[dict[str, Any]]:
    total = report.total
    tiles = []
    for key in MAIN_RATES:
        rate = RATE_BY_KEY[key]
        num, den = getattr(total.figures, rate.numerator), getattr(total.figures,
                                                                   rate.denominator)
        tiles.append({"key": key, "label": RATE_WORDS[key][0], "value": _percent(
            total.figures.rate(rate)), "num": num, "den": den,
            "parts": _parts(rate),
            "href": "/dashboard/cases?" + _query(asked, figure=key, row=total.unit,
                                                 scope="total") if den else ""})
    return tiles


def _charts(trend: Trend, lang: str) -> dict[str, Any]:
    root = trend.unit
    labels = [period_name(p, lang) for p in trend.periods]
    figures = [f[root] for f in trend.figures]
    rates = [Series(gettext(lang, RATE_WORDS[k][0]), [f.rate(RATE_BY_KEY[k]) for f in figures])
             for k in CHARTED_RATES]
    counts = [Series(gettext(lang, COUNT_WORDS[k]), [float(getattr(f, k)) for f in figures])
              for k in CHARTED_COUNTS]
    span = f" ({labels[0]} – {labels[-1]})" if lang == "en" else f"（{labels[0]}—{labels[-1]}）"
    axis = gettext(lang, AXIS_WORDS[trend.periods[-1].kind])
    rate_chart = line_chart(ChartText(
        "trend-rates", gettext(lang, "主要考核比率趋势") + span,
        gettext(lang, "折线图：各统计周期的及时受理率、按期办结率、群众满意率和一次性化解率，"
                      "单位为百分比；无可计算事项的周期不画点。数据见下表。"),
        axis, gettext(lang, "比率（%）"), gettext(lang, "各周期均无可计算的事项")),
        labels, rates)
    count_chart = bar_chart(ChartText(
        "trend-counts", gettext(lang, "登记、办结和超期件数趋势") + span,
        gettext(lang, "柱状图：各统计周期登记的信访事项件数、其中已办结件数和当期超期件数，"
                      "单位为件。数据见下表。"),
        axis, gettext(lang, "件数（件）"), ""), labels, counts)
    table = [{"period": label,
              "rates": [_percent(s.values[i]) for s in rates],
              "counts": [f"{int(s.values[i] or 0):,}" for s in counts]}
             for i, label in enumerate(labels)]
    return {"rates_svg": rate_chart, "counts_svg": count_chart, "table": table,
            "rate_names": [s.name for s in rates], "count_names": [s.name for s in counts]}


def _views(units: list[str]) -> list[dict[str, str]]:
    """The supervisor views of the Temporal Web UI for the report's units, as ready links
    (docs/dashboard.md: why links, not views stored in the UI)."""
    settings = dashboard_settings()
    return [{"key": v.key, "title": VIEW_WORDS[v.key][0], "note": VIEW_WORDS[v.key][1],
             "href": ui_link(v, settings.temporal_ui_url, settings.temporal_namespace)}
            for v in saved_views(units) if v.key in VIEW_WORDS]


@router.get("/dashboard", name="dashboard")
async def dashboard(request: Request, ctx: Ctx, unit: str | None = None,
                    period: str | None = None, by: str | None = None) -> Response:
    found = await _watcher(request, ctx, unit, period, by)
    if isinstance(found, Response):
        return found
    actor, asked = found
    lang = language(request)
    as_of = datetime.now(UTC)
    try:
        report = await build_report(ctx.sessions, asked.unit, asked.period, as_of, asked.by)
        trend = await build_trend(ctx.sessions, asked.unit, asked.period,
                                  TREND_LENGTH[asked.period.kind], as_of, asked.by)
    except UnknownUnitError:
        return _refusal(request, 404, N_("无法按所选方式汇总"),
                        N_("该单位在组织机构目录中没有所属地区，请改为按条线汇总。"))
    names = await _unit_names(ctx)
    choices = sorted(await watchable_units(ctx, actor),
                     key=lambda c: (c != actor.unit, _split_bilingual(names.get(c, c))[0]))
    return render(
        "dashboard.html", request=request, heading=N_("考核统计"), nav="dashboard",
        here_with_query=_here(request),
        staff=await staff_frame(ctx, actor),
        units=[{"code": c, "name": _name(names.get(c, c), lang), "selected": c == asked.unit}
               for c in choices],
        by=str(asked.by), by_words=BY_WORDS, periods=_period_choices(asked.period, lang),
        subject=_name(report.total.name, lang), period_name=period_name(asked.period, lang),
        as_of=as_of.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M") if lang == "en"
        else beijing_datetime(as_of),
        tiles=_tiles(report, asked), table=_cells(report, asked, lang),
        charts=_charts(trend, lang), views=_views(list(report.units)),
        ui_url=dashboard_settings().temporal_ui_url)


# ------------------------------------------------------------------- the cases behind


@router.get("/dashboard/cases", name="dashboard_cases")
async def dashboard_cases(request: Request, ctx: Ctx, figure: str = "",
                          unit: str | None = None, period: str | None = None,
                          by: str | None = None, row: str | None = None,
                          scope: str = "total") -> Response:
    found = await _watcher(request, ctx, unit, period, by)
    if isinstance(found, Response):
        return found
    actor, asked = found
    back = "/dashboard?" + _query(asked)
    if figure not in RATE_BY_KEY and figure not in COUNT_KEYS or scope not in ("total", "own"):
        return _refusal(request, 400, N_("统计指标无效"),
                        N_("请从考核统计页面点击指标查看明细。"), back)
    try:
        listed = await build_case_list(ctx.sessions, asked.unit, asked.period, figure,
                                       by=asked.by, row=row or None, scope=scope)
    except UnknownUnitError:
        return _refusal(request, 404, N_("没有这一栏"),
                        N_("所选单位不在该统计范围内，请从考核统计页面重新进入。"), back)
    lang = language(request)
    return render("dashboard_cases.html", request=request, heading=N_("指标明细"),
                  nav="dashboard", staff=await staff_frame(ctx, actor),
                  here_with_query=_here(request),
                  **_case_page(listed, asked, lang))


def _case_page(listed: CaseList, asked: _Asked, lang: str) -> dict[str, Any]:
    settings = dashboard_settings()
    ui = settings.temporal_ui_url.rstrip("/")
    namespace = quote(settings.temporal_namespace, safe="")
    rate = RATE_BY_KEY.get(listed.figure)
    figure_words = RATE_WORDS[rate.key][0] if rate else COUNT_WORDS[listed.figure]
    row_name = _name(listed.names.get(listed.row, listed.row), lang)
    if listed.scope == "own":
        row_name += gettext(lang, "（本级）")
    entries = listed.entries
    rows = [{
        "registration_no": e.registration_no,
        "workbench": f"/workbench/cases/{quote(e.registration_no, safe='')}",
        "history": f"{ui}/namespaces/{namespace}/workflows/{quote(e.workflow_id, safe='')}",
        "stage": _stage_words(e.stage, e.outcome),
        "unit": _name(listed.names.get(e.unit, e.unit), lang),
        "registered": _date(day_of(e.registered_at), lang),
        "deadline": _date(deadline_date(e.next_deadline), lang)
        if e.next_deadline and e.stage != Stage.CLOSED else "",
        "overdue": e.overdue and e.stage != Stage.CLOSED,
        "escalated": e.escalation_level >= 2 and e.stage != Stage.CLOSED,
        "met": e.met,
        "persons": e.persons,
        "yuan": _amount(e.yuan) if e.yuan is not None else "",
    } for e in entries[:MAX_LISTED]]
    met = sum(1 for e in entries if e.met)
    return {
        "figure": listed.figure, "figure_words": figure_words,
        "definition": RATE_WORDS[rate.key][1] if rate else "",
        "parts": _parts(rate) if rate else None,
        "is_rate": rate is not None,
        "is_assistance": listed.figure.startswith("assistance_"),
        "row_name": row_name, "period_name": period_name(asked.period, lang),
        "by_words": BY_WORDS[asked.by], "count": len(entries), "met": met,
        "rate_text": _percent(met / len(entries)) if rate and entries else "",
        "persons_total": sum(e.persons or 0 for e in entries),
        "yuan_total": _amount(sum((e.yuan or Decimal("0.00") for e in entries),
                                  Decimal("0.00"))),
        "rows": rows, "truncated": len(entries) > MAX_LISTED, "max_listed": MAX_LISTED,
        "back": "/dashboard?" + _query(asked),
    }


def _date(chinese: str, lang: str) -> str:
    """A Beijing date as written in Chinese (2026年3月5日), or in English as 2026-03-05."""
    if lang != "en":
        return chinese
    year, month, day = (int(n) for n in re.findall(r"\d+", chinese))
    return f"{year:04d}-{month:02d}-{day:02d}"


def _stage_words(stage: str, outcome: str | None) -> str:
    if stage == Stage.CLOSED and outcome in OUTCOME_NAMES:
        return OUTCOME_NAMES[outcome]
    return STAGE_NAMES.get(stage, STAGE_NAMES[Stage.REGISTERED])
