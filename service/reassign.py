"""Bulk reassignment (批量转办) for the approvals pages: who may order it, the unit's
staff and how many open cases each holds, starting the batch and reading its progress.

Only the head of a unit (the directory says so) orders it, only between staff of that
unit. The batch itself (adapters/batch_reassign.py) is a Temporal batch signal; each case
checks the order and is audited once (domain/reassignment.py). The job's progress is the
server's count of signals delivered; what the cases did with them is the audit trail's
count of the job's assignments and refusals.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from sqlalchemy import func, select

from adapters.batch_reassign import BatchBusy, BatchProgress, BatchReassigner
from adapters.tables import Person, Petition, PetitionEvent
from domain.models import Actor, Role
from domain.reassignment import ACTION, JOB_PREFIX, STAGES
from service.context import ServiceContext

# Staff who may hold cases (a unit head may handle a case too).
HOLDERS = ("handler", "unit_head")
REQUEST_ID = re.compile(r"^[a-f0-9]{32}$")

__all__ = ["BatchBusy", "BatchProgress", "Outcome", "Staff", "holders", "job_for",
           "may_order", "new_request_id", "open_counts", "outcomes", "progress", "start"]


@dataclass(frozen=True)
class Staff:
    id: str
    name: str
    role: str


@dataclass(frozen=True)
class Outcome:
    """What the cases did with the job's order (the audit trail)."""

    moved: int
    refused: int


def may_order(actor: Actor) -> bool:
    return actor.role is Role.UNIT_HEAD


def new_request_id() -> str:
    """The confirmation form's one-time id: a double click starts one job."""
    return secrets.token_hex(16)


def job_for(request_id: str) -> str | None:
    return f"{JOB_PREFIX}{request_id}" if REQUEST_ID.match(request_id) else None


async def holders(ctx: ServiceContext, unit: str) -> list[Staff]:
    """The unit's staff who may hold cases, by name."""
    async with ctx.sessions() as session:
        people = (await session.scalars(
            select(Person).where(Person.unit_code == unit, Person.role.in_(HOLDERS))
            .order_by(Person.role.desc(), Person.id))).all()
    return [Staff(p.id, p.name, p.role) for p in people]


async def open_counts(ctx: ServiceContext, unit: str) -> dict[str, int]:
    """Per handler, the unit's open cases they hold that may be reassigned (registered or
    in handling), from the read model."""
    stages = [s.value for s in STAGES]
    async with ctx.sessions() as session:
        rows = (await session.execute(
            select(Petition.handler_id, func.count())
            .where(func.coalesce(Petition.responsible_unit, Petition.holding_unit) == unit,
                   Petition.stage.in_(stages), Petition.handler_id.is_not(None))
            .group_by(Petition.handler_id))).all()
    return {str(handler): int(count) for handler, count in rows}


def _reassigner(ctx: ServiceContext) -> BatchReassigner:
    return BatchReassigner(ctx.petitions.client)


async def start(ctx: ServiceContext, actor: Actor, job_id: str, from_handler: str,
                to_handler: str) -> None:
    """Start the job (BatchBusy: another batch runs; try again later). The caller has
    checked that `actor` heads the unit and both handlers are its staff."""
    reassigner = _reassigner(ctx)
    if await reassigner.describe(job_id) is not None:
        return  # the same confirmation posted again
    order = await reassigner.order(job_id, actor.unit, from_handler, to_handler, actor)
    await reassigner.start(order)


async def progress(ctx: ServiceContext, actor: Actor, job_id: str) -> BatchProgress | None:
    """The job's progress, if it is a reassignment in the actor's own unit."""
    if not job_id.startswith(JOB_PREFIX) or len(job_id) > 64:
        return None
    found = await _reassigner(ctx).describe(job_id)
    if found is None or found.unit != actor.unit:
        return None
    return found


async def outcomes(ctx: ServiceContext, job_id: str) -> Outcome:
    """How many cases took the job's assignment, and how many refused it."""
    async with ctx.sessions() as session:
        moved = await session.scalar(select(func.count()).where(
            PetitionEvent.action == ACTION.value, PetitionEvent.accepted.is_(True),
            PetitionEvent.detail["batch_job"].astext == job_id))
        refused = await session.scalar(select(func.count()).where(
            PetitionEvent.action == ACTION.value, PetitionEvent.accepted.is_(False),
            PetitionEvent.detail["request_id"].astext == job_id))
    return Outcome(int(moved or 0), int(refused or 0))
