"""Transfer work orders (转送 / 交办) and diversions to a competent organ (诉访分离)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.common import refuse, write_once
from domain.case import TransferOrderInput, TransferOrderResult
from domain.persistence.directory import unit_facts
from domain.persistence.tables import TransferOrder


class TransferDesk:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]):
        self._sessions = sessions

    @activity.defn
    async def issue_transfer_order(self, order: TransferOrderInput) -> TransferOrderResult:
        if order.to_unit == order.from_unit:
            raise refuse("transfer", f"a case cannot be transferred to its own unit {order.to_unit}")
        async with self._sessions() as session:
            to_unit = await unit_facts(session, order.to_unit)
        if to_unit is None:
            raise refuse("directory", f"unknown unit {order.to_unit!r}")
        key = f"{order.workflow_id}:{order.seq}:{order.kind}"
        number = f"{order.kind[:2].upper()}-{order.workflow_id.rsplit('-', 1)[-1]}-{order.seq}"

        async def write(session: AsyncSession) -> TransferOrderResult:
            session.add(TransferOrder(
                idempotency_key=key, order_no=number, petition_id=order.petition_id,
                kind=order.kind, from_unit=order.from_unit, to_unit=order.to_unit,
                instructions=order.instructions, issued_at=order.issued_at,
            ))
            await session.flush()
            return TransferOrderResult(order_no=number, to_unit=to_unit)

        def found(row: TransferOrder) -> TransferOrderResult:
            return TransferOrderResult(order_no=row.order_no, to_unit=to_unit)

        return await write_once(self._sessions, TransferOrder, key, write, found)
