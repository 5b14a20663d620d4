"""Escalation of an overdue deadline, in virtual time on the time-skipping server.

The handling deadline of a county department's case and of a township's case: a reminder
to the unit before it expires, level 1 to the supervising leader at expiry, level 2 to
the superior petition bureau (督办) a policy period later; `Overdue`, `EscalationLevel`
and `NextDeadline` current at every step (read with `describe()`: the Java server has no
visibility queries), and the escalation rows and notices in PostgreSQL addressed to the
right person from the organisation directory.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata

from adapters import search_attributes as sa
from domain.models import Action, ClockName, Stage
from domain.policy import load_profile
from tests.lifecycle_helpers import (
    CALENDAR,
    Case,
    clock,
    eventually,
    opened_notices,
    pg_fetch,
    sleep_until,
)

NATIONAL = load_profile("national")
SECOND = timedelta(seconds=1)


async def attributes(case: Case) -> dict[str, Any]:
    found = (await case.handle.describe()).typed_search_attributes
    return {key.name: found.get(key) for key in
            (sa.OVERDUE, sa.ESCALATION_LEVEL, sa.NEXT_DEADLINE, sa.PETITION_STAGE)}


async def attributes_become(case: Case, **expected: Any) -> dict[str, Any]:
    """Search attributes are upserted once the escalation activity has run: poll."""
    async def check() -> dict[str, Any] | None:
        now = await attributes(case)
        return now if all(now[k] == v for k, v in expected.items()) else None

    found = await eventually(check)
    assert found, (expected, await attributes(case))
    return found


async def escalations(db_url: str, workflow_id: str) -> list[dict[str, Any]]:
    rows = await pg_fetch(
        db_url, "SELECT e.level, e.clock, e.unit_code, e.escalated_to_person, "
        "e.escalated_to_unit, e.due_at FROM escalations e JOIN petitions p "
        "ON p.id = e.petition_id WHERE p.workflow_id = $1 ORDER BY e.level", workflow_id)
    return [dict(r) for r in rows]


async def notices(db_url: str, workflow_id: str, template: str) -> list[dict[str, Any]]:
    return await opened_notices(
        db_url, "SELECT n.recipient_kind, n.recipient_ref, n.idempotency_key, n.body_sealed, "
        "n.created_at FROM notices n JOIN petitions p ON p.id = n.petition_id "
        "WHERE p.workflow_id = $1 AND n.template = $2 ORDER BY n.id", workflow_id, template)


@pytest.mark.parametrize(("unit", "leader", "leader_unit", "bureau", "bureau_head"), [
    # A county department names no leader: its city department's deputy mayor supervises.
    ("QS-HRSS", "YZ-LDR1", "YZ-HRSS", "YZ-XFJ", "YZ-XFJ.head"),
    # A township: its county petition bureau's deputy county head, then that bureau.
    ("QS-T1", "QS-LDR1", "QS-XFJ", "QS-XFJ", "QS-XFJ.head"),
], ids=["county-department", "township"])
async def test_levels_one_and_two_fire_at_the_policy_times(
        unit, leader, leader_unit, bureau, bureau_head, ts_env, running_worker, petitions,
        db_url):
    async with running_worker(ts_env.client):
        case = await Case.start(ts_env, petitions, unit=unit)
        status = await case.act(Action.ACCEPT)
        accepted: datetime = (await case.last_entry(Action.ACCEPT)).at
        due = NATIONAL.deadline(ClockName.HANDLING, accepted, CALENDAR)
        reminder = NATIONAL.reminder_at(ClockName.HANDLING, due, CALENDAR)
        level2 = NATIONAL.level2_at(ClockName.HANDLING, due, CALENDAR)
        assert due and reminder and level2 and reminder < due < level2
        assert clock(status, ClockName.HANDLING).due_at == due
        await attributes_become(case, Overdue=False, EscalationLevel=0, NextDeadline=due,
                                PetitionStage="in_handling")

        await sleep_until(ts_env, reminder - SECOND)
        assert await notices(db_url, case.handle.id, "reminder") == []
        await ts_env.sleep(2 * SECOND)
        [reminded] = await eventually(lambda: notices(db_url, case.handle.id, "reminder"))
        assert (reminded["recipient_kind"], reminded["recipient_ref"]) == ("unit", unit)
        assert "handling opinion due" in reminded["body"]

        await sleep_until(ts_env, due - SECOND)
        assert await attributes(case) == {"Overdue": False, "EscalationLevel": 0,
                                          "NextDeadline": due, "PetitionStage": "in_handling"}
        assert await escalations(db_url, case.handle.id) == []
        await ts_env.sleep(2 * SECOND)
        await attributes_become(case, Overdue=True, EscalationLevel=1, NextDeadline=due)
        [first] = await eventually(lambda: escalations(db_url, case.handle.id))
        assert first == {"level": 1, "clock": "handling", "unit_code": unit,
                         "escalated_to_person": leader, "escalated_to_unit": leader_unit,
                         "due_at": due}

        await sleep_until(ts_env, level2 - SECOND)
        assert (await attributes(case))["EscalationLevel"] == 1
        assert len(await escalations(db_url, case.handle.id)) == 1
        await ts_env.sleep(2 * SECOND)
        await attributes_become(case, Overdue=True, EscalationLevel=2)
        rows = await eventually(lambda: _two(escalations(db_url, case.handle.id)))
        assert rows[1] == {
            "level": 2, "clock": "handling", "unit_code": unit,
            "escalated_to_person": bureau_head, "escalated_to_unit": bureau, "due_at": due}
        sent = await notices(db_url, case.handle.id, "escalation")
        assert [(n["recipient_kind"], n["recipient_ref"]) for n in sent] == [
            ("person", leader), ("person", bureau_head)]
        assert "level 2" in sent[1]["body"] and "督办" in sent[1]["body"]
        details = (await case.handle.query("__temporal_workflow_metadata",
                                           result_type=WorkflowMetadata)).current_details
        assert "OVERDUE, escalated to the superior bureau" in details, details

        # The opinion, late: the handling clock stops and the case is no longer overdue.
        status = await case.act(Action.REPLY)
        window = clock(status, ClockName.REVIEW_REQUEST).due_at
        await attributes_become(case, Overdue=False, EscalationLevel=0, NextDeadline=window,
                                PetitionStage=Stage.REPLIED.value)
    [row] = await pg_fetch(db_url, "SELECT overdue, was_overdue, escalation_level FROM "
                           "petitions WHERE workflow_id = $1", case.handle.id)
    assert dict(row) == {"overdue": False, "was_overdue": True, "escalation_level": 0}


async def _two(rows: Any) -> list[dict[str, Any]] | None:
    found = await rows
    return found if len(found) == 2 else None
