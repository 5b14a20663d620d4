"""The one way to act on a petition: submit, act, status, timeline.

Every start, action and signal it sends carries an assertion signed with the assertion
keys (security/assertion.py), naming the actor of the command: the workflow refuses
anything unsigned. Only the petition service — which verifies who the actor is — and an
operator's tools on the same keys may hold a `PetitionClient`.

The CLI, the demo load, the drills, the history recorder, the benchmarks and the tests
all go through `PetitionClient`. A refusal arrives as `ActionRefused` carrying the
domain's `Refusal` (rule, field, figures such as the earliest free hearing slot), read
from `ApplicationError.details`, never parsed out of a message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from temporalio import client as temporal_client
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import (
    Client,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateHandle,
    WorkflowUpdateStage,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.common import refusal_of
from adapters.settings import get_settings
from domain.case import CaseState, PetitionStart, PetitionStatus, TimelineEntry
from domain.lifecycle import TABLE
from domain.models import Action, Actor, Command, PetitionIntake, Role
from domain.rules import Refusal
from observability.tracing import client_interceptors
from security.assertion import HEADER, LIFETIME, ActionAssertion, assertion_ring, sign
from security.codec import CodecKeyError, KeyRing, dev_keyring, refuse_public_keys
from workflows.interceptor import digest, header_payload
from workflows.petition import PetitionWorkflow

Clock = Callable[[], Awaitable[datetime]]
CURRENT_ASSERTION: ContextVar[str | None] = ContextVar("petition_client_assertion", default=None)


async def wall_clock() -> datetime:
    return datetime.now(UTC)


class AssertionHeader(temporal_client.Interceptor):
    """Puts the assertion of the call in progress into its Temporal header."""

    def intercept_client(
            self, next: temporal_client.OutboundInterceptor) -> temporal_client.OutboundInterceptor:
        return _SignedCalls(next)


class _SignedCalls(temporal_client.OutboundInterceptor):
    @staticmethod
    def _attach(input: Any) -> None:
        token = CURRENT_ASSERTION.get()
        if token is not None:
            input.headers = {**input.headers, HEADER: header_payload(token)}

    async def start_workflow(self, input: Any) -> Any:
        self._attach(input)
        return await super().start_workflow(input)

    async def signal_workflow(self, input: Any) -> None:
        self._attach(input)
        await super().signal_workflow(input)

    async def start_workflow_update(self, input: Any) -> Any:
        self._attach(input)
        return await super().start_workflow_update(input)

# The action each command type takes (a person's rows: one command type each).
ACTION_OF: dict[type[Command], Action] = {
    row.command: row.action for row in TABLE.values() if not row.system}


class PetitionNotFound(LookupError):
    """No petition with that workflow id."""


class ActionRefused(Exception):
    """The case did not change: the domain's refusal says why (rule, field, details)."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(str(refusal))
        self.refusal = refusal


def workflow_id_for(intake_id: str) -> str:
    """The intake id is the idempotency key (one intake, one petition), but the workflow
    id is the system's: a keyed hash of it, so a caller's string — which could carry an ID
    number or a phone however it is spelled — never becomes an id Temporal stores in clear.
    The key (`PETITION_ID_KEY`, generated once in development) must never change: a
    resubmitted intake would get a second petition."""
    digest = hmac.new(_id_key(), intake_id.encode(), hashlib.sha256).digest()
    return "petition-" + base64.b32encode(digest[:15]).decode().lower()


@lru_cache(maxsize=4)
def _id_key_of(spec: str | None, key_file: str, allow_dev_key: bool) -> bytes:
    if spec:
        ring = refuse_public_keys(KeyRing.parse(spec), "workflow id")
    elif allow_dev_key:
        ring = dev_keyring(Path(key_file))
    else:
        raise CodecKeyError("no workflow id key configured: set PETITION_ID_KEY")
    return ring.keys[ring.active]


def _id_key() -> bytes:
    settings = get_settings()
    return _id_key_of(settings.id_key, str(settings.id_key_file), settings.dev_keys)


class PetitionClient:
    def __init__(self, client: Client, task_queue: str, *, ring: KeyRing | None = None,
                 clock: Clock = wall_clock) -> None:
        config = client.config()
        # Traces where configured (observability/tracing.py): each start, Update, Signal
        # and query a client span, its context in a header beside the assertion's.
        config["interceptors"] = [*config["interceptors"],
                                  *client_interceptors(config["interceptors"]),
                                  AssertionHeader()]
        self.client = Client(**config)
        self.task_queue = task_queue
        self._ring = ring or assertion_ring(get_settings())
        self._clock = clock  # the server's time: a time-skipping test server runs ahead

    @asynccontextmanager
    async def _signed(self, actor: Actor, action: str, workflow_id: str,
                      request_id: str | None, value: Any) -> AsyncIterator[None]:
        """The calls made inside carry this assertion (a context variable: other tasks, and
        this one afterwards, carry none)."""
        token = CURRENT_ASSERTION.set(sign(self._ring, ActionAssertion(
            actor=actor, action=action, workflow_id=workflow_id, request_id=request_id or "",
            digest=digest(value), expires_at=await self._clock() + LIFETIME)))
        try:
            yield
        finally:
            CURRENT_ASSERTION.reset(token)

    def handle(self, workflow_id: str) -> WorkflowHandle[PetitionWorkflow, PetitionStatus]:
        return self.client.get_workflow_handle_for(PetitionWorkflow.run, workflow_id)

    async def start(self, intake: PetitionIntake, registration_no: str | None = None,
                    *, workflow_id: str | None = None, **start_options: Any
                    ) -> WorkflowHandle[PetitionWorkflow, PetitionStatus]:
        """Start the petition's workflow (or find it, open or closed) without waiting for
        its registration. Idempotent on the intake id. `workflow_id`: the id the registry
        already holds for this intake (an intake registered before is found under it)."""
        return await self.start_petition(
            PetitionStart(intake=intake, registration_no=registration_no),
            workflow_id=workflow_id, **start_options)

    async def start_petition(self, start: PetitionStart, *, reuse_closed: bool = True,
                             workflow_id: str | None = None, **start_options: Any
                             ) -> WorkflowHandle[PetitionWorkflow, PetitionStatus]:
        """Start from a `PetitionStart`: a new intake, or a case carried in (the legacy
        importer). A closed petition of the same intake is answered (`reuse_closed`) or
        its `WorkflowAlreadyStartedError` raised."""
        intake = start.intake
        workflow_id = workflow_id or (start.carried.workflow_id if start.carried
                                      else workflow_id_for(intake.intake_id))
        request = f"run-{start.carried.runs}" if start.carried else intake.intake_id
        clerk = Actor(id=f"intake-{intake.channel}", role=Role.INTAKE_CLERK, unit=intake.unit)
        try:
            async with self._signed(clerk, "start", workflow_id, request, start):
                return await self.client.start_workflow(
                    PetitionWorkflow.run, start, id=workflow_id, task_queue=self.task_queue,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING, **start_options)
        except WorkflowAlreadyStartedError:
            if not reuse_closed:
                raise
            return self.handle(workflow_id)

    async def submit(self, intake: PetitionIntake, registration_no: str | None = None,
                     *, workflow_id: str | None = None, **start_options: Any) -> PetitionStatus:
        """Start the petition and answer once it is registered (the intake's receipt)."""
        handle = await self.start(intake, registration_no, workflow_id=workflow_id,
                                  **start_options)
        if await self.closed(handle.id):
            return await self.status(handle.id)
        return await handle.execute_update(PetitionWorkflow.wait_registered)

    async def act_accepted(self, workflow_id: str,
                           command: Command) -> WorkflowUpdateHandle[PetitionStatus]:
        """Send the action and return once the workflow has accepted it (its answer may
        wait on an activity: a drill sends actions while PostgreSQL is down)."""
        action = ACTION_OF[type(command)]
        try:
            async with self._signed(command.actor, action.value, workflow_id,
                                    command.request_id, command):
                return await self.handle(workflow_id).start_update(
                    action.value, command, id=command.request_id, result_type=PetitionStatus,
                    wait_for_stage=WorkflowUpdateStage.ACCEPTED)
        except WorkflowUpdateFailedError as err:
            if isinstance(err.cause, ApplicationError):
                raise ActionRefused(refusal_of(err.cause)) from None
            raise

    async def act(self, workflow_id: str, command: Command, *,
                  as_signal: bool = False) -> PetitionStatus | None:
        """Take the action `command` stands for; the new status (None for a signal, which
        is fire and forget: a refused signal is recorded by the workflow itself)."""
        action = ACTION_OF[type(command)]
        handle = self.handle(workflow_id)
        try:
            async with self._signed(command.actor, action.value, workflow_id,
                                    command.request_id, command):
                if as_signal:
                    await handle.signal(action.value, command)
                    return None
                return await handle.execute_update(action.value, command, id=command.request_id,
                                                   result_type=PetitionStatus)
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError):
                raise ActionRefused(refusal_of(cause)) from None
            raise
        except RPCError as err:
            if err.status is not RPCStatusCode.NOT_FOUND:
                raise
            if not await self.closed(workflow_id):
                raise PetitionNotFound(workflow_id) from None
            raise ActionRefused(Refusal(
                "closed", f"{workflow_id} is closed; no action can be taken on it")) from None

    async def status(self, workflow_id: str) -> PetitionStatus:
        status: PetitionStatus = await self._query(workflow_id, PetitionWorkflow.status)
        return status

    async def case(self, workflow_id: str) -> CaseState | None:
        case: CaseState | None = await self._query(workflow_id, PetitionWorkflow.case)
        return case

    async def timeline(self, workflow_id: str) -> list[TimelineEntry]:
        entries: list[TimelineEntry] = await self._query(workflow_id, PetitionWorkflow.timeline)
        return entries

    async def _query(self, workflow_id: str, query: Any) -> Any:
        try:
            return await self.handle(workflow_id).query(query)
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND:
                raise PetitionNotFound(workflow_id) from None
            raise

    async def closed(self, workflow_id: str) -> bool:
        """The petition's workflow exists and has ended. Read raw: nothing of the case
        needs decoding."""
        try:
            found = await self.client.workflow_service.describe_workflow_execution(
                DescribeWorkflowExecutionRequest(
                    namespace=self.client.namespace,
                    execution=WorkflowExecution(workflow_id=workflow_id)))
        except RPCError:
            return False
        return found.workflow_execution_info.status not in (
            WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_UNSPECIFIED,
            WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING)
