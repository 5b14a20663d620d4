"""Transfer work orders (转送 / 交办) and diversions to a competent organ (诉访分离)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.common import refuse, write_once
from activities.contracts import (
    TransferOrderInput,
    TransferOrderResult,
)
from activities.notices import sealed_notice
from adapters.directory import unit_facts
from adapters.tables import Petition, TransferOrder
from security.sealing import Vault

# Work-order number prefixes: 转送 (forwarded), 交办 (assigned, report back), 分流 (diverted).
ORDER_PREFIX = {"transfer": "ZS", "assignment": "JB", "diversion": "FL"}
# A diversion leaves the petition track for a competent organ, never another petition desk.
DIVERSION_ORGAN_KINDS = frozenset({"court", "procuratorate", "public_security",
                                   "discipline_inspection", "government_department",
                                   "party_committee"})


ORDER_NO_MAX = 64  # transfer_orders.order_no


def order_number(kind: str, registration_no: str, petition_id: int, seq: int) -> str:
    """Unique because the registration number is: `ZS-QS-XFJ-2026-000012-3`. A unit code
    too long for that falls back to the petition's id (`ZS-P42-3`), unique just the same."""
    number = f"{ORDER_PREFIX[kind]}-{registration_no}-{seq}"
    return number if len(number) <= ORDER_NO_MAX else f"{ORDER_PREFIX[kind]}-P{petition_id}-{seq}"


class TransferDesk:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], vault: Vault):
        self._sessions = sessions
        self._vault = vault

    @activity.defn
    async def issue_transfer_order(self, order: TransferOrderInput) -> TransferOrderResult:
        if order.kind not in ORDER_PREFIX:
            raise refuse("transfer", f"unknown order kind {order.kind!r}; one of "
                         f"{', '.join(ORDER_PREFIX)}")
        if order.to_unit == order.from_unit:
            raise refuse("transfer",
                         f"a case cannot be transferred to its own unit {order.to_unit}")
        async with self._sessions() as session:
            to_unit = await unit_facts(session, order.to_unit)
            registration_no = await session.scalar(
                select(Petition.registration_no).where(Petition.id == order.petition_id))
        if to_unit is None:
            raise refuse("directory", f"unknown unit {order.to_unit!r}")
        if registration_no is None:
            raise refuse("transfer", f"no petition {order.petition_id}")
        if order.kind == "diversion" and to_unit.kind not in DIVERSION_ORGAN_KINDS:
            raise refuse("divert", f"{to_unit.code} is a {to_unit.kind}, not a competent organ "
                         "for a statutory procedure")
        key = f"{order.workflow_id}:{order.seq}:{order.kind}"
        number = order_number(order.kind, registration_no, order.petition_id, order.seq)

        async def write(session: AsyncSession) -> TransferOrderResult:
            session.add(TransferOrder(
                idempotency_key=key, order_no=number, petition_id=order.petition_id,
                kind=order.kind, from_unit=order.from_unit, to_unit=order.to_unit,
                instructions_sealed=await self._vault.seal(
                    order.instructions.encode(), f"transfer_orders.instructions:{key}")
                if order.instructions else None, issued_at=order.issued_at,
            ))
            if order.kind == "diversion":
                # The lifecycle notifies a receiving unit of a transfer itself; a diversion
                # order reaches its organ only through this notice, written in the same
                # transaction: never an order without its notice, nor a notice twice.
                session.add(await sealed_notice(
                    self._vault, idempotency_key=f"{key}:notice", petition_id=order.petition_id,
                    recipient_kind="unit", recipient_ref=to_unit.code,
                    template="diversion_order",
                    body=f"Diversion order {number} for case {registration_no} from "
                         f"{order.from_unit}: {order.instructions or ''}".rstrip(": "),
                    created_at=order.issued_at,
                ))
            await session.flush()
            return TransferOrderResult(order_no=number, to_unit=to_unit)

        def found(row: TransferOrder) -> TransferOrderResult:
            return TransferOrderResult(order_no=row.order_no, to_unit=to_unit)

        return await write_once(self._sessions, TransferOrder, key, write, found)
