"""Bulk reassignment (批量转办) as one Temporal batch signal operation.

`BatchReassigner.start` signs the order (a batch-scoped assertion: the job, the unit, the
handler whose cases move, the one who takes them, the unit head, an expiry), encrypts it
bound to the namespace and the job (security/codec.py, format 3) and asks the server to
signal `batch_reassign` to every running petition its visibility query finds: the open
cases (`PetitionStage` registered or in handling) whose `Handler` is the first handler
and whose `ResponsibleUnit` is the unit. Each case checks the order for itself
(domain/reassignment.py, `PetitionWorkflow.batch_reassign`).

The assertion travels inside the order, not in a header: the server's batcher forwards a
batch signal's input and identity but not its header (Temporal server 1.29, and the
batcher's code since). `describe` reads the job's progress back
(DescribeBatchOperation).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from temporalio.api.batch.v1 import BatchOperationSignal
from temporalio.api.common.v1 import Payloads
from temporalio.api.enums.v1 import BatchOperationState
from temporalio.api.workflowservice.v1 import (
    DescribeBatchOperationRequest,
    StartBatchOperationRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from adapters.petition_client import Clock, wall_clock
from adapters.search_attributes import HANDLER, PETITION_STAGE, RESPONSIBLE_UNIT
from adapters.settings import get_settings
from domain.models import Actor
from domain.reassignment import SIGNAL, STAGES, BatchReassign, digest
from security.assertion import BATCH_LIFETIME, BatchAssertion, assertion_ring, sign
from security.codec import Binding, EncryptionCodec, KeyRing

_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# The job's reason, as the Web UI shows it and as `describe` reads the parties back.
_REASON = re.compile(r"^bulk reassignment in (?P<unit>\S+): (?P<from_handler>\S+) -> "
                     r"(?P<to_handler>\S+), ordered by (?P<actor>\S+)$")
State = Literal["running", "completed", "failed"]


class BatchBusy(Exception):
    """The server runs another batch operation in this namespace (it allows one at once
    by default): try again once it has finished."""


@dataclass(frozen=True)
class BatchProgress:
    job_id: str
    state: State
    total: int
    complete: int
    failed: int
    unit: str | None  # the parties, from the job's reason (None: not a reassignment)
    from_handler: str | None
    to_handler: str | None
    ordered_by: str | None
    started_at: datetime | None
    closed_at: datetime | None


def visibility_query(unit: str, handler: str) -> str:
    """The open petitions of `unit` that `handler` holds (ids are directory codes, so
    they need no quoting; anything else is refused)."""
    for code in (unit, handler):
        if not _CODE.match(code):
            raise ValueError(f"not a directory code: {code!r}")
    stages = ", ".join(f"'{stage.value}'" for stage in STAGES)
    return (f"WorkflowType = 'PetitionWorkflow' AND ExecutionStatus = 'Running' AND "
            f"{HANDLER.name} = '{handler}' AND {RESPONSIBLE_UNIT.name} = '{unit}' AND "
            f"{PETITION_STAGE.name} IN ({stages})")


def reason_of(order: BatchReassign) -> str:
    return (f"bulk reassignment in {order.unit}: {order.from_handler} -> "
            f"{order.to_handler}, ordered by {order.actor.id}")


_STATES: dict[int, State] = {
    BatchOperationState.BATCH_OPERATION_STATE_RUNNING: "running",
    BatchOperationState.BATCH_OPERATION_STATE_COMPLETED: "completed",
    BatchOperationState.BATCH_OPERATION_STATE_FAILED: "failed",
}


class BatchReassigner:
    """Starts and describes bulk reassignments on `client` (the petition client's
    connection: its data converter's codec encrypts the order)."""

    def __init__(self, client: Client, *, ring: KeyRing | None = None,
                 clock: Clock = wall_clock) -> None:
        self.client = client
        self._ring = ring or assertion_ring(get_settings())
        self._clock = clock

    async def order(self, job_id: str, unit: str, from_handler: str, to_handler: str,
                    actor: Actor) -> BatchReassign:
        """The order, with its batch-scoped assertion signed over it."""
        unsigned = BatchReassign(job_id=job_id, unit=unit, from_handler=from_handler,
                                 to_handler=to_handler, actor=actor, assertion="-")
        return self.signed(unsigned, await self._clock() + BATCH_LIFETIME)

    def signed(self, order: BatchReassign, expires_at: datetime) -> BatchReassign:
        token = sign(self._ring, BatchAssertion(
            action=SIGNAL, namespace=self.client.namespace, job_id=order.job_id,
            unit=order.unit, from_handler=order.from_handler, to_handler=order.to_handler,
            actor=order.actor, digest=digest(order), expires_at=expires_at))
        return order.model_copy(update={"assertion": token})

    async def encoded(self, order: BatchReassign) -> Payloads:
        """The order as the batch's input: encrypted, bound to the namespace and the job."""
        converter = self.client.data_converter
        codec = converter.payload_codec
        if not isinstance(codec, EncryptionCodec):
            raise RuntimeError("the client has no petition codec: a batch's order is "
                               "always encrypted")
        clear = converter.payload_converter.to_payloads([order])
        bound = codec.bound(Binding.batch(self.client.namespace, order.job_id))
        return Payloads(payloads=await bound.encode(clear))

    async def count(self, unit: str, handler: str) -> int:
        """How many petitions the batch's query finds now (visibility lags a little)."""
        found = await self.client.count_workflows(visibility_query(unit, handler))
        return int(found.count)

    async def start(self, order: BatchReassign) -> None:
        """Start the batch (raises BatchBusy while another one runs). Starting the same job
        again is not an error: `describe` tells where it stands."""
        request = StartBatchOperationRequest(
            namespace=self.client.namespace, job_id=order.job_id, reason=reason_of(order),
            visibility_query=visibility_query(order.unit, order.from_handler),
            signal_operation=BatchOperationSignal(
                signal=SIGNAL, input=await self.encoded(order),
                identity=f"petition-service/{order.actor.id}"))
        try:
            await self.client.workflow_service.start_batch_operation(request)
        except RPCError as err:
            if err.status is RPCStatusCode.ALREADY_EXISTS:
                return
            if err.status is RPCStatusCode.RESOURCE_EXHAUSTED:
                if await self.describe(order.job_id) is not None:
                    return  # the same job, started a moment ago (a second click)
                raise BatchBusy(str(err)) from None
            raise

    async def describe(self, job_id: str) -> BatchProgress | None:
        """The job's state and counts (None: no such job)."""
        try:
            found = await self.client.workflow_service.describe_batch_operation(
                DescribeBatchOperationRequest(namespace=self.client.namespace, job_id=job_id))
        except RPCError as err:
            if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
                return None
            raise
        parties = _REASON.match(found.reason or "")
        return BatchProgress(
            job_id=job_id, state=_STATES.get(found.state, "running"),
            total=int(found.total_operation_count),
            complete=int(found.complete_operation_count),
            failed=int(found.failure_operation_count),
            unit=parties["unit"] if parties else None,
            from_handler=parties["from_handler"] if parties else None,
            to_handler=parties["to_handler"] if parties else None,
            ordered_by=parties["actor"] if parties else None,
            started_at=found.start_time.ToDatetime(tzinfo=UTC)
            if found.HasField("start_time") else None,
            closed_at=found.close_time.ToDatetime(tzinfo=UTC)
            if found.HasField("close_time") else None)
