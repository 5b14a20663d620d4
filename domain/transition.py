"""A case takes one row of the lifecycle table: guard, change, clocks, stage, record.

Pure: the workflow runs the row's refusable activities first, hands their answers in
(`EffectResults`) with the calendar to count on, and then executes what this decides
(the audit record to write, the notices to send, the payment to make).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from domain import clocks, projections
from domain.calendar import WorkingCalendar
from domain.case import CaseState, EffectResults, TimelineEntry, TransitionRecord
from domain.lifecycle import REGISTRATION, Refusal, Transition, check_guard
from domain.models import Action, Actor, Command, Stage

REQUEST_IDS_KEPT = 200  # a client retry within the last 200 actions is answered, not redone


def refusal(case: CaseState, row: Transition, command: Command) -> Refusal | None:
    """None if `command` may be taken now; an already-taken request is never refused."""
    if already_taken(case, command):
        return None
    return check_guard(row, command, case)


def already_taken(case: CaseState, command: Command) -> bool:
    return bool(command.request_id) and command.request_id in case.request_ids


def take(case: CaseState, row: Transition, command: Command, at: datetime,
         results: EffectResults, calendar: WorkingCalendar,
         extra: dict[str, Any] | None = None) -> TransitionRecord:
    """Apply a row the guard allowed; returns its audit record (queued in the case).
    `extra`: what the record adds about how it was taken (a bulk reassignment's job)."""
    from_stage = case.stage
    detail = row.change(case, command, results, at) if row.change else {}
    clocks.stop(case, row.stops)
    clocks.pause(case, row.pauses, at)
    clocks.resume(case, row.resumes, at)
    clocks.start_for(case, row, at, calendar)
    clocks.renew(case, row.renews, at, calendar)
    clocks.extend(case, row.extends, detail.get("granted_days"), calendar)
    if row.to_stage is not None:
        case.stage = row.to_stage
    if row.outcome is not None:
        case.outcome = row.outcome
    if command.request_id:
        case.request_ids = [*case.request_ids[-(REQUEST_IDS_KEPT - 1):], command.request_id]
    detail = {k: v for k, v in {**detail, **(extra or {})}.items() if v is not None}
    detail.update(command.model_dump(mode="json", exclude={"actor", "request_id"}))
    return record(case, row.action, command.actor, from_stage, at, detail,
                  compact=row.counts_as_note)


def record(case: CaseState, action: Action, actor: Actor, from_stage: Stage | None,
           at: datetime, detail: dict[str, Any], compact: bool = False) -> TransitionRecord:
    """The audit record of a transition, with the read model's row after it."""
    case.seq += 1
    case.timeline.append(TimelineEntry(seq=case.seq, at=at, action=action, actor=actor,
                                       from_stage=from_stage, to_stage=case.stage,
                                       summary=projections.summary(action, detail)))
    if compact:
        projections.compact_timeline(case)
    entry = TransitionRecord(
        workflow_id=case.workflow_id, petition_id=case.petition_id, seq=case.seq,
        action=action, actor=actor, at=at, from_stage=from_stage, to_stage=case.stage,
        detail=detail, read_model=projections.read_model_row(case, at))
    case.unrecorded.append(entry)
    return entry


def refused(case: CaseState, action: Action, command: Command, at: datetime,
            message: str) -> TransitionRecord:
    """A refused action changes nothing but is recorded (and counted) as refused."""
    case.refused_actions += 1
    case.timeline.append(TimelineEntry(seq=case.seq, at=at, action=action, actor=command.actor,
                                       from_stage=case.stage, to_stage=case.stage,
                                       accepted=False, refusal=message,
                                       summary=f"{action} refused"))
    projections.compact_timeline(case)
    entry = TransitionRecord(
        workflow_id=case.workflow_id, petition_id=case.petition_id, seq=case.seq,
        action=action, actor=command.actor, at=at, from_stage=case.stage, to_stage=case.stage,
        accepted=False, refusal=message,
        detail={"refusal_no": case.refused_actions, "request_id": command.request_id})
    case.unrecorded.append(entry)
    return entry


def register(case: CaseState, clerk: Actor, at: datetime,
             calendar: WorkingCalendar) -> TransitionRecord:
    """The case enters the table: the entry clocks start, the registration is recorded."""
    clocks.start_for(case, REGISTRATION, at, calendar)
    return record(case, Action.REGISTER, clerk, None, at, {"channel": case.channel.value})
