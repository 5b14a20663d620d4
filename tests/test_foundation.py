"""Issue 2: a petition through `petition submit` on the real dev server, virtual-time
deadlines on the time-skipping server, and the system of record in PostgreSQL."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from temporalio.api.enums.v1 import EventType

from adapters.petition_client import ActionRefused, PetitionClient, workflow_id_for
from devstack.temporal_server import settled
from domain.models import Accept, Actor, Reply, Role, Stage
from tests.cli import petition
from tests.conftest import make_intake
from tests.lifecycle_helpers import eventually
from workflows.petition import PetitionWorkflow

HANDLER = Actor(id="qs-xfj-h1", role=Role.HANDLER, unit="QS-XFJ")


async def _raw_pg(db_url: str) -> asyncpg.Connection:
    url = make_url(db_url)
    return await asyncpg.connect(database=url.database, user=url.username or "postgres",
                                 host=url.query.get("host") or url.host, port=url.port)


def _write(tmp_path: Path, payload: dict) -> Path:
    path = tmp_path / f"{uuid.uuid4().hex[:8]}.json"
    path.write_text(json.dumps(payload, ensure_ascii=False, default=str), encoding="utf-8")
    return path


@pytest.mark.cli
async def test_submitted_petition_is_accepted_and_replied_on_the_dev_server(
        dev_env, running_worker, task_queue, db_url, tmp_path):
    intake = make_intake()
    path = _write(tmp_path, intake.model_dump(mode="json"))
    async with running_worker(dev_env.client):
        submitted = await petition("submit", str(path), db_url=db_url,
                                   address=dev_env.client.service_client.config.target_host,
                                   task_queue=task_queue)
        assert submitted.code == 0, submitted.err
        receipt = submitted.json()
        assert receipt["workflow_id"] == workflow_id_for(intake.intake_id)
        assert receipt["registration_no"].startswith("QS-XFJ-")
        client = PetitionClient(dev_env.client, task_queue)
        await client.act(receipt["workflow_id"], Accept(actor=HANDLER))
        await client.act(receipt["workflow_id"],
                         Reply(actor=HANDLER, opinion="工资已支付 wages paid"))
        status = await client.status(receipt["workflow_id"])
        assert status.stage is Stage.REPLIED
        assert status.registration_no == receipt["registration_no"]

        query = (f"PetitionStage = 'replied' AND RegistrationNo = "
                 f"'{receipt['registration_no']}'")

        async def found() -> list[str]:
            return [w.id async for w in dev_env.client.list_workflows(query)]

        assert await eventually(found) == [receipt["workflow_id"]]


async def test_acceptance_deadline_fires_in_virtual_time(ts_env, running_worker, petitions):
    intake = make_intake(unit="QS-HRSS")  # a competent unit: the 15-day acceptance clock
    async with running_worker(ts_env.client):
        handle = await petitions.start(ts_env, intake)
        status = await handle.query(PetitionWorkflow.status)
        assert [c.name for c in status.clocks] == ["acceptance"]
        assert status.clocks[0].article.endswith("Art. 23")
        due = status.clocks[0].due_at
        # 15 days, ending at 24:00 Beijing time, rolled on past a weekend or holiday. From the
        # clock's start: virtual time is shared by the session and other tests move it on.
        started = status.clocks[0].started_at
        assert started is not None
        assert timedelta(days=15) <= due - started <= timedelta(days=19)
        await ts_env.sleep(due - await ts_env.get_current_time() - timedelta(hours=1))
        assert not (await handle.query(PetitionWorkflow.status)).overdue
        await ts_env.sleep(timedelta(hours=2))
        status = await handle.query(PetitionWorkflow.status)
        assert status.overdue and status.escalation_level == 1, status.model_dump_json(indent=1)


async def test_accept_before_the_deadline_cancels_the_timer(ts_env, running_worker, petitions):
    intake = make_intake(unit="QS-HRSS")
    async with running_worker(ts_env.client):
        handle = await petitions.start(ts_env, intake)
        accepter = Actor(id="qs-hrss-h1", role=Role.HANDLER, unit="QS-HRSS")
        await PetitionClient(ts_env.client, task_queue="", clock=ts_env.get_current_time).act(
            handle.id, Accept(actor=accepter))
        await ts_env.sleep(timedelta(days=20))
        status = await handle.query(PetitionWorkflow.status)
        assert status.stage is Stage.IN_HANDLING and not status.overdue
        assert [c.name for c in status.clocks] == ["handling"]
        events = [e.event_type async for e in handle.fetch_history_events()]
        assert EventType.EVENT_TYPE_TIMER_CANCELED in events


async def test_reply_before_accept_is_refused_and_leaves_no_history_event(
        dev_env, running_worker, petitions):
    intake = make_intake()
    async with running_worker(dev_env.client):
        handle = await petitions.start(dev_env, intake)
        # The registration notice follows the answer to `wait_registered`.
        assert await settled(dev_env.client, handle.id)
        before = [e async for e in handle.fetch_history_events()]
        client = PetitionClient(dev_env.client, task_queue="")
        with pytest.raises(ActionRefused) as refused:
            await client.act(handle.id, Reply(actor=HANDLER, opinion="too early"))
        assert refused.value.refusal.rule == "stage"
        assert "reply is not allowed in stage registered" in str(refused.value.refusal)
        after = [e async for e in handle.fetch_history_events()]
        assert len(after) == len(before)
        assert (await client.status(handle.id)).stage is Stage.REGISTERED


@pytest.mark.cli
async def test_same_intake_twice_gives_one_workflow_and_one_row(
        dev_env, running_worker, task_queue, db_url, tmp_path):
    intake = make_intake()
    path = _write(tmp_path, intake.model_dump(mode="json"))
    address = dev_env.client.service_client.config.target_host
    async with running_worker(dev_env.client):
        first = await petition("submit", str(path), db_url=db_url, address=address,
                               task_queue=task_queue)
        second = await petition("submit", str(path), db_url=db_url, address=address,
                                task_queue=task_queue)
    assert first.code == 0 and second.code == 0, first.err + second.err
    assert first.json() == second.json()
    runs = [w async for w in dev_env.client.list_workflows(
        f"WorkflowId = '{workflow_id_for(intake.intake_id)}'")]
    assert len(runs) == 1
    conn = await _raw_pg(db_url)
    try:
        rows = await conn.fetchval("SELECT count(*) FROM petitions WHERE intake_id = $1",
                                   intake.intake_id)
    finally:
        await conn.close()
    assert rows == 1


@pytest.mark.cli
@pytest.mark.parametrize(("mutate", "field"), [
    (lambda d: d["petitioner"].update(id_number="12345"), "petitioner.id_number"),
    (lambda d: d.pop("channel"), "channel"),
    (lambda d: d.update(received_at="2026-11-02T09:30:00"), "received_at"),
    (lambda d: d.update(category="bribery"), "category"),
])
async def test_malformed_intake_is_refused_and_changes_nothing(
        dev_env, task_queue, db_url, tmp_path, mutate, field):
    payload = make_intake().model_dump(mode="json")
    mutate(payload)
    path = _write(tmp_path, payload)
    result = await petition("submit", str(path), db_url=db_url,
                            address=dev_env.client.service_client.config.target_host,
                            task_queue=task_queue)
    assert result.code != 0
    assert result.err.count("\n") == 1 and field in result.err, result.err
    workflow_id = workflow_id_for(payload["intake_id"])
    assert [w async for w in dev_env.client.list_workflows(f"WorkflowId = '{workflow_id}'")] == []
    conn = await _raw_pg(db_url)
    try:
        for table in ("petitions", "registration_numbers"):
            count = await conn.fetchval(f"SELECT count(*) FROM {table} WHERE intake_id = $1",
                                        payload["intake_id"])
            assert count == 0, table
    finally:
        await conn.close()


async def test_registration_and_transitions_are_in_postgresql(
        dev_env, running_worker, petitions, db_url):
    intake = make_intake()
    async with running_worker(dev_env.client):
        handle = await petitions.start(dev_env, intake)
        client = PetitionClient(dev_env.client, task_queue="")
        await client.act(handle.id, Accept(actor=HANDLER))
        await client.act(handle.id, Reply(actor=HANDLER, opinion="处理意见 handling opinion"))
    conn = await _raw_pg(db_url)
    try:
        row = await conn.fetchrow(
            "SELECT registration_no, stage, responsible_unit, accepted_at, replied_at "
            "FROM petitions WHERE intake_id = $1", intake.intake_id)
        events = await conn.fetch(
            "SELECT action, actor_id, from_stage, to_stage FROM petition_events "
            "WHERE workflow_id = $1 ORDER BY seq", handle.id)
    finally:
        await conn.close()
    assert row["stage"] == "replied" and row["responsible_unit"] == "QS-XFJ"
    assert row["accepted_at"] is not None and row["replied_at"] is not None
    assert [(e["action"], e["from_stage"], e["to_stage"]) for e in events] == [
        ("register", None, "registered"),
        ("accept", "registered", "in_handling"),
        ("reply", "in_handling", "replied"),
    ]
    assert events[1]["actor_id"] == HANDLER.id
