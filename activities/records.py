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

from activities.common import integrity_refusal, lateness, refuse
from activities.contracts import (
    TransitionBatch,
)
from adapters.tables import Petition, PetitionEvent
from domain.case import (
    TransitionRecord,
)
from domain.lifecycle import LAPSE_ACTIONS, TABLE
from domain.models import Action, Command, free_text_fields, free_text_keys
from observability import metrics
from security.sealing import Vault

LAPSED = frozenset(LAPSE_ACTIONS.values())
# In a lapse's audit detail (ISO 8601): when the timer that lapsed the window was due.
TIMER_DUE_AT = "timer_due_at"


def event_key(record: TransitionRecord) -> str:
    """A record's idempotency key: its petition, its action sequence, its action."""
    key = f"{record.workflow_id}:{record.seq}:{record.action}"
    if not record.accepted:
        key += f":refused:{record.detail.get('refusal_no', record.at.isoformat())}"
    return key


class TransitionRecorder:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], vault: Vault):
        self._sessions = sessions
        self._vault = vault

    @activity.defn
    async def record_transitions(self, batch: TransitionBatch) -> int:
        """Audit rows and the read model's newest state in one transaction."""
        return await write_transitions(self._sessions, self._vault, batch.records)


def split_detail(action: str, detail: dict[str, Any]
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(what reports may query, the free text people wrote -- stored sealed): the free
    text of the action's own command (`domain.models.FreeText`); absent text is left out."""
    command = _command_of(action)
    free = free_text_fields(command) if command is not None else free_text_keys()
    return ({k: v for k, v in detail.items() if k not in free},
            {k: v for k, v in detail.items() if k in free and v is not None})


def _command_of(action: str) -> type[Command] | None:
    try:
        row = TABLE.get(Action(action))
    except ValueError:
        return None
    return row.command if row is not None else None


async def sealed_detail(vault: Vault, key: str, free: dict[str, Any]) -> bytes | None:
    return await vault.seal_json(free, f"petition_events.detail:{key}") if free else None


async def open_detail(vault: Vault, event: PetitionEvent) -> dict[str, Any]:
    """An audit row's whole detail: the structured part and its opened free text."""
    if event.detail_sealed is None:
        return dict(event.detail)
    free = await vault.open_json(event.detail_sealed,
                                 f"petition_events.detail:{event.idempotency_key}")
    return {**event.detail, **free}


async def write_transitions(
    sessions: async_sessionmaker[AsyncSession], vault: Vault, records: list[TransitionRecord]
) -> int:
    """Write audit rows (each once, by its key) and move the read model forward."""
    if not records:
        return 0
    rows = [await _row(vault, record) for record in records]
    merged: dict[str, Any] = {}
    last_seq: int | None = None
    for record in records:
        if record.accepted and record.read_model:
            merged.update(record.read_model)  # in order: later states win
            last_seq = record.seq
    async with sessions() as session:
        try:
            inserted = set((await session.execute(
                insert(PetitionEvent).values(rows)
                .on_conflict_do_nothing(index_elements=["idempotency_key"])
                .returning(PetitionEvent.idempotency_key))).scalars())
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
    for record in records:
        # A window's deadline fired; counted by the batch that wrote its row, not by a
        # retry or a repeated batch that found it.
        if record.accepted and record.action in LAPSED and event_key(record) in inserted:
            metrics.deadline_fired("lapse", lateness(record.at, lapse_due(record)))
    return len(rows)


def lapse_due(record: TransitionRecord) -> datetime | None:
    """The instant the workflow's timer for a lapse was due (`TIMER_DUE_AT` in the
    record's detail; none in records written before the workflow added it)."""
    due = record.detail.get(TIMER_DUE_AT)
    return datetime.fromisoformat(due) if isinstance(due, str) else None


READ_MODEL_COLUMNS = frozenset(
    c.name for c in Petition.__table__.columns
    if not c.name.endswith(("_sealed", "_index"))
) - {"id", "intake_id", "workflow_id", "registration_no", "matter_key",
     "attached_to", "last_seq", "updated_at"}


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


async def _row(vault: Vault, record: TransitionRecord) -> dict[str, Any]:
    key = event_key(record)
    detail, free = split_detail(record.action, record.detail)
    return {
        "petition_id": record.petition_id, "workflow_id": record.workflow_id,
        "idempotency_key": key, "seq": record.seq, "action": record.action.value,
        "actor_id": record.actor.id, "actor_role": record.actor.role.value,
        "actor_unit": record.actor.unit,
        "from_stage": record.from_stage.value if record.from_stage else None,
        "to_stage": record.to_stage.value if record.to_stage else None,
        "accepted": record.accepted, "refusal": record.refusal, "detail": detail,
        "detail_sealed": await sealed_detail(vault, key, free),
        "at": record.at,
    }
