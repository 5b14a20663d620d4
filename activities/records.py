"""The audit trail and the read model, written in batches.

A petition flooded with notes or repeat visits would otherwise spend one activity (and
its history events) per note; the workflow queues its records and writes whatever is
waiting in one transaction. Each row keeps its own idempotency key, so a retried or
repeated batch (an activity abandoned by continue-as-new is sent again by the next run)
adds nothing twice, and the read model only ever moves forward (`last_seq`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.common import integrity_refusal, refuse
from activities.contracts import (
    TransitionBatch,
)
from adapters.tables import Petition, PetitionEvent
from domain.case import (
    TransitionRecord,
)


def event_key(record: TransitionRecord) -> str:
    """A record's idempotency key: its petition, its action sequence, its action."""
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
        return await write_transitions(self._sessions, batch.records)


async def write_transitions(
    sessions: async_sessionmaker[AsyncSession], records: list[TransitionRecord]
) -> int:
    """Write audit rows (each once, by its key) and move the read model forward."""
    if not records:
        return 0
    rows = [_row(record) for record in records]
    merged: dict[str, Any] = {}
    last_seq: int | None = None
    for record in records:
        if record.accepted and record.read_model:
            merged.update(record.read_model)  # in order: later states win
            last_seq = record.seq
    async with sessions() as session:
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
                .where(Petition.id == records[0].petition_id, Petition.last_seq <= last_seq)
                .values(**_read_model_values(merged), last_seq=last_seq,
                        updated_at=func.now()))
        await session.commit()
    return len(rows)


READ_MODEL_COLUMNS = frozenset(
    c.name for c in Petition.__table__.columns
) - {"id", "intake_id", "workflow_id", "registration_no", "petitioner", "content", "matter_key",
     "attachments", "attached_to", "last_seq", "updated_at"}


def _read_model_values(values: dict[str, Any]) -> dict[str, Any]:
    unknown = set(values) - READ_MODEL_COLUMNS
    if unknown:
        raise refuse("read_model", f"unknown read-model columns {sorted(unknown)}")
    return {k: _parse_time(k, v) for k, v in values.items()}


def _parse_time(column: str, value: Any) -> Any:
    if isinstance(value, str) and (column.endswith("_at") or column.endswith("_due")
                                   or column == "next_deadline"):
        return datetime.fromisoformat(value)
    return value


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
