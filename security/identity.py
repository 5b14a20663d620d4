"""Is the actor who they claim to be? Checked against the organisation directory.

The workflow's guard checks role and unit against the case, but it takes the actor's
claimed role on trust and cannot do I/O to check it. So the client path
(`starter.actions.take_action`) asks the directory first: a handler claiming to be the
unit head, or a stranger claiming a unit, is refused and audited before anything is sent.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from adapters.tables import Person, Unit
from domain.models import Actor, Role

MAX_DIRECTORY_DEPTH = 10


def _refused(message: str) -> str:
    return f"refused [identity]: {message}"


async def _supervises(session: AsyncSession, leader_id: str, unit_code: str) -> bool:
    """A leader acts for the units whose supervising leader they are, up the chain."""
    current: str | None = unit_code
    for _ in range(MAX_DIRECTORY_DEPTH):
        if current is None:
            return False
        unit = await session.get(Unit, current)
        if unit is None:
            return False
        if unit.supervising_leader_id == leader_id:
            return True
        current = unit.parent_code
    return False


async def identity_refusal(sessions: async_sessionmaker[AsyncSession], actor: Actor) -> str | None:
    """None if the directory bears out the actor's role and unit, else why not."""
    if actor.role is Role.SYSTEM:
        return _refused("the system role belongs to the workflow's own clocks; no person "
                        "may claim it")
    async with sessions() as session:
        person = await session.get(Person, actor.id)
        if actor.role is Role.PETITIONER:
            # Petitioners are not in the staff directory; the intake channel vouches for them.
            # Staff may not slip into the petitioner's shoes (a review request, a rating).
            if person is not None:
                return _refused(f"{actor.id} is staff of {person.unit_code} and cannot act "
                                "as the petitioner")
            return None
        if person is None:
            return _refused(f"{actor.id} is not in the organisation directory")
        unit = await session.get(Unit, actor.unit)
        if unit is None:
            return _refused(f"unknown unit {actor.unit!r}")
        if actor.role is Role.UNIT_HEAD:
            if unit.head_id != actor.id:
                return _refused(f"{actor.id} claims to head {actor.unit}, whose head in the "
                                f"directory is {unit.head_id or 'nobody'}")
            return None
        if actor.role is Role.LEADER:
            if person.role != Role.LEADER.value:
                return _refused(f"{actor.id} is a {person.role} in the directory, not a leader")
            if person.unit_code != actor.unit and not await _supervises(
                    session, actor.id, actor.unit):
                return _refused(f"leader {actor.id} does not supervise {actor.unit}")
            return None
        allowed = {Role.HANDLER: {"handler", "unit_head"}}.get(actor.role, {actor.role.value})
        if person.role not in allowed:
            return _refused(f"{actor.id} is a {person.role} in the directory, not a "
                            f"{actor.role}")
        if person.unit_code != actor.unit:
            return _refused(f"{actor.id} belongs to {person.unit_code}, not {actor.unit}")
    return None
