"""Issue 6: authorization end to end. An actor from another unit, a handler acting as the
head, a forged role or unit, a stranger, staff posing as the petitioner -- each refused
with a clear message and audited (a `petition_events` row with accepted = false), and the
petition unchanged. Real Temporal dev server, real PostgreSQL, the sample directory."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from adapters.tables import PetitionEvent
from devstack.temporal_server import settled
from domain.models import (
    Accept,
    Action,
    Actor,
    Command,
    DecideAssistance,
    DecideExtension,
    Rate,
    Reply,
    RequestAssistance,
    RequestExtension,
    Role,
    Stage,
)
from security.identity import identity_refusal
from starter.actions import ActionError, take_action
from tests.cli import petition
from tests.conftest import make_intake
from workflows.petition import PetitionWorkflow

UNIT = "QS-HRSS"
HANDLER = Actor(id="QS-HRSS.h1", role=Role.HANDLER, unit=UNIT)
HEAD = Actor(id="QS-HRSS.head", role=Role.UNIT_HEAD, unit=UNIT)
OTHER_UNIT_HANDLER = Actor(id="QS-NR.h1", role=Role.HANDLER, unit="QS-NR")
PETITIONER = Actor(id="petitioner-7", role=Role.PETITIONER, unit="public")


async def _refusals(sessions: Any, workflow_id: str) -> list[PetitionEvent]:
    async with sessions() as session:
        return list(await session.scalars(
            select(PetitionEvent).where(PetitionEvent.workflow_id == workflow_id,
                                        PetitionEvent.accepted.is_(False))
            .order_by(PetitionEvent.id)))


async def _refused(client: Any, sessions: Any, workflow_id: str, action: Action,
                   command: Command, *, match: str, as_signal: bool = False) -> PetitionEvent:
    """Take the action through the client path; it must be refused, audited, and change
    nothing in the workflow (not even its history)."""
    handle = client.get_workflow_handle_for(PetitionWorkflow.run, workflow_id)
    before = await handle.query(PetitionWorkflow.status)
    # The notices of the last action follow its answer: count once they are sent.
    assert await settled(client, workflow_id)
    events_before = len([e async for e in handle.fetch_history_events()])
    with pytest.raises(ActionError, match=match) as refused:
        await take_action(client, sessions, workflow_id, action, command, as_signal=as_signal)
    assert "\n" not in str(refused.value)
    after = await handle.query(PetitionWorkflow.status)
    assert after == before
    assert len([e async for e in handle.fetch_history_events()]) == events_before
    row = (await _refusals(sessions, workflow_id))[-1]
    assert (row.action, row.actor_id, row.actor_role, row.actor_unit) == (
        action.value, command.actor.id, command.actor.role, command.actor.unit)
    assert row.accepted is False and row.refusal == str(refused.value)
    return row


async def test_strangers_impostors_and_the_wrong_role_are_refused_and_audited(
        dev_env, running_worker, petitions, sessions) -> None:
    client = dev_env.client
    async with running_worker(client):
        handle = await petitions.start(dev_env, make_intake(unit=UNIT))
        wf = handle.id

        # An actor from another unit (a real handler, of the wrong unit): the workflow's
        # guard refuses, the client audits.
        row = await _refused(client, sessions, wf, Action.ACCEPT,
                             Accept(actor=OTHER_UNIT_HANDLER), match=r"unit:holding")
        assert row.detail == {"via": "update"}

        await take_action(client, sessions, wf, Action.ACCEPT, Accept(actor=HANDLER))
        await take_action(client, sessions, wf, Action.REQUEST_EXTENSION, RequestExtension(
            actor=HANDLER, days=10, reason="需调取档案 records needed"))

        # A handler acting as the head, openly: the role guard refuses.
        await _refused(client, sessions, wf, Action.DECIDE_EXTENSION, DecideExtension(
            actor=HANDLER, approved=True, reason_to_petitioner="x"),
            match="decide_extension may be taken by unit_head, not handler")

        # A forged role: the handler claims to be the unit head. The workflow alone would
        # believe it; the directory does not.
        forged = Actor(id=HANDLER.id, role=Role.UNIT_HEAD, unit=UNIT)
        row = await _refused(client, sessions, wf, Action.DECIDE_EXTENSION, DecideExtension(
            actor=forged, approved=True, reason_to_petitioner="x"),
            match=r"refused \[identity\]: QS-HRSS.h1 claims to head QS-HRSS, whose head in "
                  r"the directory is QS-HRSS.head")
        assert row.detail == {"via": "identity"}
        # ... also as a fire-and-forget signal: refused before it is sent.
        await _refused(client, sessions, wf, Action.DECIDE_EXTENSION, DecideExtension(
            actor=forged, approved=True, reason_to_petitioner="x"), match="claims to head",
            as_signal=True)
        # Another unit's head claiming this unit.
        await _refused(client, sessions, wf, Action.DECIDE_EXTENSION, DecideExtension(
            actor=Actor(id="QS-NR.head", role=Role.UNIT_HEAD, unit=UNIT), approved=True,
            reason_to_petitioner="x"), match="whose head in the directory is QS-HRSS.head")
        # A forged unit: a real handler of QS-NR claiming to be of QS-HRSS.
        await _refused(client, sessions, wf, Action.REPLY, Reply(
            actor=Actor(id="QS-NR.h1", role=Role.HANDLER, unit=UNIT), opinion="x"),
            match="QS-NR.h1 belongs to QS-NR, not QS-HRSS")
        # Somebody the directory has never heard of.
        await _refused(client, sessions, wf, Action.REPLY, Reply(
            actor=Actor(id="mallory", role=Role.HANDLER, unit=UNIT), opinion="x"),
            match="mallory is not in the organisation directory")
        # Staff posing as the petitioner; anybody claiming the workflow's own role.
        await _refused(client, sessions, wf, Action.WITHDRAW, _withdraw(HANDLER.id),
                       match="staff of QS-HRSS and cannot act as the petitioner")
        await _refused(client, sessions, wf, Action.WITHDRAW, _withdraw("clock", Role.SYSTEM),
                       match="system role")
        # A leader who does not supervise this unit; one who does (through YZ-HRSS) may.
        await take_action(client, sessions, wf, Action.REQUEST_ASSISTANCE, RequestAssistance(
            actor=HANDLER, kind="hardship", amount_yuan=Decimal("3000"), reason="生活困难"))
        await _refused(client, sessions, wf, Action.DECIDE_ASSISTANCE, DecideAssistance(
            actor=Actor(id="QS-LDR1", role=Role.LEADER, unit=UNIT), application_no=1,
            approved=True, reason="x"), match="leader QS-LDR1 does not supervise QS-HRSS")

        # The real head and the real leader are let through.
        status = await take_action(client, sessions, wf, Action.DECIDE_EXTENSION,
                                   DecideExtension(actor=HEAD, approved=True,
                                                   reason_to_petitioner="案情复杂"))
        assert status is not None and status.extension_days == 10
        status = await take_action(client, sessions, wf, Action.DECIDE_ASSISTANCE,
                                   DecideAssistance(actor=Actor(id="YZ-LDR1", role=Role.LEADER,
                                                                unit=UNIT),
                                                    application_no=1, approved=True,
                                                    reason="同意 approved"))
        assert status is not None and status.assistance[0].status == "paid"
        await take_action(client, sessions, wf, Action.REPLY, Reply(actor=HANDLER,
                                                                   opinion="已处理 handled"))
        status = await take_action(client, sessions, wf, Action.RATE,
                                   Rate(actor=PETITIONER, satisfaction="satisfied"))
        assert status is not None and status.stage is Stage.REPLIED

    refusals = await _refusals(sessions, wf)
    assert len(refusals) == 10  # every refusal above, once each
    assert sum(r.detail.get("via") == "identity" for r in refusals) == 8


def _withdraw(actor_id: str, role: Role = Role.PETITIONER) -> Command:
    from domain.models import Withdraw

    return Withdraw(actor=Actor(id=actor_id, role=role, unit=UNIT), reason="x")


@pytest.mark.cli
async def test_petition_act_refuses_a_forged_head_in_one_line(
        dev_env, running_worker, petitions, sessions, db_url, task_queue) -> None:
    async with running_worker(dev_env.client):
        handle = await petitions.start(dev_env, make_intake(unit=UNIT))
        result = await petition(
            "act", handle.id, "accept", "--actor", f"{HANDLER.id}:unit_head:{UNIT}",
            db_url=db_url, address=dev_env.client.service_client.config.target_host,
            task_queue=task_queue)
        status = await handle.query(PetitionWorkflow.status)
    assert result.code == 2 and result.err.count("\n") == 1, result.err
    assert result.err.startswith("error: refused [identity]: QS-HRSS.h1 claims to head")
    assert status.stage is Stage.REGISTERED
    [row] = await _refusals(sessions, handle.id)
    assert row.actor_role == "unit_head" and row.detail == {"via": "identity"}


@pytest.mark.parametrize(("actor", "refusal"), [
    (HANDLER, None),
    (HEAD, None),
    (Actor(id="QS-HRSS.head", role=Role.HANDLER, unit=UNIT), None),  # a head may handle
    (Actor(id="YZ-LDR1", role=Role.LEADER, unit="YZ-XFJ"), None),  # their own unit
    (Actor(id="QS-XFJ.clerk1", role=Role.INTAKE_CLERK, unit="QS-XFJ"), None),
    (PETITIONER, None),
    (Actor(id="QS-HRSS.h1", role=Role.LEADER, unit=UNIT), "is a handler in the directory"),
    (Actor(id="QS-HRSS.h1", role=Role.SUPERVISOR, unit=UNIT), "not a supervisor"),
    (Actor(id="QS-HRSS.h1", role=Role.HANDLER, unit="NOWHERE"), "unknown unit"),
    (Actor(id="QS-XFJ.clerk1", role=Role.INTAKE_CLERK, unit=UNIT), "belongs to QS-XFJ"),
])
async def test_the_directory_decides_who_may_claim_what(sessions, actor, refusal) -> None:
    found = await identity_refusal(sessions, actor)
    if refusal is None:
        assert found is None
    else:
        assert found is not None and refusal in found
