"""Bulk reassignment (批量转办): a unit head moves one handler's open cases to another.

The petition service starts one Temporal batch signal over the cases the visibility
query finds (`Handler`, `ResponsibleUnit`, open stages); every case receives the same
`BatchReassign` order. It is not a row of the lifecycle table: each case that really is
held by `from_handler` in `unit` takes the table's own `assign` row (the unit head assigns
`to_handler`), audited like any assignment, its record naming the batch job; anything
else changes nothing and is recorded as refused.

One order for many cases cannot carry an assertion bound to one workflow: it carries a
batch-scoped one (`security.assertion.BatchAssertion`) in the order itself -- Temporal's
batcher does not forward a signal's headers -- signed over the order's `signed_part`.
The job id is the request id of every assignment it makes, so the order delivered twice
assigns and audits once.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from domain.case import CaseState
from domain.models import Action, Actor, Assign, Code, Role, Stage, Strict
from domain.rules import Refusal

SIGNAL = "batch_reassign"
KIND = "batch_reassign"
# The stages whose cases may be assigned (the table's `assign` row): the batch's query
# selects these, and a case in any other stage refuses the order.
STAGES = (Stage.REGISTERED, Stage.IN_HANDLING)
JOB_PREFIX = "reassign-"
JobId = Annotated[str, StringConstraints(pattern=r"^reassign-[a-z0-9]{16,48}$")]


class BatchReassign(Strict):
    """The order every case of a batch receives (the batch signal's one input)."""

    kind: Literal["batch_reassign"] = "batch_reassign"
    job_id: JobId
    unit: Code
    from_handler: Code
    to_handler: Code
    actor: Actor  # the unit head who ordered it
    assertion: str = Field(max_length=4096)  # security.assertion.BatchAssertion, signed

    def signed_part(self) -> str:
        """What the batch assertion's digest covers: the order without the assertion."""
        return self.model_dump_json(exclude={"assertion"})


def digest(order: BatchReassign) -> str:
    return hashlib.sha256(order.signed_part().encode()).hexdigest()


def assign_command(order: BatchReassign) -> Assign:
    """The assignment the order makes on one case; its request id is the job id."""
    return Assign(actor=order.actor, handler_id=order.to_handler, request_id=order.job_id)


def refusal(case: CaseState, order: BatchReassign) -> Refusal | None:
    """Why this case must not follow the order (the `assign` row's own guard comes after):
    only a unit head of the order's unit, only the unit's case, only from its handler."""
    if order.actor.role is not Role.UNIT_HEAD or order.actor.unit != order.unit:
        return Refusal("batch:actor", f"a bulk reassignment is the head of {order.unit}'s "
                       f"to order, not {order.actor.id}'s")
    if order.from_handler == order.to_handler:
        return Refusal("batch:handler", "the case would stay with the same handler")
    held_by = case.responsible_unit or case.holding_unit
    if held_by != order.unit:
        return Refusal("batch:unit", f"the case is {held_by}'s, not {order.unit}'s")
    if case.handler_id != order.from_handler:
        return Refusal("batch:handler", f"the case is not held by {order.from_handler}")
    return None


def audit_detail(order: BatchReassign) -> dict[str, Any]:
    """What the assignment's audit record adds: the batch and whom the case left."""
    return {"batch_job": order.job_id, "reassigned_from": order.from_handler}


ACTION = Action.ASSIGN  # the row each reassignment takes, and the action it is audited as
