"""What a case looks like from outside, as pure functions of its state: the read-model
row, the search-attribute values, the Web UI's current details, the status answer, the
notices a transition sends and the compacted timeline."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from domain import clocks
from domain.case import TIMELINE_NOTES_KEPT, CaseState, Clock, ClockView, PetitionStatus
from domain.lifecycle import CLOCK_TITLES, STAGE_TITLES, Effect, Transition
from domain.models import (
    Action,
    ClockName,
    Command,
    DecideExtension,
    Decline,
    DeclineConcluded,
    Divert,
    Stage,
    Transfer,
)
from domain.notice_facts import NoticeFacts, facts_for
from domain.policy import ClockKind


def beijing(at: datetime) -> str:
    """A deadline in the words of the regulations: 24:00 of its last day, Beijing time."""
    local = at + timedelta(hours=8)
    if (local.hour, local.minute, local.second) == (0, 0, 0):
        return f"{(local - timedelta(days=1)):%Y-%m-%d} 24:00 Beijing time"
    return f"{local:%Y-%m-%d %H:%M:%S} Beijing time"


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


# ------------------------------------------------------------------ read model


def read_model_row(case: CaseState, now: datetime) -> dict[str, Any]:
    """The read model's row for this case after its latest transition at `now`."""
    values: dict[str, Any] = {
        "stage": case.stage.value, "outcome": case.outcome.value if case.outcome else None,
        "holding_unit": case.holding_unit, "responsible_unit": case.responsible_unit,
        "handler_id": case.handler_id, "leader_id": case.leader_id,
        "next_deadline": _iso(clocks.next_deadline(case)), "overdue": clocks.overdue(case, now),
        "was_overdue": case.was_overdue, "escalation_level": clocks.escalation_level(case),
        "extension_days": case.extension_days,
        "satisfaction": case.satisfaction.value if case.satisfaction else None,
        "repeat_visits": case.repeat_visits,
        "reviewed": case.review_organ is not None,
    }
    for name, column in ((ClockName.ACCEPTANCE, "acceptance_due"),
                         (ClockName.ROUTING, "acceptance_due"),
                         (ClockName.HANDLING, "handling_due"),
                         (ClockName.SETTLEMENT, "handling_due")):
        if name in case.clocks:
            values[column] = _iso(case.clocks[name].due_at)
    last = case.timeline[-1].action if case.timeline else None
    if case.stage is Stage.IN_HANDLING and last is Action.ACCEPT:
        values["accepted_at"] = _iso(now)
    if case.stage is Stage.REPLIED and last is Action.REPLY:
        values["replied_at"] = _iso(now)
    if case.stage is Stage.CLOSED:
        values["closed_at"] = _iso(now)
    return values


# ---------------------------------------------------------- search attributes


def search_attribute_values(case: CaseState, now: datetime) -> dict[str, Any]:
    """By attribute name (DOMAIN.md, "External names"); None unsets. No personal data."""
    return {
        "PetitionStage": case.stage.value,
        "RegistrationNo": case.registration_no,
        "ResponsibleUnit": case.responsible_unit or case.holding_unit,
        "Channel": case.channel.value,
        "Category": case.category.value,
        "Overdue": clocks.overdue(case, now),
        "EscalationLevel": clocks.escalation_level(case),
        "LawRelated": case.law_related,
        "NextDeadline": clocks.next_deadline(case),
        "Outcome": case.outcome.value if case.outcome else None,
        "Handler": case.handler_id,  # a staff id (bulk reassignment); none: unset
    }


# ------------------------------------------------------------ current details


def _clock_state(clock: Clock, now: datetime) -> str:
    if clock.paused_at:
        return "stopped while a hearing is held"
    if clock.kind is ClockKind.WINDOW:
        return "open"
    return "OVERDUE" if clock.overdue(now) else "running"


def current_details(case: CaseState, now: datetime) -> str:
    """The stage and every open deadline, in plain words (the Web UI's current details)."""
    head = f"**{case.registration_no}**: {STAGE_TITLES[case.stage]}"
    if case.outcome:
        head += f" ({case.outcome.value.replace('_', ' ')})"
    # Blank lines between the parts: the Web UI renders the text as Markdown, where a
    # list only starts after an empty line.
    lines = [head + ".", "",
             f"Held by {case.holding_unit}; responsible unit: "
             f"{case.responsible_unit or 'not yet accepted'}.", ""]
    if case.clocks:
        lines += ["Open deadlines:", ""]
    for c in sorted(case.clocks.values(), key=lambda c: c.due_at):
        level = {1: ", escalated to the supervising leader",
                 2: ", escalated to the superior bureau (督办)"}.get(c.level, "")
        lines.append(f"- {CLOCK_TITLES[c.name]} at {c.unit}: due {beijing(c.due_at)} "
                     f"({c.period}, {c.article}); {_clock_state(c, now)}{level}.")
    if not case.clocks:
        lines.append("No deadline is running.")
    return "\n".join(lines)


# --------------------------------------------------------------------- status


def status(case: CaseState, now: datetime) -> PetitionStatus:
    views = [ClockView(name=c.name, kind=c.kind, article=c.article, period=c.period,
                       started_at=c.started_at, due_at=c.due_at, overdue=c.overdue(now),
                       paused=c.paused_at is not None, level=c.level, unit=c.unit)
             for c in case.clocks.values()]
    return PetitionStatus(
        workflow_id=case.workflow_id, registration_no=case.registration_no, stage=case.stage,
        outcome=case.outcome, holding_unit=case.holding_unit,
        responsible_unit=case.responsible_unit, handler_id=case.handler_id,
        leader_id=case.leader_id, clocks=views, next_deadline=clocks.next_deadline(case),
        overdue=clocks.overdue(case, now), escalation_level=clocks.escalation_level(case),
        extension_days=case.extension_days, satisfaction=case.satisfaction,
        repeat_visits=case.repeat_visits, notes=case.notes,
        refused_actions=case.refused_actions, hearings=case.hearings,
        assistance=case.assistance, concluded_case=case.concluded_case, runs=case.runs,
    )


# -------------------------------------------------------------------- notices


# The written notice an action sends, where it is not the action's own name: a concluded
# matter declined at registration gets the ordinary non-acceptance notice (不予受理告知).
NOTICE_TEMPLATES: dict[str, str] = {Action.DECLINE_CONCLUDED.value: Action.DECLINE.value}


@dataclass(frozen=True)
class Notice:
    """One notice's content and its idempotency key (a retry never sends it twice)."""

    key: str
    recipient_kind: str  # petitioner, unit, person
    recipient_ref: str
    template: str
    body: str
    summary: str
    # What a written notice to the petitioner states (its letter, SMS and e-mail are
    # rendered from it, documents/render.py); None for notices to units and persons.
    facts: NoticeFacts | None = None


def notice(case: CaseState, kind: str, recipient: str, action: Action | str,
           about: Clock | None = None, text: str | None = None,
           command: Command | None = None) -> Notice:
    what = (f"{CLOCK_TITLES[about.name]} due {beijing(about.due_at)} ({about.article})"
            if about else str(action) + (f": {text}" if text else ""))
    key = f"{case.workflow_id}:{case.seq}:notice:{kind}:{recipient}:{action}"
    if about is not None:
        key += f":{about.name}:{about.due_at.isoformat()}"
    summary = (f"{action}: notice to {kind} {recipient}"
               + (f" ({CLOCK_TITLES[about.name]})" if about else ""))
    return Notice(key=key, recipient_kind=kind, recipient_ref=recipient,
                  template=NOTICE_TEMPLATES.get(str(action), str(action)),
                  body=f"Case {case.registration_no}: {what} (stage {case.stage}).",
                  summary=summary,
                  facts=facts_for(case, action, command) if kind == "petitioner" else None)


def notice_text(command: Command, case: CaseState) -> str | None:
    """What the written notice must tell the petitioner besides the action itself."""
    if isinstance(command, DecideExtension):
        granted = (f"extended by {case.extension_days} days" if command.approved
                   else "not extended")
        return f"the handling period is {granted}; reason: {command.reason_to_petitioner}"
    if isinstance(command, DeclineConcluded):
        return (f"not accepted, concluded after re-review (concluded case "
                f"{command.concluded_case}): the same matter was concluded after re-review")
    if isinstance(command, Decline):
        cited = f" (concluded case {command.concluded_case})" if command.concluded_case else ""
        return f"not accepted, {command.reason.value.replace('_', ' ')}{cited}: " \
               f"{command.explanation}"
    if isinstance(command, Divert):
        return f"to be handled by {command.organ} ({command.track.value.replace('_', ' ')}): " \
               f"{command.explanation}"
    if isinstance(command, Transfer):
        return f"transferred to {command.to_unit}"
    return None


def notices_of(row: Transition, command: Command, case: CaseState) -> list[Notice]:
    """The notices a transition sends, in the order of the row's effects."""
    found = []
    for effect in row.effects:
        if effect is Effect.NOTICE_PETITIONER:
            found.append(notice(case, "petitioner", case.registration_no, row.action,
                                text=notice_text(command, case), command=command))
        elif effect is Effect.NOTICE_RECEIVING_UNIT:
            found.append(notice(case, "unit", case.holding_unit, row.action))
        elif effect is Effect.NOTICE_REVIEW_ORGAN:
            organ = (case.re_review_organ if row.action is Action.REQUEST_RE_REVIEW
                     else case.review_organ)
            found.append(notice(case, "unit", organ or case.holding_unit, row.action))
        elif effect is Effect.NOTICE_LEADER and case.leader_id:
            found.append(notice(case, "person", case.leader_id, row.action))
    return found


# ------------------------------------------------------------------- timeline


def compact_timeline(case: CaseState) -> None:
    """Keep every transition, but only the latest notes, visits and refusals, listed."""
    minor = [i for i, e in enumerate(case.timeline)
             if not e.accepted or e.action in (Action.ADD_NOTE, Action.REPEAT_VISIT)]
    excess = len(minor) - TIMELINE_NOTES_KEPT
    if excess > 0:
        drop = set(minor[:excess])
        case.timeline = [e for i, e in enumerate(case.timeline) if i not in drop]


SUMMARY_KEYS = ("to_unit", "organ", "reason", "handler_id", "leader_id", "days",
                "granted_days", "venue", "outcome", "satisfaction", "order_no",
                "approved_amount_yuan", "channel")


def summary(action: Action, detail: dict[str, Any]) -> str:
    parts = [f"{k}={detail[k]}" for k in SUMMARY_KEYS if detail.get(k) not in (None, "")]
    return f"{action}: " + ", ".join(parts) if parts else str(action)
