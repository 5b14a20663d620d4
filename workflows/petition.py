"""PetitionWorkflow: one petition from registration to closing, executing the lifecycle table.

Every action is an Update (validated, answered at once) and a Signal of the same
name (fire and forget; a refused signal changes nothing and is recorded as
refused). Deadlines are durable timers over absolute times kept in state.

The table in `domain/lifecycle.py` decides every transition: which stage an action
leaves from and goes to, who may take it, and which clocks it starts, stops, pauses,
resumes, renews or extends. This module only executes it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.assistance import AssistanceDesk, check_decision
    from activities.contracts import (
        AssistanceApplicationInput,
        AssistanceDecisionInput,
        CalendarSnapshotInput,
        ComputeDeadlinesInput,
        DisbursementInput,
        EscalationInput,
        HearingBooking,
        HearingRecordInput,
        NoticeInput,
        RegisterPetitionInput,
        Registration,
        TerminationInput,
        TransferOrderInput,
        TransitionBatch,
        UnitLookup,
    )
    from activities.deadlines import DeadlineCalculator
    from activities.escalation import EscalationDesk
    from activities.hearings import HearingDesk
    from activities.notices import NoticeDesk
    from activities.records import TransitionRecorder
    from activities.registry import PetitionRegistry
    from activities.transfers import TransferDesk
    from adapters import search_attributes as sa
    from domain.calendar import FrozenCalendar, OutsideSnapshot
    from domain.case import (
        TIMELINE_NOTES_KEPT,
        AssistanceFile,
        CalendarSnapshot,
        CaseState,
        Clock,
        ClockRequest,
        ClockView,
        ComputedClock,
        Hearing,
        PendingExtension,
        PetitionStart,
        PetitionStatus,
        TimelineEntry,
        TransitionRecord,
    )
    from domain.deadlines import MAX_SNAPSHOT_YEARS, SNAPSHOT_YEARS_AHEAD, compute_clock
    from domain.lifecycle import (
        CLOCK_TITLES,
        LAPSE_ACTIONS,
        REGISTRATION,
        STAGE_TITLES,
        SUCCESSOR_CLOCKS,
        TABLE,
        Effect,
        GuardContext,
        Refusal,
        Transition,
        check_guard,
        clocks_to_start,
    )
    from domain.models import (
        SYSTEM_ACTOR,
        Accept,
        Action,
        Actor,
        AddNote,
        Assign,
        ClockName,
        Command,
        ContractToLeader,
        DecideAssistance,
        DecideExtension,
        Decline,
        DeclineReason,
        Divert,
        PetitionIntake,
        ProgressReply,
        Rate,
        RecordHearing,
        RejectTransfer,
        RepeatVisit,
        Reply,
        RequestAssistance,
        RequestExtension,
        RequestReReview,
        RequestReview,
        ReReviewOpinion,
        ReviewOpinion,
        Role,
        ScheduleHearing,
        Stage,
        SystemCommand,
        Transfer,
        Withdraw,
    )
    from domain.policy import ClockKind, Period

# Infrastructure errors retry with backoff for as long as it takes; business refusals
# are non-retryable ApplicationErrors raised by the activities themselves.
RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                    maximum_interval=timedelta(minutes=1))
ACTIVITY_TIMEOUT = timedelta(seconds=30)
# Well under the server's own suggestion (4,096 events by default) and far under the
# 10,000 a run must stay below: a flood of notes arriving while the run drains still
# fits, and a worker that has to replay a case from scratch replays little.
CONTINUE_AS_NEW_AFTER_EVENTS = 2_000
# One batch of audit records: small enough for one payload (notes may be 20,000 chars),
# and what a run may hand to the next unwritten: payloads above 512 KB draw warnings and
# above 2 MB fail, so a continue-as-new waits until the queue is this small.
RECORD_BATCH_MAX = 200
RECORD_BATCH_MAX_CHARS = 300_000
CARRY_MAX_CHARS = 200_000
REFUSED = "ActionRefused"
# Since this patch, audit records are written by a local activity inside the workflow task
# that took the action, and the notices an action sends follow its answer instead of
# preceding it: a handler's Update is answered in one workflow task instead of three (see
# bench/README.md). Runs started before it replay the old order.
ANSWER_IN_ONE_TASK = "audit-local-activity-notices-after-answer"
# Every `workflow.patched` id in use; the replay tests check each is covered both ways.
# Since this patch, deadlines are counted in the workflow, on a calendar snapshot frozen
# into its state, instead of by a local activity per clock start: one local activity less
# before an accept or an extension is answered. Runs started before it replay the old way.
DEADLINES_IN_WORKFLOW = "deadlines-counted-on-frozen-calendar"
# A snapshot is taken, or widened, at most this many times for one computation; past
# that (a case whose dates run decades apart) the local activity counts as before.
SNAPSHOT_ATTEMPTS = 3
PATCHES = (ANSWER_IN_ONE_TASK, DEADLINES_IN_WORKFLOW)


def _beijing(at: datetime) -> str:
    """A deadline in the words of the regulations: 24:00 of its last day, Beijing time."""
    local = at + timedelta(hours=8)
    if (local.hour, local.minute, local.second) == (0, 0, 0):
        return f"{(local - timedelta(days=1)):%Y-%m-%d} 24:00 Beijing time"
    return f"{local:%Y-%m-%d %H:%M:%S} Beijing time"


@workflow.defn
class PetitionWorkflow:
    @workflow.init
    def __init__(self, start: PetitionStart) -> None:
        self._intake: PetitionIntake = start.intake
        self._state: CaseState | None = start.carried
        self._attached_to: str | None = None
        # Registered and its entry clocks installed: only then may actions be taken.
        self._ready = start.carried is not None
        self._lock = asyncio.Lock()
        self._clocks_changed = False
        # Audit records queue in state (`unrecorded`) and one writer sends them in batches;
        # these count the records of this run, the carried ones included.
        self._queued = len(start.carried.unrecorded) if start.carried else 0
        # Serialized size of each queued record, to size batches and the carried queue.
        self._sizes = [len(r.model_dump_json()) for r in start.carried.unrecorded
                       ] if start.carried else []
        self._unwritten_chars = sum(self._sizes)  # kept, not summed: conditions read it often
        self._written = 0
        self._writing = False
        self._waiting_for_records = 0
        self._writer_error: BaseException | None = None
        # Notices of actions waiting to be sent, in order, by one sender (with the patch).
        self._outbox: list[tuple[NoticeInput, str]] = []
        self._draining = False  # about to continue as new: start no batch nobody waits for
        self._published: dict[str, Any] = {}
        self._details_text: str | None = None
        # The case's frozen calendar, built from its snapshot once per run (and per widening).
        self._calendar: FrozenCalendar | None = None

    # ------------------------------------------------------------------ the run

    @workflow.run
    async def run(self, start: PetitionStart) -> PetitionStatus:
        writer = asyncio.create_task(self._write_records())
        sender = asyncio.create_task(self._send_notices())
        if self._state is None:
            await self._register(start)
            if self._attached_to is not None:
                writer.cancel()
                sender.cancel()
                return self.status()
        else:
            self._publish()  # a new run: current details and search attributes again
        while self._case.stage is not Stage.CLOSED:
            await self._wait_for_next_clock_event()
            self._raise_writer_error()
            async with self._lock:
                await self._fire_due_clock_events()
            if self._should_continue_as_new():
                await self._continue_as_new()
        await workflow.wait_condition(
            lambda: (workflow.all_handlers_finished() and not self._case.unrecorded
                     and not self._outbox)
            or self._writer_error is not None)
        self._raise_writer_error()
        writer.cancel()
        sender.cancel()
        return self.status()

    @property
    def _case(self) -> CaseState:
        if self._state is None:
            raise ApplicationError("the petition is still being registered; try again shortly",
                                   type=REFUSED, non_retryable=True)
        return self._state

    async def _register(self, start: PetitionStart) -> None:
        now = workflow.now()
        info = workflow.info()
        registration: Registration = await workflow.execute_activity_method(
            PetitionRegistry.register_petition,
            RegisterPetitionInput(workflow_id=info.workflow_id, intake=self._intake,
                                  registration_no=start.registration_no, registered_at=now),
            start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=RETRY,
            summary="register the petition and check for repeats",
        )
        if registration.attached_to_workflow is not None:
            await self._attach_to_open_case(registration)
            return
        intake = self._intake
        self._state = CaseState(
            workflow_id=info.workflow_id, petition_id=registration.petition_id,
            registration_no=registration.registration_no, profile=registration.profile,
            channel=intake.channel, category=intake.category, law_related=intake.law_related,
            registered_unit=intake.unit, holding_unit=intake.unit,
            units={registration.unit.code: registration.unit}, repeat_of=registration.repeat_of,
            concluded_case=registration.concluded_case,
        )
        await self._start_clocks(REGISTRATION, now)
        clerk = Actor(id=f"intake-{intake.channel}", role=Role.INTAKE_CLERK, unit=intake.unit)
        await self._written_through(
            self._record(Action.REGISTER, clerk, None, now, {"channel": intake.channel}))
        await self._notify_petitioner(Action.REGISTER, now, defer=self._answer_in_one_task())
        if registration.concluded_case is not None:
            # Art. 30: the same matter, concluded after re-review, is not accepted again.
            await self._decline_concluded(registration.concluded_case)
        self._publish()
        self._ready = True

    async def _attach_to_open_case(self, registration: Registration) -> None:
        """A repeat visit on an open matter is counted on that case, not opened again."""
        assert registration.attached_to_workflow is not None
        self._attached_to = registration.attached_to_workflow
        handle = workflow.get_external_workflow_handle(registration.attached_to_workflow)
        visit = RepeatVisit(
            actor=Actor(id=f"intake-{self._intake.channel}", role=Role.INTAKE_CLERK,
                        unit=self._intake.unit),
            channel=self._intake.channel, summary=f"intake {self._intake.intake_id}",
            request_id=f"repeat-{self._intake.intake_id}",
        )
        await handle.signal(PetitionWorkflow.repeat_visit_signal, visit)
        workflow.set_current_details(
            f"Repeat visit attached to the open case {registration.registration_no}.")

    async def _decline_concluded(self, concluded: str) -> None:
        command = Decline(
            actor=SYSTEM_ACTOR, reason=DeclineReason.CONCLUDED_AFTER_RE_REVIEW,
            explanation=f"the same matter was concluded after re-review in case {concluded}",
            concluded_case=concluded,
        )
        async with self._lock:
            await self._execute(TABLE[Action.DECLINE], command)

    # ------------------------------------------------------- queries and updates

    @workflow.query
    def status(self) -> PetitionStatus:
        info = workflow.info()
        if self._state is None:
            return PetitionStatus(workflow_id=info.workflow_id, registration_no=None, stage=None,
                                  attached_to=self._attached_to)
        st, now = self._state, workflow.now()
        views = [ClockView(name=c.name, kind=c.kind, article=c.article, period=c.period,
                           started_at=c.started_at, due_at=c.due_at, overdue=c.overdue(now),
                           paused=c.paused_at is not None, level=c.level, unit=c.unit)
                 for c in st.clocks.values()]
        return PetitionStatus(
            workflow_id=st.workflow_id, registration_no=st.registration_no, stage=st.stage,
            outcome=st.outcome, holding_unit=st.holding_unit,
            responsible_unit=st.responsible_unit, handler_id=st.handler_id,
            leader_id=st.leader_id, clocks=views, next_deadline=self._next_deadline(),
            overdue=self._overdue(), escalation_level=self._escalation_level(),
            extension_days=st.extension_days, satisfaction=st.satisfaction,
            repeat_visits=st.repeat_visits, notes=st.notes, refused_actions=st.refused_actions,
            hearings=st.hearings, assistance=st.assistance, concluded_case=st.concluded_case,
            runs=st.runs,
        )

    @workflow.query
    def timeline(self) -> list[TimelineEntry]:
        return [] if self._state is None else self._state.timeline

    @workflow.update
    async def wait_registered(self) -> PetitionStatus:
        """Answers once the registration activity has run: the intake client's receipt."""
        await workflow.wait_condition(lambda: self._ready or self._attached_to is not None)
        return self.status()

    # One Update and one Signal per action, both named as in DOMAIN.md.
    @workflow.update
    async def accept(self, command: Accept) -> PetitionStatus:
        return await self._act(Action.ACCEPT, command)

    @accept.validator
    def _v_accept(self, command: Accept) -> None:
        self._validate(Action.ACCEPT, command)

    @workflow.signal(name="accept")
    async def accept_signal(self, command: Accept) -> None:
        await self._act_on_signal(Action.ACCEPT, command)

    @workflow.update
    async def decline(self, command: Decline) -> PetitionStatus:
        return await self._act(Action.DECLINE, command)

    @decline.validator
    def _v_decline(self, command: Decline) -> None:
        self._validate(Action.DECLINE, command)

    @workflow.signal(name="decline")
    async def decline_signal(self, command: Decline) -> None:
        await self._act_on_signal(Action.DECLINE, command)

    @workflow.update
    async def divert(self, command: Divert) -> PetitionStatus:
        return await self._act(Action.DIVERT, command)

    @divert.validator
    def _v_divert(self, command: Divert) -> None:
        self._validate(Action.DIVERT, command)

    @workflow.signal(name="divert")
    async def divert_signal(self, command: Divert) -> None:
        await self._act_on_signal(Action.DIVERT, command)

    @workflow.update
    async def transfer(self, command: Transfer) -> PetitionStatus:
        return await self._act(Action.TRANSFER, command)

    @transfer.validator
    def _v_transfer(self, command: Transfer) -> None:
        self._validate(Action.TRANSFER, command)

    @workflow.signal(name="transfer")
    async def transfer_signal(self, command: Transfer) -> None:
        await self._act_on_signal(Action.TRANSFER, command)

    @workflow.update
    async def reject_transfer(self, command: RejectTransfer) -> PetitionStatus:
        return await self._act(Action.REJECT_TRANSFER, command)

    @reject_transfer.validator
    def _v_reject_transfer(self, command: RejectTransfer) -> None:
        self._validate(Action.REJECT_TRANSFER, command)

    @workflow.signal(name="reject_transfer")
    async def reject_transfer_signal(self, command: RejectTransfer) -> None:
        await self._act_on_signal(Action.REJECT_TRANSFER, command)

    @workflow.update
    async def assign(self, command: Assign) -> PetitionStatus:
        return await self._act(Action.ASSIGN, command)

    @assign.validator
    def _v_assign(self, command: Assign) -> None:
        self._validate(Action.ASSIGN, command)

    @workflow.signal(name="assign")
    async def assign_signal(self, command: Assign) -> None:
        await self._act_on_signal(Action.ASSIGN, command)

    @workflow.update
    async def contract_to_leader(self, command: ContractToLeader) -> PetitionStatus:
        return await self._act(Action.CONTRACT_TO_LEADER, command)

    @contract_to_leader.validator
    def _v_contract_to_leader(self, command: ContractToLeader) -> None:
        self._validate(Action.CONTRACT_TO_LEADER, command)

    @workflow.signal(name="contract_to_leader")
    async def contract_to_leader_signal(self, command: ContractToLeader) -> None:
        await self._act_on_signal(Action.CONTRACT_TO_LEADER, command)

    @workflow.update
    async def request_extension(self, command: RequestExtension) -> PetitionStatus:
        return await self._act(Action.REQUEST_EXTENSION, command)

    @request_extension.validator
    def _v_request_extension(self, command: RequestExtension) -> None:
        self._validate(Action.REQUEST_EXTENSION, command)

    @workflow.signal(name="request_extension")
    async def request_extension_signal(self, command: RequestExtension) -> None:
        await self._act_on_signal(Action.REQUEST_EXTENSION, command)

    @workflow.update
    async def decide_extension(self, command: DecideExtension) -> PetitionStatus:
        return await self._act(Action.DECIDE_EXTENSION, command)

    @decide_extension.validator
    def _v_decide_extension(self, command: DecideExtension) -> None:
        self._validate(Action.DECIDE_EXTENSION, command)

    @workflow.signal(name="decide_extension")
    async def decide_extension_signal(self, command: DecideExtension) -> None:
        await self._act_on_signal(Action.DECIDE_EXTENSION, command)

    @workflow.update
    async def schedule_hearing(self, command: ScheduleHearing) -> PetitionStatus:
        return await self._act(Action.SCHEDULE_HEARING, command)

    @schedule_hearing.validator
    def _v_schedule_hearing(self, command: ScheduleHearing) -> None:
        self._validate(Action.SCHEDULE_HEARING, command)

    @workflow.signal(name="schedule_hearing")
    async def schedule_hearing_signal(self, command: ScheduleHearing) -> None:
        await self._act_on_signal(Action.SCHEDULE_HEARING, command)

    @workflow.update
    async def record_hearing(self, command: RecordHearing) -> PetitionStatus:
        return await self._act(Action.RECORD_HEARING, command)

    @record_hearing.validator
    def _v_record_hearing(self, command: RecordHearing) -> None:
        self._validate(Action.RECORD_HEARING, command)

    @workflow.signal(name="record_hearing")
    async def record_hearing_signal(self, command: RecordHearing) -> None:
        await self._act_on_signal(Action.RECORD_HEARING, command)

    @workflow.update
    async def request_assistance(self, command: RequestAssistance) -> PetitionStatus:
        return await self._act(Action.REQUEST_ASSISTANCE, command)

    @request_assistance.validator
    def _v_request_assistance(self, command: RequestAssistance) -> None:
        self._validate(Action.REQUEST_ASSISTANCE, command)

    @workflow.signal(name="request_assistance")
    async def request_assistance_signal(self, command: RequestAssistance) -> None:
        await self._act_on_signal(Action.REQUEST_ASSISTANCE, command)

    @workflow.update
    async def decide_assistance(self, command: DecideAssistance) -> PetitionStatus:
        return await self._act(Action.DECIDE_ASSISTANCE, command)

    @decide_assistance.validator
    def _v_decide_assistance(self, command: DecideAssistance) -> None:
        self._validate(Action.DECIDE_ASSISTANCE, command)

    @workflow.signal(name="decide_assistance")
    async def decide_assistance_signal(self, command: DecideAssistance) -> None:
        await self._act_on_signal(Action.DECIDE_ASSISTANCE, command)

    @workflow.update
    async def progress_reply(self, command: ProgressReply) -> PetitionStatus:
        return await self._act(Action.PROGRESS_REPLY, command)

    @progress_reply.validator
    def _v_progress_reply(self, command: ProgressReply) -> None:
        self._validate(Action.PROGRESS_REPLY, command)

    @workflow.signal(name="progress_reply")
    async def progress_reply_signal(self, command: ProgressReply) -> None:
        await self._act_on_signal(Action.PROGRESS_REPLY, command)

    @workflow.update
    async def reply(self, command: Reply) -> PetitionStatus:
        return await self._act(Action.REPLY, command)

    @reply.validator
    def _v_reply(self, command: Reply) -> None:
        self._validate(Action.REPLY, command)

    @workflow.signal(name="reply")
    async def reply_signal(self, command: Reply) -> None:
        await self._act_on_signal(Action.REPLY, command)

    @workflow.update
    async def rate(self, command: Rate) -> PetitionStatus:
        return await self._act(Action.RATE, command)

    @rate.validator
    def _v_rate(self, command: Rate) -> None:
        self._validate(Action.RATE, command)

    @workflow.signal(name="rate")
    async def rate_signal(self, command: Rate) -> None:
        await self._act_on_signal(Action.RATE, command)

    @workflow.update
    async def request_review(self, command: RequestReview) -> PetitionStatus:
        return await self._act(Action.REQUEST_REVIEW, command)

    @request_review.validator
    def _v_request_review(self, command: RequestReview) -> None:
        self._validate(Action.REQUEST_REVIEW, command)

    @workflow.signal(name="request_review")
    async def request_review_signal(self, command: RequestReview) -> None:
        await self._act_on_signal(Action.REQUEST_REVIEW, command)

    @workflow.update
    async def review_opinion(self, command: ReviewOpinion) -> PetitionStatus:
        return await self._act(Action.REVIEW_OPINION, command)

    @review_opinion.validator
    def _v_review_opinion(self, command: ReviewOpinion) -> None:
        self._validate(Action.REVIEW_OPINION, command)

    @workflow.signal(name="review_opinion")
    async def review_opinion_signal(self, command: ReviewOpinion) -> None:
        await self._act_on_signal(Action.REVIEW_OPINION, command)

    @workflow.update
    async def request_re_review(self, command: RequestReReview) -> PetitionStatus:
        return await self._act(Action.REQUEST_RE_REVIEW, command)

    @request_re_review.validator
    def _v_request_re_review(self, command: RequestReReview) -> None:
        self._validate(Action.REQUEST_RE_REVIEW, command)

    @workflow.signal(name="request_re_review")
    async def request_re_review_signal(self, command: RequestReReview) -> None:
        await self._act_on_signal(Action.REQUEST_RE_REVIEW, command)

    @workflow.update
    async def re_review_opinion(self, command: ReReviewOpinion) -> PetitionStatus:
        return await self._act(Action.RE_REVIEW_OPINION, command)

    @re_review_opinion.validator
    def _v_re_review_opinion(self, command: ReReviewOpinion) -> None:
        self._validate(Action.RE_REVIEW_OPINION, command)

    @workflow.signal(name="re_review_opinion")
    async def re_review_opinion_signal(self, command: ReReviewOpinion) -> None:
        await self._act_on_signal(Action.RE_REVIEW_OPINION, command)

    @workflow.update
    async def withdraw(self, command: Withdraw) -> PetitionStatus:
        return await self._act(Action.WITHDRAW, command)

    @withdraw.validator
    def _v_withdraw(self, command: Withdraw) -> None:
        self._validate(Action.WITHDRAW, command)

    @workflow.signal(name="withdraw")
    async def withdraw_signal(self, command: Withdraw) -> None:
        await self._act_on_signal(Action.WITHDRAW, command)

    @workflow.update
    async def add_note(self, command: AddNote) -> PetitionStatus:
        return await self._act(Action.ADD_NOTE, command)

    @add_note.validator
    def _v_add_note(self, command: AddNote) -> None:
        self._validate(Action.ADD_NOTE, command)

    @workflow.signal(name="add_note")
    async def add_note_signal(self, command: AddNote) -> None:
        await self._act_on_signal(Action.ADD_NOTE, command)

    @workflow.update
    async def repeat_visit(self, command: RepeatVisit) -> PetitionStatus:
        return await self._act(Action.REPEAT_VISIT, command)

    @repeat_visit.validator
    def _v_repeat_visit(self, command: RepeatVisit) -> None:
        self._validate(Action.REPEAT_VISIT, command)

    @workflow.signal(name="repeat_visit")
    async def repeat_visit_signal(self, command: RepeatVisit) -> None:
        await self._act_on_signal(Action.REPEAT_VISIT, command)


    # ----------------------------------------------------------- guard and rules

    def _validate(self, action: Action, command: Command) -> None:
        if not self._ready:
            raise ApplicationError("the petition is still being registered; try again shortly",
                                   type=REFUSED, non_retryable=True)
        if command.request_id and command.request_id in self._case.request_ids:
            return  # a retry of an action already taken: answered with the status, not refused
        refusal = self._refusal(action, command)
        if refusal is not None:
            raise ApplicationError(str(refusal), type=REFUSED, non_retryable=True)

    def _refusal(self, action: Action, command: Command) -> Refusal | None:
        refusal = check_guard(TABLE[action], command, self._guard_context())
        if refusal is None:
            rule = _ACTION_RULES.get(action)
            refusal = rule(self, command) if rule else None
        return refusal

    def _guard_context(self) -> GuardContext:
        st = self._case
        leaders = {st.leader_id} if st.leader_id else set()
        for code in (st.holding_unit, st.responsible_unit):
            facts = st.units.get(code or "")
            if facts is not None and facts.supervising_leader:
                leaders.add(facts.supervising_leader)
        return GuardContext(stage=st.stage, holding_unit=st.holding_unit,
                            responsible_unit=st.responsible_unit, review_organ=st.review_organ,
                            re_review_organ=st.re_review_organ, leaders=frozenset(leaders))

    def _rule_decline(self, command: Command) -> Refusal | None:
        assert isinstance(command, Decline)
        if (command.reason is DeclineReason.CONCLUDED_AFTER_RE_REVIEW
                and not command.concluded_case):
            return Refusal("decline:concluded", "cite the concluded case (concluded_case)")
        return None

    def _rule_transfer(self, command: Command) -> Refusal | None:
        assert isinstance(command, Transfer)
        st = self._case
        if command.to_unit == st.holding_unit:
            return Refusal("transfer", f"the case is already held by {command.to_unit}")
        return None

    def _rule_reject_transfer(self, command: Command) -> Refusal | None:
        if ClockName.TRANSFER_OBJECTION not in self._case.clocks:
            return Refusal("transfer_objection",
                           "no transfer to object to, or the objection period has passed")
        return None

    def _rule_request_extension(self, command: Command) -> Refusal | None:
        assert isinstance(command, RequestExtension)
        st = self._case
        policy = st.profile.extension
        if st.pending_extension is not None:
            return Refusal("extension:pending", "an extension request is already waiting for "
                           "the unit head's decision")
        if st.extension_used or policy.max_times < 1:
            return Refusal("extension:once", f"the handling period may be extended only "
                           f"{policy.max_times} time(s) ({policy.article})")
        if not any(name in st.clocks for name in TABLE[Action.DECIDE_EXTENSION].extends):
            return Refusal("extension", "no handling period is running")
        if command.days > policy.max_period.amount:
            return Refusal("extension:max", f"at most {policy.max_period} ({policy.article})")
        return None

    def _rule_decide_extension(self, command: Command) -> Refusal | None:
        assert isinstance(command, DecideExtension)
        pending = self._case.pending_extension
        if pending is None:
            return Refusal("extension", "no extension request is pending")
        if command.approved and (command.days or pending.days) > pending.days:
            return Refusal("extension", f"more days than requested ({pending.days})")
        return None

    def _rule_record_hearing(self, command: Command) -> Refusal | None:
        assert isinstance(command, RecordHearing)
        hearing = next((h for h in self._case.hearings if h.hearing_no == command.hearing_no),
                       None)
        if hearing is None:
            return Refusal("hearing", f"no hearing no. {command.hearing_no} on this case")
        if hearing.outcome is not None:
            return Refusal("hearing", f"hearing no. {command.hearing_no} is already recorded")
        return None

    def _rule_decide_assistance(self, command: Command) -> Refusal | None:
        assert isinstance(command, DecideAssistance)
        st = self._case
        app = next((a for a in st.assistance if a.application_no == command.application_no),
                   None)
        if app is None:
            return Refusal("assistance", f"no application no. {command.application_no}")
        if app.status != "requested":
            return Refusal("assistance", f"application {app.application_no} is {app.status}")
        try:
            check_decision(self._decision(command, app), app.amount_yuan)
        except ApplicationError as refusal:
            # The desk's message already names its rule ("refused [assistance:leader]: ...").
            rule, _, message = refusal.message.partition("]: ")
            if message and rule.startswith("refused ["):
                return Refusal(rule.removeprefix("refused ["), message)
            return Refusal("assistance", refusal.message)
        return None

    def _rule_request_review(self, command: Command) -> Refusal | None:
        assert isinstance(command, RequestReview)
        st = self._case
        allowed = self._superiors(st.responsible_unit)
        if allowed and command.review_organ not in allowed:
            return Refusal("review:organ", f"review lies with the superior organ of "
                           f"{st.responsible_unit}: {', '.join(sorted(allowed))}")
        return None

    def _rule_request_re_review(self, command: Command) -> Refusal | None:
        assert isinstance(command, RequestReReview)
        st = self._case
        allowed = self._superiors(st.review_organ)
        if command.re_review_organ in (st.review_organ, st.responsible_unit) or (
                allowed and command.re_review_organ not in allowed):
            above = ", ".join(sorted(allowed)) or "the next organ up"
            return Refusal("re_review:organ", f"re-review lies with the organ above the "
                           f"reviewer {st.review_organ}: {above}")
        return None

    def _superiors(self, code: str | None) -> set[str]:
        facts = self._case.units.get(code or "")
        return {u for u in (facts.parent, facts.superior_bureau) if u} if facts else set()

    def _decision(self, command: DecideAssistance, app: AssistanceFile) -> AssistanceDecisionInput:
        st = self._case
        return AssistanceDecisionInput(
            workflow_id=st.workflow_id, petition_id=st.petition_id, seq=st.seq + 1,
            application_no=app.application_no, approved=command.approved,
            amount_yuan=command.amount_yuan, exception_approved=command.exception_approved,
            decided_by=command.actor, decided_at=workflow.now(),
            cap_yuan=st.profile.assistance.cap_yuan,
            leader_threshold_yuan=st.profile.assistance.leader_threshold_yuan,
        )

    # ---------------------------------------------------------------- execution

    async def _act(self, action: Action, command: Command) -> PetitionStatus:
        async with self._lock:
            if command.request_id and command.request_id in self._case.request_ids:
                return self.status()  # a client retry of an action already taken
            # Checked again: the case may have moved while this action waited for the lock.
            refusal = self._refusal(action, command)
            if refusal is not None:
                self._record_refusal(action, command, str(refusal))
                raise ApplicationError(str(refusal), type=REFUSED, non_retryable=True)
            try:
                record = await self._execute(TABLE[action], command)
            except ActivityError as err:
                message = _business_refusal(err)
                if message is None:
                    raise
                self._record_refusal(action, command, message)
                raise ApplicationError(message, type=REFUSED, non_retryable=True) from err
        # Notes are written in batches; the caller of an Update still gets its answer
        # only once its record is in the audit trail.
        await self._written_through(record)
        return self.status()

    async def _act_on_signal(self, action: Action, command: Command) -> None:
        # A flood of signals arrives in one activation: every pending condition is checked
        # on every turn of the workflow's event loop, so none is added when not needed.
        if not self._ready:
            await workflow.wait_condition(lambda: self._ready)
        if TABLE[action].counts_as_note:
            # Fire and forget: the record joins the next batch; nobody waits for it.
            await self._act_quietly(action, command)
            return
        try:
            await self._act(action, command)
        except ApplicationError as refused:
            if refused.type != REFUSED:
                raise  # already recorded as refused by _act

    async def _act_quietly(self, action: Action, command: Command) -> None:
        async with self._lock:
            if command.request_id and command.request_id in self._case.request_ids:
                return
            refusal = self._refusal(action, command)
            if refusal is not None:
                self._record_refusal(action, command, str(refusal))
                return
            await self._execute(TABLE[action], command)

    async def _execute(self, row: Transition, command: Command) -> int:
        """Carry out one row of the table; returns the number of its audit record."""
        st, now = self._case, workflow.now()
        from_stage = st.stage
        detail = await self._effects_before(row, command, now)
        self._apply(command, detail)
        self._stop_clocks(row.stops)
        self._pause_clocks(row.pauses, now)
        self._resume_clocks(row.resumes, now)
        await self._start_clocks(row, now)
        await self._renew_clocks(row.renews, now)
        await self._extend_clocks(row.extends, detail)
        if row.to_stage is not None:
            st.stage = row.to_stage
        if row.outcome is not None:
            st.outcome = row.outcome
        if command.request_id:
            st.request_ids = [*st.request_ids[-199:], command.request_id]
        detail.update(command.model_dump(mode="json", exclude={"actor", "request_id"}))
        record = self._record(row.action, command.actor, from_stage, now, detail,
                              compact=row.counts_as_note)
        if not row.counts_as_note:
            # The audit row comes before the notices it explains.
            await self._written_through(record)
            await self._effects_after(row, command, now, defer=self._answer_in_one_task())
            self._publish()  # a note changes neither search attributes nor current details
        return record

    async def _effects_before(self, row: Transition, command: Command,
                              now: datetime) -> dict[str, Any]:
        """Side effects that may refuse the action; they run before state changes."""
        st, seq = self._case, self._case.seq + 1
        detail: dict[str, Any] = {}
        if Effect.TRANSFER_ORDER in row.effects and isinstance(command, Transfer):
            result = await self._activity(TransferDesk.issue_transfer_order, TransferOrderInput(
                workflow_id=st.workflow_id, petition_id=st.petition_id, seq=seq,
                kind="assignment" if command.assigned else "transfer",
                from_unit=st.holding_unit, to_unit=command.to_unit,
                instructions=command.instructions, issued_at=now),
                f"{row.action}: work order to {command.to_unit}")
            st.units[result.to_unit.code] = result.to_unit
            detail["order_no"] = result.order_no
        if Effect.DIVERSION_ORDER in row.effects and isinstance(command, Divert):
            result = await self._activity(TransferDesk.issue_transfer_order, TransferOrderInput(
                workflow_id=st.workflow_id, petition_id=st.petition_id, seq=seq,
                kind="diversion", from_unit=st.holding_unit, to_unit=command.organ,
                instructions=f"{command.track}: {command.explanation}", issued_at=now),
                f"{row.action}: diversion order to {command.organ}")
            detail["order_no"] = result.order_no
        if isinstance(command, RequestReview | RequestReReview):
            organ = (command.review_organ if isinstance(command, RequestReview)
                     else command.re_review_organ)
            facts = await self._activity(PetitionRegistry.resolve_unit, UnitLookup(code=organ),
                                         f"{row.action}: look up {organ}")
            st.units[facts.code] = facts
        if Effect.BOOK_HEARING in row.effects and isinstance(command, ScheduleHearing):
            detail["hearing_no"] = await self._activity(HearingDesk.schedule_hearing,
                HearingBooking(workflow_id=st.workflow_id, petition_id=st.petition_id, seq=seq,
                               hearing_no=len(st.hearings) + 1, venue=command.venue,
                               starts_at=command.starts_at,
                               duration_minutes=command.duration_minutes,
                               officers=command.officers),
                f"{row.action}: book the hearing at {command.venue}")
        if Effect.RECORD_HEARING in row.effects and isinstance(command, RecordHearing):
            await self._activity(HearingDesk.record_hearing_outcome, HearingRecordInput(
                workflow_id=st.workflow_id, petition_id=st.petition_id, seq=seq,
                hearing_no=command.hearing_no, outcome=command.outcome,
                summary=command.summary), f"{row.action}: hearing no. {command.hearing_no}")
        if Effect.FILE_ASSISTANCE in row.effects and isinstance(command, RequestAssistance):
            detail["application_no"] = await self._activity(
                AssistanceDesk.file_assistance_application, AssistanceApplicationInput(
                    workflow_id=st.workflow_id, petition_id=st.petition_id, seq=seq,
                    application_no=len(st.assistance) + 1, kind=command.kind,
                    amount_yuan=command.amount_yuan, persons=command.persons,
                    reason=command.reason, requested_by=command.actor.id, requested_at=now),
                f"{row.action}: file the application")
        if Effect.DECIDE_ASSISTANCE in row.effects and isinstance(command, DecideAssistance):
            app = next(a for a in st.assistance if a.application_no == command.application_no)
            decided = await self._activity(AssistanceDesk.decide_assistance,
                                           self._decision(command, app),
                                           f"{row.action}: application {app.application_no}")
            detail["approved_amount_yuan"] = str(decided.approved_amount_yuan)
        return detail

    def _apply(self, command: Command, detail: dict[str, Any]) -> None:
        """What an action changes besides the stage and the clocks."""
        st = self._case
        if isinstance(command, Accept):
            st.responsible_unit = st.holding_unit
        elif isinstance(command, Transfer):
            st.transferred_from.append(st.holding_unit)
            st.holding_unit = command.to_unit
        elif isinstance(command, RejectTransfer) and st.transferred_from:
            st.holding_unit = st.transferred_from.pop()
        elif isinstance(command, Assign):
            st.handler_id = command.handler_id
        elif isinstance(command, ContractToLeader):
            st.leader_id = command.leader_id
        elif isinstance(command, RequestExtension):
            st.pending_extension = PendingExtension(days=command.days, reason=command.reason,
                                                    requested_by=command.actor.id)
        elif isinstance(command, DecideExtension):
            pending, st.pending_extension = st.pending_extension, None
            if command.approved and pending is not None:
                detail["granted_days"] = command.days or pending.days
        elif isinstance(command, ScheduleHearing):
            st.hearings.append(Hearing(hearing_no=detail["hearing_no"], venue=command.venue,
                                       starts_at=command.starts_at, officers=command.officers))
        elif isinstance(command, RecordHearing):
            for hearing in st.hearings:
                if hearing.hearing_no == command.hearing_no:
                    hearing.outcome = command.outcome
        elif isinstance(command, RequestAssistance):
            st.assistance.append(AssistanceFile(
                application_no=detail["application_no"], amount_yuan=command.amount_yuan,
                persons=command.persons))
        elif isinstance(command, Rate):
            st.satisfaction = command.satisfaction
        elif isinstance(command, RequestReview):
            st.review_organ = command.review_organ
        elif isinstance(command, RequestReReview):
            st.re_review_organ = command.re_review_organ
        elif isinstance(command, ProgressReply):
            st.last_progress_reply_at = workflow.now()
        elif isinstance(command, AddNote):
            st.notes += 1
        elif isinstance(command, RepeatVisit):
            st.repeat_visits += 1

    async def _effects_after(self, row: Transition, command: Command, now: datetime,
                             defer: bool) -> None:
        """Payments and registry entries before the answer; notices before it, or queued
        to follow it (`defer`)."""
        st = self._case
        if isinstance(command, DecideAssistance):
            await self._disburse(command)
        if Effect.TERMINATION_REGISTRY in row.effects:
            await self._activity(PetitionRegistry.enter_termination_registry, TerminationInput(
                petition_id=st.petition_id, registration_no=st.registration_no,
                concluded_at=now, unit=command.actor.unit),
                f"{row.action}: enter the termination registry")
        if Effect.NOTICE_PETITIONER in row.effects:
            await self._notify_petitioner(row.action, now, _notice_text(command, self._case),
                                          defer=defer)
        if Effect.NOTICE_RECEIVING_UNIT in row.effects:
            await self._notify("unit", st.holding_unit, row.action, now, defer=defer)
        if Effect.NOTICE_REVIEW_ORGAN in row.effects:
            organ = (st.re_review_organ if row.action is Action.REQUEST_RE_REVIEW
                     else st.review_organ)
            await self._notify("unit", organ or st.holding_unit, row.action, now, defer=defer)
        if Effect.NOTICE_LEADER in row.effects and st.leader_id:
            await self._notify("person", st.leader_id, row.action, now, defer=defer)

    async def _disburse(self, command: DecideAssistance) -> None:
        st = self._case
        app = next(a for a in st.assistance if a.application_no == command.application_no)
        if not command.approved:
            app.status = "refused"
            return
        paid = await self._activity(AssistanceDesk.disburse_assistance, DisbursementInput(
            workflow_id=st.workflow_id, petition_id=st.petition_id,
            application_no=app.application_no),
            f"decide_assistance: pay application {app.application_no}")
        app.status, app.payment_ref = "paid", paid.payment_ref
        app.amount_yuan = paid.amount_yuan

    # ------------------------------------------------------------------ clocks

    def _clock_unit(self, name: ClockName) -> str:
        st = self._case
        if name is ClockName.REVIEW:
            return st.review_organ or st.holding_unit
        if name is ClockName.RE_REVIEW:
            return st.re_review_organ or st.holding_unit
        if name in (ClockName.ROUTING, ClockName.ACCEPTANCE, ClockName.TRANSFER_OBJECTION):
            return st.holding_unit
        return st.responsible_unit or st.holding_unit

    async def _start_clocks(self, row: Transition, now: datetime) -> None:
        st = self._case
        holder = st.units.get(st.holding_unit)
        names = clocks_to_start(row, holder is not None and holder.is_petition_bureau)
        await self._start_named(names, now)

    async def _start_named(self, names: list[ClockName], at: datetime,
                           runs_on: bool = False) -> None:
        """Start `names` at `at`; `runs_on`: `at` is a previous clock's due time, and the
        new period is chained to it (counted from that clock's last day)."""
        wanted = [n for n in names if n in self._case.profile.clocks]
        if wanted:
            requests = [ClockRequest(name=n, start=at, unit=self._clock_unit(n), renew=runs_on)
                        for n in wanted]
            self._install(await self._compute(requests))

    async def _renew_clocks(self, names: tuple[ClockName, ...], now: datetime) -> None:
        """A progress reply meets a recurring clock for one more period.

        Inside the clock's last period (or once it is overdue) the next period runs on
        from its due time. A deadline that hands over to such a clock (the procuratorate's
        3 months) and is already overdue is met by the reply too: the recurring clock
        starts now instead.
        """
        st = self._case
        renewals = []
        for name in names:
            overdue = [before for before, after in SUCCESSOR_CLOCKS.items()
                       if after == name and before in st.clocks and st.clocks[before].level > 0]
            if overdue:
                for before in overdue:
                    st.clocks.pop(before)
                await self._start_named([name], now)
                continue  # its first period has only just begun
            clock = st.clocks.get(name)
            policy = st.profile.clock(name)
            if clock is None or policy is None or policy.repeat_every is None:
                continue
            window = timedelta(hours=policy.repeat_every.nominal_hours())
            if clock.level > 0 or now >= clock.due_at - window:
                renewals.append(ClockRequest(name=name, start=clock.due_at, unit=clock.unit,
                                             renew=True))
        if renewals:
            self._install(await self._compute(renewals))

    async def _extend_clocks(self, names: tuple[ClockName, ...], detail: dict[str, Any]) -> None:
        """An approved extension runs on from the clock's current due time."""
        st = self._case
        days = detail.get("granted_days")
        if not names or not days:
            return
        unit = st.profile.extension.max_period.unit
        requests = [ClockRequest(name=n, start=st.clocks[n].due_at, unit=st.clocks[n].unit,
                                 extend_by=Period(amount=days, unit=unit))
                    for n in names if n in st.clocks]
        if requests:
            self._install(await self._compute(requests), keep_started=True)
            st.extension_used, st.extension_days = True, st.extension_days + days

    async def _compute(self, requests: list[ClockRequest]) -> list[Any]:
        if workflow.patched(DEADLINES_IN_WORKFLOW):
            counted = await self._count_here(requests)
            if counted is not None:
                return counted
        return await workflow.execute_local_activity_method(
            DeadlineCalculator.compute_deadlines,
            ComputeDeadlinesInput(profile=self._case.profile, clocks=requests),
            start_to_close_timeout=timedelta(seconds=10), retry_policy=RETRY,
            summary="compute deadlines: " + ", ".join(r.name for r in requests),
        )

    async def _count_here(self, requests: list[ClockRequest]) -> list[ComputedClock] | None:
        """Deadlines counted on the case's frozen calendar. A snapshot is taken only
        when a count needs a year it lacks (never for clocks in hours or minutes); None
        when the snapshot would grow past its bound, for the local activity to count."""
        st = self._case
        for _ in range(SNAPSHOT_ATTEMPTS):
            try:
                calendar = self._frozen_calendar()
                counted = (compute_clock(st.profile, r, calendar) for r in requests)
                return [c for c in counted if c is not None]
            except OutsideSnapshot as missing:
                wanted = self._snapshot_years(missing.year)
                if wanted is None:
                    return None
                st.calendar = await self._take_snapshot(wanted)
                self._calendar = None
        return None

    def _frozen_calendar(self) -> FrozenCalendar:
        if self._calendar is None:
            snapshot = self._case.calendar
            self._calendar = snapshot.calendar() if snapshot else FrozenCalendar({})
        return self._calendar

    def _snapshot_years(self, year: int) -> CalendarSnapshotInput | None:
        """The held years widened to `year` and two years on; None past the bound."""
        held = self._case.calendar
        first, last = held.year_range() if held else (year, year)
        first, last = min(first, year), max(last, year + SNAPSHOT_YEARS_AHEAD)
        if last - first >= MAX_SNAPSHOT_YEARS:
            return None
        return CalendarSnapshotInput(first_year=first, last_year=last)

    async def _take_snapshot(self, years: CalendarSnapshotInput) -> CalendarSnapshot:
        result: CalendarSnapshot = await workflow.execute_local_activity_method(
            DeadlineCalculator.calendar_snapshot, years,
            start_to_close_timeout=timedelta(seconds=10), retry_policy=RETRY,
            summary=f"freeze the working-day calendar from {years.first_year}")
        return result

    def _install(self, computed: list[Any], keep_started: bool = False) -> None:
        for c in computed:
            old = self._case.clocks.get(c.name)
            started = old.started_at if keep_started and old else c.started_at
            self._case.clocks[c.name] = Clock(
                name=c.name, kind=c.kind, article=c.article, period=c.period,
                started_at=started, due_at=c.due_at, reminder_at=c.reminder_at,
                level2_at=c.level2_at, unit=c.unit)
        self._clocks_changed = True

    def _stop_clocks(self, names: tuple[ClockName, ...]) -> None:
        for name in names:
            if self._case.clocks.pop(name, None) is not None:
                self._clocks_changed = True

    def _pause_clocks(self, names: tuple[ClockName, ...], now: datetime) -> None:
        for name in names:
            clock = self._case.clocks.get(name)
            if clock is not None and clock.paused_at is None:
                clock.paused_at = now
                self._clocks_changed = True

    def _resume_clocks(self, names: tuple[ClockName, ...], now: datetime) -> None:
        """Time spent paused (a re-review hearing) is not counted: shift the clock on."""
        for name in names:
            clock = self._case.clocks.get(name)
            if clock is None or clock.paused_at is None:
                continue
            paused = now - clock.paused_at
            clock.due_at += paused
            clock.reminder_at = clock.reminder_at + paused if clock.reminder_at else None
            clock.level2_at = clock.level2_at + paused if clock.level2_at else None
            clock.paused_at = None
            self._clocks_changed = True

    def _clock_events(self) -> list[tuple[datetime, ClockName, str]]:
        events = []
        for c in self._case.clocks.values():
            if c.paused_at is not None:
                continue
            if c.kind is ClockKind.WINDOW:
                events.append((c.due_at, c.name, "lapse"))
            elif not c.reminded and c.reminder_at and c.level == 0:
                events.append((c.reminder_at, c.name, "reminder"))
            elif c.level == 0:
                events.append((c.due_at, c.name, "level 1 escalation"))
            elif c.level == 1 and c.level2_at:
                events.append((c.level2_at, c.name, "level 2 escalation"))
        return sorted(events)

    async def _wait_for_next_clock_event(self) -> None:
        self._clocks_changed = False
        events = self._clock_events()

        def woken() -> bool:
            return (self._clocks_changed or self._writer_error is not None
                    or self._should_continue_as_new())

        if not events:
            await workflow.wait_condition(woken)
            return
        at, name, what = events[0]
        timeout = at - workflow.now()
        if timeout <= timedelta(0):
            return  # already due: no zero-length timer
        clock = self._case.clocks[name]
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                woken, timeout=timeout,
                timeout_summary=f"{CLOCK_TITLES[name]} ({clock.article}, {clock.period}): "
                                f"{what} at {_beijing(at)}")

    async def _fire_due_clock_events(self) -> None:
        now = workflow.now()
        for at, name, what in self._clock_events():
            if at > now or self._case.stage is Stage.CLOSED:
                break
            clock = self._case.clocks.get(name)
            if clock is None:
                continue
            if what == "lapse":
                await self._lapse(clock)
            elif what == "reminder":
                clock.reminded = True
                await self._notify("unit", clock.unit, "reminder", now, about=clock)
            elif not await self._hand_over(clock):
                await self._escalate(clock, now)
        if self._case.stage is not Stage.CLOSED:
            self._publish()

    async def _hand_over(self, clock: Clock) -> bool:
        """At its expiry, a clock met by a recent progress reply passes to its successor."""
        st = self._case
        successor = SUCCESSOR_CLOCKS.get(clock.name)
        policy = st.profile.clock(successor) if successor else None
        if successor is None or policy is None or clock.level > 0:
            return False
        last = st.last_progress_reply_at
        window = timedelta(hours=policy.period.nominal_hours())
        if last is None or last < clock.due_at - window:
            return False
        st.clocks.pop(clock.name)
        await self._start_named([successor], clock.due_at, runs_on=True)
        return True

    async def _lapse(self, clock: Clock) -> None:
        st = self._case
        st.clocks.pop(clock.name, None)
        self._clocks_changed = True
        action = LAPSE_ACTIONS.get(clock.name)
        if action is None:
            return  # e.g. the transfer objection window: the transfer simply stands
        row, command = TABLE[action], SystemCommand(actor=SYSTEM_ACTOR)
        refusal = check_guard(row, command, self._guard_context())
        if refusal is not None:  # the table and the clocks disagree: a bug, never a refusal
            raise RuntimeError(f"{clock.name} lapsed but {refusal}")
        await self._execute(row, command)

    async def _escalate(self, clock: Clock, now: datetime) -> None:
        st = self._case
        clock.level += 1
        st.was_overdue = True
        st.max_escalation_level = max(st.max_escalation_level, clock.level)
        try:
            await self._activity(EscalationDesk.escalate, EscalationInput(
                workflow_id=st.workflow_id, petition_id=st.petition_id,
                registration_no=st.registration_no, clock=clock.name, level=clock.level,
                unit=clock.unit, due_at=clock.due_at, at=now),
                f"escalate: {CLOCK_TITLES[clock.name]} overdue, level {clock.level}")
        except ActivityError as err:
            # A gap in the directory (no leader above the unit) must not stop the case;
            # the case still shows as overdue at this level.
            message = _business_refusal(err)
            if message is None:
                raise
            workflow.logger.warning("escalation of %s to level %s failed: %s",
                                    clock.name, clock.level, message)

    # ---------------------------------------------------------- records, notices

    def _record(self, action: Action, actor: Actor, from_stage: Stage | None,
                now: datetime, detail: dict[str, Any], compact: bool = False) -> int:
        st = self._case
        st.seq += 1
        st.timeline.append(TimelineEntry(seq=st.seq, at=now, action=action, actor=actor,
                                         from_stage=from_stage, to_stage=st.stage,
                                         summary=_summary(action, detail)))
        if compact:
            _compact_notes(st)
        return self._queue(TransitionRecord(
            workflow_id=st.workflow_id, petition_id=st.petition_id, seq=st.seq, action=action,
            actor=actor, at=now, from_stage=from_stage, to_stage=st.stage, detail=detail,
            read_model=self._read_model(now)))

    def _record_refusal(self, action: Action, command: Command, message: str) -> int:
        st, now = self._case, workflow.now()
        st.refused_actions += 1
        st.timeline.append(TimelineEntry(seq=st.seq, at=now, action=action, actor=command.actor,
                                         from_stage=st.stage, to_stage=st.stage, accepted=False,
                                         refusal=message, summary=f"{action} refused"))
        _compact_notes(st)
        return self._queue(TransitionRecord(
            workflow_id=st.workflow_id, petition_id=st.petition_id, seq=st.seq, action=action,
            actor=command.actor, at=now, from_stage=st.stage, to_stage=st.stage,
            accepted=False, refusal=message,
            detail={"refusal_no": st.refused_actions, "request_id": command.request_id}))

    def _queue(self, record: TransitionRecord) -> int:
        self._case.unrecorded.append(record)
        size = len(record.model_dump_json())
        self._sizes.append(size)
        self._unwritten_chars += size
        self._queued += 1
        return self._queued

    def _carry_fits(self) -> bool:
        return self._unwritten_chars <= CARRY_MAX_CHARS

    async def _written_through(self, record: int) -> None:
        """Wait until audit record number `record` (of this run) is in PostgreSQL."""
        self._waiting_for_records += 1
        try:
            await workflow.wait_condition(
                lambda: self._written >= record or self._writer_error is not None)
        finally:
            self._waiting_for_records -= 1
        self._raise_writer_error()

    async def _write_records(self) -> None:
        """The one writer of the audit trail: whatever is queued, in order, in batches."""
        def work() -> bool:
            return (self._state is not None and bool(self._state.unrecorded) and (
                not self._draining or self._waiting_for_records > 0 or not self._carry_fits()))

        while True:
            await workflow.wait_condition(work)
            pending = self._case.unrecorded
            size, count = 0, 0
            for record_size in self._sizes[:RECORD_BATCH_MAX]:
                size += record_size
                count += 1
                if size > RECORD_BATCH_MAX_CHARS:
                    break
            batch = pending[:count]
            actions = sorted({r.action.value for r in batch})
            self._writing = True
            try:
                await self._record_batch(TransitionBatch(records=batch),
                                         f"record {', '.join(actions)} ({len(batch)} entries)")
            except ActivityError as err:
                self._writer_error = err  # a bug (an unknown read-model column): stop loudly
                return
            finally:
                self._writing = False
            del pending[:count]
            self._unwritten_chars -= sum(self._sizes[:count])
            del self._sizes[:count]
            self._written += count

    async def _record_batch(self, batch: TransitionBatch, summary: str) -> None:
        if self._answer_in_one_task():
            # A few milliseconds of PostgreSQL inside the workflow task, instead of a task
            # queue round trip and a second workflow task before the caller is answered.
            await workflow.execute_local_activity_method(
                TransitionRecorder.record_transitions, batch,
                start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=RETRY, summary=summary)
        else:
            await self._activity(TransitionRecorder.record_transitions, batch, summary)

    def _answer_in_one_task(self) -> bool:
        return workflow.patched(ANSWER_IN_ONE_TASK)

    async def _send_notices(self) -> None:
        """The one sender of deferred notices: in the order their actions were taken."""
        while True:
            await workflow.wait_condition(lambda: bool(self._outbox))
            notice, summary = self._outbox[0]
            try:
                await self._activity(NoticeDesk.send_notice, notice, summary)
            except ActivityError as err:
                self._writer_error = err  # never a refusal: the outbox takes any notice
                return
            self._outbox.pop(0)

    def _raise_writer_error(self) -> None:
        if self._writer_error is not None:
            # Fails the workflow task, not the case: fixed code then replays and goes on.
            raise RuntimeError(f"a record or notice could not be written: {self._writer_error}")

    def _read_model(self, now: datetime) -> dict[str, Any]:
        st = self._case
        values: dict[str, Any] = {
            "stage": st.stage.value, "outcome": st.outcome.value if st.outcome else None,
            "holding_unit": st.holding_unit, "responsible_unit": st.responsible_unit,
            "handler_id": st.handler_id, "leader_id": st.leader_id,
            "next_deadline": _iso(self._next_deadline()), "overdue": self._overdue(),
            "was_overdue": st.was_overdue, "escalation_level": self._escalation_level(),
            "extension_days": st.extension_days,
            "satisfaction": st.satisfaction.value if st.satisfaction else None,
            "repeat_visits": st.repeat_visits,
            "reviewed": st.review_organ is not None,
        }
        for name, column in ((ClockName.ACCEPTANCE, "acceptance_due"),
                             (ClockName.ROUTING, "acceptance_due"),
                             (ClockName.HANDLING, "handling_due"),
                             (ClockName.SETTLEMENT, "handling_due")):
            if name in st.clocks:
                values[column] = _iso(st.clocks[name].due_at)
        last = st.timeline[-1].action
        if st.stage is Stage.IN_HANDLING and last is Action.ACCEPT:
            values["accepted_at"] = _iso(now)
        if st.stage is Stage.REPLIED and last is Action.REPLY:
            values["replied_at"] = _iso(now)
        if st.stage is Stage.CLOSED:
            values["closed_at"] = _iso(now)
        return values

    async def _notify_petitioner(self, action: Action | str, now: datetime,
                                 text: str | None = None, defer: bool = False) -> None:
        await self._notify("petitioner", self._case.registration_no, action, now, text=text,
                           defer=defer)

    async def _notify(self, kind: str, recipient: str, action: Action | str, now: datetime,
                      about: Clock | None = None, text: str | None = None,
                      defer: bool = False) -> None:
        st = self._case
        what = (f"{CLOCK_TITLES[about.name]} due {_beijing(about.due_at)} ({about.article})"
                if about else str(action) + (f": {text}" if text else ""))
        key = f"{st.workflow_id}:{st.seq}:notice:{kind}:{recipient}:{action}"
        if about is not None:
            key += f":{about.name}:{about.due_at.isoformat()}"
        notice = NoticeInput(
            idempotency_key=key, petition_id=st.petition_id, recipient_kind=kind,
            recipient_ref=recipient, template=str(action),
            body=f"Case {st.registration_no}: {what} (stage {st.stage}).", at=now)
        summary = (f"{action}: notice to {kind} {recipient}"
                   + (f" ({CLOCK_TITLES[about.name]})" if about else ""))
        if defer:
            self._outbox.append((notice, summary))
        else:
            await self._activity(NoticeDesk.send_notice, notice, summary)

    async def _activity(self, method: Callable[..., Any], arg: Any, summary: str) -> Any:
        return await workflow.execute_activity_method(
            method, arg, start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=RETRY,
            summary=summary)

    # ------------------------------------------------------ visibility, history

    def _next_deadline(self) -> datetime | None:
        dues = [c.due_at for c in self._case.clocks.values() if c.paused_at is None]
        return min(dues, default=None)

    def _overdue(self) -> bool:
        now = workflow.now()
        return any(c.overdue(now) for c in self._case.clocks.values())

    def _escalation_level(self) -> int:
        return max((c.level for c in self._case.clocks.values()), default=0)

    def _publish(self) -> None:
        """Search attributes and current details; only what changed is upserted, so a
        note (which changes neither) adds no history event."""
        st = self._case
        wanted: list[tuple[SearchAttributeKey[Any], Any]] = [
            (sa.PETITION_STAGE, st.stage.value),
            (sa.REGISTRATION_NO, st.registration_no),
            (sa.RESPONSIBLE_UNIT, st.responsible_unit or st.holding_unit),
            (sa.CHANNEL, st.channel.value),
            (sa.CATEGORY, st.category.value),
            (sa.OVERDUE, self._overdue()),
            (sa.ESCALATION_LEVEL, self._escalation_level()),
            (sa.LAW_RELATED, st.law_related),
            (sa.NEXT_DEADLINE, self._next_deadline()),
            (sa.OUTCOME, st.outcome.value if st.outcome else None),
        ]
        updates: list[SearchAttributeUpdate[Any]] = []
        for key, value in wanted:
            if key.name in self._published and self._published[key.name] == value:
                continue
            self._published[key.name] = value
            updates.append(key.value_set(value) if value is not None else key.value_unset())
        if updates:
            workflow.upsert_search_attributes(updates)
        details = self._details()
        if details != self._details_text:
            self._details_text = details
            workflow.set_current_details(details)

    def _details(self) -> str:
        """The stage and every open deadline, in plain words (the UI's current details)."""
        st, now = self._case, workflow.now()
        head = f"**{st.registration_no}**: {STAGE_TITLES[st.stage]}"
        if st.outcome:
            head += f" ({st.outcome.value.replace('_', ' ')})"
        # Blank lines between the parts: the Web UI renders the text as Markdown, where a
        # list only starts after an empty line.
        lines = [head + ".", "",
                 f"Held by {st.holding_unit}; responsible unit: "
                 f"{st.responsible_unit or 'not yet accepted'}.", ""]
        if st.clocks:
            lines += ["Open deadlines:", ""]
        for c in sorted(st.clocks.values(), key=lambda c: c.due_at):
            if c.paused_at:
                state = "stopped while a hearing is held"
            elif c.kind is ClockKind.WINDOW:
                state = "open"
            elif c.overdue(now):
                state = "OVERDUE"
            else:
                state = "running"
            level = {1: ", escalated to the supervising leader",
                     2: ", escalated to the superior bureau (督办)"}.get(c.level, "")
            lines.append(f"- {CLOCK_TITLES[c.name]} at {c.unit}: due {_beijing(c.due_at)} "
                         f"({c.period}, {c.article}); {state}{level}.")
        if not st.clocks:
            lines.append("No deadline is running.")
        return "\n".join(lines)

    def _should_continue_as_new(self) -> bool:
        info = workflow.info()
        return self._state is not None and self._state.stage is not Stage.CLOSED and (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() > CONTINUE_AS_NEW_AFTER_EVENTS)

    async def _continue_as_new(self) -> None:
        """Continue as new once every handler has finished, carrying the whole case.

        Records still queued travel with the state and are written by the next run, as long
        as they fit in its input; a batch in flight is not abandoned halfway (the writer
        starts no new batch meanwhile unless a handler waits for one or the queue is too
        big to carry).
        """
        self._draining = True
        await workflow.wait_condition(
            lambda: workflow.all_handlers_finished() and not self._writing
            and self._carry_fits() and not self._outbox)
        st = self._case
        st.runs += 1
        intake = self._intake.model_copy(update={"attachments": [
            a.model_copy(update={"content_b64": None}) for a in self._intake.attachments]})
        workflow.continue_as_new(PetitionStart(intake=intake, registration_no=st.registration_no,
                                               carried=st))


_ACTION_RULES: dict[Action, Callable[[PetitionWorkflow, Command], Refusal | None]] = {
    Action.DECLINE: PetitionWorkflow._rule_decline,
    Action.TRANSFER: PetitionWorkflow._rule_transfer,
    Action.REJECT_TRANSFER: PetitionWorkflow._rule_reject_transfer,
    Action.REQUEST_EXTENSION: PetitionWorkflow._rule_request_extension,
    Action.DECIDE_EXTENSION: PetitionWorkflow._rule_decide_extension,
    Action.RECORD_HEARING: PetitionWorkflow._rule_record_hearing,
    Action.DECIDE_ASSISTANCE: PetitionWorkflow._rule_decide_assistance,
    Action.REQUEST_REVIEW: PetitionWorkflow._rule_request_review,
    Action.REQUEST_RE_REVIEW: PetitionWorkflow._rule_request_re_review,
}


def _business_refusal(err: ActivityError) -> str | None:
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.non_retryable:
        return cause.message
    return None


def _compact_notes(st: CaseState) -> None:
    """Keep every transition, but only the latest notes, visits and refusals, listed."""
    minor = [i for i, e in enumerate(st.timeline)
             if not e.accepted or e.action in (Action.ADD_NOTE, Action.REPEAT_VISIT)]
    excess = len(minor) - TIMELINE_NOTES_KEPT
    if excess > 0:
        drop = set(minor[:excess])
        st.timeline = [e for i, e in enumerate(st.timeline) if i not in drop]


def _notice_text(command: Command, st: CaseState) -> str | None:
    """What the written notice must tell the petitioner besides the action itself."""
    if isinstance(command, DecideExtension):
        granted = (f"extended by {st.extension_days} days" if command.approved
                   else "not extended")
        return f"the handling period is {granted}; reason: {command.reason_to_petitioner}"
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


def _summary(action: Action, detail: dict[str, Any]) -> str:
    keys = ("to_unit", "organ", "reason", "handler_id", "leader_id", "days", "granted_days",
            "venue",
            "outcome", "satisfaction", "order_no", "approved_amount_yuan", "channel")
    parts = [f"{k}={detail[k]}" for k in keys if detail.get(k) not in (None, "")]
    return f"{action}: " + ", ".join(parts) if parts else str(action)


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None
