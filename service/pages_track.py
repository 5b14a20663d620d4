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
- `POST /track/case/rate`, `/track/case/review`, `/track/case/re-review`,
  `/track/case/withdraw`: the petitioner's own actions (满意度评价, 请求复查, 请求复核, 撤回),
  offered exactly when the workflow's `case` and `allowed_actions` say the petitioner may
  take them, taken through the API's `take_action` with the petitioner's principal. Each
  form carries a one-time token from which the request id is derived: submitted twice, it
  is one action. Then back to /track/case with a notice; a refusal in plain words.
- `POST /track/signout`.

Chinese, or English by the switch (`_()` in the templates, `track.po`). Forms carry the
staff pages' CSRF token (double submit). Every error is a page in the petitioner's words.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Form, Path, Request, Response
from fastapi.responses import RedirectResponse

from adapters.directory import unit_names
from adapters.petition_client import PetitionNotFound
from adapters.tables import Unit

# A deadline as the letters print it: one due at 24:00 is dated its last day, so the page
# and the letter name the same day.
from documents.render import beijing_date as deadline_date
from domain.case import CaseState, PetitionStatus
from domain.lifecycle import allowed_actions
from domain.models import Action, ClockName, Outcome, Satisfaction, Stage
from domain.notice_facts import ACTION_KINDS, NoticeKind
from domain.rules import superiors
from service import documents, i18n
from service.access import case_row, petitioner_actor
from service.api import take_action
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
    form_page,
    language,
    render,
)
from service.params import KEY_PATTERN
from service.problems import Problem

TRACK_COOKIE = "petition_track"
TRACK_PATH = "/track"
BEIJING = ZoneInfo("Asia/Shanghai")

Ctx = Annotated[ServiceContext, Depends(context)]
router = APIRouter(route_class=PageRoute, include_in_schema=False)
Translate = Callable[[str], str]


def _(message: str) -> str:
    """Marks a message for the catalogue (tests/test_i18n.py finds it); the page
    translates it when it shows it (`translator`)."""
    return message


def translator(request: Request) -> Translate:
    """The request's language as a function of a Chinese message."""
    lang = language(request)
    return lambda message: i18n.gettext(lang, message)


BAD_CODE = _("信访事项编号或查询码不正确，请核对后重新输入。")
# The stage in plain words, and what it means for the petitioner.
STAGE_WORDS: dict[Stage, tuple[str, str]] = {
    Stage.REGISTERED: (_("已登记"), _("您的信访事项已登记，有关机关正在决定是否受理。")),
    Stage.IN_HANDLING: (_("办理中"), _("您的信访事项已受理，正在办理。")),
    Stage.REPLIED: (_("已答复"), _("已出具处理意见。如不服，可在期限内请求复查。")),
    Stage.UNDER_REVIEW: (_("复查中"), _("上一级机关正在复查。")),
    Stage.REVIEW_REPLIED: (_("已出具复查意见"), _("已出具复查意见。如不服，可在期限内请求复核。")),
    Stage.UNDER_RE_REVIEW: (_("复核中"), _("正在复核。")),
    Stage.CLOSED: (_("已办结"), _("您的信访事项已办结。")),
}
OUTCOME_WORDS: dict[Outcome, tuple[str, str]] = {
    Outcome.RESOLVED: (_("已办结"), _("您的信访事项已办结。")),
    Outcome.NOT_ACCEPTED: (_("不予受理"), _("有关机关决定不予受理，理由见书面告知。")),
    Outcome.DIVERTED: (_("已引导其他途径"), _("您的事项应通过其他法定途径解决，详见书面告知。")),
    Outcome.WITHDRAWN: (_("已撤回"), _("您已撤回该信访事项。")),
    Outcome.CONCLUDED: (_("已终结"), _("该信访事项已复核终结。")),
}
CLOCK_WORDS: dict[ClockName, str] = {
    ClockName.ROUTING: _("信访部门转送、交办期限"),
    ClockName.ACCEPTANCE: _("决定是否受理的期限"),
    ClockName.TRANSFER_OBJECTION: _("转送异议期限"),
    ClockName.HANDLING: _("出具处理意见的期限"),
    ClockName.REVIEW_REQUEST: _("您可请求复查的截止日期"),
    ClockName.REVIEW: _("出具复查意见的期限"),
    ClockName.RE_REVIEW_REQUEST: _("您可请求复核的截止日期"),
    ClockName.RE_REVIEW: _("出具复核意见的期限"),
    ClockName.PROCEDURAL_REPLY: _("程序性答复期限"),
    ClockName.SETTLEMENT: _("答复办理结果的期限"),
    ClockName.PROGRESS_REPLY: _("答复办理进展的期限"),
}
SOME_DEADLINE = _("办理期限")
NOTICE_WORDS: dict[str, str] = {
    "registration": _("登记告知书"),
    "acceptance": _("受理告知书"),
    "non_acceptance": _("不予受理告知书"),
    "diversion": _("引导告知书"),
    "transfer": _("转送告知书"),
    "assignment": _("交办告知书"),
    "extension": _("延期办理告知书"),
    "hearing": _("听证通知书"),
    "assistance": _("救助决定告知书"),
    "progress": _("办理进展告知书"),
    "handling_opinion": _("处理意见书"),
    "review_opinion": _("复查意见书"),
    "re_review_opinion": _("复核意见书"),
    "withdrawal": _("撤回告知书"),
}
SOME_NOTICE = _("书面告知")
# A notice's template is the action that wrote it (domain/projections.py), the hearing
# booking's its own.
TEMPLATE_KINDS: dict[str, str] = {**{str(a): str(k) for a, k in ACTION_KINDS.items()},
                                  "hearing_scheduled": str(NoticeKind.HEARING)}
DELIVERY_WORDS = {"sent": _("已发出"), "pending": _("正在送达"),
                  "failed": _("送达未成功，正在处理")}
CHANNEL_WORDS = {"letter": _("书面信函"), "sms": _("短信"), "email": _("电子邮件")}
SOME_CHANNEL = _("其他方式")
COLON, SEMICOLON = _("："), _("；")
SATISFACTION_WORDS = {Satisfaction.SATISFIED: _("满意"),
                      Satisfaction.BASICALLY_SATISFIED: _("基本满意"),
                      Satisfaction.UNSATISFIED: _("不满意")}
# What the petitioner may do on the page: action -> its form's path under /track/case.
PETITIONER_FORMS: dict[Action, str] = {
    Action.RATE: "rate", Action.REQUEST_REVIEW: "review",
    Action.REQUEST_RE_REVIEW: "re-review", Action.WITHDRAW: "withdraw"}
# After the action: back to the case with one of these (by its key: never free text in a
# URL).
DONE_WORDS = {
    "rate": _("您的评价已提交，谢谢您的反馈。"),
    "review": _("您的复查请求已提交。复查机关将在期限内出具复查意见，请留意书面告知。"),
    "re-review": _("您的复核请求已提交。复核机关将在期限内出具复核意见，请留意书面告知。"),
    "withdraw": _("您已撤回该信访事项，有关机关将不再办理。"),
}
REFUSED_WORDS = {
    "stage": _("该信访事项目前不能办理这一项：可能期限已过，或情况已有变化。"
               "请返回查看最新办理进度。"),
    "review:organ": _("复查机关选择有误，请返回重新选择。"),
    "re_review:organ": _("复核机关选择有误，请返回重新选择。"),
}
REFUSED_OTHERWISE = _("暂时无法办理您的请求，请返回办理进度页重试。如有疑问，请联系办理单位。")
UNAVAILABLE = _("系统暂时无法处理您的请求，请稍后再试。")
MAX_REASON_CHARS = 500


def beijing_date(at: datetime | str | None) -> str:
    """The day something happened, in Beijing."""
    if at is None:
        return ""
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    day = at.astimezone(BEIJING)
    return f"{day.year}年{day.month}月{day.day}日"


def english_date(chinese: str) -> str:
    """'2026年3月9日' -> '9 March 2026' (the English pages' dates)."""
    found = re.fullmatch(r"(\d+)年(\d+)月(\d+)日", chinese)
    if found is None:
        return chinese
    year, month, day = (int(g) for g in found.groups())
    return f"{day} {datetime(2000, month, 1):%B} {year}"


def dated(request: Request) -> Callable[[str], str]:
    """A Chinese date in the request's language."""
    return english_date if language(request) == "en" else (lambda day: day)


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


def track_message(request: Request, status: int, heading: str, message: str, *,
                  link: str = TRACK_PATH, link_text: str = _("返回查询页")) -> Response:
    """A page of the petitioner's pages: its texts are messages, translated here."""
    t = translator(request)
    return render("track_message.html", status, request=request, heading=t(heading),
                  message=t(message), link=link, link_text=t(link_text))


def _forget(response: Response, request: Request) -> Response:
    response.delete_cookie(TRACK_COOKIE, path=TRACK_PATH, httponly=True, samesite="lax",
                           secure=_secure(request))
    return response


def _not_signed_in(request: Request) -> Response:
    page = track_message(request, 401, _("请先输入查询码"),
                         _("您尚未查询，或查询已过期，请重新输入信访事项编号和查询码。"))
    return _forget(page, request) if request.cookies.get(TRACK_COOKIE) else page


# ------------------------------------------------------------------- the form


def _track_page(request: Request, ctx: ServiceContext, *, status: int = 200,
                error: str = "", registration_no: str = "",
                headers: dict[str, str] | None = None) -> Response:
    return form_page("track.html", request, ctx, status, headers, error=error,
                     registration_no=registration_no,
                     action=request.url_for("track_post").path,
                     intake=request.url_for("intake_page").path)


@router.get("/track", name="track_page")
async def track_page(request: Request, ctx: Ctx) -> Response:
    return _track_page(request, ctx)


@router.post("/track", name="track_post")
async def track_post(request: Request, ctx: Ctx,
                     registration_no: Annotated[str, Form()] = "",
                     query_code: Annotated[str, Form()] = "",
                     csrf_token: Annotated[str, Form()] = "") -> Response:
    _ = translator(request)
    number = registration_no.strip()
    code = query_code.strip()  # spacing and case: the check normalises the code itself
    shown = registration_no.strip()[:64]
    if not _csrf_ok(request, ctx, csrf_token):
        return _track_page(request, ctx, status=400, registration_no=shown,
                           error=_("页面已过期，请重新输入后查询。"))
    if not number or not code:
        return _track_page(request, ctx, status=400, registration_no=shown,
                           error=_("请输入信访事项编号和查询码。"))
    if len(number) > 64 or not re.match(KEY_PATTERN, number) or len(code) > 32:
        return _track_page(request, ctx, status=401, registration_no=shown,
                           error=_(BAD_CODE))
    try:
        answer = await petitioner_token(ctx, number, code)
    except Problem as refused:
        if refused.kind == "locked":
            wait = int(refused.headers.get("Retry-After", "60"))
            minutes = max(1, -(-wait // 60))
            return _track_page(
                request, ctx, status=401, registration_no=shown,
                headers={"Retry-After": str(wait)},
                error=_("查询码连续多次输入错误，查询已暂时锁定，请 {minutes} 分钟后再试。"
                        ).format(minutes=minutes))
        if refused.status == 401:
            return _track_page(request, ctx, status=401, registration_no=shown,
                               error=_(BAD_CODE))
        raise
    response = RedirectResponse(request.url_for("track_case").path, status_code=303,
                                headers=SECURITY_HEADERS)
    _set_cookie(response, request, TRACK_COOKIE, answer.access_token, answer.expires_in,
                path=TRACK_PATH)
    return response


# ------------------------------------------------------------------- the case


async def directory_names(ctx: ServiceContext) -> dict[str, str]:
    """The units' names as the directory holds them: '中文名 English name'."""
    async with ctx.sessions() as session:
        return dict(await unit_names(session))


def unit_name(names: dict[str, str], code: str | None, request: Request) -> str:
    """A unit's name in the request's language (the directory holds both)."""
    if not code or code not in names:
        return ""
    chinese, english = _split_bilingual(names[code])
    return english if language(request) == "en" and english else chinese


def _stage(status: PetitionStatus) -> tuple[str, str]:
    if status.stage is Stage.CLOSED and status.outcome is not None:
        return OUTCOME_WORDS.get(status.outcome, STAGE_WORDS[Stage.CLOSED])
    return STAGE_WORDS.get(status.stage or Stage.REGISTERED, STAGE_WORDS[Stage.REGISTERED])


def deadlines(status: PetitionStatus, names: dict[str, str],
              request: Request) -> list[dict[str, Any]]:
    if status.stage is Stage.CLOSED:
        return []
    t, day = translator(request), dated(request)
    return [{"what": t(CLOCK_WORDS.get(clock.name, SOME_DEADLINE)),
             "date": day(deadline_date(clock.due_at)), "clock": clock.name,
             "unit": unit_name(names, clock.unit, request), "paused": clock.paused,
             "overdue": clock.overdue}
            for clock in sorted(status.clocks, key=lambda c: c.due_at)]


def _notices(listed: list[dict[str, Any]], request: Request) -> list[dict[str, Any]]:
    t, day = translator(request), dated(request)
    shown = []
    for notice in listed:
        channels = [f"{t(CHANNEL_WORDS.get(c['channel'], SOME_CHANNEL))}{t(COLON)}"
                    f"{t(DELIVERY_WORDS.get(c['state'], DELIVERY_WORDS['pending']))}"
                    for c in notice.get("channels", [])]
        shown.append({
            "title": t(NOTICE_WORDS.get(TEMPLATE_KINDS.get(notice["kind"], notice["kind"]),
                                        SOME_NOTICE)),
            "date": day(beijing_date(notice["created_at"])),
            "state": t(DELIVERY_WORDS.get(notice["state"], DELIVERY_WORDS["pending"])),
            "channels": t(SEMICOLON).join(channels),
            "download": (f"{TRACK_PATH}/notices/{notice['notice_id']}.pdf"
                         if notice.get("download") else None)})
    return shown


async def _organs(ctx: ServiceContext, case: CaseState, above: str | None,
                  exclude: set[str]) -> list[str]:
    """The organs a review (of `above`'s decision) may go to: those above it in the facts
    the case holds, else in the directory."""
    found = superiors(case, above)
    if not found and above:
        async with ctx.sessions() as session:
            unit = await session.get(Unit, above)
        found = {u for u in (unit.parent_code, unit.superior_bureau_code) if u} if unit else set()
    return sorted(found - exclude)


def _request_token(ctx: ServiceContext) -> str:
    """A form's one-time token: random, signed (so a request id is never the caller's
    choice)."""
    nonce = secrets.token_urlsafe(18)
    ring = ctx.tokens.ring
    mac = hmac.new(ring.keys[ring.active], f"track-request:{nonce}".encode(),
                   hashlib.sha256).hexdigest()[:32]
    return f"{nonce}.{ring.active}.{mac}"


def request_id_of(ctx: ServiceContext, token: str) -> str | None:
    """The request id a form's token stands for (the same for the same form, submitted
    twice), or None if the token is not one of ours."""
    nonce, _dot, rest = token.partition(".")
    kid, _dot, mac = rest.rpartition(".")
    key = ctx.tokens.ring.keys.get(kid)
    if not nonce or key is None or len(token) > 200:
        return None
    expected = hmac.new(key, f"track-request:{nonce}".encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(mac, expected[:32]):
        return None
    return f"track-{expected[32:64]}"


async def _offered(ctx: ServiceContext, who: Principal, case: CaseState | None,
                   status: PetitionStatus, names: dict[str, str],
                   request: Request) -> dict[str, Any]:
    """The petitioner's forms the case offers now (the workflow's own answer), each with
    what it needs."""
    assert who.registration_no is not None
    if case is None:
        return {}
    row = await case_row(ctx, who.registration_no)
    allowed = {a.action for a in allowed_actions(case, petitioner_actor(row))}
    offered: dict[str, Any] = {}
    t = translator(request)
    by_clock = {d["clock"]: d["date"] for d in deadlines(status, names, request)}
    if Action.RATE in allowed:
        offered["rate"] = {
            "choices": [(s.value, t(w)) for s, w in SATISFACTION_WORDS.items()],
            "chosen": status.satisfaction.value if status.satisfaction else ""}
    for action, key, clock, above, exclude in (
            (Action.REQUEST_REVIEW, "review", ClockName.REVIEW_REQUEST,
             case.responsible_unit, set()),
            (Action.REQUEST_RE_REVIEW, "re_review", ClockName.RE_REVIEW_REQUEST,
             case.review_organ, {case.review_organ or "", case.responsible_unit or ""})):
        if action not in allowed:
            continue
        organs = await _organs(ctx, case, above, exclude)
        if organs:
            offered[key] = {"organs": [(code, unit_name(names, code, request) or code)
                                       for code in organs],
                            "until": by_clock.get(clock, "")}
    if Action.WITHDRAW in allowed:
        offered["withdraw"] = {}
    for form in offered.values():
        form["request_token"] = _request_token(ctx)
    return offered


@router.get("/track/case", name="track_case")
async def track_case(request: Request, ctx: Ctx, done: str = "") -> Response:
    who = _petitioner(request, ctx)
    if who is None or who.workflow_id is None or who.registration_no is None:
        return _not_signed_in(request)
    try:
        status = await ctx.petitions.status(who.workflow_id)
        names = await directory_names(ctx)
        case = await ctx.petitions.case(who.workflow_id)
        offered = await _offered(ctx, who, case, status, names, request)
    except PetitionNotFound:
        return track_message(request, 404, _("暂未查到办理信息"),
                             _("暂时无法查到该信访事项的办理信息，请稍后再试。"))
    except Problem as problem:
        if problem.status != 503:
            raise
        return track_message(request, 503, _("服务暂不可用"), UNAVAILABLE,
                             link=request.url_for("track_case").path, link_text=_("重试"))
    listed = await documents.case_documents(who.registration_no, who, ctx,
                                            documents.document_vault(request))
    t = translator(request)
    stage, explained = _stage(status)
    unit = status.holding_unit or status.responsible_unit
    token, fresh = _csrf(request, ctx)
    page = render("track_case.html", request=request, registration_no=who.registration_no,
                  stage=t(stage), explained=t(explained), unit=unit_name(names, unit, request),
                  review_organ=unit_name(names, case.review_organ if case else None, request),
                  re_review_organ=unit_name(names, case.re_review_organ if case else None,
                                            request),
                  rated=t(SATISFACTION_WORDS[status.satisfaction]) if status.satisfaction
                  else "",
                  deadlines=deadlines(status, names, request),
                  notices=_notices(listed.notices, request), offered=offered,
                  done=t(DONE_WORDS[done]) if done in DONE_WORDS else "",
                  csrf_token=token, signout_action=request.url_for("track_signout").path)
    return _with_csrf_cookie(page, request, fresh)


# ------------------------------------------------------------------- acting


async def _act(request: Request, ctx: ServiceContext, action: Action, body: dict[str, Any],
               csrf_token: str, request_token: str) -> Response:
    """The petitioner's action through the API's own path; then back to the case."""
    who = _petitioner(request, ctx)
    if who is None or who.registration_no is None:
        return _not_signed_in(request)
    back = request.url_for("track_case").path
    request_id = request_id_of(ctx, request_token)
    if not _csrf_ok(request, ctx, csrf_token) or request_id is None:
        return track_message(request, 400, _("未能提交"), _("页面已过期，请返回后重试。"),
                             link=back, link_text=_("返回办理进度"))
    try:
        await take_action(ctx, who, who.registration_no, action, body, request_id)
    except Problem as refused:
        if refused.status == 503:
            return track_message(request, 503, _("服务暂不可用"), UNAVAILABLE, link=back,
                                 link_text=_("返回办理进度"))
        if refused.status >= 500:
            raise
        rule = str(refused.extra.get("rule") or "")
        return track_message(request, refused.status, _("未能提交"),
                             REFUSED_WORDS.get(rule, REFUSED_OTHERWISE),
                             link=back, link_text=_("返回办理进度"))
    return RedirectResponse(f"{back}?done={PETITIONER_FORMS[action]}", status_code=303,
                            headers=SECURITY_HEADERS)


def _missing(request: Request, message: str) -> Response:
    return track_message(request, 400, _("未能提交"), message,
                         link=request.url_for("track_case").path, link_text=_("返回办理进度"))


def _text(value: str) -> str | None:
    value = value.strip()
    return value[:MAX_REASON_CHARS] if value else None


@router.post("/track/case/rate", name="track_rate")
async def track_rate(request: Request, ctx: Ctx,
                     satisfaction: Annotated[str, Form()] = "",
                     comment: Annotated[str, Form()] = "",
                     csrf_token: Annotated[str, Form()] = "",
                     request_token: Annotated[str, Form()] = "") -> Response:
    if satisfaction not in {s.value for s in Satisfaction}:
        return _missing(request, _("请选择满意、基本满意或不满意。"))
    body: dict[str, Any] = {"satisfaction": satisfaction}
    if _text(comment):
        body["comment"] = _text(comment)
    return await _act(request, ctx, Action.RATE, body, csrf_token, request_token)


async def _ask_review(request: Request, ctx: ServiceContext, action: Action, organ: str,
                      reason: str, csrf_token: str, request_token: str) -> Response:
    """A request for review or re-review: the organ chosen and the reasons given."""
    review = action is Action.REQUEST_REVIEW
    if not _text(reason):
        return _missing(request, _("请填写请求复查的理由。") if review
                        else _("请填写请求复核的理由。"))
    if not re.match(KEY_PATTERN, organ):
        return _missing(request, _("请选择复查机关。") if review else _("请选择复核机关。"))
    body = {"review_organ" if review else "re_review_organ": organ, "reason": _text(reason)}
    return await _act(request, ctx, action, body, csrf_token, request_token)


@router.post("/track/case/review", name="track_review")
async def track_review(request: Request, ctx: Ctx,
                       organ: Annotated[str, Form()] = "",
                       reason: Annotated[str, Form()] = "",
                       csrf_token: Annotated[str, Form()] = "",
                       request_token: Annotated[str, Form()] = "") -> Response:
    return await _ask_review(request, ctx, Action.REQUEST_REVIEW, organ, reason, csrf_token,
                             request_token)


@router.post("/track/case/re-review", name="track_re_review")
async def track_re_review(request: Request, ctx: Ctx,
                          organ: Annotated[str, Form()] = "",
                          reason: Annotated[str, Form()] = "",
                          csrf_token: Annotated[str, Form()] = "",
                          request_token: Annotated[str, Form()] = "") -> Response:
    return await _ask_review(request, ctx, Action.REQUEST_RE_REVIEW, organ, reason,
                             csrf_token, request_token)


@router.post("/track/case/withdraw", name="track_withdraw")
async def track_withdraw(request: Request, ctx: Ctx,
                         confirm: Annotated[str, Form()] = "",
                         reason: Annotated[str, Form()] = "",
                         csrf_token: Annotated[str, Form()] = "",
                         request_token: Annotated[str, Form()] = "") -> Response:
    if confirm != "yes":
        return _missing(request, _("请勾选确认撤回后再提交。"))
    body: dict[str, Any] = {"reason": _text(reason)} if _text(reason) else {}
    return await _act(request, ctx, Action.WITHDRAW, body, csrf_token, request_token)


# ------------------------------------------------------------------- letters, sign-out


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
            return track_message(request, 404, _("未找到该告知书"),
                                 _("未找到该书面告知，请返回办理进度页重试。"),
                                 link=request.url_for("track_case").path,
                                 link_text=_("返回办理进度"))
        raise


@router.post("/track/signout", name="track_signout")
async def track_signout(request: Request, ctx: Ctx,
                        csrf_token: Annotated[str, Form()] = "") -> Response:
    if not _csrf_ok(request, ctx, csrf_token):
        return track_message(request, 400, _("无法退出查询"), _("页面已过期，请返回后重试。"),
                             link=request.url_for("track_case").path, link_text=_("返回"))
    response = RedirectResponse(TRACK_PATH, status_code=303, headers=SECURITY_HEADERS)
    return _forget(response, request)
