"""What each action changes in a case besides its stage and clocks.

One function per action, named by the table row that uses it (`Transition.change`).
Each gets the case, the command, the answers of the activities that ran before it
(`EffectResults`) and the time, and returns what the audit record adds about it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from domain.case import AssistanceFile, CaseState, EffectResults, Hearing, PendingExtension
from domain.models import (
    Assign,
    Command,
    ContractToLeader,
    DecideAssistance,
    DecideExtension,
    Rate,
    RecordHearing,
    RequestAssistance,
    RequestExtension,
    RequestReReview,
    RequestReview,
    ScheduleHearing,
    Transfer,
)

Detail = dict[str, Any]


def _learn_units(case: CaseState, results: EffectResults) -> None:
    for facts in results.units:
        case.units[facts.code] = facts


def accept(case: CaseState, command: Command, results: EffectResults, at: datetime) -> Detail:
    case.responsible_unit = case.holding_unit
    return {}


def transfer(case: CaseState, command: Command, results: EffectResults, at: datetime) -> Detail:
    assert isinstance(command, Transfer)
    _learn_units(case, results)
    case.transferred_from.append(case.holding_unit)
    case.holding_unit = command.to_unit
    return {"order_no": results.order_no}


def divert(case: CaseState, command: Command, results: EffectResults, at: datetime) -> Detail:
    return {"order_no": results.order_no}


def reject_transfer(case: CaseState, command: Command, results: EffectResults,
                    at: datetime) -> Detail:
    if case.transferred_from:
        case.holding_unit = case.transferred_from.pop()
    return {}


def assign(case: CaseState, command: Command, results: EffectResults, at: datetime) -> Detail:
    assert isinstance(command, Assign)
    case.handler_id = command.handler_id
    return {}


def contract_to_leader(case: CaseState, command: Command, results: EffectResults,
                       at: datetime) -> Detail:
    assert isinstance(command, ContractToLeader)
    case.leader_id = command.leader_id
    return {}


def request_extension(case: CaseState, command: Command, results: EffectResults,
                      at: datetime) -> Detail:
    assert isinstance(command, RequestExtension)
    case.pending_extension = PendingExtension(days=command.days, reason=command.reason,
                                              requested_by=command.actor.id)
    return {}


def decide_extension(case: CaseState, command: Command, results: EffectResults,
                     at: datetime) -> Detail:
    """The granted days; the table's `extends` then moves the handling clock."""
    assert isinstance(command, DecideExtension)
    pending, case.pending_extension = case.pending_extension, None
    if command.approved and pending is not None:
        return {"granted_days": command.days or pending.days}
    return {}


def schedule_hearing(case: CaseState, command: Command, results: EffectResults,
                     at: datetime) -> Detail:
    assert isinstance(command, ScheduleHearing) and results.hearing_no is not None
    case.hearings.append(Hearing(hearing_no=results.hearing_no, venue=command.venue,
                                 starts_at=command.starts_at, officers=command.officers))
    return {"hearing_no": results.hearing_no}


def record_hearing(case: CaseState, command: Command, results: EffectResults,
                   at: datetime) -> Detail:
    assert isinstance(command, RecordHearing)
    for hearing in case.hearings:
        if hearing.hearing_no == command.hearing_no:
            hearing.outcome = command.outcome
    return {}


def request_assistance(case: CaseState, command: Command, results: EffectResults,
                       at: datetime) -> Detail:
    assert isinstance(command, RequestAssistance) and results.application_no is not None
    case.assistance.append(AssistanceFile(application_no=results.application_no,
                                          amount_yuan=command.amount_yuan,
                                          persons=command.persons))
    return {"application_no": results.application_no}


def decide_assistance(case: CaseState, command: Command, results: EffectResults,
                      at: datetime) -> Detail:
    """Approved or refused; an approved application is paid after the transition."""
    assert isinstance(command, DecideAssistance)
    app = next(a for a in case.assistance if a.application_no == command.application_no)
    if not command.approved:
        app.status = "refused"
        return {}
    app.status = "approved"
    if results.approved_amount_yuan is not None:
        app.amount_yuan = results.approved_amount_yuan
    return {"approved_amount_yuan": str(app.amount_yuan)}


def assistance_paid(case: CaseState, application_no: int, payment_ref: str,
                    amount_yuan: Any) -> None:
    app = next(a for a in case.assistance if a.application_no == application_no)
    app.status, app.payment_ref, app.amount_yuan = "paid", payment_ref, amount_yuan


def rate(case: CaseState, command: Command, results: EffectResults, at: datetime) -> Detail:
    assert isinstance(command, Rate)
    case.satisfaction = command.satisfaction
    return {}


def request_review(case: CaseState, command: Command, results: EffectResults,
                   at: datetime) -> Detail:
    assert isinstance(command, RequestReview)
    _learn_units(case, results)
    case.review_organ = command.review_organ
    return {}


def request_re_review(case: CaseState, command: Command, results: EffectResults,
                      at: datetime) -> Detail:
    assert isinstance(command, RequestReReview)
    _learn_units(case, results)
    case.re_review_organ = command.re_review_organ
    return {}


def progress_reply(case: CaseState, command: Command, results: EffectResults,
                   at: datetime) -> Detail:
    case.last_progress_reply_at = at
    return {}


def add_note(case: CaseState, command: Command, results: EffectResults, at: datetime) -> Detail:
    case.notes += 1
    return {}


def repeat_visit(case: CaseState, command: Command, results: EffectResults,
                 at: datetime) -> Detail:
    case.repeat_visits += 1
    return {}
