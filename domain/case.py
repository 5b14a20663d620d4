"""The state one petition workflow carries, its query answers, and activity inputs/outputs.

All of it survives continue-as-new: the whole `CaseState` is the next run's input.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field

from domain.calendar import FrozenCalendar, YearSchedule
from domain.models import (
    Action,
    Actor,
    Category,
    Channel,
    ClockName,
    Outcome,
    PetitionIntake,
    Satisfaction,
    Stage,
)
from domain.policy import ClockKind, DeadlineProfile, Period

TIMELINE_NOTES_KEPT = 20  # notes and repeat visits beyond this are counted, not listed


def matter_digest(intake: PetitionIntake) -> str:
    """Same petitioner, same category, same respondent or subject: the same matter.

    Unkeyed, so never stored as it is: an ID number is guessable from it. The registry
    stores the blind index's keyed HMAC of it (security/blind_index.py).
    """
    about = (intake.respondent or intake.subject).strip().casefold()
    raw = f"{intake.petitioner.id_number.upper()}|{intake.category}|{about}"
    return hashlib.sha256(raw.encode()).hexdigest()[:40]


class UnitFacts(BaseModel):
    code: str
    name: str
    kind: str
    level: str
    parent: str | None = None
    superior_bureau: str | None = None
    supervising_leader: str | None = None
    head: str | None = None

    @property
    def is_petition_bureau(self) -> bool:
        return self.kind == "petition_bureau"


class Clock(BaseModel):
    name: ClockName
    kind: ClockKind
    article: str
    period: str  # in plain words, for the UI
    started_at: datetime
    due_at: datetime
    reminder_at: datetime | None = None
    level2_at: datetime | None = None
    paused_at: datetime | None = None
    reminded: bool = False
    level: int = 0  # 0 running, 1 overdue and escalated to the leader, 2 to the superior bureau
    unit: str  # the unit the clock binds

    def overdue(self, now: datetime) -> bool:
        return self.kind is ClockKind.DEADLINE and self.paused_at is None and now >= self.due_at


class TimelineEntry(BaseModel):
    seq: int
    at: datetime
    action: Action
    actor: Actor
    from_stage: Stage | None
    to_stage: Stage | None
    accepted: bool = True
    refusal: str | None = None
    summary: str = ""


class Hearing(BaseModel):
    hearing_no: int
    venue: str
    starts_at: datetime
    officers: list[str]
    outcome: str | None = None


class AssistanceFile(BaseModel):
    application_no: int
    amount_yuan: Decimal
    persons: int
    status: str = "requested"  # requested, approved, paid, refused
    payment_ref: str | None = None


class PendingExtension(BaseModel):
    days: int
    reason: str
    requested_by: str


class EffectResults(BaseModel):
    """What the activities that run before a transition answered (work order numbers, unit
    facts, booking numbers ...): the transition's state change reads them."""

    order_no: str | None = None
    units: list[UnitFacts] = Field(default_factory=list)
    hearing_no: int | None = None
    application_no: int | None = None
    approved_amount_yuan: Decimal | None = None


class TransitionRecord(BaseModel):
    """One row of the audit trail and the read model's new state, written together."""

    workflow_id: str
    petition_id: int
    seq: int
    action: Action
    actor: Actor
    at: datetime
    from_stage: Stage | None
    to_stage: Stage | None
    accepted: bool = True
    refusal: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)
    read_model: dict[str, Any] = Field(default_factory=dict)


class CaseState(BaseModel):
    workflow_id: str
    petition_id: int
    registration_no: str
    profile: DeadlineProfile
    # Working days frozen for the deadlines counted in the workflow (None: not yet taken,
    # or a case started before deadlines were counted there).
    calendar: CalendarSnapshot | None = None
    channel: Channel
    category: Category
    law_related: bool
    registered_unit: str
    holding_unit: str
    responsible_unit: str | None = None
    transferred_from: list[str] = Field(default_factory=list)
    review_organ: str | None = None
    re_review_organ: str | None = None
    handler_id: str | None = None
    leader_id: str | None = None
    units: dict[str, UnitFacts] = Field(default_factory=dict)
    stage: Stage = Stage.REGISTERED
    outcome: Outcome | None = None
    clocks: dict[ClockName, Clock] = Field(default_factory=dict)
    seq: int = 0
    request_ids: list[str] = Field(default_factory=list)
    extension_used: bool = False
    extension_days: int = 0
    pending_extension: PendingExtension | None = None
    hearings: list[Hearing] = Field(default_factory=list)
    assistance: list[AssistanceFile] = Field(default_factory=list)
    satisfaction: Satisfaction | None = None
    repeat_visits: int = 0
    notes: int = 0
    refused_actions: int = 0
    last_progress_reply_at: datetime | None = None
    was_overdue: bool = False
    max_escalation_level: int = 0
    repeat_of: str | None = None
    concluded_case: str | None = None
    timeline: list[TimelineEntry] = Field(default_factory=list)
    runs: int = 1
    # Audit records taken but not yet written; carried over by continue-as-new.
    unrecorded: list[TransitionRecord] = Field(default_factory=list)


def open_case(*, workflow_id: str, petition_id: int, registration_no: str,
              profile: DeadlineProfile, intake: PetitionIntake, unit: UnitFacts,
              repeat_of: str | None = None, concluded_case: str | None = None) -> CaseState:
    """A just-registered case, held by the unit that received it (the one constructor:
    the workflow and the legacy importer both start from it)."""
    return CaseState(
        workflow_id=workflow_id, petition_id=petition_id, registration_no=registration_no,
        profile=profile, channel=intake.channel, category=intake.category,
        law_related=intake.law_related, registered_unit=intake.unit,
        holding_unit=intake.unit, units={unit.code: unit}, repeat_of=repeat_of,
        concluded_case=concluded_case)


class PetitionStart(BaseModel):
    """The workflow input. `carried` is set when a run continues as new."""

    intake: PetitionIntake
    registration_no: str | None = None
    carried: CaseState | None = None


class ClockView(BaseModel):
    name: ClockName
    kind: ClockKind
    article: str
    period: str
    started_at: datetime | None = None
    due_at: datetime
    overdue: bool
    paused: bool
    level: int
    unit: str


class PetitionStatus(BaseModel):
    workflow_id: str
    registration_no: str | None
    stage: Stage | None
    outcome: Outcome | None = None
    holding_unit: str | None = None
    responsible_unit: str | None = None
    handler_id: str | None = None
    leader_id: str | None = None
    clocks: list[ClockView] = Field(default_factory=list)
    next_deadline: datetime | None = None
    overdue: bool = False
    escalation_level: int = 0
    extension_days: int = 0
    satisfaction: Satisfaction | None = None
    repeat_visits: int = 0
    notes: int = 0
    refused_actions: int = 0
    hearings: list[Hearing] = Field(default_factory=list)
    assistance: list[AssistanceFile] = Field(default_factory=list)
    concluded_case: str | None = None
    attached_to: str | None = None
    runs: int = 1


class ClockRequest(BaseModel):
    name: ClockName
    start: datetime
    unit: str
    extend_by: Period | None = None  # extend a running clock: `start` is its current due time
    renew: bool = False  # a recurring clock's next period: `start` is its current due time


class CalendarYear(BaseModel):
    year: int
    days_off: list[date]
    weekend_workdays: list[date]
    warning: str | None = None


class CalendarSnapshot(BaseModel):
    """The working-day calendar of a few years, frozen into a case's state.

    Taken once by a local activity (so recorded in history) and carried through
    continue-as-new: the workflow counts working days from it, and a later
    `holidays` release cannot move a running case's deadlines on replay.
    """

    source: str
    years: list[CalendarYear]

    def calendar(self) -> FrozenCalendar:
        return FrozenCalendar({y.year: YearSchedule(frozenset(y.days_off),
                                                    frozenset(y.weekend_workdays), y.warning)
                               for y in self.years})

    def year_range(self) -> tuple[int, int]:
        held = [y.year for y in self.years]
        return min(held), max(held)


class ComputedClock(BaseModel):
    name: ClockName
    kind: ClockKind
    article: str
    period: str
    started_at: datetime
    due_at: datetime
    reminder_at: datetime | None
    level2_at: datetime | None
    unit: str


