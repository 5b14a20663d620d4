"""Escalation of overdue cases: level 1 to the supervising leader, level 2 to the
superior petition bureau (督办). Recipients come from the organisation directory."""

from __future__ import annotations

import contextlib
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.common import lateness, refuse, write_or_find
from activities.contracts import (
    EscalationInput,
    EscalationResult,
)
from activities.notices import sealed_notice
from adapters.directory import unit_facts
from adapters.tables import Escalation, Petition
from domain.case import (
    UnitFacts,
)
from observability import metrics
from security.sealing import Vault

MAX_DIRECTORY_DEPTH = 10
BEIJING = ZoneInfo("Asia/Shanghai")


def _beijing(at: datetime) -> str:
    return f"{at.astimezone(BEIJING):%Y-%m-%d %H:%M} (Beijing time)"


async def _ancestors(session: AsyncSession, code: str) -> list[UnitFacts]:
    """The unit, then its parent, and so on up the directory."""
    chain: list[UnitFacts] = []
    current: str | None = code
    while current is not None and len(chain) < MAX_DIRECTORY_DEPTH:
        facts = await unit_facts(session, current)
        if facts is None:
            break
        chain.append(facts)
        current = facts.parent
    return chain


async def escalation_target(
    session: AsyncSession, unit: str, level: int
) -> tuple[str | None, str | None]:
    """(person, unit) who receives a level-`level` escalation for `unit`.

    A unit without its own supervising leader or superior bureau inherits its
    parent's: a township's case goes to the county leader who supervises it.
    """
    if level not in (1, 2):
        raise refuse("escalation", f"escalation level {level}: only 1 (leader) and 2 "
                     "(superior bureau) exist")
    chain = await _ancestors(session, unit)
    if not chain:
        raise refuse("directory", f"unknown unit {unit!r}")
    if level == 1:
        for facts in chain:
            if facts.supervising_leader:
                return facts.supervising_leader, facts.code
    else:
        for facts in chain:
            if facts.superior_bureau:
                bureau = await unit_facts(session, facts.superior_bureau)
                return (bureau.head if bureau else None), facts.superior_bureau
    raise refuse("directory", f"no level-{level} escalation target above unit {unit!r}")


async def escalation_recipient(
    session: AsyncSession, unit: str, level: int
) -> tuple[str | None, str | None]:
    """Like `escalation_target`, but an overdue case must reach someone: a directory
    gap at one level falls back to the other level, then to the unit's own head,
    instead of failing the case."""
    try:
        return await escalation_target(session, unit, level)
    except ApplicationError:
        if level not in (1, 2):
            raise
    with contextlib.suppress(ApplicationError):
        return await escalation_target(session, unit, 3 - level)
    facts = await unit_facts(session, unit)
    if facts is None:
        raise refuse("directory", f"unknown unit {unit!r}")
    return facts.head, facts.code


class EscalationDesk:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], vault: Vault):
        self._sessions = sessions
        self._vault = vault

    @activity.defn
    async def escalate(self, escalation: EscalationInput) -> EscalationResult:
        key = (f"{escalation.workflow_id}:escalate:{escalation.clock}:{escalation.level}:"
               f"{escalation.due_at.isoformat()}")

        async def write(session: AsyncSession) -> EscalationResult:
            person, unit = await escalation_recipient(session, escalation.unit,
                                                      escalation.level)
            session.add(Escalation(
                idempotency_key=key, petition_id=escalation.petition_id, clock=escalation.clock,
                level=escalation.level, unit_code=escalation.unit, escalated_to_person=person,
                escalated_to_unit=unit, due_at=escalation.due_at, escalated_at=escalation.at,
            ))
            what = "supervising leader" if escalation.level == 1 else "superior bureau (督办)"
            session.add(await sealed_notice(
                self._vault, idempotency_key=f"{key}:notice", petition_id=escalation.petition_id,
                recipient_kind="person" if person else "unit",
                recipient_ref=person or unit or escalation.unit, template="escalation",
                body=(f"Case {escalation.registration_no}: the {escalation.clock} deadline of "
                      f"{escalation.unit} passed at {_beijing(escalation.due_at)}; "
                      f"escalated to the {what} (level {escalation.level})."),
                created_at=escalation.at,
            ))
            # The read model shows the case overdue now, not only at its next transition.
            await session.execute(
                update(Petition).where(Petition.id == escalation.petition_id)
                .values(overdue=True, was_overdue=True,
                        escalation_level=func.greatest(Petition.escalation_level,
                                                       escalation.level)))
            await session.flush()
            return EscalationResult(level=escalation.level, escalated_to_person=person,
                                    escalated_to_unit=unit)

        def found(row: Escalation) -> EscalationResult:
            return EscalationResult(level=row.level, escalated_to_person=row.escalated_to_person,
                                    escalated_to_unit=row.escalated_to_unit)

        result, written = await write_or_find(self._sessions, Escalation, key, write, found)
        if written:  # a retry that finds the row has been counted by the attempt that wrote it
            metrics.deadline_fired(f"escalation_{escalation.level}",
                                   lateness(escalation.at, escalation.timer_due_at))
        return result
