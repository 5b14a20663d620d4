"""Who may see or act on a case, checked by the service before anything is forwarded.

Staff: the units that registered, hold or answer for the case, the organs above them (a
review lies with a superior organ), the case's handler and leader, and the leaders who
supervise its units. The workflow's own guard then checks the exact row (stage, role,
unit). A petitioner: only the case their token is bound to, only the petitioner's
actions. An intake client: registers; it acts on nothing."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from adapters.tables import Petition, Unit
from domain.models import Action, Actor, Role
from domain.rules import Refusal
from service.auth.principal import Principal
from service.context import ServiceContext
from service.problems import Problem

PETITIONER_ACTIONS = frozenset({Action.RATE, Action.REQUEST_REVIEW, Action.REQUEST_RE_REVIEW,
                                Action.WITHDRAW, Action.ADD_NOTE})
MAX_DEPTH = 10


async def case_row(ctx: ServiceContext, registration_no: str) -> Petition:
    async with ctx.sessions() as session:
        row = await session.scalar(select(Petition).where(
            Petition.registration_no == registration_no))
    if row is None:
        raise Problem(404, f"no petition with registration number {registration_no!r}",
                      kind="not-found")
    return row


async def _above(session: AsyncSession, codes: set[str]) -> tuple[set[str], set[str]]:
    """The units above `codes` (parent, superior bureau, line superior) and the leaders
    supervising any of them or the units above."""
    seen: set[str] = set()
    leaders: set[str] = set()
    frontier = set(codes)
    for _ in range(MAX_DEPTH):
        if not frontier:
            break
        units = (await session.scalars(select(Unit).where(Unit.code.in_(frontier)))).all()
        seen |= frontier
        frontier = set()
        for unit in units:
            if unit.supervising_leader_id:
                leaders.add(unit.supervising_leader_id)
            for up in (unit.parent_code, unit.superior_bureau_code, unit.line_parent_code):
                if up and up not in seen:
                    frontier.add(up)
    return seen - codes, leaders


async def staff_may_see(ctx: ServiceContext, actor: Actor, row: Petition) -> bool:
    if actor.id in (row.leader_id, row.handler_id):
        return True
    case_units = {u for u in (row.registered_unit, row.holding_unit, row.responsible_unit)
                  if u}
    if actor.unit in case_units:
        return True
    async with ctx.sessions() as session:
        above, leaders = await _above(session, case_units)
    return actor.unit in above or (actor.role is Role.LEADER and actor.id in leaders)


async def unit_refusal(ctx: ServiceContext, actor: Actor, unit: str) -> str | None:
    """Staff see a unit's lists and reports if they belong to it or to a unit above it."""
    if actor.unit == unit:
        return None
    async with ctx.sessions() as session:
        if await session.get(Unit, unit) is None:
            return f"no unit {unit!r} in the directory"
        above, leaders = await _above(session, {unit})
    if actor.unit in above or (actor.role is Role.LEADER and actor.id in leaders):
        return None
    return f"{actor.id} of {actor.unit} is not staff of {unit} or a unit above it"


def petitioner_actor(row: Petition) -> Actor:
    return Actor(id=f"petitioner-{row.registration_no}", role=Role.PETITIONER,
                 unit=row.registered_unit)


async def actor_for(ctx: ServiceContext, who: Principal, row: Petition,
                    action: Action | None) -> tuple[Actor | None, Refusal | None]:
    """The actor to act as on this case, or why the caller may not (None action: read)."""
    if who.kind == "petitioner":
        if who.workflow_id != row.workflow_id:
            return None, Refusal("petitioner", "a query code opens only its own case")
        if action is not None and action not in PETITIONER_ACTIONS:
            return petitioner_actor(row), Refusal(
                "role", f"{action} is not the petitioner's to take")
        return petitioner_actor(row), None
    if who.kind == "client" or who.actor is None:
        return None, Refusal("role", "an intake client registers petitions; it does not "
                             "act on them")
    if not await staff_may_see(ctx, who.actor, row):
        return who.actor, Refusal("case", f"{who.actor.id} of {who.actor.unit} has no part "
                                  "in this case")
    return who.actor, None
