"""The audit trail and the read model, written in batches.

A petition flooded with notes or repeat visits would otherwise spend one activity (and
its history events) per note; the workflow queues its records and writes whatever is
waiting in one transaction. Each row keeps its own idempotency key, so a retried or
repeated batch (an activity abandoned by continue-as-new is sent again by the next run)
adds nothing twice, and the read model only ever moves forward (`last_seq`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.common import integrity_refusal
from activities.registry import _read_model_values
from domain.case import TransitionBatch, TransitionRecord
from domain.persistence.tables import Petition, PetitionEvent


def event_key(record: TransitionRecord) -> str:
    """The same key `PetitionRegistry.record_transition` gives a single record."""
    key = f"{record.workflow_id}:{record.seq}:{record.action}"
    if not record.accepted:
        key += f":refused:{record.detail.get('refusal_no', record.at.isoformat())}"
    return key


class TransitionRecorder:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]):
        self._sessions = sessions

    @activity.defn
    async def record_transitions(self, batch: TransitionBatch) -> int:
        """Audit rows and the read model's newest state in one transaction."""
        if not batch.records:
            return 0
        rows = [_row(record) for record in batch.records]
        merged: dict[str, Any] = {}
        last_seq: int | None = None
        for record in batch.records:
            if record.accepted and record.read_model:
                merged.update(record.read_model)  # in order: later states win
                last_seq = record.seq
        async with self._sessions() as session:
            try:
                await session.execute(
                    insert(PetitionEvent).values(rows)
                    .on_conflict_do_nothing(index_elements=["idempotency_key"]))
            except IntegrityError as err:
                # Not a duplicate (those are skipped): a missing petition would fail the
                # same way on every retry, so it is a refusal, not an endless retry.
                raise integrity_refusal(err, "audit batch") from None
            if last_seq is not None:
                # Never let an older batch overwrite a newer state.
                await session.execute(
                    update(Petition)
                    .where(Petition.id == batch.records[0].petition_id,
                           Petition.last_seq <= last_seq)
                    .values(**_read_model_values(merged), last_seq=last_seq,
                            updated_at=func.now()))
            await session.commit()
        return len(rows)


def _row(record: TransitionRecord) -> dict[str, Any]:
    return {
        "petition_id": record.petition_id, "workflow_id": record.workflow_id,
        "idempotency_key": event_key(record), "seq": record.seq, "action": record.action.value,
        "actor_id": record.actor.id, "actor_role": record.actor.role.value,
        "actor_unit": record.actor.unit,
        "from_stage": record.from_stage.value if record.from_stage else None,
        "to_stage": record.to_stage.value if record.to_stage else None,
        "accepted": record.accepted, "refusal": record.refusal, "detail": record.detail,
        "at": record.at,
    }
