"""The petitioner's self-service progress pages (信访事项办理进度查询), server-rendered in
Chinese, usable on a phone.

- `GET /track`, `POST /track`: the registration number (信访事项编号) and the query code
  (查询码), checked by the same function as `POST /auth/petitioner` (the derived code and
  its lockout). On success a petitioner token of this service goes into the HttpOnly,
  SameSite=Lax cookie `petition_track` (path /track, as long-lived as the token), set the
  way the staff pages set theirs. A cookie of its own: signing a petitioner in at a shared
  counter never ends a member of staff's session, and the API never takes it.
- `GET /track/case`: that one case: its stage in plain words, the unit holding it by name,
  its deadlines as Beijing dates, its written notices with their delivery state. No staff
  names, no codes.
- `GET /track/notices/{id}.pdf`: a notice's letter, through the API's own code
  (service/documents.py `notice_letter`) for the signed-in petitioner.
- `POST /track/signout`.

Forms carry the staff pages' CSRF token (double submit). Every error is a Chinese page.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Form, Path, Request, Response
from fastapi.responses import RedirectResponse

from adapters.directory import unit_names
from adapters.petition_client import PetitionNotFound

# A deadline as the letters print it: one due at 24:00 is dated its last day, so the page
# and the letter name the same day.
from documents.render import beijing_date as deadline_date
from domain.case import PetitionStatus
from domain.models import ClockName, Outcome, Stage
from domain.notice_facts import ACTION_KINDS, NoticeKind
from service import documents
from service.auth.principal import Principal
from service.auth.routes import petitioner_token
from service.auth.tokens import TokenError
from service.context import ServiceContext, context
from service.pages import (
    SECURITY_HEADERS,
    PageRoute,
    _csrf,
    _csrf_ok,
    _secure,
    _set_cookie,
    _split_bilingual,
    _with_csrf_cookie,
    render,
)
from service.params import KEY_PATTERN
from service.problems import Problem

TRACK_COOKIE = "petition_track"
TRACK_PATH = "/track"
BEIJING = ZoneInfo("Asia/Shanghai")
BAD_CODE = "信访事项编号或查询码不正确，请核对后重新输入。"

Ctx = Annotated[ServiceContext, Depends(context)]
router = APIRouter(route_class=PageRoute, include_in_schema=False)

# The stage in plain words, and what it means for the petitioner.
STAGE_WORDS: dict[Stage, tuple[str, str]] = {
    Stage.REGISTERED: ("已登记", "您的信访事项已登记，有关机关正在决定是否受理。"),
    Stage.IN_HANDLING: ("办理中", "您的信访事项已受理，正在办理。"),
    Stage.REPLIED: ("已答复", "已出具处理意见。如不服，可在期限内请求复查。"),
    Stage.UNDER_REVIEW: ("复查中", "上一级机关正在复查。"),
    Stage.REVIEW_REPLIED: ("已出具复查意见", "已出具复查意见。如不服，可在期限内请求复核。"),
    Stage.UNDER_RE_REVIEW: ("复核中", "正在复核。"),
    Stage.CLOSED: ("已办结", "您的信访事项已办结。"),
}
OUTCOME_WORDS: dict[Outcome, tuple[str, str]] = {
    Outcome.RESOLVED: ("已办结", "您的信访事项已办结。"),
    Outcome.NOT_ACCEPTED: ("不予受理", "有关机关决定不予受理，理由见书面告知。"),
    Outcome.DIVERTED: ("已引导其他途径", "您的事项应通过其他法定途径解决，详见书面告知。"),
    Outcome.WITHDRAWN: ("已撤回", "您已撤回该信访事项。"),
    Outcome.CONCLUDED: ("已终结", "该信访事项已复核终结。"),
}
CLOCK_WORDS: dict[ClockName, str] = {
    ClockName.ROUTING: "信访部门转送、交办期限",
    ClockName.ACCEPTANCE: "决定是否受理的期限",
    ClockName.TRANSFER_OBJECTION: "转送异议期限",
    ClockName.HANDLING: "出具处理意见的期限",
    ClockName.REVIEW_REQUEST: "您可请求复查的截止日期",
    ClockName.REVIEW: "出具复查意见的期限",
    ClockName.RE_REVIEW_REQUEST: "您可请求复核的截止日期",
    ClockName.RE_REVIEW: "出具复核意见的期限",
    ClockName.PROCEDURAL_REPLY: "程序性答复期限",
    ClockName.SETTLEMENT: "答复办理结果的期限",
    ClockName.PROGRESS_REPLY: "答复办理进展的期限",
}
NOTICE_WORDS: dict[str, str] = {
    "registration": "登记告知书",
    "acceptance": "受理告知书",
    "non_acceptance": "不予受理告知书",
    "diversion": "引导告知书",
    "transfer": "转送告知书",
    "assignment": "交办告知书",
    "extension": "延期办理告知书",
    "hearing": "听证通知书",
    "assistance": "救助决定告知书",
    "progress": "办理进展告知书",
    "handling_opinion": "处理意见书",
    "review_opinion": "复查意见书",
    "re_review_opinion": "复核意见书",
    "withdrawal": "撤回告知书",
}
# A notice's template is the action that wrote it (domain/projections.py), the hearing
# booking's its own.
TEMPLATE_KINDS: dict[str, str] = {**{str(a): str(k) for a, k in ACTION_KINDS.items()},
                                  "hearing_scheduled": str(NoticeKind.HEARING)}
DELIVERY_WORDS = {"sent": "已发出", "pending": "正在送达", "failed": "送达未成功，正在处理"}
CHANNEL_WORDS = {"letter": "书面信函", "sms": "短信", "email": "电子邮件"}


def beijing_date(at: datetime | str | None) -> str:
    """The day something happened, in Beijing."""
    if at is None:
        return ""
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    day = at.astimezone(BEIJING)
    return f"{day.year}年{day.month}月{day.day}日"


# ------------------------------------------------------------------- the session


def _petitioner(request: Request, ctx: ServiceContext) -> Principal | None:
    """The petitioner of the track cookie, if it holds a valid petitioner token."""
    cookie = request.cookies.get(TRACK_COOKIE)
    if not cookie or not ctx.tokens.is_ours(cookie):
        return None
    try:
        claims = ctx.tokens.verify(cookie)
    except TokenError:
        return None
    if claims.kind != "petitioner" or not claims.workflow_id or not claims.registration_no:
        return None
    return Principal("petitioner", claims.subject, workflow_id=claims.workflow_id,
                     registration_no=claims.registration_no)


def track_message(status: int, heading: str, message: str, *, link: str = TRACK_PATH,
                  link_text: str = "返回查询页") -> Response:
    return render("track_message.html", status, heading=heading, message=message, link=link,
                  link_text=link_text)


def _forget(response: Response, request: Request) -> Response:
    response.delete_cookie(TRACK_COOKIE, path=TRACK_PATH, httponly=True, samesite="lax",
                           secure=_secure(request))
    return response


def _not_signed_in(request: Request) -> Response:
    page = track_message(401, "请先输入查询码", "您尚未查询，或查询已过期，请重新输入信访事项"
                         "编号和查询码。")
    return _forget(page, request) if request.cookies.get(TRACK_COOKIE) else page


# ------------------------------------------------------------------- the form


def _track_page(request: Request, ctx: ServiceContext, *, status: int = 200,
                error: str = "", registration_no: str = "",
                headers: dict[str, str] | None = None) -> Response:
    token, fresh = _csrf(request, ctx)
    page = render("track.html", status, headers, heading="信访事项办理进度查询", error=error,
                  registration_no=registration_no, csrf_token=token,
                  action=request.url_for("track_post").path)
    return _with_csrf_cookie(page, request, fresh)


@router.get("/track", name="track_page")
async def track_page(request: Request, ctx: Ctx) -> Response:
    return _track_page(request, ctx)


@router.post("/track", name="track_post")
async def track_post(request: Request, ctx: Ctx,
                     registration_no: Annotated[str, Form()] = "",
                     query_code: Annotated[str, Form()] = "",
                     csrf_token: Annotated[str, Form()] = "") -> Response:
    number = registration_no.strip()
    code = query_code.strip()  # spacing and case: the check normalises the code itself
    shown = registration_no.strip()[:64]
    if not _csrf_ok(request, ctx, csrf_token):
        return _track_page(request, ctx, status=400, registration_no=shown,
                           error="页面已过期，请重新输入后查询。")
    if not number or not code:
        return _track_page(request, ctx, status=400, registration_no=shown,
                           error="请输入信访事项编号和查询码。")
    if len(number) > 64 or not re.match(KEY_PATTERN, number) or len(code) > 32:
        return _track_page(request, ctx, status=401, registration_no=shown, error=BAD_CODE)
    try:
        answer = await petitioner_token(ctx, number, code)
    except Problem as refused:
        if refused.kind == "locked":
            wait = int(refused.headers.get("Retry-After", "60"))
            minutes = max(1, -(-wait // 60))
            return _track_page(
                request, ctx, status=401, registration_no=shown,
                headers={"Retry-After": str(wait)},
                error=f"查询码连续多次输入错误，查询已暂时锁定，请 {minutes} 分钟后再试。")
        if refused.status == 401:
            return _track_page(request, ctx, status=401, registration_no=shown,
                               error=BAD_CODE)
        raise
    response = RedirectResponse(request.url_for("track_case").path, status_code=303,
                                headers=SECURITY_HEADERS)
    _set_cookie(response, request, TRACK_COOKIE, answer.access_token, answer.expires_in,
                path=TRACK_PATH)
    return response


# ------------------------------------------------------------------- the case


async def _unit_names(ctx: ServiceContext) -> dict[str, str]:
    async with ctx.sessions() as session:
        return {code: _split_bilingual(name)[0]
                for code, name in (await unit_names(session)).items()}


def _stage(status: PetitionStatus) -> tuple[str, str]:
    if status.stage is Stage.CLOSED and status.outcome is not None:
        return OUTCOME_WORDS.get(status.outcome, STAGE_WORDS[Stage.CLOSED])
    return STAGE_WORDS.get(status.stage or Stage.REGISTERED, STAGE_WORDS[Stage.REGISTERED])


def _deadlines(status: PetitionStatus, names: dict[str, str]) -> list[dict[str, Any]]:
    if status.stage is Stage.CLOSED:
        return []
    return [{"what": CLOCK_WORDS.get(clock.name, "办理期限"), "date": deadline_date(clock.due_at),
             "unit": names.get(clock.unit, ""), "paused": clock.paused,
             "overdue": clock.overdue}
            for clock in sorted(status.clocks, key=lambda c: c.due_at)]


def _notices(listed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    shown = []
    for notice in listed:
        channels = [f"{CHANNEL_WORDS.get(c['channel'], '其他方式')}："
                    f"{DELIVERY_WORDS.get(c['state'], '正在送达')}"
                    for c in notice.get("channels", [])]
        shown.append({
            "title": NOTICE_WORDS.get(TEMPLATE_KINDS.get(notice["kind"], notice["kind"]),
                                      "书面告知"),
            "date": beijing_date(notice["created_at"]),
            "state": DELIVERY_WORDS.get(notice["state"], "正在送达"),
            "channels": "；".join(channels),
            "download": (f"{TRACK_PATH}/notices/{notice['notice_id']}.pdf"
                         if notice.get("download") else None)})
    return shown


@router.get("/track/case", name="track_case")
async def track_case(request: Request, ctx: Ctx) -> Response:
    who = _petitioner(request, ctx)
    if who is None or who.workflow_id is None or who.registration_no is None:
        return _not_signed_in(request)
    try:
        status = await ctx.petitions.status(who.workflow_id)
    except PetitionNotFound:
        return track_message(404, "暂未查到办理信息", "暂时无法查到该信访事项的办理信息，"
                             "请稍后再试。")
    listed = await documents.case_documents(who.registration_no, who, ctx,
                                            documents.document_vault(request))
    names = await _unit_names(ctx)
    stage, explained = _stage(status)
    unit = status.holding_unit or status.responsible_unit
    token, fresh = _csrf(request, ctx)
    page = render("track_case.html", heading="办理进度", registration_no=who.registration_no,
                  stage=stage, explained=explained, unit=names.get(unit or "", ""),
                  deadlines=_deadlines(status, names), notices=_notices(listed.notices),
                  csrf_token=token, signout_action=request.url_for("track_signout").path)
    return _with_csrf_cookie(page, request, fresh)


@router.get("/track/notices/{notice_id}.pdf", name="track_notice")
async def track_notice(request: Request, ctx: Ctx,
                       notice_id: Annotated[int, Path(ge=1, le=2**63 - 1)]) -> Response:
    who = _petitioner(request, ctx)
    if who is None or who.registration_no is None:
        return _not_signed_in(request)
    try:
        return await documents.notice_letter(who.registration_no, notice_id, who, ctx,
                                             documents.document_vault(request))
    except Problem as refused:
        if refused.status in (403, 404):
            return track_message(404, "未找到该告知书", "未找到该书面告知，请返回办理进度页重试。",
                                 link=request.url_for("track_case").path,
                                 link_text="返回办理进度")
        raise


@router.post("/track/signout", name="track_signout")
async def track_signout(request: Request, ctx: Ctx,
                        csrf_token: Annotated[str, Form()] = "") -> Response:
    if not _csrf_ok(request, ctx, csrf_token):
        return track_message(400, "无法退出查询", "页面已过期，请返回后重试。",
                             link=request.url_for("track_case").path, link_text="返回")
    response = RedirectResponse(TRACK_PATH, status_code=303, headers=SECURITY_HEADERS)
    return _forget(response, request)
