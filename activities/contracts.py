"""What the workflow hands to its activities and gets back: one typed input per activity.

These are the activities' contracts, not the domain's: the domain core knows nothing of
activities (`domain/` imports none of this).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from domain.case import TransitionRecord, UnitFacts
from domain.models import Actor, ClockName, PetitionIntake
from domain.policy import DeadlineProfile


class TransitionBatch(BaseModel):
    """Records written together: a case flooded with notes costs one activity per batch."""

    records: list[TransitionRecord]


class RegisterPetitionInput(BaseModel):
    workflow_id: str
    intake: PetitionIntake
    registration_no: str | None
    registered_at: datetime


class Registration(BaseModel):
    petition_id: int
    registration_no: str
    unit: UnitFacts
    profile: DeadlineProfile
    repeat_of: str | None = None
    concluded_case: str | None = None  # a termination-registry entry on the same matter
    attached_to_workflow: str | None = None  # an open case on the same matter


class CalendarSnapshotInput(BaseModel):
    first_year: int
    last_year: int


class UnitLookup(BaseModel):
    code: str


class TransferOrderInput(BaseModel):
    workflow_id: str
    petition_id: int
    seq: int
    kind: str  # transfer, assignment, diversion
    from_unit: str
    to_unit: str
    instructions: str | None
    issued_at: datetime


class TransferOrderResult(BaseModel):
    order_no: str
    to_unit: UnitFacts


class HearingBooking(BaseModel):
    workflow_id: str
    petition_id: int
    seq: int
    hearing_no: int
    venue: str
    starts_at: datetime
    duration_minutes: int
    officers: list[str]
    # The petitioner's written hearing notice (domain.notice_facts.NoticeFacts as JSON);
    # None: booked before hearing notices carried their facts.
    facts: dict[str, Any] | None = None


class HearingRecordInput(BaseModel):
    workflow_id: str
    petition_id: int
    seq: int
    hearing_no: int
    outcome: str
    summary: str


class AssistanceApplicationInput(BaseModel):
    workflow_id: str
    petition_id: int
    seq: int
    application_no: int
    kind: str
    amount_yuan: Decimal
    persons: int
    reason: str
    requested_by: str
    requested_at: datetime


class AssistanceDecisionInput(BaseModel):
    workflow_id: str
    petition_id: int
    seq: int
    application_no: int
    approved: bool
    amount_yuan: Decimal | None
    exception_approved: bool
    decided_by: Actor
    decided_at: datetime
    cap_yuan: Decimal
    leader_threshold_yuan: Decimal


class AssistanceDecisionResult(BaseModel):
    application_no: int
    status: str
    approved_amount_yuan: Decimal | None


class DisbursementInput(BaseModel):
    workflow_id: str
    petition_id: int
    application_no: int


class DisbursementResult(BaseModel):
    payment_ref: str
    amount_yuan: Decimal
    paid_at: datetime


class EscalationInput(BaseModel):
    workflow_id: str
    petition_id: int
    registration_no: str
    clock: ClockName
    level: int
    unit: str
    due_at: datetime
    at: datetime
    # The instant the workflow's timer for this level was due (level 1: due_at; level 2:
    # the clock's level2_at); `at` minus it is how late the timer fired. None: the level
    # was already due when the workflow began waiting (no timer was late), or the
    # escalation was scheduled before the workflow passed it.
    timer_due_at: datetime | None = None


class EscalationResult(BaseModel):
    level: int
    escalated_to_person: str | None
    escalated_to_unit: str | None


class NoticeInput(BaseModel):
    idempotency_key: str
    petition_id: int | None
    recipient_kind: str  # petitioner, unit, person
    recipient_ref: str
    template: str
    body: str
    at: datetime
    # What the written notice states, for its letter, SMS and e-mail (documents/): the
    # JSON of domain.notice_facts.NoticeFacts. None: a notice to staff, or one written
    # before notices carried their facts.
    facts: dict[str, Any] | None = None
    # A clock's reminder: the instant the workflow's timer for it was due (its
    # reminder_at), as for EscalationInput. None for every other notice.
    timer_due_at: datetime | None = None


class TerminationInput(BaseModel):
    petition_id: int
    registration_no: str
    concluded_at: datetime
    unit: str


class RefusedStart(BaseModel):
    """A start without a valid signed assertion: audited, then the workflow fails."""

    workflow_id: str
    run_id: str
    rule: str
    message: str
    at: datetime
