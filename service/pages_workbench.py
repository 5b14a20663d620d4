"""The case handler's workbench (工作台), server-rendered, Chinese first.

- `GET /workbench`: the signed-in person's unit's open cases (registered at, held by or
  answering for the unit, and the cases they handle or lead), nearest deadline first: the
  registration number, category, channel and registration date (no petitioner data, no
  subject: it is sealed), the stage in words, the holding unit by name, the next deadline
  as a Beijing date with the days left, badges for overdue, escalation (督办) and
  extension; the counts on top; filters by stage, category, overdue, own cases.
- `GET /workbench/cases/{registration_no}`: one case for staff who may see it: the
  registration data with the petitioner's name and phone and the letter (opened with the
  service's data keys, as documents are), every running deadline with its article, days
  left and how it was counted (domain/deadline_explain.py), the ones met, the timeline,
  the audit trail (actions in words, actors by name), the documents, and exactly the
  actions `allowed_actions(case, actor)` offers, each a form generated from its payload
  schema (service/forms.py).
- `POST /workbench/cases/{registration_no}/actions/{action}`: CSRF-checked; the body from
  the form, taken through `service.api.take_action` with a request id derived from the
  form's one-time token (a double submit is one action); 303 back to the case with a
  notice, or the case page again with the errors beside their fields (422) or the refusal
  in words (409/403).
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy import and_, func, or_, select

from adapters.directory import unit_names
from adapters.petition_client import PetitionNotFound
from adapters.tables import Person, Petition
from documents.render import article_zh, chinese_number
from domain.calendar import SHANGHAI as BEIJING
from domain.case import CaseState, PetitionStatus
from domain.deadline_explain import (
    Counting,
    DaySpan,
    DeadlineExplanation,
    days_left,
    explain_case,
    last_day_of,
)
from domain.lifecycle import TABLE, AllowedAction, allowed_actions, payload_schema
from domain.models import Action, Actor, Category, ClockName, Outcome, Role, Stage
from domain.policy import PeriodUnit, ProfileError, load_profile
from security.sealing import SealingError
from service import documents
from service.access import actor_for, case_row
from service.api import take_action
from service.auth.principal import Principal
from service.context import ServiceContext, context
from service.forms import (
    ACTION_NAMES,
    ENUM_LABELS,
    HEARING_SLOT,
    ActionForm,
    action_form,
    body_from_form,
    field_errors,
    form_values,
    narrowed,
    refusal_message,
)
from service.i18n import N_, gettext
from service.pages import (
    ROLE_NAMES,
    SECURITY_HEADERS,
    PageRoute,
    _csrf,
    _csrf_ok,
    _macs,
    _split_bilingual,
    _with_csrf_cookie,
    form_page,
    language,
    render,
    signed_in_staff,
    staff_frame,
    to_signin,
)
from service.pages_track import NOTICE_WORDS, SOME_NOTICE, TEMPLATE_KINDS
from service.problems import Problem
from starter.queries import audit_trail

LOG = logging.getLogger("petition.service.workbench")
Ctx = Annotated[ServiceContext, Depends(context)]
router = APIRouter(route_class=PageRoute, include_in_schema=False)

INBOX_LIMIT = 200
DUE_SOON_DAYS = 3
FORM_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
REGISTRATION_NO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_REFUSAL_TEXT = re.compile(r"^refused \[([^\]]{1,60})\]")


# ------------------------------------------------------------------- the words

STAGE_WORDS: dict[Stage, str] = {
    Stage.REGISTERED: N_("已登记，待受理"),
    Stage.IN_HANDLING: N_("办理中"),
    Stage.REPLIED: N_("已答复"),
    Stage.UNDER_REVIEW: N_("复查中"),
    Stage.REVIEW_REPLIED: N_("已出具复查意见"),
    Stage.UNDER_RE_REVIEW: N_("复核中"),
    Stage.CLOSED: N_("已办结"),
}
OUTCOME_WORDS: dict[Outcome, str] = {
    Outcome.RESOLVED: N_("已办结"),
    Outcome.NOT_ACCEPTED: N_("已办结（不予受理）"),
    Outcome.DIVERTED: N_("已办结（引导其他途径）"),
    Outcome.WITHDRAWN: N_("已办结（信访人撤回）"),
    Outcome.CONCLUDED: N_("已办结（复核终结）"),
}
CATEGORY_WORDS: dict[Category, str] = {
    Category.LAND_AND_RESOURCES: N_("国土资源"),
    Category.URBAN_CONSTRUCTION: N_("城乡建设"),
    Category.LABOUR_AND_SOCIAL_SECURITY: N_("劳动和社会保障"),
    Category.WAGE_ARREARS: N_("拖欠工资"),
    Category.RURAL_AFFAIRS: N_("农村农业"),
    Category.ENVIRONMENT: N_("生态环境"),
    Category.HEALTH: N_("卫生健康"),
    Category.EDUCATION: N_("教育"),
    Category.PUBLIC_SECURITY: N_("公安"),
    Category.LAW_AND_LITIGATION: N_("政法（涉法涉诉）"),
    Category.DISCIPLINE: N_("纪检监察"),
    Category.OTHER: N_("其他"),
}
CLOCK_WORDS: dict[ClockName, str] = {
    ClockName.ROUTING: N_("转送、交办期限"),
    ClockName.ACCEPTANCE: N_("决定是否受理期限"),
    ClockName.TRANSFER_OBJECTION: N_("转送异议期限"),
    ClockName.HANDLING: N_("办理期限（出具处理意见）"),
    ClockName.REVIEW_REQUEST: N_("信访人请求复查期限"),
    ClockName.REVIEW: N_("复查期限"),
    ClockName.RE_REVIEW_REQUEST: N_("信访人请求复核期限"),
    ClockName.RE_REVIEW: N_("复核期限"),
    ClockName.PROCEDURAL_REPLY: N_("程序性答复期限"),
    ClockName.SETTLEMENT: N_("答复办理结果期限"),
    ClockName.PROGRESS_REPLY: N_("按月答复办理进展期限"),
}
DEADLINE = N_("办理期限")
# Notices to units and persons, by their template (the petitioner's: pages_track.py).
STAFF_NOTICES: dict[str, str] = {
    "escalation": N_("超期督办通知"),
    "reminder": N_("期限提醒"),
    "hearing_scheduled": N_("听证通知"),
    "diversion_order": N_("引导转办单"),
}
PROFILE_WORDS: dict[str, str] = {
    "national": N_("全国（《信访工作条例》）"),
    "procuratorate": N_("检察机关（件件有回复）"),
    "zhejiang": N_("浙江省（《浙江省信访条例》）"),
    "shandong": N_("山东省（《山东省信访条例》）"),
    "sichuan": N_("四川省（《四川省信访条例》）"),
    "demo": N_("演示（期限以秒计）"),
    "bench": N_("压力测试（期限以分钟计）"),
}
DONE_WORDS: dict[Action, str] = {
    Action.ACCEPT: N_("已受理。"),
    Action.DECLINE: N_("已决定不予受理，书面告知将送达信访人。"),
    Action.DIVERT: N_("已引导至其他法定途径。"),
    Action.TRANSFER: N_("已转送。"),
    Action.REJECT_TRANSFER: N_("已退回转送。"),
    Action.ASSIGN: N_("已指定承办人员。"),
    Action.CONTRACT_TO_LEADER: N_("已安排领导包案。"),
    Action.REQUEST_EXTENSION: N_("延期申请已提交，等待单位负责人审批。"),
    Action.DECIDE_EXTENSION: N_("已审批延期申请。"),
    Action.SCHEDULE_HEARING: N_("已安排听证。"),
    Action.RECORD_HEARING: N_("已记录听证结果。"),
    Action.REQUEST_ASSISTANCE: N_("救助申请已提交。"),
    Action.DECIDE_ASSISTANCE: N_("已审批救助申请。"),
    Action.PROGRESS_REPLY: N_("已答复办理进展。"),
    Action.REPLY: N_("已出具处理意见。"),
    Action.REVIEW_OPINION: N_("已出具复查意见。"),
    Action.RE_REVIEW_OPINION: N_("已出具复核意见。"),
    Action.ADD_NOTE: N_("已补充材料。"),
}
DONE = N_("操作已完成。")
ACTOR_WORDS = {"system": N_("系统"), "petitioner": N_("信访人"), "supervisor": N_("督查人员"),
               "intake_clerk": N_("登记人员")}
DELIVERY_WORDS = {"sent": N_("已送达"), "pending": N_("正在送达"), "failed": N_("送达未成功")}
WEEKDAYS = (N_("星期一"), N_("星期二"), N_("星期三"), N_("星期四"), N_("星期五"), N_("星期六"),
            N_("星期日"))
MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
             "Dec")
PAGE_EXPIRED = N_("页面已过期，请重新提交。")
NOT_FOUND = N_("未找到该信访事项")
NO_SUCH_CASE = N_("没有这个编号的信访事项，请核对编号。")


# ------------------------------------------------------------------- dates


def day_words(day: date, lang: str, *, year: bool = True) -> str:
    if lang == "en":
        return f"{day.day} {MONTHS_EN[day.month - 1]}" + (f" {day.year}" if year else "")
    return (f"{day.year}年" if year else "") + f"{day.month}月{day.day}日"


def moment_words(at: datetime, lang: str) -> str:
    local = at.astimezone(BEIJING)
    return f"{day_words(local.date(), lang)} {local:%H:%M}"


def due_words(due: datetime, lang: str) -> str:
    """A deadline's last day (one due at 24:00 Beijing is dated that day)."""
    return day_words(last_day_of(due), lang)


def left_words(due: datetime, now: datetime, lang: str) -> str:
    left = days_left(due, now)
    if now >= due:
        late = max(1, -left)
        return gettext(lang, "已超期 {n} 日").format(n=late)
    if left == 0:
        return gettext(lang, "今日到期")
    return gettext(lang, "剩余 {n} 日").format(n=left)


def escalation_words(level: int, lang: str) -> str:
    """督办 by level: 1 the supervising leader, 2 the superior petition bureau."""
    if lang == "en":
        return gettext(lang, "{n}级督办").format(n=level)
    return gettext(lang, "{n}级督办").format(n=chinese_number(level))


# ------------------------------------------------------------------- the directory


@dataclass
class Directory:
    units: dict[str, str]  # code -> name in the page's language
    people: dict[str, str]  # id -> name

    def unit(self, code: str | None) -> str:
        return self.units.get(code or "", "") if code else ""

    def person(self, person_id: str | None) -> str:
        return self.people.get(person_id or "", "") if person_id else ""


async def _directory(ctx: ServiceContext, lang: str) -> Directory:
    async with ctx.sessions() as session:
        names = await unit_names(session)
        people = {pid: name for pid, name in await session.execute(
            select(Person.id, Person.name))}
    units = {}
    for code, name in names.items():
        zh, en = _split_bilingual(name)
        units[code] = (en or zh) if lang == "en" else zh
    return Directory(units, people)


# ------------------------------------------------------------------- page frame


async def _frame(ctx: ServiceContext, actor: Actor) -> dict[str, Any]:
    return {"staff": await staff_frame(ctx, actor), "nav": "workbench"}


def _message(request: Request, status: int, heading: str, message: str,
             frame: Mapping[str, Any], lang: str) -> Response:
    return render("workbench_message.html", status, request=request,
                  heading=gettext(lang, heading), message=gettext(lang, message), **frame)


# ------------------------------------------------------------------- the inbox


@dataclass
class InboxFilter:
    stage: Stage | None = None
    category: Category | None = None
    overdue: bool = False
    mine: bool = False

    @classmethod
    def of(cls, query: Mapping[str, str]) -> InboxFilter:
        stage = query.get("stage", "")
        category = query.get("category", "")
        return cls(stage=Stage(stage) if stage in Stage._value2member_map_ else None,
                   category=(Category(category) if category in Category._value2member_map_
                             else None),
                   overdue=query.get("overdue") == "1", mine=query.get("mine") == "1")

    @property
    def active(self) -> bool:
        return bool(self.stage or self.category or self.overdue or self.mine)


def _unit_cases(actor: Actor) -> Any:
    """The open cases of the person's unit, and the ones they handle or lead."""
    return and_(Petition.stage != Stage.CLOSED.value, or_(
        Petition.registered_unit == actor.unit, Petition.holding_unit == actor.unit,
        Petition.responsible_unit == actor.unit, Petition.handler_id == actor.id,
        Petition.leader_id == actor.id))


async def _inbox_rows(ctx: ServiceContext, actor: Actor, where: InboxFilter
                      ) -> list[Petition]:
    query = select(Petition).where(_unit_cases(actor))
    if where.stage is not None:
        query = query.where(Petition.stage == where.stage.value)
    if where.category is not None:
        query = query.where(Petition.category == where.category.value)
    if where.overdue:
        query = query.where(Petition.overdue.is_(True))
    if where.mine:
        query = query.where(Petition.handler_id == actor.id)
    query = query.order_by(Petition.next_deadline.asc().nulls_last(),
                           Petition.registered_at, Petition.id).limit(INBOX_LIMIT)
    async with ctx.sessions() as session:
        return list((await session.scalars(query)).all())


async def _counts(ctx: ServiceContext, actor: Actor, now: datetime) -> dict[str, int]:
    soon = now + timedelta(days=DUE_SOON_DAYS)
    query = select(
        func.count(),
        func.count().filter(Petition.overdue.is_(True)),
        func.count().filter(Petition.escalation_level > 0),
        func.count().filter(Petition.extension_days > 0),
        func.count().filter(Petition.next_deadline > now, Petition.next_deadline <= soon),
    ).where(_unit_cases(actor))
    async with ctx.sessions() as session:
        found = (await session.execute(query)).one()
    return dict(zip(("open", "overdue", "escalated", "extended", "due_soon"),
                    (int(n) for n in found), strict=True))


def _stage_words(stage: str, outcome: str | None, lang: str) -> str:
    if outcome is not None and outcome in Outcome._value2member_map_:
        return gettext(lang, OUTCOME_WORDS[Outcome(outcome)])
    if stage in Stage._value2member_map_:
        return gettext(lang, STAGE_WORDS[Stage(stage)])
    return ""


def _category_words(category: str, lang: str) -> str:
    found = CATEGORY_WORDS.get(Category(category)) if category in \
        Category._value2member_map_ else None
    return gettext(lang, found or CATEGORY_WORDS[Category.OTHER])


def _channel_words(channel: str, lang: str) -> str:
    words = ENUM_LABELS["Channel"].get(channel)
    return gettext(lang, words) if words else ""


def _inbox_row(row: Petition, names: Directory, now: datetime, lang: str) -> dict[str, Any]:
    due = row.next_deadline
    return {
        "registration_no": row.registration_no,
        "link": f"/workbench/cases/{row.registration_no}",
        "category": _category_words(row.category, lang),
        "channel": _channel_words(row.channel, lang),
        "registered": day_words(row.registered_at.astimezone(BEIJING).date(), lang),
        "stage": _stage_words(row.stage, row.outcome, lang),
        "unit": names.unit(row.holding_unit),
        "handler": names.person(row.handler_id),
        "due": due_words(due, lang) if due else "",
        "left": left_words(due, now, lang) if due else "",
        "overdue": bool(row.overdue),
        "soon": due is not None and now < due <= now + timedelta(days=DUE_SOON_DAYS),
        "level": row.escalation_level or 0,
        "level_words": escalation_words(row.escalation_level or 0, lang),
        "extended": (row.extension_days or 0) > 0,
    }


@router.get("/workbench", name="workbench")
async def workbench(request: Request, ctx: Ctx) -> Response:
    actor = await signed_in_staff(request, ctx)
    if actor is None:
        return to_signin(request)
    lang = language(request)
    where = InboxFilter.of(request.query_params)
    now = datetime.now(UTC)
    names = await _directory(ctx, lang)
    rows = [_inbox_row(r, names, now, lang) for r in await _inbox_rows(ctx, actor, where)]
    return form_page(
        "workbench.html", request, ctx, heading=gettext(lang, "工作台"),
        rows=rows, counts=await _counts(ctx, actor, now), where=where,
        unit_name=names.unit(actor.unit), limit=INBOX_LIMIT,
        stages=[(s.value, gettext(lang, w)) for s, w in STAGE_WORDS.items()
                if s is not Stage.CLOSED],
        categories=[(c.value, gettext(lang, w)) for c, w in CATEGORY_WORDS.items()],
        **await _frame(ctx, actor))


# ------------------------------------------------------------------- deadlines


def _span_words(span: DaySpan, lang: str) -> str:
    names = span.names_en if lang == "en" else span.names_zh
    label = _list(lang, list(names)) or gettext(lang, "节假日")
    first = day_words(span.first, lang, year=False)
    last = day_words(span.last, lang, year=False)
    return gettext(lang, "{names}（{first}至{last}，共 {days} 天）").format(
        names=label, first=first, last=last, days=span.days)


def _list(lang: str, items: list[str], chinese: str = "、") -> str:
    return ("; " if chinese == "；" else ", ").join(items) if lang == "en" \
        else chinese.join(items)


def _aside(lang: str, text: str, aside: str) -> str:
    """`text` with `aside` in brackets, the language's own."""
    if not aside:
        return text
    return f"{text} ({aside})" if lang == "en" else f"{text}（{aside}）"


def _weekday(day: date, lang: str) -> str:
    return gettext(lang, WEEKDAYS[day.weekday()])


UNIT_WORDS: dict[PeriodUnit, str] = {
    PeriodUnit.DAYS: N_("按自然日计算：{n} 日"),
    PeriodUnit.WORKING_DAYS: N_("按工作日计算：{n} 个工作日"),
    PeriodUnit.MONTHS: N_("按月计算：{n} 个月"),
    PeriodUnit.HOURS: N_("按小时精确计算：{n} 小时（测试或演示配置）"),
    PeriodUnit.MINUTES: N_("按分钟精确计算：{n} 分钟（测试或演示配置）"),
    PeriodUnit.SECONDS: N_("按秒精确计算：{n} 秒（演示配置）"),
}


def counting_words(counting: Counting, lang: str, *, after: str = "") -> list[str]:
    """How one period was counted, as sentences. `after`: what the day counting started
    after was (the previous deadline's last day ...), if not the starting event's."""
    said = [gettext(lang, UNIT_WORDS[counting.unit]).format(n=counting.amount)]
    if not counting.counted_in_days:
        return said
    day = _aside(lang, day_words(counting.anchor, lang), after)
    said[0] += gettext(lang, "，自{day}的次日起算，当日不计入。").format(day=day)
    spans = _list(lang, [_span_words(s, lang) for s in counting.holidays], "；")
    if counting.unit is PeriodUnit.WORKING_DAYS:
        if counting.holidays:
            said.append(gettext(lang, "跳过法定节假日：{spans}。").format(spans=spans))
        if counting.weekend_days:
            said.append(gettext(lang, "跳过周末休息日 {n} 天。").format(n=counting.weekend_days))
        if counting.makeup_days:
            days = _list(lang, [_aside(lang, day_words(d, lang, year=False), _weekday(d, lang))
                                for d in counting.makeup_days])
            said.append(gettext(lang, "调休上班日计入工作日：{days}。").format(days=days))
        if not (counting.holidays or counting.weekend_days or counting.makeup_days):
            said.append(gettext(lang, "期间没有节假日和周末。"))
    elif counting.holidays:
        said.append(gettext(lang, "期间的节假日照常计入：{spans}。").format(spans=spans))
    if counting.rolled:
        said.append(gettext(lang, "最后一日{last}不是工作日，顺延至节假日后的第一个工作日{due}。")
                    .format(last=day_words(counting.last_day, lang),
                            due=day_words(counting.due_day, lang)))
    return said


def explanation_words(found: DeadlineExplanation, lang: str) -> list[str]:
    said = counting_words(found.counting, lang,
                          after=gettext(lang, "上一期限的最后一日") if found.repeat else "")
    if found.extension is not None:
        said.append(gettext(lang, "经批准延期 {n} 日：").format(n=found.extension_days) + " ".join(
            counting_words(found.extension, lang, after=gettext(lang, "原期限的最后一日"))))
    if found.paused_for is not None:
        hours = int(found.paused_for.total_seconds() // 3600)
        said.append(gettext(lang, "听证期间（约 {hours} 小时）不计入，期限相应顺延。")
                    .format(hours=max(1, hours)))
    if not found.consistent:
        said.append(gettext(lang, "以上为按本案日历重新计算的结果，与案件记载的期限不完全一致，"
                             "以记载的期限为准。"))
    if found.calendar_note:
        said.append(gettext(lang, "本案冻结的节假日日历不含该年度，按当前节假日数据说明。"))
    return said


def article_words(article: str, lang: str) -> str:
    if lang == "en":
        return article
    provincial = re.search(r"[（(]([^\x00-\x7f]+条例)[）)]", article)
    words = f"《{provincial.group(1)}》" if provincial else article_zh(article)
    if "scale" in article:
        words += gettext(lang, "（演示配置）")
    return words


def _deadlines(status: PetitionStatus, case: CaseState | None, names: Directory,
               now: datetime, lang: str) -> list[dict[str, Any]]:
    explained = {e.clock: e for e in explain_case(case)} if case is not None else {}
    shown = []
    for clock in sorted(status.clocks, key=lambda c: c.due_at):
        found = explained.get(clock.name)
        level = clock.level
        shown.append({
            "what": gettext(lang, CLOCK_WORDS.get(clock.name, DEADLINE)),
            "due": due_words(clock.due_at, lang),
            "left": left_words(clock.due_at, now, lang) if not clock.paused else "",
            "unit": names.unit(clock.unit),
            "article": article_words(clock.article, lang),
            "overdue": clock.overdue, "paused": clock.paused, "level": level,
            "level_words": escalation_words(level, lang),
            "window": clock.kind.value == "window",
            "started": moment_words(clock.started_at, lang) if clock.started_at else "",
            "how": explanation_words(found, lang) if found is not None else [],
        })
    return shown


def _met(row: Petition, lang: str) -> list[str]:
    """Deadlines met: the decision on acceptance, the handling opinion (read model)."""
    met = []
    for what, due, done in ((ClockName.ACCEPTANCE, row.acceptance_due, row.accepted_at),
                            (ClockName.HANDLING, row.handling_due, row.replied_at)):
        if due is None or done is None:
            continue
        met.append(gettext(lang, "{what}：期限 {due}，{done}完成（{late}）").format(
            what=gettext(lang, CLOCK_WORDS[what]), due=due_words(due, lang),
            done=day_words(done.astimezone(BEIJING).date(), lang),
            late=gettext(lang, "超期") if done >= due else gettext(lang, "按期")))
    return met


# ------------------------------------------------------------------- the record


def actor_words(actor_id: str, role: str, names: Directory, lang: str) -> str:
    name = names.person(actor_id)
    if name:
        role_words = ROLE_NAMES.get(Role(role)) if role in Role._value2member_map_ else None
        return _aside(lang, name, role_words[1] if lang == "en" else role_words[0]) \
            if role_words else name
    if actor_id.startswith("petitioner") or role == "petitioner":
        return gettext(lang, ACTOR_WORDS["petitioner"])
    return gettext(lang, ACTOR_WORDS.get(role, ACTOR_WORDS["system"]))


def action_words(action: str, lang: str) -> str:
    if action in Action._value2member_map_:
        return gettext(lang, ACTION_NAMES[Action(action)])
    return gettext(lang, "其他操作")


def _refusal_words(text: str | None, lang: str) -> str:
    found = _REFUSAL_TEXT.match(text or "")
    return refusal_message(found.group(1) if found else "", {}, lang)


def _audit(trail: list[dict[str, Any]], names: Directory, lang: str) -> list[dict[str, Any]]:
    shown = []
    for entry in trail:
        actor_id, _sep, rest = str(entry["actor"]).partition(":")
        role = rest.partition(":")[0]
        moved = ""
        if entry["to"] and entry["to"] != entry["from"]:
            moved = _stage_words(entry["to"], None, lang)
        shown.append({
            "at": moment_words(datetime.fromisoformat(entry["at"]), lang),
            "action": action_words(entry["action"], lang),
            "actor": actor_words(actor_id, role, names, lang),
            "stage": moved,
            "accepted": bool(entry["accepted"]),
            "result": gettext(lang, "已完成") if entry["accepted"] else
            gettext(lang, "未被接受：") + _refusal_words(entry["refusal"], lang),
        })
    return shown


def _timeline(status_entries: Sequence[Any], names: Directory, lang: str
              ) -> list[dict[str, str]]:
    return [{"at": moment_words(e.at, lang), "action": action_words(e.action.value, lang),
             "actor": actor_words(e.actor.id, e.actor.role.value, names, lang),
             "stage": _stage_words(e.to_stage.value, None, lang)
             if e.to_stage is not None and e.to_stage != e.from_stage else ""}
            for e in status_entries if e.accepted]


def notice_title(template: str, recipient_kind: str, lang: str) -> str:
    """A notice by its template: the petitioner's by the kind of letter, a unit's or a
    person's by what it is about."""
    if recipient_kind == "petitioner":
        kind = TEMPLATE_KINDS.get(template, template)
        return gettext(lang, NOTICE_WORDS.get(kind, SOME_NOTICE))
    if template in STAFF_NOTICES:
        return gettext(lang, STAFF_NOTICES[template])
    if template in Action._value2member_map_:
        return gettext(lang, "{action}通知").format(action=action_words(template, lang))
    return gettext(lang, SOME_NOTICE)


def _documents(listed: documents.CaseDocuments, lang: str) -> dict[str, Any]:
    attachments = [{"name": d.filename, "href": d.download,
                    "size": f"{max(1, d.size_bytes // 1024)} KB",
                    "date": day_words(d.created_at.astimezone(BEIJING).date(), lang)}
                   for d in listed.attachments]
    notices = []
    for n in listed.notices:
        notices.append({
            "title": notice_title(n["kind"], n["recipient_kind"], lang),
            "to": gettext(lang, "信访人") if n["recipient_kind"] == "petitioner"
            else gettext(lang, "单位或人员"),
            "date": day_words(datetime.fromisoformat(n["created_at"]).astimezone(BEIJING)
                              .date(), lang) if n.get("created_at") else "",
            "state": gettext(lang, DELIVERY_WORDS.get(n["state"], DELIVERY_WORDS["pending"])),
            "href": n.get("download")})
    return {"attachments": attachments, "notices": notices}


# ------------------------------------------------------------------- the case


@dataclass
class Submitted:
    """An action's form as it was submitted and refused: shown again with its errors."""

    action: Action
    values: dict[str, str | list[str]]
    errors: dict[str, str]
    error: str


async def _choices(ctx: ServiceContext, case: CaseState, names: Directory
                   ) -> dict[str, list[tuple[str, str]]]:
    """Units and people by name for the fields that name one (never a code to type)."""
    units = sorted(names.units.items(), key=lambda u: u[0])
    case_units = {u for u in (case.holding_unit, case.responsible_unit) if u}
    async with ctx.sessions() as session:
        staff = (await session.execute(
            select(Person.id, Person.name, Person.role, Person.unit_code,
                   Person.is_hearing_officer).order_by(Person.id))).all()
    return {
        "to_unit": [(c, n) for c, n in units if c != case.holding_unit],
        "organ": units,
        "review_organ": units,
        "re_review_organ": units,
        "handler_id": [(p.id, p.name) for p in staff if p.unit_code in case_units
                       and p.role in ("handler", "unit_head")],
        "leader_id": [(p.id, p.name) for p in staff if p.role == "leader"],
        "officers": [(p.id, p.name) for p in staff if p.is_hearing_officer],
    }


def limits(profile: str) -> dict[str, dict[str, Any]]:
    """The bounds the case's profile sets tighter than the commands: the days of an
    extension (30 nationally, where a command takes up to 366)."""
    try:
        extension = load_profile(profile).extension.max_period
    except (ProfileError, ValueError):
        return {}
    if extension.unit not in (PeriodUnit.DAYS, PeriodUnit.WORKING_DAYS):
        return {}
    return {"days": {"maximum": extension.amount}}


def _form_token() -> str:
    return secrets.token_urlsafe(18)


def request_id_for(ctx: ServiceContext, actor: Actor, registration_no: str, action: Action,
                   token: str) -> str:
    """The action's request id: one per rendered form, so a second submit of the same form
    is the same request (the workflow takes it once)."""
    mac = _macs(ctx, "workbench-form", f"{actor.id}|{registration_no}|{action}|{token}")[0]
    return "wb-" + mac[:40]


def _forms(allowed: list[AllowedAction], choices: Mapping[str, Sequence[tuple[str, str]]],
           submitted: Submitted | None, bounds: Mapping[str, Mapping[str, Any]],
           lang: str) -> list[ActionForm]:
    forms = []
    for offered in allowed:
        again = submitted if submitted and submitted.action is offered.action else None
        forms.append(action_form(
            offered.action, narrowed(offered.payload_schema, bounds), lang, choices=choices,
            values=again.values if again else None, errors=again.errors if again else None,
            error=again.error if again else "", token=_form_token(),
            article=article_words(offered.article, lang)))
    return forms


async def _petitioner(request: Request, row: Petition) -> dict[str, Any]:
    """The petitioner's name and phone and the letter's subject and content, opened with
    the service's data keys (staff who may see the case only)."""
    vault = documents.document_vault(request)
    where = f"petitions.{{}}:{row.intake_id}"
    try:
        person = await vault.open_json(row.petitioner_sealed, where.format("petitioner"))
        subject = (await vault.open(row.subject_sealed, where.format("subject"))).decode()
        content = (await vault.open(row.content_sealed, where.format("content"))).decode()
    except SealingError:
        LOG.warning("case %s: the petitioner's data does not open", row.registration_no)
        return {"opened": False}
    return {"opened": True, "name": person.get("name", ""), "phone": person.get("phone") or "",
            "subject": subject, "content": content, "persons": row.persons}


async def _case_page(request: Request, ctx: ServiceContext, actor: Actor, row: Petition, *,
                     status_code: int = 200, submitted: Submitted | None = None,
                     notice: str = "", error: str = "") -> Response:
    lang = language(request)
    frame = await _frame(ctx, actor)
    try:
        status = await ctx.petitions.status(row.workflow_id)
        case = await ctx.petitions.case(row.workflow_id)
        timeline = await ctx.petitions.timeline(row.workflow_id)
    except PetitionNotFound:
        return _message(request, 404, N_("暂时无法读取该信访事项"),
                        N_("该信访事项的办理信息暂时无法读取，请稍后再试。"), frame, lang)
    now = datetime.now(UTC)
    names = await _directory(ctx, lang)
    who = Principal("staff", actor.id, actor=actor)
    listed = await documents.case_documents(row.registration_no, who, ctx,
                                            documents.document_vault(request))
    allowed = allowed_actions(case, actor) if case is not None else []
    choices = await _choices(ctx, case, names) if case is not None else {}
    token, fresh = _csrf(request, ctx)
    stage = _stage_words(status.stage.value if status.stage else row.stage,
                         status.outcome.value if status.outcome else None, lang)
    page = render(
        "workbench_case.html", status_code, request=request,
        heading=gettext(lang, "信访事项 {no}").format(no=row.registration_no),
        registration_no=row.registration_no, stage=stage, notice=notice, error=error,
        facts={
            "channel": _channel_words(row.channel, lang),
            "category": _category_words(row.category, lang),
            "registered": moment_words(row.registered_at, lang),
            "received": moment_words(row.received_at, lang),
            "registered_unit": names.unit(row.registered_unit),
            "holding_unit": names.unit(status.holding_unit or row.holding_unit),
            "responsible_unit": names.unit(status.responsible_unit),
            "handler": names.person(status.handler_id),
            "leader": names.person(status.leader_id),
            "profile": gettext(lang, PROFILE_WORDS[row.profile]) if row.profile in PROFILE_WORDS
            else "",
            "law_related": row.law_related,
            "repeat_of": row.repeat_of or "",
            "extension_days": status.extension_days,
            "level": status.escalation_level,
            "level_words": escalation_words(status.escalation_level, lang),
            "overdue": status.overdue,
        },
        petitioner=await _petitioner(request, row),
        deadlines=_deadlines(status, case, names, now, lang), met=_met(row, lang),
        timeline=_timeline(timeline, names, lang),
        audit=_audit(await audit_trail(ctx.sessions, row.workflow_id), names, lang),
        documents=_documents(listed, lang),
        forms=_forms(allowed, choices, submitted, limits(row.profile), lang),
        csrf_token=token,
        action_base=f"/workbench/cases/{row.registration_no}/actions", **frame)
    return _with_csrf_cookie(page, request, fresh)


async def _visible_case(request: Request, ctx: ServiceContext, actor: Actor,
                        registration_no: str) -> Petition | Response:
    """The case, or the page saying it cannot be shown to this person."""
    lang = language(request)
    frame = await _frame(ctx, actor)
    if not REGISTRATION_NO.match(registration_no):
        return _message(request, 404, NOT_FOUND, NO_SUCH_CASE, frame, lang)
    try:
        row = await case_row(ctx, registration_no)
    except Problem:
        return _message(request, 404, NOT_FOUND, NO_SUCH_CASE, frame, lang)
    _actor, refusal = await actor_for(ctx, Principal("staff", actor.id, actor=actor), row, None)
    if refusal is not None:
        return _message(request, 403, N_("无权查看该信访事项"),
                        N_("该信访事项不属于您所在单位或您经办的案件，您无权查看。"
                          "如需查阅，请联系承办单位。"), frame, lang)
    return row


@router.get("/workbench/cases/{registration_no}", name="workbench_case")
async def workbench_case(request: Request, ctx: Ctx, registration_no: str) -> Response:
    actor = await signed_in_staff(request, ctx)
    if actor is None:
        return to_signin(request)
    found = await _visible_case(request, ctx, actor, registration_no)
    if isinstance(found, Response):
        return found
    done = request.query_params.get("done", "")
    notice = ""
    if done in Action._value2member_map_:
        notice = gettext(language(request), DONE_WORDS.get(Action(done), DONE))
    return await _case_page(request, ctx, actor, found, notice=notice)


# ------------------------------------------------------------------- acting


def _person_action(action: str) -> Action | None:
    if action not in Action._value2member_map_:
        return None
    row = TABLE.get(Action(action))
    return row.action if row is not None and not row.system else None


def _refused(problem: Problem, schema: dict[str, Any], lang: str) -> tuple[dict[str, str], str]:
    """A refusal in words, and beside its field when it names one of the form's."""
    rule = str(problem.extra.get("rule") or "")
    details = dict(problem.extra.get("details") or {})
    words = refusal_message(rule, details, lang)
    if rule == "hearing" and details.get("earliest_free_slot"):
        slot = moment_words(datetime.fromisoformat(details["earliest_free_slot"]), lang)
        words = gettext(lang, HEARING_SLOT).format(slot=slot)
    field = str(problem.extra.get("field") or "")
    return ({field: words} if field in schema.get("properties", {}) else {}), words


@router.post("/workbench/cases/{registration_no}/actions/{action}", name="workbench_act")
async def workbench_act(request: Request, ctx: Ctx, registration_no: str,
                        action: str) -> Response:
    case_path = f"/workbench/cases/{registration_no}"
    actor = await signed_in_staff(request, ctx)
    if actor is None:
        return RedirectResponse(f"/signin?{urlencode({'next': case_path})}", status_code=303,
                                headers=SECURITY_HEADERS)
    found = await _visible_case(request, ctx, actor, registration_no)
    if isinstance(found, Response):
        return found
    row, lang = found, language(request)
    chosen = _person_action(action)
    if chosen is None:
        return _message(request, 404, N_("没有这项操作"), N_("该操作不存在，请返回案件页面重试。"),
                        await _frame(ctx, actor), lang)
    form = await request.form()
    token = str(form.get("form_token") or "")
    if not _csrf_ok(request, ctx, str(form.get("csrf_token") or "")) \
            or not FORM_TOKEN.match(token):
        return await _case_page(request, ctx, actor, row, status_code=400,
                                error=gettext(lang, PAGE_EXPIRED))
    schema = narrowed(payload_schema(TABLE[chosen].command), limits(row.profile))
    body = body_from_form(schema, form)
    request_id = request_id_for(ctx, actor, row.registration_no, chosen, token)
    try:
        await take_action(ctx, Principal("staff", actor.id, actor=actor), row.registration_no,
                          chosen, body, request_id)
    except Problem as problem:
        if problem.status not in (403, 404, 409, 422):
            raise
        values = form_values(form, schema)
        if problem.kind == "validation":
            errors, other = field_errors(problem.extra.get("errors") or [], schema, lang)
            general = " ".join(other) or gettext(lang, "请按提示修改后重新提交。")
        else:
            errors, general = _refused(problem, schema, lang)
            general = "" if errors else general  # said beside its field
        LOG.info("workbench: %s on %s by %s not taken (%s %s)", chosen.value,
                 row.registration_no, actor.id, problem.status, problem.extra.get("rule")
                 or problem.kind)
        return await _case_page(request, ctx, actor, row, status_code=problem.status,
                                submitted=Submitted(chosen, values, errors, general))
    return RedirectResponse(f"{case_path}?{urlencode({'done': chosen.value})}",
                            status_code=303, headers=SECURITY_HEADERS)

