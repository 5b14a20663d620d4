"""The petition's audit writer and notice sender (a part of `PetitionWorkflow`).

Audit records queue in the case (`CaseState.unrecorded`) and one writer sends them to
PostgreSQL in batches, by a local activity inside the workflow task; the notices an action
sends queue in `_outbox` and one sender hands them to the outbox activity, in order, after
the action is answered. Continue-as-new carries what is still queued.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.contracts import NoticeInput, TransitionBatch
    from activities.notices import NoticeDesk
    from activities.records import TransitionRecorder
    from domain import projections
    from domain.case import CaseState, TransitionRecord

# Infrastructure errors retry with backoff for as long as it takes; business refusals
# are non-retryable ApplicationErrors raised by the activities themselves.
RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                    maximum_interval=timedelta(minutes=1))
ACTIVITY_TIMEOUT = timedelta(seconds=30)
# One batch of audit records: small enough for one payload (notes may be 20,000 chars),
# and what a run may hand to the next unwritten: payloads above 512 KB draw warnings and
# above 2 MB fail, so a continue-as-new waits until the queue is this small.
RECORD_BATCH_MAX = 200
RECORD_BATCH_MAX_CHARS = 300_000
CARRY_MAX_CHARS = 200_000
REFUSED = "ActionRefused"
# An Update's input reaches the history (UpdateAccepted) only when the workflow task that
# runs its handler completes; a local activity writes inside that task, so PostgreSQL
# would hold the audit row a moment before Temporal holds the action. Nothing notices,
# unless both are restored from one backup taken in that moment (adapters/backup.py):
# the row of an action the restored workflow never took. A batch with an Update's records
# is therefore written by an ordinary activity, which the server starts only after the
# task that schedules it -- and accepts the Update -- is stored. Cases started before
# this replay with the local activity.
DURABLE_UPDATE_PATCH = "update-durable-before-its-record"


class RecordsAndNotices:
    """Mixed into `PetitionWorkflow`, which initialises these in its `__init__`."""

    _state: CaseState | None
    _sizes: list[int]
    _unwritten_chars: int
    _queued: int
    _written: int
    _writing: bool
    _waiting_for_records: int
    _writer_error: BaseException | None
    _fresh_update: bool  # an Update handler ran since the writer last took a batch
    _outbox: list[tuple[NoticeInput, str]]  # each with its summary for the Web UI
    _draining: bool

    @property
    def _case(self) -> CaseState:
        if self._state is None:
            raise ApplicationError("the petition is still being registered; try again shortly",
                                   type=REFUSED, non_retryable=True)
        return self._state


    def _track(self, entry: TransitionRecord) -> int:
        """Count a record the domain queued in the case; returns its number in this run."""
        size = len(entry.model_dump_json())
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
            actions = ", ".join(sorted({r.action.value for r in batch}))
            self._writing = True
            after_update = self._fresh_update and workflow.patched(DURABLE_UPDATE_PATCH)
            self._fresh_update = False
            try:
                if after_update:
                    await self._activity(TransitionRecorder.record_transitions,
                                         TransitionBatch(records=batch),
                                         f"record {actions} ({len(batch)} entries)")
                else:
                    # A few milliseconds of PostgreSQL inside the workflow task, instead of
                    # a task queue round trip and a second task before the caller is
                    # answered.
                    await workflow.execute_local_activity_method(
                        TransitionRecorder.record_transitions, TransitionBatch(records=batch),
                        start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=RETRY,
                        summary=f"record {actions} ({len(batch)} entries)")
            except ActivityError as err:
                self._writer_error = err  # a bug (an unknown read-model column): stop loudly
                return
            finally:
                self._writing = False
            del pending[:count]
            self._unwritten_chars -= sum(self._sizes[:count])
            del self._sizes[:count]
            self._written += count

    async def _send_notices(self) -> None:
        """The one sender of the notices actions queue: in the order they were taken."""
        while True:
            await workflow.wait_condition(lambda: bool(self._outbox))
            notice, summary = self._outbox[0]
            try:
                await self._activity(NoticeDesk.send_notice, notice, summary)
            except ActivityError as err:
                self._writer_error = err  # never a refusal: the outbox takes any notice
                return
            self._outbox.pop(0)

    def _queue_notice(self, notice: projections.Notice, at: datetime) -> None:
        self._outbox.append((self._notice_input(notice, at), notice.summary))

    def _notice_input(self, notice: projections.Notice, at: datetime,
                      timer_due_at: datetime | None = None) -> NoticeInput:
        return NoticeInput(idempotency_key=notice.key, petition_id=self._case.petition_id,
                           recipient_kind=notice.recipient_kind,
                           recipient_ref=notice.recipient_ref, template=notice.template,
                           body=notice.body, at=at,
                           facts=(notice.facts.model_dump(mode="json")
                                  if notice.facts is not None else None),
                           timer_due_at=timer_due_at)

    def _raise_writer_error(self) -> None:
        if self._writer_error is not None:
            # Fails the workflow task, not the case: fixed code then replays and goes on.
            raise RuntimeError(f"a record or notice could not be written: {self._writer_error}")

    async def _activity(self, method: Any, arg: Any, summary: str) -> Any:
        return await workflow.execute_activity_method(
            method, arg, start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=RETRY,
            summary=summary)
