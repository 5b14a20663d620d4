"""The action-specific rules of the lifecycle table, each a pure function of the case.

A row of `domain.lifecycle.TRANSITIONS` names its rules: `precondition` looks only at
the case (so `allowed_actions` can list what an actor may do before any payload is
typed), `rule` also at the payload. Both answer None or a `Refusal` naming the rule
and, where a payload field is at fault, the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dataclass_field
from decimal import Decimal
from typing import Any

from domain.case import AssistanceFile, CaseState
from domain.models import (
    ClockName,
    Command,
    DecideAssistance,
    DecideExtension,
    Decline,
    DeclineReason,
    RecordHearing,
    RequestExtension,
    RequestReReview,
    RequestReview,
    Role,
    Transfer,
)


@dataclass(frozen=True)
class Refusal:
    """Why an action is refused: `rule` for programs, `message` for people."""

    rule: str
    message: str
    field: str | None = None
    details: dict[str, Any] = dataclass_field(default_factory=dict)

    def __str__(self) -> str:
        return f"refused [{self.rule}]: {self.message}"

    def as_details(self) -> dict[str, Any]:
        """What travels in `ApplicationError.details` (JSON-safe)."""
        return {"rule": self.rule, "message": self.message, "field": self.field,
                **self.details}


# ------------------------------------------------------------------ preconditions


def transfer_objection_open(case: CaseState) -> Refusal | None:
    if ClockName.TRANSFER_OBJECTION not in case.clocks:
        return Refusal("transfer_objection",
                       "no transfer to object to, or the objection period has passed")
    return None


def extension_available(case: CaseState) -> Refusal | None:
    policy = case.profile.extension
    if case.pending_extension is not None:
        return Refusal("extension:pending", "an extension request is already waiting for "
                       "the unit head's decision")
    if case.extension_used or policy.max_times < 1:
        return Refusal("extension:once", f"the handling period may be extended only "
                       f"{policy.max_times} time(s) ({policy.article})")
    if ClockName.HANDLING not in case.clocks:
        return Refusal("extension", "no handling period is running")
    return None


def extension_pending(case: CaseState) -> Refusal | None:
    if case.pending_extension is None:
        return Refusal("extension", "no extension request is pending")
    return None


def hearing_to_record(case: CaseState) -> Refusal | None:
    if not any(h.outcome is None for h in case.hearings):
        return Refusal("hearing", "no scheduled hearing waits for its outcome")
    return None


def assistance_to_decide(case: CaseState) -> Refusal | None:
    if not any(a.status == "requested" for a in case.assistance):
        return Refusal("assistance", "no assistance application waits for a decision")
    return None


def concluded_matter(case: CaseState) -> Refusal | None:
    if case.concluded_case is None:
        return Refusal("decline:concluded", "no concluded case on the same matter")
    return None


# ------------------------------------------------------------------- payload rules


def decline_cites_case(case: CaseState, command: Command) -> Refusal | None:
    assert isinstance(command, Decline)
    if command.reason is DeclineReason.CONCLUDED_AFTER_RE_REVIEW and not command.concluded_case:
        return Refusal("decline:concluded", "cite the concluded case (concluded_case)",
                       field="concluded_case")
    return None


def transfer_elsewhere(case: CaseState, command: Command) -> Refusal | None:
    assert isinstance(command, Transfer)
    if command.to_unit == case.holding_unit:
        return Refusal("transfer", f"the case is already held by {command.to_unit}",
                       field="to_unit")
    return None


def extension_within_limit(case: CaseState, command: Command) -> Refusal | None:
    assert isinstance(command, RequestExtension)
    policy = case.profile.extension
    if command.days > policy.max_period.amount:
        return Refusal("extension:max", f"at most {policy.max_period} ({policy.article})",
                       field="days", details={"max_days": policy.max_period.amount})
    return None


def extension_as_requested(case: CaseState, command: Command) -> Refusal | None:
    assert isinstance(command, DecideExtension)
    pending = case.pending_extension
    assert pending is not None  # the precondition
    if command.approved and (command.days or pending.days) > pending.days:
        return Refusal("extension", f"more days than requested ({pending.days})",
                       field="days", details={"requested_days": pending.days})
    return None


def hearing_unrecorded(case: CaseState, command: Command) -> Refusal | None:
    assert isinstance(command, RecordHearing)
    hearing = next((h for h in case.hearings if h.hearing_no == command.hearing_no), None)
    if hearing is None:
        return Refusal("hearing", f"no hearing no. {command.hearing_no} on this case",
                       field="hearing_no")
    if hearing.outcome is not None:
        return Refusal("hearing", f"hearing no. {command.hearing_no} is already recorded",
                       field="hearing_no")
    return None


def application(case: CaseState, number: int) -> AssistanceFile | None:
    return next((a for a in case.assistance if a.application_no == number), None)


def assistance_decision(case: CaseState, command: Command) -> Refusal | None:
    assert isinstance(command, DecideAssistance)
    app = application(case, command.application_no)
    if app is None:
        return Refusal("assistance", f"no application no. {command.application_no}",
                       field="application_no")
    if app.status != "requested":
        return Refusal("assistance", f"application {app.application_no} is {app.status}",
                       field="application_no")
    if not command.approved:
        return None
    policy = case.profile.assistance
    return assistance_amount_refusal(
        amount=command.amount_yuan or app.amount_yuan, requested=app.amount_yuan,
        role=command.actor.role, exception_approved=command.exception_approved,
        cap_yuan=policy.cap_yuan, leader_threshold_yuan=policy.leader_threshold_yuan)


def assistance_amount_refusal(*, amount: Decimal, requested: Decimal, role: Role,
                              exception_approved: bool, cap_yuan: Decimal,
                              leader_threshold_yuan: Decimal) -> Refusal | None:
    """The cap (36 × the previous year's average monthly wage unless a leader approves an
    exception) and the leader threshold. The payment activity applies it again."""
    if amount > requested:
        return Refusal("assistance:amount", f"{amount} yuan is more than the {requested} yuan "
                       "applied for", field="amount_yuan",
                       details={"requested_yuan": str(requested)})
    if exception_approved and role is not Role.LEADER:
        return Refusal("assistance:exception", "only a leader may approve an exception to "
                       "the cap", field="exception_approved")
    if amount > cap_yuan and not exception_approved:
        return Refusal("assistance:cap", f"{amount} yuan exceeds the cap of {cap_yuan} yuan "
                       "(the previous year's average monthly wage times the profile's "
                       "multiplier) without an approved exception", field="amount_yuan",
                       details={"cap_yuan": str(cap_yuan)})
    if amount > leader_threshold_yuan and role is not Role.LEADER:
        return Refusal("assistance:leader", f"{amount} yuan is above the "
                       f"{leader_threshold_yuan} yuan threshold: a leader must decide",
                       field="amount_yuan",
                       details={"leader_threshold_yuan": str(leader_threshold_yuan)})
    return None


def superiors(case: CaseState, code: str | None) -> set[str]:
    """The organs above `code` in the directory facts the case holds."""
    facts = case.units.get(code or "")
    return {u for u in (facts.parent, facts.superior_bureau) if u} if facts else set()


def review_by_superior(case: CaseState, command: Command) -> Refusal | None:
    assert isinstance(command, RequestReview)
    allowed = superiors(case, case.responsible_unit)
    if allowed and command.review_organ not in allowed:
        return Refusal("review:organ", f"review lies with the superior organ of "
                       f"{case.responsible_unit}: {', '.join(sorted(allowed))}",
                       field="review_organ", details={"allowed": sorted(allowed)})
    return None


def re_review_above_reviewer(case: CaseState, command: Command) -> Refusal | None:
    assert isinstance(command, RequestReReview)
    allowed = superiors(case, case.review_organ)
    if command.re_review_organ in (case.review_organ, case.responsible_unit) or (
            allowed and command.re_review_organ not in allowed):
        above = ", ".join(sorted(allowed)) or "the next organ up"
        return Refusal("re_review:organ", f"re-review lies with the organ above the "
                       f"reviewer {case.review_organ}: {above}", field="re_review_organ",
                       details={"allowed": sorted(allowed)})
    return None
