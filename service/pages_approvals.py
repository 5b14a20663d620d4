"""Issue 15: the unit heads' and leaders' pages.

- `GET /approvals`: what waits on the signed-in person's decision -- extension requests
  (the unit head's), assistance applications (the unit head's up to the profile's leader
  threshold, a leader's above it), hearings held whose outcome is still to be recorded --
  found in the read model and confirmed with the case itself
  (`domain.lifecycle.allowed_actions`), so the queue offers exactly what this person may
  decide; and the unit's serious or escalated open cases without a leader, to contract to
  a named leader (领导包案). Each decision is a form (CSRF, a one-time form token that
  makes the request id: a double click is one decision) acting through
  `service.api.take_action`, then back here with a notice.
- `GET /approvals/reassign` (unit heads): choose whose open cases move and who takes
  them, see how many there are, confirm; `POST` starts one Temporal batch signal
  (service/reassign.py); `GET /approvals/reassign/{job_id}` shows its progress and the
  final count. No timed refresh (a `<meta http-equiv="refresh">` every few seconds fails
  WCAG 2.2.1, and axe-core counts it critical): the page waits on the server, up to
  `PROGRESS_WAIT`, for the batch to settle, and otherwise offers a refresh button.

Chinese first; every text is marked for the English catalogue (locale/en/approvals.po).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.service import RPCError

from adapters.petition_client import PetitionNotFound
from adapters.tables import AssistanceApplication, Hearing, Person, Petition, PetitionEvent, Unit
from domain.calendar import SHANGHAI as BEIJING
from domain.case import CaseState
from domain.lifecycle import allowed_actions
from domain.models import Action, Actor, HearingOutcome, Role, Stage
from security.sealing import SealingError
from service import i18n, reassign
from service.api import take_action
from service.auth.principal import Principal
from service.context import ServiceContext, context
from service.documents import document_vault
from service.pages import (
    SECURITY_HEADERS,
    PageRoute,
    _csrf_ok,
    _macs,
    _split_bilingual,
    form_page,
    language,
    render,
    signed_in_staff,
    staff_frame,
    to_signin,
)
from service.problems import Problem

router = APIRouter(route_class=PageRoute, include_in_schema=False)
Ctx = Annotated[ServiceContext, Depends(context)]

DECIDERS = frozenset({Role.UNIT_HEAD, Role.LEADER})
CANDIDATES = 100  # of each kind, before each is confirmed with its case
CONTRACT_LIST = 50
CASE_QUERIES_AT_ONCE = 8
SERIOUS_PERSONS = 5  # a joint petition (集体访)
SERIOUS_REPEATS = 2  # repeated visits on the same matter
PROGRESS_WAIT = 10.0  # seconds a progress page waits for the batch to settle
PROGRESS_POLL = 0.5
SETTLE_AFTER_CLOSE = timedelta(seconds=60)  # cases still writing their audit records
FORM_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_TEXT = 500
MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
             "Dec")


def _(text: str) -> str:
    """Marks a message for the catalogue; translated when the page is rendered."""
    return text


KIND_WORDS = {"extension": _("延期申请"), "assistance": _("救助申请"),
              "hearing": _("听证结果待记录")}
ASSISTANCE_WORDS = {"judicial": _("司法救助"), "hardship": _("生活困难救助")}
OUTCOME_WORDS = {HearingOutcome.SUPPORTED: _("支持"),
                 HearingOutcome.PARTLY_SUPPORTED: _("部分支持"),
                 HearingOutcome.NOT_SUPPORTED: _("不支持"),
                 HearingOutcome.ADJOURNED: _("休会再议")}
DONE = {
    "extension-approved": _("已批准 {no} 的延期申请。"),
    "extension-refused": _("已决定不予延期：{no}。"),
    "assistance-approved": _("已批准 {no} 的救助申请。"),
    "assistance-refused": _("已决定不予救助：{no}。"),
    "hearing-recorded": _("已记录 {no} 的听证结果。"),
    "contract": _("已将 {no} 交由包案领导办理。"),
}
ERRORS = {
    "expired": _("页面已过期，请重新操作。"),
    "reason": _("请填写理由或情况说明后再提交。"),
    "invalid": _("提交的内容不完整或格式不正确，请检查后重试。"),
    "refused": _("未能办理 {no}：该事项已不在您的审批范围内，可能已由他人处理。"),
    "days": _("未能办理 {no}：批准的天数不能超过申请的天数。"),
    "amount": _("未能办理 {no}：批准金额不能超过申请金额。"),
    "cap": _("未能办理 {no}：金额超过救助上限，须由包案领导例外批准。"),
    "leader": _("未能办理 {no}：金额超过单位负责人审批额度，须由包案领导审批。"),
    "leader-choice": _("请从列表中选择包案领导。"),
}
RULE_ERRORS = {"extension": "days", "assistance:amount": "amount", "assistance:cap": "cap",
               "assistance:exception": "cap", "assistance:leader": "leader"}


def gettext(lang: str, text: str) -> str:
    """`text` in `lang` (named so the catalogue check extracts literal messages)."""
    return i18n.gettext(lang, text)


def moment(at: datetime, lang: str) -> str:
    """A moment as Beijing time, as a date a reader of either language expects."""
    local = at.astimezone(BEIJING)
    if lang == "en":
        return f"{local.day} {MONTHS_EN[local.month - 1]} {local.year}, {local:%H:%M}"
    return f"{local.year}年{local.month}月{local.day}日 {local:%H:%M}"


def yuan(amount: Decimal, lang: str) -> str:
    return f"{amount:,.2f} " + ("yuan" if lang == "en" else "元")


def _name(names: dict[str, str], person: str | None) -> str:
    return names.get(person or "", person or "")


async def _people(session: AsyncSession, ids: Iterable[str | None]) -> dict[str, str]:
    wanted = {i for i in ids if i}
    if not wanted:
        return {}
    rows = (await session.execute(select(Person.id, Person.name)
                                  .where(Person.id.in_(wanted)))).all()
    return {str(i): str(n) for i, n in rows}


async def _units_of(session: AsyncSession, actor: Actor) -> set[str]:
    """The units whose cases wait on `actor`: a unit head's own unit; a leader's contact
    unit and every unit whose escalation reaches them first (the nearest supervising
    leader up its parent chain)."""
    if actor.role is not Role.LEADER:
        return {actor.unit}
    rows = {u.code: u for u in (await session.execute(
        select(Unit.code, Unit.parent_code, Unit.supervising_leader_id))).all()}

    def leader_of(code: str | None) -> str | None:
        for _step in range(10):
            unit = rows.get(code or "")
            if unit is None:
                return None
            if unit.supervising_leader_id:
                return str(unit.supervising_leader_id)
            code = unit.parent_code
        return None

    return {actor.unit} | {code for code in rows if leader_of(code) == actor.id}


async def _cases(ctx: ServiceContext, workflow_ids: Iterable[str]) -> dict[str, CaseState]:
    """Each case as its workflow holds it now (a few queries at a time)."""
    limit = asyncio.Semaphore(CASE_QUERIES_AT_ONCE)

    async def one(workflow_id: str) -> tuple[str, CaseState | None]:
        async with limit:
            try:
                return workflow_id, await ctx.petitions.case(workflow_id)
            except (PetitionNotFound, RPCError):
                return workflow_id, None

    found = await asyncio.gather(*(one(w) for w in set(workflow_ids)))
    return {w: case for w, case in found if case is not None}


def _allowed(case: CaseState, actor: Actor) -> set[Action]:
    return {a.action for a in allowed_actions(case, actor)}


# ------------------------------------------------------------------- the queue


@dataclass
class Item:
    kind: str
    no: str
    what: str
    by: str
    since: str
    figure: str
    reason: str | None
    at: datetime
    fields: dict[str, Any]


async def _extension_items(session: AsyncSession, ctx: ServiceContext, actor: Actor,
                           units: set[str], lang: str) -> list[Item]:
    if actor.role is not Role.UNIT_HEAD:
        return []  # the unit head decides extensions (Art. 34)
    asked = (select(PetitionEvent.workflow_id, func.max(PetitionEvent.at).label("at"))
             .where(PetitionEvent.action == Action.REQUEST_EXTENSION.value,
                    PetitionEvent.accepted.is_(True))
             .group_by(PetitionEvent.workflow_id).subquery())
    decided = (select(PetitionEvent.workflow_id, func.max(PetitionEvent.at).label("at"))
               .where(PetitionEvent.action == Action.DECIDE_EXTENSION.value,
                      PetitionEvent.accepted.is_(True))
               .group_by(PetitionEvent.workflow_id).subquery())
    rows = (await session.execute(
        select(Petition.workflow_id, Petition.registration_no, asked.c.at)
        .join(asked, asked.c.workflow_id == Petition.workflow_id)
        .outerjoin(decided, decided.c.workflow_id == Petition.workflow_id)
        .where(Petition.stage == Stage.IN_HANDLING.value, Petition.responsible_unit.in_(units),
               or_(decided.c.at.is_(None), decided.c.at < asked.c.at))
        .order_by(asked.c.at).limit(CANDIDATES))).all()
    cases = await _cases(ctx, (r.workflow_id for r in rows))
    waiting = [(r, cases[r.workflow_id]) for r in rows if r.workflow_id in cases]
    waiting = [(r, c) for r, c in waiting if c.pending_extension is not None
               and Action.DECIDE_EXTENSION in _allowed(c, actor)]
    names = await _people(session, (c.pending_extension.requested_by for _r, c in waiting
                                     if c.pending_extension))
    items = []
    for row, case in waiting:
        pending = case.pending_extension
        assert pending is not None
        items.append(Item(
            "extension", row.registration_no, gettext(lang, KIND_WORDS["extension"]),
            _name(names, pending.requested_by), moment(row.at, lang),
            gettext(lang, "{days}天").format(days=pending.days), pending.reason, row.at,
            {"days": pending.days}))
    return items


async def _assistance_items(request: Request, session: AsyncSession, ctx: ServiceContext,
                            actor: Actor, units: set[str], lang: str) -> list[Item]:
    rows = (await session.execute(
        select(AssistanceApplication, Petition.workflow_id, Petition.registration_no)
        .join(Petition, Petition.id == AssistanceApplication.petition_id)
        .where(AssistanceApplication.status == "requested",
               Petition.stage == Stage.IN_HANDLING.value,
               or_(Petition.responsible_unit.in_(units), Petition.leader_id == actor.id))
        .order_by(AssistanceApplication.requested_at).limit(CANDIDATES))).all()
    cases = await _cases(ctx, (r.workflow_id for r in rows))
    names = await _people(session, (r[0].requested_by for r in rows))
    vault = document_vault(request)
    items = []
    for app, workflow_id, number in rows:
        case = cases.get(workflow_id)
        if case is None or Action.DECIDE_ASSISTANCE not in _allowed(case, actor):
            continue
        held = next((a for a in case.assistance if a.application_no == app.application_no
                     and a.status == "requested"), None)
        if held is None:
            continue
        policy = case.profile.assistance
        above = held.amount_yuan > policy.leader_threshold_yuan
        # The unit head decides up to the threshold; above it, a leader (the domain rule).
        if above != (actor.role is Role.LEADER):
            continue
        try:
            reason: str | None = (await vault.open(
                app.reason_sealed, f"assistance_applications.reason:{app.idempotency_key}")
            ).decode()
        except SealingError:
            reason = None  # the case page has it
        over_cap = held.amount_yuan > policy.cap_yuan
        kind = gettext(lang, ASSISTANCE_WORDS.get(app.kind, app.kind))
        persons = gettext(lang, "{persons}人").format(persons=held.persons)
        figure = f"{yuan(held.amount_yuan, lang)} · {kind} · {persons}"
        items.append(Item(
            "assistance", number, gettext(lang, KIND_WORDS["assistance"]),
            _name(names, app.requested_by), moment(app.requested_at, lang), figure, reason,
            app.requested_at,
            {"application_no": app.application_no, "amount": f"{held.amount_yuan:.2f}",
             "over_cap": over_cap, "cap": yuan(policy.cap_yuan, lang),
             "threshold": yuan(policy.leader_threshold_yuan, lang), "above": above}))
    return items


async def _hearing_items(session: AsyncSession, ctx: ServiceContext, actor: Actor,
                         units: set[str], lang: str) -> list[Item]:
    now = datetime.now(UTC)
    rows = (await session.execute(
        select(Hearing, Petition.workflow_id, Petition.registration_no)
        .join(Petition, Petition.id == Hearing.petition_id)
        .where(Hearing.outcome.is_(None), Hearing.starts_at <= now,
               Petition.stage != Stage.CLOSED.value,
               or_(func.coalesce(Petition.responsible_unit, Petition.holding_unit).in_(units),
                   Petition.leader_id == actor.id))
        .order_by(Hearing.starts_at).limit(CANDIDATES))).all()
    cases = await _cases(ctx, (r.workflow_id for r in rows))
    scheduled = (await session.execute(
        select(PetitionEvent.workflow_id, PetitionEvent.detail["hearing_no"].astext,
               PetitionEvent.actor_id)
        .where(PetitionEvent.workflow_id.in_({r.workflow_id for r in rows}),
               PetitionEvent.action == Action.SCHEDULE_HEARING.value,
               PetitionEvent.accepted.is_(True)))).all() if rows else []
    by_whom = {(w, str(n)): a for w, n, a in scheduled}
    names = await _people(session, by_whom.values())
    items = []
    for hearing, workflow_id, number in rows:
        case = cases.get(workflow_id)
        if case is None or Action.RECORD_HEARING not in _allowed(case, actor) or not any(
                h.hearing_no == hearing.hearing_no and h.outcome is None for h in case.hearings):
            continue
        items.append(Item(
            "hearing", number, gettext(lang, KIND_WORDS["hearing"]),
            _name(names, by_whom.get((workflow_id, str(hearing.hearing_no)))),
            moment(hearing.starts_at, lang),
            gettext(lang, "第{n}次听证 · {venue}").format(n=hearing.hearing_no,
                                                   venue=hearing.venue), None,
            hearing.starts_at, {"hearing_no": hearing.hearing_no}))
    return items


async def _contractable(session: AsyncSession, ctx: ServiceContext, actor: Actor,
                        units: set[str], lang: str) -> list[dict[str, Any]]:
    """The units' open serious or escalated cases without a leader, each with the leaders
    (supervising the case's unit or a unit above it) it may be contracted to."""
    unit_of = func.coalesce(Petition.responsible_unit, Petition.holding_unit)
    rows = (await session.execute(
        select(Petition).where(
            unit_of.in_(units), Petition.stage != Stage.CLOSED.value,
            Petition.leader_id.is_(None),
            or_(Petition.escalation_level > 0, Petition.overdue.is_(True),
                Petition.persons >= SERIOUS_PERSONS,
                Petition.repeat_visits >= SERIOUS_REPEATS))
        .order_by(Petition.escalation_level.desc(), Petition.next_deadline)
        .limit(CONTRACT_LIST))).scalars().all()
    cases = await _cases(ctx, (r.workflow_id for r in rows))
    found = []
    for row in rows:
        case = cases.get(row.workflow_id)
        if case is None or case.leader_id or Action.CONTRACT_TO_LEADER not in _allowed(
                case, actor):
            continue
        leaders = await _leaders_for(session, row.responsible_unit or row.holding_unit, actor,
                                     lang)
        if not leaders:
            continue
        why = []
        if row.escalation_level:
            why.append(gettext(lang, "已逾期并升级督办（{level}级）").format(
                level=row.escalation_level))
        elif row.overdue:
            why.append(gettext(lang, "已逾期"))
        if row.persons >= SERIOUS_PERSONS:
            why.append(gettext(lang, "集体访{persons}人").format(persons=row.persons))
        if row.repeat_visits >= SERIOUS_REPEATS:
            why.append(gettext(lang, "重复信访{n}次").format(n=row.repeat_visits))
        found.append({"no": row.registration_no, "why": "；".join(why) if lang == "zh"
                      else "; ".join(why), "leaders": leaders,
                      "since": moment(row.registered_at, lang)})
    return found


async def _leaders_for(session: AsyncSession, unit: str, actor: Actor, lang: str = "zh"
                       ) -> list[tuple[str, str]]:
    """The leaders a case of `unit` may be contracted to, nearest first: the supervising
    leaders up the unit's parent chain (the escalation's), and a leader acting: themselves."""
    chain: list[str] = [actor.id] if actor.role is Role.LEADER else []
    code: str | None = unit
    for _step in range(10):
        row = (await session.execute(select(Unit.parent_code, Unit.supervising_leader_id)
                                     .where(Unit.code == code))).first()
        if row is None:
            break
        if row.supervising_leader_id and row.supervising_leader_id not in chain:
            chain.append(str(row.supervising_leader_id))
        code = row.parent_code
    people = {p.id: p for p in (await session.scalars(select(Person).where(
        Person.id.in_(chain), Person.role == "leader"))).all()}
    def words(person: Person) -> str:
        zh, en = _split_bilingual(person.title)
        title = en if lang == "en" and en else zh
        return f"{person.name} · {title}" if title else person.name

    return [(lid, words(people[lid])) for lid in chain if lid in people]


def _banner(request: Request, lang: str) -> tuple[str, str]:
    """The notice or the error the last decision redirected here with."""
    query = request.query_params
    number = query.get("no", "")
    number = number if CODE.match(number) else ""
    done, error = query.get("done", ""), query.get("error", "")
    notice = gettext(lang, DONE[done]).format(no=number) if done in DONE else ""
    problem = gettext(lang, ERRORS[error]).format(no=number) if error in ERRORS else ""
    return notice, problem


def _message(request: Request, frame: dict[str, str], status: int, heading: str,
             message: str, link: str = "/approvals", link_text: str = _("返回审批事项")
             ) -> Response:
    lang = language(request)
    return render("approvals_message.html", status, request=request,
                  heading=gettext(lang, heading), message=gettext(lang, message), link=link,
                  link_text=gettext(lang, link_text), staff=frame, nav="approvals")


def _not_a_decider(request: Request, frame: dict[str, str]) -> Response:
    return _message(request, frame, 403, _("审批事项"),
                    _("审批事项仅供单位负责人和包案领导使用。您可以在工作台办理自己承办的案件。"),
                    link="/workbench", link_text=_("返回工作台"))


def _not_a_head(request: Request, frame: dict[str, str]) -> Response:
    return _message(request, frame, 403, _("批量转办"),
                    _("批量转办仅供单位负责人使用。"))


async def _gate(request: Request, ctx: ServiceContext, *, reassigning: bool = False
                ) -> tuple[Actor, dict[str, str]] | Response:
    """The signed-in person and their frame, if the page is theirs: the queue a unit
    head's or a leader's, bulk reassignment a unit head's. Otherwise the answer to give."""
    actor = await signed_in_staff(request, ctx)
    if actor is None:
        return to_signin(request)
    frame = await staff_frame(ctx, actor)
    if reassigning and not reassign.may_order(actor):
        return _not_a_head(request, frame)
    if not reassigning and actor.role not in DECIDERS:
        return _not_a_decider(request, frame)
    return actor, frame


async def _form_gate(request: Request, ctx: ServiceContext, csrf_token: str, form_token: str,
                     registration_no: str) -> Actor | Response:
    """The decider posting a valid form about a case, or the answer to give."""
    gate = await _gate(request, ctx)
    if isinstance(gate, Response):
        return gate
    if not _csrf_ok(request, ctx, csrf_token) or not FORM_TOKEN.match(form_token):
        return _back(error="expired")
    if not CODE.match(registration_no):
        return _back(error="invalid")
    return gate[0]


@router.get("/approvals", name="approvals")
async def approvals(request: Request, ctx: Ctx) -> Response:
    gate = await _gate(request, ctx)
    if isinstance(gate, Response):
        return gate
    actor, frame = gate
    lang = language(request)
    async with ctx.sessions() as session:
        units = await _units_of(session, actor)
        items = [*await _extension_items(session, ctx, actor, units, lang),
                 *await _assistance_items(request, session, ctx, actor, units, lang),
                 *await _hearing_items(session, ctx, actor, units, lang)]
        contracts = await _contractable(session, ctx, actor, units, lang)
    items.sort(key=lambda item: item.at)
    notice, error = _banner(request, lang)
    return form_page("approvals.html", request, ctx, heading=gettext(lang, "审批事项"),
                     staff=frame, nav="approvals", items=items, contracts=contracts,
                     form_token=reassign.new_request_id,
                     outcomes=[(o.value, gettext(lang, w)) for o, w in OUTCOME_WORDS.items()],
                     notice=notice, error=error, may_reassign=reassign.may_order(actor))


def _back(**query: str) -> Response:
    return RedirectResponse(f"/approvals?{urlencode(query)}", status_code=303,
                            headers=SECURITY_HEADERS)


def _request_id(ctx: ServiceContext, actor: Actor, number: str, action: Action,
                form_token: str) -> str:
    """One per rendered form: a second submit of the same form is the same request."""
    mac = _macs(ctx, "approvals-form", f"{actor.id}|{number}|{action}|{form_token}")[0]
    return "ap-" + mac[:40]


def _decision(kind: str, approve: bool, form: dict[str, str]
              ) -> tuple[Action, dict[str, Any]] | None:
    """The action and payload a decision form stands for (None: not a valid form)."""
    text = form["reason"].strip()[:MAX_TEXT]
    try:
        if kind == "extension":
            body: dict[str, Any] = {"approved": approve, "reason_to_petitioner": text}
            if approve and form["days"].strip():
                body["days"] = int(form["days"])
            return Action.DECIDE_EXTENSION, body
        if kind == "assistance":
            body = {"application_no": int(form["application_no"]), "approved": approve,
                    "reason": text}
            if approve:
                if form["amount"].strip():
                    body["amount_yuan"] = str(Decimal(form["amount"].strip()))
                body["exception_approved"] = form["exception"] == "1"
            return Action.DECIDE_ASSISTANCE, body
        if kind == "hearing":
            return Action.RECORD_HEARING, {"hearing_no": int(form["hearing_no"]),
                                           "outcome": HearingOutcome(form["outcome"]).value,
                                           "summary": text}
    except (ValueError, InvalidOperation):
        return None
    return None


async def _act(ctx: ServiceContext, actor: Actor, number: str, action: Action,
               body: dict[str, Any], request_id: str) -> str | None:
    """Take the action; None, or the error code to show."""
    try:
        await take_action(ctx, Principal("staff", actor.id, actor=actor), number, action,
                          body, request_id)
    except Problem as problem:
        if problem.status >= 500:
            raise
        if problem.status == 422:
            return "invalid"
        return RULE_ERRORS.get(str(problem.extra.get("rule", "")), "refused")
    return None


@router.post("/approvals/decide", name="approvals_decide")
async def decide(request: Request, ctx: Ctx,
                 csrf_token: Annotated[str, Form()] = "",
                 form_token: Annotated[str, Form()] = "",
                 registration_no: Annotated[str, Form()] = "",
                 kind: Annotated[str, Form()] = "",
                 decision: Annotated[str, Form()] = "",
                 days: Annotated[str, Form(max_length=10)] = "",
                 reason: Annotated[str, Form(max_length=2000)] = "",
                 amount: Annotated[str, Form(max_length=20)] = "",
                 exception: Annotated[str, Form(max_length=1)] = "",
                 application_no: Annotated[str, Form(max_length=10)] = "",
                 hearing_no: Annotated[str, Form(max_length=10)] = "",
                 outcome: Annotated[str, Form(max_length=40)] = "") -> Response:
    actor = await _form_gate(request, ctx, csrf_token, form_token, registration_no)
    if isinstance(actor, Response):
        return actor
    if not reason.strip():
        return _back(error="reason", no=registration_no)
    chosen = _decision(kind, decision == "approve",
                       {"reason": reason, "days": days, "amount": amount, "exception": exception,
                        "application_no": application_no, "hearing_no": hearing_no,
                        "outcome": outcome})
    if chosen is None or decision not in ("approve", "refuse", "record"):
        return _back(error="invalid", no=registration_no)
    action, body = chosen
    error = await _act(ctx, actor, registration_no, action, body,
                       _request_id(ctx, actor, registration_no, action, form_token))
    if error is not None:
        return _back(error=error, no=registration_no)
    done = "hearing-recorded" if kind == "hearing" else \
        f"{kind}-{'approved' if decision == 'approve' else 'refused'}"
    return _back(done=done, no=registration_no)


@router.post("/approvals/contract", name="approvals_contract")
async def contract(request: Request, ctx: Ctx,
                   csrf_token: Annotated[str, Form()] = "",
                   form_token: Annotated[str, Form()] = "",
                   registration_no: Annotated[str, Form()] = "",
                   leader_id: Annotated[str, Form()] = "") -> Response:
    actor = await _form_gate(request, ctx, csrf_token, form_token, registration_no)
    if isinstance(actor, Response):
        return actor
    async with ctx.sessions() as session:
        row = await session.scalar(select(Petition).where(
            Petition.registration_no == registration_no))
        leaders = [] if row is None else await _leaders_for(
            session, row.responsible_unit or row.holding_unit, actor)
    if leader_id not in {lid for lid, _name in leaders}:
        return _back(error="leader-choice", no=registration_no)
    action = Action.CONTRACT_TO_LEADER
    error = await _act(ctx, actor, registration_no, action, {"leader_id": leader_id},
                       _request_id(ctx, actor, registration_no, action, form_token))
    if error is not None:
        return _back(error=error, no=registration_no)
    return _back(done="contract", no=registration_no)


# ------------------------------------------------------------- bulk reassignment


async def _reassign_page(request: Request, ctx: ServiceContext, actor: Actor,
                         frame: dict[str, str], *, from_handler: str = "",
                         to_handler: str = "", error: str = "", status: int = 200
                         ) -> Response:
    lang = language(request)
    staff = await reassign.holders(ctx, actor.unit)
    counts = await reassign.open_counts(ctx, actor.unit)
    ids = {s.id for s in staff}
    names = {s.id: s.name for s in staff}
    confirm = None
    if not error and (from_handler or to_handler):
        if from_handler not in ids or to_handler not in ids:
            error = gettext(lang, "请从列表中选择本单位的工作人员。")
        elif from_handler == to_handler:
            error = gettext(lang, "移出和接手的须是两位不同的工作人员。")
        elif not counts.get(from_handler):
            error = gettext(lang, "{name}名下没有可转办的在办案件。").format(
                name=names[from_handler])
        else:
            confirm = {"from_handler": from_handler, "to_handler": to_handler,
                       "from_name": names[from_handler], "to_name": names[to_handler],
                       "count": counts[from_handler],
                       "request_id": reassign.new_request_id()}
    return form_page("reassign.html", request, ctx, status, heading=gettext(lang, "批量转办"),
                     staff=frame, nav="approvals", confirm=confirm,
                     error=error, from_handler=from_handler, to_handler=to_handler,
                     holders=[{"id": s.id, "name": s.name, "count": counts.get(s.id, 0),
                               "head": s.role == "unit_head"} for s in staff],
                     unit_name=frame.get("unit_name", ""))


@router.get("/approvals/reassign", name="reassign")
async def reassign_page(request: Request, ctx: Ctx, from_handler: str = "",
                        to_handler: str = "") -> Response:
    gate = await _gate(request, ctx, reassigning=True)
    if isinstance(gate, Response):
        return gate
    actor, frame = gate
    return await _reassign_page(request, ctx, actor, frame, from_handler=from_handler[:64],
                                to_handler=to_handler[:64])


@router.post("/approvals/reassign", name="reassign_start")
async def reassign_start(request: Request, ctx: Ctx,
                         csrf_token: Annotated[str, Form()] = "",
                         request_id: Annotated[str, Form()] = "",
                         from_handler: Annotated[str, Form(max_length=64)] = "",
                         to_handler: Annotated[str, Form(max_length=64)] = "") -> Response:
    gate = await _gate(request, ctx, reassigning=True)
    if isinstance(gate, Response):
        return gate
    actor, frame = gate
    lang = language(request)
    job_id = reassign.job_for(request_id)
    if not _csrf_ok(request, ctx, csrf_token) or job_id is None:
        return await _reassign_page(request, ctx, actor, frame, status=400,
                                    error=gettext(lang, "页面已过期，请重新操作。"))
    ids = {s.id for s in await reassign.holders(ctx, actor.unit)}
    counts = await reassign.open_counts(ctx, actor.unit)
    if from_handler not in ids or to_handler not in ids or from_handler == to_handler \
            or not counts.get(from_handler):
        return await _reassign_page(request, ctx, actor, frame, from_handler=from_handler,
                                    to_handler=to_handler, status=400)
    try:
        await reassign.start(ctx, actor, job_id, from_handler, to_handler)
    except reassign.BatchBusy:
        return await _reassign_page(
            request, ctx, actor, frame, status=409,
            error=gettext(lang, "系统正在执行另一项批量操作，请稍后再试。"))
    return RedirectResponse(f"/approvals/reassign/{job_id}", status_code=303,
                            headers=SECURITY_HEADERS)


def _settled(found: reassign.BatchProgress, done: reassign.Outcome) -> bool:
    """The batch has delivered every signal and the cases have recorded what they did
    (or long enough has passed: a signal to a case that closed meanwhile leaves none)."""
    return found.state != "running" and (
        done.moved + done.refused >= found.complete
        or (found.closed_at is not None
            and datetime.now(UTC) - found.closed_at > SETTLE_AFTER_CLOSE))


async def _settling(ctx: ServiceContext, actor: Actor, found: reassign.BatchProgress
                    ) -> tuple[reassign.BatchProgress, reassign.Outcome, bool]:
    """The job's progress once settled, or as it stands after `PROGRESS_WAIT`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PROGRESS_WAIT
    while True:
        done = await reassign.outcomes(ctx, found.job_id)
        if _settled(found, done) or loop.time() >= deadline:
            return found, done, _settled(found, done)
        await asyncio.sleep(PROGRESS_POLL)
        found = await reassign.progress(ctx, actor, found.job_id) or found


@router.get("/approvals/reassign/{job_id}", name="reassign_progress")
async def reassign_progress(request: Request, ctx: Ctx, job_id: str) -> Response:
    gate = await _gate(request, ctx, reassigning=True)
    if isinstance(gate, Response):
        return gate
    actor, frame = gate
    found = await reassign.progress(ctx, actor, job_id)
    if found is None:
        return _message(request, frame, 404, _("批量转办"), _("没有找到这项批量转办。"),
                        link="/approvals/reassign", link_text=_("返回批量转办"))
    lang = language(request)
    found, done, settled = await _settling(ctx, actor, found)
    async with ctx.sessions() as session:
        names = await _people(session, (found.from_handler, found.to_handler,
                                        found.ordered_by))
    left = (await reassign.open_counts(ctx, actor.unit)).get(found.from_handler or "", 0) \
        if settled else 0
    return render("reassign_progress.html", request=request,
                  heading=gettext(lang, "批量转办进度"), staff=frame, nav="approvals",
                  job=found, done=done, settled=settled, failed_run=found.state == "failed",
                  here_url=f"/approvals/reassign/{job_id}", left=left,
                  from_name=_name(names, found.from_handler),
                  to_name=_name(names, found.to_handler),
                  by_name=_name(names, found.ordered_by),
                  started=moment(found.started_at, lang) if found.started_at else "")
