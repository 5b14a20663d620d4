"""Issue 4: `petition list` filters the read model (unit, stage, overdue, category, registered
dates, limit) as a table or JSON; `petition show` gives status and audit trail, and still
answers from the read model when no worker does (real PostgreSQL, the real CLI)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from click.testing import CliRunner

from activities import build_desks
from activities.contracts import (
    EscalationInput,
    RegisterPetitionInput,
    TransitionBatch,
)
from adapters.petition_client import PetitionClient, workflow_id_for
from domain.case import (
    TransitionRecord,
)
from domain.models import Accept, Action, Actor, ClockName, Role, Stage
from starter.actions import ActionError, resolve_workflow_id
from starter.cli import main
from starter.queries import PetitionFilter, list_petitions
from tests.cli import petition
from tests.conftest import make_intake
from tests.desk_helpers import run

HANDLER = Actor(id="qs-xfj-h1", role=Role.HANDLER, unit="QS-XFJ")
# A stretch of registration dates no other test uses (the test database is per session).
DAY = datetime(2087, 6, 2, 2, 0, tzinfo=UTC)  # 10:00 Beijing


async def cli(*args: str, db_url: str, address: str = "localhost:1"):
    return await petition(*args, db_url=db_url, address=address, task_queue="unused")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def cases(sessions) -> dict[str, str]:
    """Five registrations on consecutive days, moved on by the real activities."""
    desks = build_desks(sessions)
    made: dict[str, str] = {}
    plan = [("fresh", "QS-XFJ", "wage_arrears"), ("accepted", "QS-HRSS", "wage_arrears"),
            ("overdue", "QS-T1", "land_and_resources"), ("closed", "QS-XFJ", "wage_arrears"),
            ("other", "BS-XFJ", "environment")]
    for i, (name, unit, category) in enumerate(plan):
        at = DAY + timedelta(days=i)
        intake = make_intake(unit=unit, category=category, received_at=at.isoformat())
        wf = workflow_id_for(intake.intake_id)
        reg = await run(desks.registry.register_petition, RegisterPetitionInput(
            workflow_id=wf, intake=intake, registration_no=None, registered_at=at))
        made[name] = reg.registration_no
        if name in ("accepted", "closed"):
            stage = Stage.IN_HANDLING if name == "accepted" else Stage.CLOSED
            actor = Actor(id="h1", role=Role.HANDLER, unit=unit)
            await run(desks.records.record_transitions, TransitionBatch(records=[TransitionRecord(
                workflow_id=wf, petition_id=reg.petition_id, seq=2, action=Action.ACCEPT,
                actor=actor, at=at, from_stage=Stage.REGISTERED, to_stage=stage,
                read_model={"stage": stage.value, "responsible_unit": unit,
                            "handler_id": "h1",
                            "outcome": "withdrawn" if name == "closed" else None})]))
        if name == "overdue":
            await run(desks.escalation.escalate, EscalationInput(
                workflow_id=wf, petition_id=reg.petition_id, registration_no=reg.registration_no,
                clock=ClockName.ACCEPTANCE, level=1, unit=unit, due_at=at, at=at))
    return made


WINDOW = {"registered_from": DAY.date(), "registered_to": (DAY + timedelta(days=4)).date()}


async def listed(sessions, **where) -> list[str]:
    rows = await list_petitions(sessions, PetitionFilter(**{**WINDOW, **where}))
    return [r["registration_no"] for r in rows]


async def test_list_filters_the_read_model(cases, sessions):
    everything = await listed(sessions)
    # Newest registration first.
    assert everything == [cases[n] for n in ("other", "closed", "overdue", "accepted", "fresh")]
    assert await listed(sessions, unit="QS-HRSS") == [cases["accepted"]]
    assert set(await listed(sessions, unit="QS-XFJ")) == {cases["fresh"], cases["closed"]}
    assert await listed(sessions, stage="in_handling") == [cases["accepted"]]
    assert await listed(sessions, stage="closed") == [cases["closed"]]
    assert await listed(sessions, overdue=True) == [cases["overdue"]]
    assert await listed(sessions, category="environment") == [cases["other"]]
    assert await listed(sessions, limit=2) == [cases["other"], cases["closed"]]
    assert await listed(sessions, category="wage_arrears", unit="QS-XFJ", stage="registered") \
        == [cases["fresh"]]
    # Dates are Beijing dates, both ends included.
    one_day = (DAY + timedelta(days=1)).date()
    assert await listed(sessions, registered_from=one_day, registered_to=one_day) == [
        cases["accepted"]]


@pytest.mark.cli
async def test_list_command_json_has_the_read_model_and_nothing_personal(cases, db_url):
    last = (DAY + timedelta(days=4)).date()
    result = await cli("list", "--from", f"{DAY.date()}", "--to", f"{last}", "--overdue",
                       "--format", "json", db_url=db_url)
    assert result.code == 0, result.err
    [row] = result.json()
    assert row["registration_no"] == cases["overdue"]
    assert row["stage"] == "registered" and row["overdue"] is True
    assert row["escalation_level"] == 1 and row["holding_unit"] == "QS-T1"
    for personal in ("petitioner", "content", "subject"):
        assert personal not in row
    assert "测试人" not in result.out and "13800000000" not in result.out


@pytest.mark.cli
async def test_list_command_prints_a_table_by_default(cases, db_url):
    last = (DAY + timedelta(days=4)).date()
    result = await cli("list", "--from", f"{DAY.date()}", "--to", f"{last}", db_url=db_url)
    assert result.code == 0, result.err
    assert "5 petitions" in result.out
    for header in ("registration no.", "stage", "next deadline (Beijing)", "overdue"):
        assert header in result.out
    for number in cases.values():
        assert number in result.out
    assert "yes, level 1" in result.out and "closed (withdrawn)" in result.out
    assert "2087-06-02 10:00" in result.out  # registration time in Beijing time


@pytest.mark.cli
async def test_an_unknown_unit_is_refused_by_the_command(db_url):
    result = await cli("list", "--unit", "NOWHERE", db_url=db_url)
    assert result.code == 2 and result.err == "error: unknown unit 'NOWHERE'\n"
    assert result.out == ""


@pytest.mark.cli
@pytest.mark.parametrize(("args", "expected"), [
    (["--from", "2087-06-05", "--to", "2087-06-01"],
     "error: --from 2087-06-05 is after --to 2087-06-01"),
    (["--stage", "pending"], "Invalid value for '--stage'"),
    (["--from", "June 2"], "Invalid value for '--from'"),
    (["--limit", "0"], "Invalid value for '--limit'"),
    (["--format", "xml"], "Invalid value for '--format'"),
])
def test_bad_filters_are_refused_before_anything_is_read(args, expected):
    # Refused before the command touches the database: checked in-process.
    result = CliRunner().invoke(main, ["list", *args])
    assert result.exit_code == 2 and expected in result.output, result.output


async def test_show_gives_status_and_audit_trail_and_survives_a_stopped_worker(
        dev_env, running_worker, petitions, db_url, sessions):
    address = dev_env.client.service_client.config.target_host
    async with running_worker(dev_env.client):
        handle = await petitions.start(dev_env)
        status = await PetitionClient(dev_env.client, task_queue="").act(
            handle.id, Accept(actor=HANDLER))
        assert status is not None
        number = status.registration_no
        assert number is not None
        shown = await cli("show", number, db_url=db_url, address=address)
        assert shown.code == 0, shown.err
        body = shown.json()
        assert body["status"]["stage"] == "in_handling"
        assert [(e["action"], e["accepted"]) for e in body["audit_trail"]][:2] == [
            ("register", True), ("accept", True)]
        assert body["audit_trail"][1]["actor"] == "qs-xfj-h1:handler:QS-XFJ"
    # No worker now: the workflow cannot answer, the system of record still does.
    stopped = await cli("show", number, db_url=db_url, address=address)
    assert stopped.code == 0, stopped.err
    body = stopped.json()
    assert body["status"] is None and body["read_model"]["stage"] == "in_handling"
    assert "did not answer" in body["note"] and len(body["audit_trail"]) >= 2
    with pytest.raises(ActionError, match="no petition with registration number"):
        await resolve_workflow_id(sessions, "QS-XFJ-1999-999999")
