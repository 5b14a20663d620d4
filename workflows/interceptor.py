"""The workflow side of signed assertions (security/assertion.py).

Every start, Update and Signal that reaches a petition must carry an assertion signed by
the petition service (or an operator's signed client): the inbound interceptor takes it
from the Temporal header and presents it to the workflow, which verifies it before it
acts (`PetitionWorkflow._verified`) and records a refusal otherwise. Calls a petition
makes itself — a repeat visit signalled to the open case, continue-as-new — are signed
here with the same keys, as the system.

This module is passed through the sandbox (worker.PASSTHROUGH: `workflows`), so the
context variable below is the one the workflow reads.
"""

from __future__ import annotations

import hashlib
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.converter import default as default_converter
from temporalio.worker import (
    ContinueAsNewInput,
    ExecuteWorkflowInput,
    HandleSignalInput,
    HandleUpdateInput,
    Interceptor,
    SignalExternalWorkflowInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

from domain.models import SYSTEM_ACTOR, Actor, Petitioner
from security.assertion import HEADER, LIFETIME, ActionAssertion, sign
from security.codec import KeyRing


@dataclass(frozen=True)
class Presented:
    """What the current handler was sent with: the assertion (or None) and the keys;
    `by_parent`: the petition was started by a trusted in-process script (benchmarks)."""

    token: str | None
    ring: KeyRing
    by_parent: bool = False


PRESENTED: ContextVar[Presented | None] = ContextVar("petition_assertion", default=None)


def digest(value: Any) -> str:
    """What an assertion binds: the SHA-256 of the payload's JSON (a pydantic model)."""
    body = value.model_dump_json() if hasattr(value, "model_dump_json") else repr(value)
    return hashlib.sha256(body.encode()).hexdigest()


# Fields added to a signed payload's models after assertions were first signed: an
# assertion signed before a field existed bound a JSON without it, so a payload whose new
# fields are still at their defaults also verifies against its JSON without them
# (docs/safe-changes.md). Add a field here when adding it to a signed model.
LATER_FIELDS: dict[type[BaseModel], frozenset[str]] = {
    Petitioner: frozenset({"email"}),
}


def _without_later_fields(value: BaseModel) -> dict[Any, Any]:
    """The pydantic `exclude` spec leaving out every later field still at its default."""
    model = type(value)
    later = LATER_FIELDS.get(model, frozenset())
    spec: dict[Any, Any] = {}
    for name, field in model.model_fields.items():
        member = getattr(value, name)
        if name in later and member == field.default:
            spec[name] = True
        elif isinstance(member, BaseModel):
            if inner := _without_later_fields(member):
                spec[name] = inner
        elif isinstance(member, list):
            items = {i: inner for i, item in enumerate(member) if isinstance(item, BaseModel)
                     and (inner := _without_later_fields(item))}
            if items:
                spec[name] = items
    return spec


def digests(value: Any) -> frozenset[str]:
    """Every digest an assertion for `value` may carry: today's, and the one signed
    before the `LATER_FIELDS` existed."""
    found = {digest(value)}
    if isinstance(value, BaseModel) and (exclude := _without_later_fields(value)):
        body = value.model_dump_json(exclude=exclude)
        found.add(hashlib.sha256(body.encode()).hexdigest())
    return frozenset(found)


def header_token(headers: Any) -> str | None:
    payload = headers.get(HEADER) if headers else None
    if payload is None:
        return None
    try:
        token = default_converter().payload_converter.from_payload(payload, str)
    except Exception:  # a header that is not a string is no assertion
        return None
    return token if isinstance(token, str) else None


def header_payload(token: str) -> Payload:
    return default_converter().payload_converter.to_payloads([token])[0]


def signed_by_the_case(ring: KeyRing, actor: Actor, action: str, workflow_id: str,
                       request_id: str, value: Any, now: datetime) -> str:
    return sign(ring, ActionAssertion(actor=actor, action=action, workflow_id=workflow_id,
                                      request_id=request_id, digest=digest(value),
                                      expires_at=now + LIFETIME))


class AssertionInterceptor(Interceptor):
    """Installed on the worker with the assertion keys (worker.build_worker).

    `trusted_parent_prefix` is for the year benchmark alone, never the product: a petition
    started as the child of a workflow whose id has that prefix (its in-process scripts,
    whose signals the time-skipping server strips of their headers) is vouched for by it.
    """

    def __init__(self, ring: KeyRing, trusted_parent_prefix: str | None = None) -> None:
        self.ring = ring
        self.trusted_parent_prefix = trusted_parent_prefix

    def workflow_interceptor_class(
            self, input: WorkflowInterceptorClassInput) -> type[WorkflowInboundInterceptor]:
        ring, prefix = self.ring, self.trusted_parent_prefix

        def present(headers: Any) -> None:
            parent = workflow.info().parent
            by_parent = bool(prefix and parent and parent.workflow_id.startswith(prefix))
            PRESENTED.set(Presented(header_token(headers), ring, by_parent))

        class Inbound(WorkflowInboundInterceptor):
            def init(self, outbound: WorkflowOutboundInterceptor) -> None:
                super().init(Outbound(outbound, ring))

            async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
                present(input.headers)
                return await super().execute_workflow(input)

            async def handle_signal(self, input: HandleSignalInput) -> None:
                present(input.headers)
                await super().handle_signal(input)

            def handle_update_validator(self, input: HandleUpdateInput) -> None:
                present(input.headers)
                super().handle_update_validator(input)

            async def handle_update_handler(self, input: HandleUpdateInput) -> Any:
                present(input.headers)
                return await super().handle_update_handler(input)

        return Inbound


class Outbound(WorkflowOutboundInterceptor):
    """Signs what a petition sends itself: a repeat visit to the open case, the next run."""

    def __init__(self, next: WorkflowOutboundInterceptor, ring: KeyRing) -> None:
        super().__init__(next)
        self._ring = ring

    async def signal_external_workflow(self, input: SignalExternalWorkflowInput) -> None:
        [command] = input.args
        token = signed_by_the_case(self._ring, command.actor, input.signal, input.workflow_id,
                                   command.request_id or "", command, workflow.now())
        input.headers = {**input.headers, HEADER: header_payload(token)}
        await super().signal_external_workflow(input)

    def continue_as_new(self, input: ContinueAsNewInput) -> Any:
        [start] = input.args
        info = workflow.info()
        token = signed_by_the_case(self._ring, SYSTEM_ACTOR, "start", info.workflow_id,
                                   f"run-{start.carried.runs}" if start.carried else "run",
                                   start, workflow.now())
        input.headers = {**input.headers, HEADER: header_payload(token)}
        return super().continue_as_new(input)
