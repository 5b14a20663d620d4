"""After a drill: is anything lost or done twice? The workflow's own account (its
timeline and assistance files) against the system of record (audit trail, read model,
payments ledger, transfer orders)."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from adapters.tables import (
    AssistanceApplication,
    AssistancePayment,
    Petition,
    PetitionEvent,
    TransferOrder,
)
from domain.models import Action
from workflows.petition import PetitionWorkflow


@dataclass
class Tally:
    petitions: int = 0
    transitions: int = 0
    payments: int = 0
    transfers: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.lost and not self.duplicated


async def _one(client: Client, sessions: async_sessionmaker[AsyncSession], workflow_id: str,
               tally: Tally) -> None:
    handle = client.get_workflow_handle_for(PetitionWorkflow.run, workflow_id)
    status = await handle.query(PetitionWorkflow.status)
    timeline = [e for e in await handle.query(PetitionWorkflow.timeline) if e.accepted]
    expected = {e.seq: e.action.value for e in timeline}
    async with sessions() as session:
        petition = await session.scalar(select(Petition).where(Petition.workflow_id == workflow_id))
        if petition is None:
            tally.lost.append(f"{workflow_id}: no row in petitions")
            return
        rows = (await session.execute(
            select(PetitionEvent.seq, PetitionEvent.action)
            .where(PetitionEvent.workflow_id == workflow_id, PetitionEvent.accepted.is_(True))
        )).all()
        payments = (await session.execute(
            select(AssistanceApplication.application_no, AssistancePayment.payment_ref,
                   AssistancePayment.amount_yuan)
            .join(AssistanceApplication,
                  AssistanceApplication.id == AssistancePayment.application_id)
            .where(AssistancePayment.petition_id == petition.id))).all()
        orders = (await session.scalars(
            select(TransferOrder.order_no).where(TransferOrder.petition_id == petition.id,
                                                 TransferOrder.kind != "diversion"))).all()

    tally.petitions += 1
    recorded = Counter(seq for seq, _ in rows)
    tally.transitions += len(rows)
    for seq, count in recorded.items():
        if count > 1:
            tally.duplicated.append(f"{workflow_id}: transition {seq} recorded {count} times")
    for seq, action in rows:
        if seq not in expected:
            tally.duplicated.append(f"{workflow_id}: transition {seq} ({action}) recorded, "
                                    "but the workflow never took it")
        elif expected[seq] != action:
            tally.duplicated.append(f"{workflow_id}: transition {seq} is {expected[seq]} in the "
                                    f"workflow but {action} in the audit trail")
    for seq in sorted(set(expected) - set(recorded)):
        tally.lost.append(f"{workflow_id}: transition {seq} ({expected[seq]}) not recorded")
    last = max(expected, default=0)
    if petition.last_seq != last or petition.stage != status.stage:
        tally.lost.append(f"{workflow_id}: read model at seq {petition.last_seq} "
                          f"({petition.stage}), workflow at {last} ({status.stage})")

    by_application = Counter(no for no, _, _ in payments)
    tally.payments += len(payments)
    for no, count in by_application.items():
        if count > 1:
            tally.duplicated.append(f"{workflow_id}: application {no} paid {count} times")
    paid = {a.application_no: a for a in status.assistance if a.status == "paid"}
    for no, ref, amount in payments:
        app = paid.get(no)
        if app is None:
            tally.duplicated.append(f"{workflow_id}: application {no} paid ({ref}) but not "
                                    "paid in the workflow")
        elif (app.payment_ref, app.amount_yuan) != (ref, amount):
            tally.duplicated.append(f"{workflow_id}: application {no}: ledger {ref} {amount}, "
                                    f"workflow {app.payment_ref} {app.amount_yuan}")
    for no in sorted(set(paid) - set(by_application)):
        tally.lost.append(f"{workflow_id}: application {no} paid in the workflow, not in the "
                          "ledger")

    transfers = sum(1 for e in timeline if e.action is Action.TRANSFER)
    tally.transfers += len(orders)
    if len(orders) > transfers:
        tally.duplicated.append(f"{workflow_id}: {len(orders)} transfer orders for "
                                f"{transfers} transfers")
    elif len(orders) < transfers:
        tally.lost.append(f"{workflow_id}: {len(orders)} transfer orders for "
                          f"{transfers} transfers")


async def check_ledger(client: Client, sessions: async_sessionmaker[AsyncSession],
                       workflow_ids: list[str], *, patience: float = 60.0) -> Tally:
    """Audit records are written in batches: wait (up to `patience`) for the read side to
    converge, then report what is still missing or doubled."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    while True:
        tally = Tally()
        for workflow_id in workflow_ids:
            await _one(client, sessions, workflow_id, tally)
        if tally.clean or loop.time() > deadline:
            return tally
        await asyncio.sleep(0.5)


def summary(tally: Tally) -> dict[str, Any]:
    return {"petitions": tally.petitions, "transitions_checked": tally.transitions,
            "payments_checked": tally.payments, "transfer_orders_checked": tally.transfers,
            "lost": len(tally.lost), "duplicated": len(tally.duplicated)}


async def retried_activities(client: Client, workflow_ids: list[str]) -> dict[str, int]:
    """Activities that needed more than one attempt (a crash or an outage interrupted
    them), by type, read from the histories: the faults the drill actually landed."""
    from temporalio.api.enums.v1 import EventType

    retried: Counter[str] = Counter()
    for workflow_id in workflow_ids:
        scheduled: dict[int, str] = {}
        async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                scheduled[event.event_id] = \
                    event.activity_task_scheduled_event_attributes.activity_type.name
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                started = event.activity_task_started_event_attributes
                if started.attempt > 1:
                    retried[scheduled.get(started.scheduled_event_id, "?")] += started.attempt - 1
    return dict(retried)
