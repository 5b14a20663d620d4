"""Reading petitions back: the workflow's own view and the system of record."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from domain.persistence.tables import PetitionEvent
from workflows.petition import PetitionWorkflow


async def audit_trail(sessions: async_sessionmaker[AsyncSession],
                      workflow_id: str) -> list[dict[str, Any]]:
    async with sessions() as session:
        rows = await session.scalars(
            select(PetitionEvent).where(PetitionEvent.workflow_id == workflow_id)
            .order_by(PetitionEvent.at, PetitionEvent.id))
        return [{"at": r.at.isoformat(), "seq": r.seq, "action": r.action,
                 "actor": f"{r.actor_id}:{r.actor_role}:{r.actor_unit}",
                 "from": r.from_stage, "to": r.to_stage, "accepted": r.accepted,
                 "refusal": r.refusal} for r in rows]


async def show_petition(client: Client, sessions: async_sessionmaker[AsyncSession],
                        workflow_id: str) -> dict[str, Any]:
    handle = client.get_workflow_handle_for(PetitionWorkflow.run, workflow_id)
    status = await handle.query(PetitionWorkflow.status)
    return {"status": status.model_dump(mode="json"),
            "audit_trail": await audit_trail(sessions, workflow_id)}
