"""PetitionWorkflow: one petition from registration to closing. It only executes.

The domain core decides: the lifecycle table (`domain/lifecycle.py`) says which stage an
action leaves from and goes to, who may take it, its rules, its state change, the clocks
it starts, stops, pauses, resumes, renews or extends and the side effects it triggers;
`domain/transition.py` applies a row to the case; `domain/clocks.py` and
`domain/projections.py` count deadlines and describe the case. This module holds the
handlers, the lock, the activities, the timers, the audit writer, the notice sender and
continue-as-new.

Every action is an Update (validated, answered at once) and a Signal of the same name
(fire and forget; a refused signal changes nothing and is recorded as refused).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.records import REFUSED, RETRY, RecordsAndNotices

with workflow.unsafe.imports_passed_through():
    from activities.assistance import AssistanceDesk
    from activities.common import refusal_of
    from activities.contracts import (
        AssistanceApplicationInput,
        AssistanceDecisionInput,
        CalendarSnapshotInput,
        DisbursementInput,
        EscalationInput,
        HearingBooking,
        HearingRecordInput,
        NoticeInput,
        RefusedStart,
        RegisterPetitionInput,
        Registration,
        TerminationInput,
        TransferOrderInput,
        UnitLookup,
    )
    from activities.deadlines import DeadlineCalculator
    from activities.escalation import EscalationDesk
    from activities.hearings import HearingDesk
    from activities.notices import NoticeDesk
    from activities.records import TIMER_DUE_AT
    from activities.registry import PetitionRegistry
    from activities.transfers import TransferDesk
    from adapters import search_attributes as sa
    from domain import changes, clocks, projections, reassignment, transition
    from domain.calendar import FrozenCalendar
    from domain.case import (
        CaseState,
        Clock,
        EffectResults,
        PetitionStart,
        PetitionStatus,
        TimelineEntry,
        open_case,
    )
    from domain.deadlines import MAX_SNAPSHOT_YEARS
    from domain.lifecycle import CLOCK_TITLES, LAPSE_ACTIONS, TABLE, Effect, Transition
    from domain.models import (
        SYSTEM_ACTOR,
        Action,
        Actor,
        Command,
        DecideAssistance,
        DeclineConcluded,
        Divert,
        RecordHearing,
        RepeatVisit,
        RequestAssistance,
        RequestReReview,
        RequestReview,
        Role,
        ScheduleHearing,
        Stage,
        SystemCommand,
        Transfer,
    )
    from domain.notice_facts import facts_for
    from domain.reassignment import BatchReassign
    from domain.rules import Refusal, application
    from security.assertion import AssertionRefused, verify, verify_batch
    from workflows.interceptor import PRESENTED, digests

# Well under the server's own suggestion (4,096 events by default) and far under the
# 10,000 a run must stay below: a flood of notes arriving while the run drains still
# fits, and a worker that has to replay a case from scratch replays little.
CONTINUE_AS_NEW_AFTER_EVENTS = 2_000


def _refused(refusal: Refusal) -> ApplicationError:
    """A business refusal: its rule, field and figures travel as structured details."""
    return ApplicationError(str(refusal), refusal.as_details(), type=REFUSED,
                            non_retryable=True)


def _business_refusal(err: ActivityError) -> Refusal | None:
    """The refusal an activity answered with (non-retryable), or None for a failure."""
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.non_retryable:
        return refusal_of(cause)
    return None


def _action_handlers(action: Action) -> tuple[Any, Any]:
    """The Update (with its validator) and the Signal of one row of the table."""
    row = TABLE[action]

    async def update(self: PetitionWorkflow, command: Command) -> PetitionStatus:
        self._fresh_update = True  # its records wait for its acceptance (records.py)
        return await self._act(action, command)

    def validate(self: PetitionWorkflow, command: Command) -> None:
        self._validate(action, command)

    async def signal(self: PetitionWorkflow, command: Command) -> None:
        await self._act_on_signal(action, command)

    for fn, suffix, returns in ((update, "", PetitionStatus), (validate, "_validator", None),
                                (signal, "_signal", None)):
        fn.__name__ = fn.__qualname__ = f"{action.value}{suffix}"
        # The payload type comes from the row, so the converter decodes the right model.
        fn.__annotations__ = {"command": row.command, "return": returns}
    handler = workflow.update(name=action.value, description=row.description)(update)
    handler.validator(validate)
    return handler, workflow.signal(name=action.value, description=row.description)(signal)


@workflow.defn
class PetitionWorkflow(RecordsAndNotices):
    @workflow.init
    def __init__(self, start: PetitionStart) -> None:
        self._intake = start.intake
        self._state: CaseState | None = start.carried
        self._attached_to: str | None = None
        # Registered and its entry clocks installed: only then may actions be taken.
        self._ready = start.carried is not None
        self._lock = asyncio.Lock()
        self._clocks_changed = False
        # Audit records queue in the case (`unrecorded`) and one writer sends them in
        # batches; these count the records of this run, the carried ones included.
        carried = start.carried.unrecorded if start.carried else []
        self._queued = len(carried)
        self._sizes = [len(r.model_dump_json()) for r in carried]  # to size batches
        self._unwritten_chars = sum(self._sizes)  # kept, not summed: conditions read it often
        self._written, self._writing = 0, False
        self._fresh_update = False
        self._waiting_for_records = 0
        self._writer_error: BaseException | None = None
        self._outbox: list[tuple[NoticeInput, str]] = []  # sent in order after the actions
        self._draining = False  # about to continue as new: start no batch nobody waits for
        self._published: dict[str, Any] = {}
        self._details_text: str | None = None
        self._calendar: FrozenCalendar | None = None  # built from the case's snapshot
        # The clock events due later than the time the workflow began its current wait:
        # the ones a timer waited for (`_timer_due_at`).
        self._awaited: frozenset[clocks.ClockEvent] = frozenset()

    # ------------------------------------------------------------------ the run

    @workflow.run
    async def run(self, start: PetitionStart) -> PetitionStatus:
        writer = asyncio.create_task(self._write_records())
        sender = asyncio.create_task(self._send_notices())
        await self._refuse_unvouched_start(start)
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
                     and not self._outbox) or self._writer_error is not None)
        self._raise_writer_error()
        writer.cancel()
        sender.cancel()
        return self.status()

    async def _refuse_unvouched_start(self, start: PetitionStart) -> None:
        """A start that skipped the petition service (the raw CLI, a forged carried case)
        registers nothing: it is audited and the run fails."""
        info = workflow.info()
        run = f"run-{start.carried.runs}" if start.carried else start.intake.intake_id
        refusal = self._unvouched("start", start, request_id=run, at=info.start_time)
        if refusal is None:
            return
        await self._activity(PetitionRegistry.record_refused_start, RefusedStart(
            workflow_id=info.workflow_id, run_id=info.run_id, rule=refusal.rule,
            message=refusal.message, at=workflow.now()), "audit a refused start")
        raise _refused(refusal)

    async def _register(self, start: PetitionStart) -> None:
        now, info = workflow.now(), workflow.info()
        registration: Registration = await self._activity(
            PetitionRegistry.register_petition,
            RegisterPetitionInput(workflow_id=info.workflow_id, intake=self._intake,
                                  registration_no=start.registration_no, registered_at=now),
            "register the petition and check for repeats")
        if registration.attached_to_workflow is not None:
            await self._attach_to_open_case(registration)
            return
        self._state = open_case(
            workflow_id=info.workflow_id, petition_id=registration.petition_id,
            registration_no=registration.registration_no, profile=registration.profile,
            intake=self._intake, unit=registration.unit, repeat_of=registration.repeat_of,
            concluded_case=registration.concluded_case)
        clerk = Actor(id=f"intake-{self._intake.channel}", role=Role.INTAKE_CLERK,
                      unit=self._intake.unit)
        entry = transition.register(self._case, clerk, now, await self._calendar_for(now))
        await self._written_through(self._track(entry))
        self._clocks_changed = True
        self._queue_notice(projections.notice(
            self._case, "petitioner", self._case.registration_no, Action.REGISTER), now)
        if registration.concluded_case is not None:
            command = DeclineConcluded(actor=SYSTEM_ACTOR,
                                       concluded_case=registration.concluded_case)
            async with self._lock:
                await self._execute_allowed(TABLE[Action.DECLINE_CONCLUDED], command)
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
            request_id=f"repeat-{self._intake.intake_id}")
        await handle.signal(PetitionWorkflow.repeat_visit_signal, visit)
        workflow.set_current_details(
            f"Repeat visit attached to the open case {registration.registration_no}.")

    # ------------------------------------------------------- queries and updates

    @workflow.query
    def status(self) -> PetitionStatus:
        if self._state is None:
            return PetitionStatus(workflow_id=workflow.info().workflow_id, registration_no=None,
                                  stage=None, attached_to=self._attached_to)
        return projections.status(self._state, workflow.now())

    @workflow.query
    def case(self) -> CaseState | None:
        """The whole case, for the pages that offer exactly `allowed_actions(case, actor)`
        and explain each deadline's counting (None: not registered yet)."""
        return self._state

    @workflow.query
    def timeline(self) -> list[TimelineEntry]:
        return [] if self._state is None else self._state.timeline

    @workflow.update
    async def wait_registered(self) -> PetitionStatus:
        """Answers once the registration activity has run: the intake client's receipt."""
        await workflow.wait_condition(lambda: self._ready or self._attached_to is not None)
        return self.status()

    # One Update and one Signal per row of the table, both named as in DOMAIN.md.
    accept, accept_signal = _action_handlers(Action.ACCEPT)
    decline, decline_signal = _action_handlers(Action.DECLINE)
    divert, divert_signal = _action_handlers(Action.DIVERT)
    transfer, transfer_signal = _action_handlers(Action.TRANSFER)
    reject_transfer, reject_transfer_signal = _action_handlers(Action.REJECT_TRANSFER)
    assign, assign_signal = _action_handlers(Action.ASSIGN)
    contract_to_leader, contract_to_leader_signal = _action_handlers(Action.CONTRACT_TO_LEADER)
    request_extension, request_extension_signal = _action_handlers(Action.REQUEST_EXTENSION)
    decide_extension, decide_extension_signal = _action_handlers(Action.DECIDE_EXTENSION)
    schedule_hearing, schedule_hearing_signal = _action_handlers(Action.SCHEDULE_HEARING)
    record_hearing, record_hearing_signal = _action_handlers(Action.RECORD_HEARING)
    request_assistance, request_assistance_signal = _action_handlers(Action.REQUEST_ASSISTANCE)
    decide_assistance, decide_assistance_signal = _action_handlers(Action.DECIDE_ASSISTANCE)
    progress_reply, progress_reply_signal = _action_handlers(Action.PROGRESS_REPLY)
    reply, reply_signal = _action_handlers(Action.REPLY)
    rate, rate_signal = _action_handlers(Action.RATE)
    request_review, request_review_signal = _action_handlers(Action.REQUEST_REVIEW)
    review_opinion, review_opinion_signal = _action_handlers(Action.REVIEW_OPINION)
    request_re_review, request_re_review_signal = _action_handlers(Action.REQUEST_RE_REVIEW)
    re_review_opinion, re_review_opinion_signal = _action_handlers(Action.RE_REVIEW_OPINION)
    withdraw, withdraw_signal = _action_handlers(Action.WITHDRAW)
    add_note, add_note_signal = _action_handlers(Action.ADD_NOTE)
    repeat_visit, repeat_visit_signal = _action_handlers(Action.REPEAT_VISIT)

    @workflow.signal(name=reassignment.SIGNAL,
                     description="bulk reassignment (a batch signal): the unit head moves "
                                 "a handler's open cases to another handler")
    async def batch_reassign(self, order: BatchReassign) -> None:
        """One case's part of a bulk reassignment: the `assign` row, if the batch's signed
        assertion vouches for the order and the case is the unit's and held by
        `from_handler`; otherwise nothing changes and the refusal is recorded. The job id
        is the request id: the order delivered again assigns and audits nothing more."""
        if not self._ready:
            await workflow.wait_condition(lambda: self._ready)
        row, command = TABLE[reassignment.ACTION], reassignment.assign_command(order)
        async with self._lock:
            unvouched = self._batch_unvouched(order)
            if unvouched is None and transition.already_taken(self._case, command):
                return
            refusal = (unvouched or reassignment.refusal(self._case, order)
                       or transition.refusal(self._case, row, command))
            if refusal is not None:
                self._record_refusal(row.action, command, refusal)
                return
            await self._execute_allowed(row, command,
                                        detail=reassignment.audit_detail(order))

    def _batch_unvouched(self, order: BatchReassign) -> Refusal | None:
        """Why the order was not signed by the petition service for this batch: its
        batch-scoped assertion (in the order: the batcher forwards no headers) is missing,
        invalid, expired, for another namespace, signal or order, or names other parties."""
        presented = PRESENTED.get()
        if presented is None:
            return Refusal("assertion:missing", "no assertion keys were presented")
        try:
            claims = verify_batch(presented.ring, order.assertion, action=reassignment.SIGNAL,
                                  namespace=workflow.info().namespace,
                                  digest=reassignment.digest(order), now=workflow.now())
        except AssertionRefused as refused:
            return Refusal(refused.rule, str(refused))
        vouched = (claims.job_id, claims.unit, claims.from_handler, claims.to_handler,
                   claims.actor)
        if vouched != (order.job_id, order.unit, order.from_handler, order.to_handler,
                       order.actor):
            return Refusal("assertion:scope", "the batch assertion vouches for another order")
        return None

    # ---------------------------------------------------------------- execution

    def _validate(self, action: Action, command: Command) -> None:
        if not self._ready:
            raise ApplicationError("the petition is still being registered; try again shortly",
                                   type=REFUSED, non_retryable=True)
        if self._unvouched(action, command) is not None:
            return  # let it in: the handler records the refusal (an audited attempt)
        refusal = transition.refusal(self._case, TABLE[action], command)
        if refusal is not None:
            raise _refused(refusal)

    async def _act(self, action: Action, command: Command) -> PetitionStatus:
        row, unvouched = TABLE[action], self._unvouched(action, command)
        async with self._lock:
            if unvouched is not None:  # not sent through the petition service: audited
                self._record_refusal(action, command, unvouched)
                raise _refused(unvouched)
            if transition.already_taken(self._case, command):
                return self.status()  # a client retry of an action already taken
            # Checked again: the case may have moved while this action waited for the lock.
            refusal = transition.refusal(self._case, row, command)
            try:  # the row's refusable activities first: they may still refuse
                results = None if refusal else await self._effects_before(row, command)
            except ActivityError as err:
                refusal = _business_refusal(err)
                if refusal is None:
                    raise
            if refusal is not None:
                self._record_refusal(action, command, refusal)
                raise _refused(refusal)
            entry = await self._execute_allowed(row, command, results)
        # Notes are written in batches; the caller of an Update still gets its answer
        # only once its record is in the audit trail.
        await self._written_through(entry)
        return self.status()

    async def _act_on_signal(self, action: Action, command: Command) -> None:
        # A flood of signals arrives in one activation: every pending condition is checked
        # on every turn of the workflow's event loop, so none is added when not needed.
        if not self._ready:
            await workflow.wait_condition(lambda: self._ready)
        if not TABLE[action].counts_as_note:
            with contextlib.suppress(ApplicationError):  # refused: recorded by _act
                await self._act(action, command)
            return
        unvouched = self._unvouched(action, command)
        async with self._lock:  # fire and forget: the record joins the next batch
            if unvouched is None and transition.already_taken(self._case, command):
                return
            refusal = unvouched or transition.refusal(self._case, TABLE[action], command)
            if refusal is None:
                await self._execute_allowed(TABLE[action], command)
            else:
                self._record_refusal(action, command, refusal)

    def _unvouched(self, action: Action | str, value: Any, actor: Actor | None = None,
                   request_id: str | None = None, at: datetime | None = None) -> Refusal | None:
        """Why `value` was not sent through the petition service: its signed assertion is
        missing, invalid, expired, for another case, action, payload, actor or request."""
        presented, info = PRESENTED.get(), workflow.info()
        actor = actor or getattr(value, "actor", None)
        request_id = request_id if request_id is not None else getattr(value, "request_id", None)
        if presented is not None and presented.by_parent:
            return None  # a benchmark's own script (AssertionInterceptor's docstring)
        try:
            if presented is None:
                raise AssertionRefused("assertion:missing", "no assertion was presented")
            claims = verify(presented.ring, presented.token, action=str(action),
                            workflow_id=info.workflow_id, digest=digests(value),
                            now=at or workflow.now())
        except AssertionRefused as refused:
            return Refusal(refused.rule, str(refused))
        if actor is not None and claims.actor != actor:
            return Refusal("assertion:actor", f"the assertion vouches for {claims.actor.id}, "
                           f"not {actor.id}")
        if claims.request_id != (request_id or ""):
            return Refusal("assertion:request", "the assertion is for another request")
        return None

    async def _execute_allowed(self, row: Transition, command: Command,
                               results: EffectResults | None = None,
                               detail: dict[str, Any] | None = None) -> int:
        st, now = self._case, workflow.now()
        before = clocks.signature(st)
        calendar = await self._calendar_for(now)
        entry = self._track(transition.take(st, row, command, now, results or EffectResults(),
                                            calendar, detail))
        self._clocks_changed |= clocks.signature(st) != before
        if not row.counts_as_note:
            await self._written_through(entry)  # the audit row comes before what it explains
            await self._effects_after(row, command, now)
            self._publish()  # a note changes neither search attributes nor current details
        return entry

    async def _effects_before(self, row: Transition, command: Command) -> EffectResults:
        results, now = EffectResults(), workflow.now()
        for effect in row.effects:
            runner = self._BEFORE.get(effect)
            if runner is not None:
                await runner(self, row, command, now, results)
        return results

    async def _transfer_order(self, row: Transition, command: Command, now: datetime,
                              results: EffectResults) -> None:
        assert isinstance(command, Transfer | Divert)
        st = self._case
        if isinstance(command, Transfer):
            kind = "assignment" if command.assigned else "transfer"
            to_unit, instructions = command.to_unit, command.instructions
        else:
            kind, to_unit = "diversion", command.organ
            instructions = f"{command.track}: {command.explanation}"
        order = await self._activity(TransferDesk.issue_transfer_order, TransferOrderInput(
            workflow_id=st.workflow_id, petition_id=st.petition_id, seq=st.seq + 1, kind=kind,
            from_unit=st.holding_unit, to_unit=to_unit, instructions=instructions,
            issued_at=now), f"{row.action}: {kind} order to {to_unit}")
        results.order_no = order.order_no
        if kind != "diversion":
            results.units.append(order.to_unit)

    async def _lookup_organ(self, row: Transition, command: Command, now: datetime,
                            results: EffectResults) -> None:
        assert isinstance(command, RequestReview | RequestReReview)
        organ = (command.review_organ if isinstance(command, RequestReview)
                 else command.re_review_organ)
        results.units.append(await self._activity(
            PetitionRegistry.resolve_unit, UnitLookup(code=organ),
            f"{row.action}: look up {organ}"))

    async def _book_hearing(self, row: Transition, command: Command, now: datetime,
                            results: EffectResults) -> None:
        assert isinstance(command, ScheduleHearing)
        st = self._case
        facts = facts_for(st, row.action, command)  # the hearing notice (听证通知)
        results.hearing_no = await self._activity(HearingDesk.schedule_hearing, HearingBooking(
            workflow_id=st.workflow_id, petition_id=st.petition_id, seq=st.seq + 1,
            hearing_no=len(st.hearings) + 1, venue=command.venue, starts_at=command.starts_at,
            duration_minutes=command.duration_minutes, officers=command.officers,
            facts=facts.model_dump(mode="json") if facts is not None else None),
            f"{row.action}: book the hearing at {command.venue}")

    async def _record_hearing(self, row: Transition, command: Command, now: datetime,
                              results: EffectResults) -> None:
        assert isinstance(command, RecordHearing)
        st = self._case
        await self._activity(HearingDesk.record_hearing_outcome, HearingRecordInput(
            workflow_id=st.workflow_id, petition_id=st.petition_id, seq=st.seq + 1,
            hearing_no=command.hearing_no, outcome=command.outcome, summary=command.summary),
            f"{row.action}: hearing no. {command.hearing_no}")

    async def _file_assistance(self, row: Transition, command: Command, now: datetime,
                               results: EffectResults) -> None:
        assert isinstance(command, RequestAssistance)
        st = self._case
        results.application_no = await self._activity(
            AssistanceDesk.file_assistance_application, AssistanceApplicationInput(
                workflow_id=st.workflow_id, petition_id=st.petition_id, seq=st.seq + 1,
                application_no=len(st.assistance) + 1, kind=command.kind,
                amount_yuan=command.amount_yuan, persons=command.persons,
                reason=command.reason, requested_by=command.actor.id, requested_at=now),
            f"{row.action}: file the application")

    async def _decide_assistance(self, row: Transition, command: Command, now: datetime,
                                 results: EffectResults) -> None:
        assert isinstance(command, DecideAssistance)
        st = self._case
        policy = st.profile.assistance
        decided = await self._activity(AssistanceDesk.decide_assistance, AssistanceDecisionInput(
            workflow_id=st.workflow_id, petition_id=st.petition_id, seq=st.seq + 1,
            application_no=command.application_no, approved=command.approved,
            amount_yuan=command.amount_yuan, exception_approved=command.exception_approved,
            decided_by=command.actor, decided_at=now, cap_yuan=policy.cap_yuan,
            leader_threshold_yuan=policy.leader_threshold_yuan),
            f"{row.action}: application {command.application_no}")
        results.approved_amount_yuan = decided.approved_amount_yuan

    _BEFORE: dict[Effect, Callable[..., Awaitable[None]]] = {
        Effect.TRANSFER_ORDER: _transfer_order, Effect.DIVERSION_ORDER: _transfer_order,
        Effect.LOOKUP_ORGAN: _lookup_organ, Effect.BOOK_HEARING: _book_hearing,
        Effect.RECORD_HEARING: _record_hearing, Effect.FILE_ASSISTANCE: _file_assistance,
        Effect.DECIDE_ASSISTANCE: _decide_assistance,
    }

    async def _effects_after(self, row: Transition, command: Command, now: datetime) -> None:
        """Payments and registry entries before the answer; notices queued to follow it."""
        st = self._case
        if Effect.PAY_ASSISTANCE in row.effects:
            assert isinstance(command, DecideAssistance)
            app = application(st, command.application_no)
            if app is not None and app.status == "approved":
                paid = await self._activity(AssistanceDesk.disburse_assistance,
                    DisbursementInput(workflow_id=st.workflow_id, petition_id=st.petition_id,
                                      application_no=app.application_no),
                    f"{row.action}: pay application {app.application_no}")
                changes.assistance_paid(st, app.application_no, paid.payment_ref,
                                        paid.amount_yuan)
        if Effect.TERMINATION_REGISTRY in row.effects:
            await self._activity(PetitionRegistry.enter_termination_registry, TerminationInput(
                petition_id=st.petition_id, registration_no=st.registration_no,
                concluded_at=now, unit=command.actor.unit),
                f"{row.action}: enter the termination registry")
        for notice in projections.notices_of(row, command, st):
            self._queue_notice(notice, now)

    def _record_refusal(self, action: Action, command: Command, refusal: Refusal) -> None:
        self._track(transition.refused(self._case, action, command, workflow.now(),
                                       str(refusal)))

    # ------------------------------------------------------------------ clocks

    async def _calendar_for(self, at: datetime) -> FrozenCalendar:
        """The case's frozen working-day calendar, widened (by a local activity, once) to
        the years a transition at `at` may count in."""
        st = self._case
        if not st.profile.counts_on_calendar:
            return FrozenCalendar({})
        first, last = clocks.calendar_years(st, at)
        held = st.calendar.year_range() if st.calendar else None
        if held is None or held[0] > first or held[1] < last:
            if held is not None and max(last, held[1]) - min(first, held[0]) < MAX_SNAPSHOT_YEARS:
                first, last = min(first, held[0]), max(last, held[1])
            st.calendar = await workflow.execute_local_activity_method(
                DeadlineCalculator.calendar_snapshot,
                CalendarSnapshotInput(first_year=first, last_year=last),
                start_to_close_timeout=timedelta(seconds=10), retry_policy=RETRY,
                summary=f"freeze the working-day calendar {first}-{last}")
            self._calendar = None
        if self._calendar is None:
            assert st.calendar is not None
            self._calendar = st.calendar.calendar()
        return self._calendar

    async def _wait_for_next_clock_event(self) -> None:
        self._clocks_changed = False

        def woken() -> bool:
            return (self._clocks_changed or self._writer_error is not None
                    or self._should_continue_as_new())

        events = clocks.events(self._case)
        now = workflow.now()
        self._awaited = frozenset(e for e in events if e.at > now)
        if not events:
            await workflow.wait_condition(woken)
            return
        event = events[0]
        timeout = event.at - now
        if timeout <= timedelta(0):
            return  # already due: no zero-length timer
        clock = self._case.clocks[event.clock]
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                woken, timeout=timeout,
                timeout_summary=f"{CLOCK_TITLES[event.clock]} ({clock.article}, "
                                f"{clock.period}): {event.what} at "
                                f"{projections.beijing(event.at)}")

    async def _fire_due_clock_events(self) -> None:
        now = workflow.now()
        for event in clocks.events(self._case):
            if event.at > now or self._case.stage is Stage.CLOSED:
                break
            clock = self._case.clocks.get(event.clock)
            if clock is None:
                continue
            due = self._timer_due_at(event)
            if event.what == clocks.LAPSE:
                await self._lapse(clock, due)
            elif event.what == clocks.REMINDER:
                clock.reminded = True
                notice = projections.notice(self._case, "unit", clock.unit, "reminder",
                                            about=clock)
                await self._activity(NoticeDesk.send_notice,
                                     self._notice_input(notice, now, timer_due_at=due),
                                     notice.summary)
            elif not clocks.hand_over(self._case, clock, await self._calendar_for(now)):
                await self._escalate(clock, now, due)
        self._clocks_changed = True
        if self._case.stage is not Stage.CLOSED:
            self._publish()

    def _timer_due_at(self, event: clocks.ClockEvent) -> datetime | None:
        """When the timer behind `event` was due, for the activity to measure how late it
        fired (the workflow's time at firing minus this): its own time, if the workflow
        waited for it; None for an event already due when the wait began (an imported
        overdue case, a deadline installed in the past): no timer fired late."""
        return event.at if event in self._awaited else None

    async def _lapse(self, clock: Clock, timer_due_at: datetime | None = None) -> None:
        clocks.stop(self._case, (clock.name,))
        action = LAPSE_ACTIONS.get(clock.name)
        if action is None:
            return  # e.g. the transfer objection window: the transfer simply stands
        row, command = TABLE[action], SystemCommand(actor=SYSTEM_ACTOR)
        refusal = transition.refusal(self._case, row, command)
        if refusal is not None:  # the table and the clocks disagree: a bug, never a refusal
            raise RuntimeError(f"{clock.name} lapsed but {refusal}")
        # The audit row says when the window's timer was due; the recorder measures its
        # lateness from it.
        await self._execute_allowed(row, command, detail=(
            {TIMER_DUE_AT: timer_due_at.isoformat()} if timer_due_at is not None else None))

    async def _escalate(self, clock: Clock, now: datetime,
                        timer_due_at: datetime | None = None) -> None:
        st = self._case
        clocks.escalate(st, clock)
        try:
            await self._activity(EscalationDesk.escalate, EscalationInput(
                workflow_id=st.workflow_id, petition_id=st.petition_id,
                registration_no=st.registration_no, clock=clock.name, level=clock.level,
                unit=clock.unit, due_at=clock.due_at, at=now, timer_due_at=timer_due_at),
                f"escalate: {CLOCK_TITLES[clock.name]} overdue, level {clock.level}")
        except ActivityError as err:
            # A gap in the directory (no leader above the unit) must not stop the case;
            # the case still shows as overdue at this level.
            refusal = _business_refusal(err)
            if refusal is None:
                raise
            workflow.logger.warning("escalation of %s to level %s failed: %s",
                                    clock.name, clock.level, refusal.rule)

    # ------------------------------------------------------ visibility, history

    def _publish(self) -> None:
        """Search attributes and current details; only what changed is upserted, so a
        note (which changes neither) adds no history event."""
        now = workflow.now()
        updates: list[SearchAttributeUpdate[Any]] = []
        values = projections.search_attribute_values(self._case, now)
        # Petitions started before it never upserted `Handler` (an upsert more would be a
        # command more on replay): the bulk reassignment's query finds only the others.
        if not workflow.patched("handler-search-attribute"):
            values.pop(sa.HANDLER.name)
        for name, value in values.items():
            if name in self._published and self._published[name] == value:
                continue
            self._published[name] = value
            key = sa.BY_NAME[name]
            updates.append(key.value_set(value) if value is not None else key.value_unset())
        if updates:
            workflow.upsert_search_attributes(updates)
        details = projections.current_details(self._case, now)
        if details != self._details_text:
            self._details_text = details
            workflow.set_current_details(details)

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
        workflow.continue_as_new(PetitionStart(intake=self._intake,
                                               registration_no=st.registration_no,
                                               carried=st))
