"""What a written notice (书面告知) to the petitioner states, as data: the facts its letter,
SMS and e-mail are rendered from (documents/render.py), and nothing of their wording.

`facts_for(case, action, command)` reads them off a case just after the transition that
sends the notice (`projections.notice`): which unit decides, what it decided, on which
article, the reason, the deadlines now running and the petitioner's next right (what, to
which organ, by when). Units are codes here: their names are looked up when the notice is
rendered, from the directory. Times are aware (UTC in the case); the documents render
them in Beijing time.

It must never raise: the workflow calls it on every notice, replayed histories included.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from domain.case import CaseState, Clock
from domain.lifecycle import TABLE
from domain.models import (
    Action,
    ClockName,
    Command,
    DecideAssistance,
    DecideExtension,
    Decline,
    DeclineConcluded,
    Divert,
    ProgressReply,
    Reply,
    ReReviewOpinion,
    ReviewOpinion,
    ScheduleHearing,
    Stage,
    Transfer,
    Withdraw,
)
from domain.policy import ClockKind


class NoticeKind(StrEnum):
    """The types of written notice; each has its templates (documents/templates/notices)."""

    REGISTRATION = "registration"  # 登记告知: recorded, who decides on acceptance, by when
    ACCEPTANCE = "acceptance"  # 受理告知
    NON_ACCEPTANCE = "non_acceptance"  # 不予受理告知, with the statutory reason
    DIVERSION = "diversion"  # 引导告知: to litigation, arbitration, review ...
    TRANSFER = "transfer"  # 转送告知
    ASSIGNMENT = "assignment"  # 交办告知
    EXTENSION = "extension"  # 延期告知, with the reason
    HEARING = "hearing"  # 听证通知
    ASSISTANCE = "assistance"  # 救助决定告知
    PROGRESS = "progress"  # 程序性答复 / 办理进展告知
    HANDLING_OPINION = "handling_opinion"  # 处理意见书: review within 30 days
    REVIEW_OPINION = "review_opinion"  # 复查意见书: re-review within 30 days
    RE_REVIEW_OPINION = "re_review_opinion"  # 复核意见书: the matter is concluded (终结)
    WITHDRAWAL = "withdrawal"  # 撤回告知


# The notice each petitioner notice's action sends (the lifecycle table's
# NOTICE_PETITIONER rows, registration, and the hearing booking's notice to the parties).
ACTION_KINDS: dict[Action, NoticeKind] = {
    Action.REGISTER: NoticeKind.REGISTRATION,
    Action.ACCEPT: NoticeKind.ACCEPTANCE,
    Action.DECLINE: NoticeKind.NON_ACCEPTANCE,
    Action.DECLINE_CONCLUDED: NoticeKind.NON_ACCEPTANCE,
    Action.DIVERT: NoticeKind.DIVERSION,
    Action.TRANSFER: NoticeKind.TRANSFER,  # ASSIGNMENT when the transfer is 交办
    Action.DECIDE_EXTENSION: NoticeKind.EXTENSION,
    Action.SCHEDULE_HEARING: NoticeKind.HEARING,
    Action.DECIDE_ASSISTANCE: NoticeKind.ASSISTANCE,
    Action.PROGRESS_REPLY: NoticeKind.PROGRESS,
    Action.REPLY: NoticeKind.HANDLING_OPINION,
    Action.REVIEW_OPINION: NoticeKind.REVIEW_OPINION,
    Action.RE_REVIEW_OPINION: NoticeKind.RE_REVIEW_OPINION,
    Action.WITHDRAW: NoticeKind.WITHDRAWAL,
}

# The article the registration rests on (it is no row of the table).
REGISTRATION_ARTICLE = "Art. 22"


class NextRightKind(StrEnum):
    REQUEST_REVIEW = "request_review"  # 请求复查 (Art. 35)
    REQUEST_RE_REVIEW = "request_re_review"  # 请求复核 (Art. 36)
    STATUTORY_PROCEDURE = "statutory_procedure"  # litigation, arbitration, review ... (Art. 31)


class NextRight(BaseModel):
    """What the petitioner may do next, to which organ (a code), by when."""

    right: NextRightKind
    organ: str | None = None  # None: the organ is not known to the case (say it in words)
    due_at: datetime | None = None  # the last moment (24:00 Beijing time of the last day)
    period: str | None = None  # "30 days", counted from receipt of the opinion
    article: str
    track: str | None = None  # DivertTrack of a statutory procedure


class NoticeDeadline(BaseModel):
    """A deadline running for the petitioner's matter after the decision."""

    clock: ClockName
    unit: str  # the unit bound by it (a code)
    due_at: datetime
    period: str
    article: str


class HearingFacts(BaseModel):
    hearing_no: int | None = None
    venue: str
    starts_at: datetime
    ends_at: datetime


class NoticeFacts(BaseModel):
    """One written notice's facts (JSON in NoticeInput.facts)."""

    kind: NoticeKind
    action: str
    registration_no: str
    unit: str  # the deciding (issuing) unit's code
    issued_at: datetime
    article: str  # what the decision rests on, as the lifecycle table cites it
    decision: str  # accepted, not_accepted, transferred, extended, supported, upheld, ...
    decision_text: str | None = None  # the unit's own words: opinion, explanation, progress
    reason: str | None = None  # a statutory reason code (DeclineReason, DivertTrack)
    reason_text: str | None = None  # a reason in words (extension, withdrawal, assistance)
    to_unit: str | None = None  # the receiving unit of a transfer, the organ of a diversion
    concluded_case: str | None = None
    extension_days: int | None = None
    amount_yuan: str | None = None
    hearing: HearingFacts | None = None
    deadlines: list[NoticeDeadline] = Field(default_factory=list)
    next_right: NextRight | None = None


# Deadlines between units, not the petitioner's business.
_INTERNAL_CLOCKS = frozenset({ClockName.TRANSFER_OBJECTION})


def _deadlines(case: CaseState) -> list[NoticeDeadline]:
    return [NoticeDeadline(clock=c.name, unit=c.unit, due_at=c.due_at, period=c.period,
                           article=c.article)
            for c in sorted(case.clocks.values(), key=lambda c: c.due_at)
            if c.kind is ClockKind.DEADLINE and c.name not in _INTERNAL_CLOCKS]


def _superior(case: CaseState, code: str | None) -> str | None:
    """The organ one level up from `code`: its parent in the line (上一级行政机关), else the
    superior petition bureau; None if the case's directory facts do not say."""
    facts = case.units.get(code or "")
    if facts is None:
        return None
    return facts.parent or facts.superior_bureau


def _window(case: CaseState, name: ClockName) -> Clock | None:
    return case.clocks.get(name)


def _issued_at(case: CaseState, action: Action) -> datetime | None:
    for entry in reversed(case.timeline):
        if entry.accepted and entry.action is action:
            return entry.at
    return case.timeline[-1].at if case.timeline else None


def _issuing_unit(case: CaseState, action: Action, command: Command | None) -> str:
    if action is Action.REVIEW_OPINION:
        return case.review_organ or case.holding_unit
    if action is Action.RE_REVIEW_OPINION:
        return case.re_review_organ or case.holding_unit
    if action is Action.TRANSFER:
        return case.transferred_from[-1] if case.transferred_from else case.holding_unit
    if action is Action.REGISTER:
        return case.registered_unit
    if action is Action.SCHEDULE_HEARING and case.stage is Stage.UNDER_RE_REVIEW:
        return case.re_review_organ or case.holding_unit
    return case.responsible_unit or case.holding_unit


def facts_for(case: CaseState, action: Action | str, command: Command | None = None
              ) -> NoticeFacts | None:
    """The facts of the notice `action` sends the petitioner, read off `case` just after
    the transition; None for an action that sends the petitioner no written notice."""
    try:
        action = Action(action)
    except ValueError:
        return None
    kind = ACTION_KINDS.get(action)
    issued_at = _issued_at(case, action)
    if kind is None or issued_at is None:
        return None
    row = TABLE.get(action)
    facts: dict[str, Any] = {
        "kind": kind, "action": action.value, "registration_no": case.registration_no,
        "unit": _issuing_unit(case, action, command), "issued_at": issued_at,
        "article": row.article if row is not None else REGISTRATION_ARTICLE,
        "decision": action.value, "deadlines": _deadlines(case),
    }
    facts.update(_specific(case, action, command))
    return NoticeFacts.model_validate(facts)


def _specific(case: CaseState, action: Action, command: Command | None) -> dict[str, Any]:
    """What each kind of notice says besides the common facts."""
    if action is Action.REGISTER:
        return {"decision": "registered"}
    if action is Action.ACCEPT:
        return {"decision": "accepted"}
    if isinstance(command, DeclineConcluded):
        return {"decision": "not_accepted", "reason": command.reason.value,
                "concluded_case": command.concluded_case}
    if isinstance(command, Decline):
        return {"decision": "not_accepted", "reason": command.reason.value,
                "decision_text": command.explanation,
                "concluded_case": command.concluded_case}
    if isinstance(command, Divert):
        return {"decision": "diverted", "reason": command.track.value,
                "decision_text": command.explanation, "to_unit": command.organ,
                "next_right": NextRight(right=NextRightKind.STATUTORY_PROCEDURE,
                                        organ=command.organ, article="Art. 31",
                                        track=command.track.value)}
    if isinstance(command, Transfer):
        return {"kind": NoticeKind.ASSIGNMENT if command.assigned else NoticeKind.TRANSFER,
                "decision": "assigned" if command.assigned else "transferred",
                "to_unit": command.to_unit}
    if isinstance(command, DecideExtension):
        return {"decision": "extended" if command.approved else "not_extended",
                "reason_text": command.reason_to_petitioner,
                "extension_days": case.extension_days if command.approved else None}
    if isinstance(command, ScheduleHearing):
        number = case.hearings[-1].hearing_no if case.hearings else None
        return {"decision": "hearing_scheduled", "hearing": HearingFacts(
            hearing_no=number, venue=command.venue, starts_at=command.starts_at,
            ends_at=command.starts_at + timedelta(minutes=command.duration_minutes))}
    if isinstance(command, DecideAssistance):
        app = next((a for a in case.assistance
                    if a.application_no == command.application_no), None)
        approved = command.approved and app is not None and app.status in ("approved", "paid")
        return {"decision": "approved" if approved else "refused", "reason_text": command.reason,
                "amount_yuan": str(app.amount_yuan) if approved and app else None}
    if isinstance(command, ProgressReply):
        return {"decision": "progress", "decision_text": command.text}
    if isinstance(command, Reply):
        return {"decision": "supported" if command.supported else "not_supported",
                "decision_text": command.opinion,
                "next_right": _review_right(case, ClockName.REVIEW_REQUEST,
                                            NextRightKind.REQUEST_REVIEW, "Art. 35",
                                            case.responsible_unit)}
    if isinstance(command, ReviewOpinion):
        return {"decision": "upheld" if command.upheld else "changed",
                "decision_text": command.opinion,
                "next_right": _review_right(case, ClockName.RE_REVIEW_REQUEST,
                                            NextRightKind.REQUEST_RE_REVIEW, "Art. 36",
                                            case.review_organ)}
    if isinstance(command, ReReviewOpinion):
        return {"decision": "upheld" if command.upheld else "changed",
                "decision_text": command.opinion}
    if isinstance(command, Withdraw):
        return {"decision": "withdrawn", "reason_text": command.reason}
    return {}


def _review_right(case: CaseState, window: ClockName, right: NextRightKind, article: str,
                  below: str | None) -> NextRight:
    """Review (Art. 35) or re-review (Art. 36): within 30 days of receiving the opinion, to
    the organ one level up. The last day is the window the case runs (its clock, computed
    by the core from the case's profile when the opinion was given)."""
    clock = _window(case, window)
    return NextRight(right=right, organ=_superior(case, below),
                     due_at=clock.due_at if clock else None,
                     period=clock.period if clock else "30 days", article=article)

