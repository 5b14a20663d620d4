"""Integration tests for the local dev stack (real servers, no mocks).

(a) the dev server keeps open petitions across a restart on the same SQLite file, with the
    custom search attributes still registered and queryable;
(b) the time-skipping server runs a 60-day timer in seconds of wall time;
(c) ensure_database gives a fresh database on the embedded (or DATABASE_URL) PostgreSQL;
    the embedded one is PostgreSQL 18 with contrib (btree_gist, btree_gin) and room for a
    Temporal cluster's connections and its two databases.
"""

from __future__ import annotations

import asyncio
import os
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionStatus,
    WorkflowHandle,
)
from temporalio.worker import Worker

from adapters.search_attributes import ALL_KEYS
from devstack.postgres import database_url, ensure_database, role_url, temporal_databases
from devstack.temporal_server import free_port, start_dev_server, start_time_skipping
from tests.devstack_workflows import PETITION_STAGE, LongSleepWorkflow, StageMarkerWorkflow

pytestmark = pytest.mark.servers  # starts its own servers: not in the fast tier

TASK_QUEUE = "devstack-tests"
T = TypeVar("T")


@asynccontextmanager
async def _worker(client: Client) -> AsyncIterator[None]:
    async with Worker(
        client, task_queue=TASK_QUEUE, workflows=[StageMarkerWorkflow, LongSleepWorkflow]
    ):
        yield


async def _eventually(check: Callable[[], Awaitable[T]], attempts: int = 50) -> T:
    """Poll `check` until it returns something truthy: visibility is updated asynchronously."""
    result = await check()
    for _ in range(attempts):
        if result:
            break
        await asyncio.sleep(0.2)
        result = await check()
    return result


async def _stage_of(handle: WorkflowHandle) -> str | None:
    description = await handle.describe()
    return description.typed_search_attributes.get(PETITION_STAGE)


async def _registered_attributes(client: Client) -> dict[str, int]:
    response = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    return dict(response.custom_attributes)


def _ui_status(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
        return int(response.status)


def test_workflow_module_uses_the_domain_key() -> None:
    # The workflow module redeclares the key to stay sandbox-friendly; it must not drift.
    assert PETITION_STAGE in ALL_KEYS


@pytest.mark.timeout(120)
async def test_dev_server_keeps_petitions_across_restart(tmp_path: Path) -> None:
    db_filename = str(tmp_path / "temporal.db")
    workflow_id = f"devstack-restart-{uuid.uuid4()}"
    ui_port = free_port()

    async with (
        await start_dev_server(
            db_filename=db_filename, port=free_port(), ui=True, ui_port=ui_port
        ) as env,
        _worker(env.client),
    ):
        handle = await env.client.start_workflow(
            StageMarkerWorkflow.run, "registered", id=workflow_id, task_queue=TASK_QUEUE
        )
        assert await _eventually(lambda: _stage_of(handle)) == "registered"
        assert await asyncio.to_thread(_ui_status, ui_port) == 200

    # Second start on the same file: registering the search attributes again must not fail.
    async with await start_dev_server(db_filename=db_filename, port=free_port(), ui=False) as env:
        expected = {key.name: int(key.indexed_value_type) for key in ALL_KEYS}
        registered = await _registered_attributes(env.client)
        assert {name: registered.get(name) for name in expected} == expected

        handle = env.client.get_workflow_handle(workflow_id)
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING

        query = f'PetitionStage = "registered" AND WorkflowId = "{workflow_id}"'
        found = await _eventually(lambda: _collect_ids(env.client.list_workflows(query)))
        assert found == [workflow_id]

        # The restarted server hands the open petition to a fresh worker, which finishes it.
        async with _worker(env.client):
            await handle.signal(StageMarkerWorkflow.finish)
            assert await handle.result() == "registered"


async def _collect_ids(executions: AsyncIterator[WorkflowExecution]) -> list[str]:
    return [execution.id async for execution in executions]


@pytest.mark.timeout(120)
async def test_time_skipping_runs_sixty_days_in_seconds() -> None:
    async with await start_time_skipping() as env, _worker(env.client):
        started = time.monotonic()
        slept = await env.client.execute_workflow(
            LongSleepWorkflow.run, 60, id=f"devstack-sleep-{uuid.uuid4()}", task_queue=TASK_QUEUE
        )
        wall_seconds = time.monotonic() - started

    assert slept >= 60 * 24 * 3600
    assert wall_seconds < 15, f"60 days of workflow time took {wall_seconds:.1f}s of wall time"


async def _run_sql(url: str, statement: str) -> object:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(text(statement))
            return result.scalar() if result.returns_rows else None
    finally:
        await engine.dispose()


@pytest.mark.timeout(120)
async def test_ensure_database_creates_keeps_and_recreates() -> None:
    # Its own name, so a concurrent run of the real suite's database is never dropped.
    server_url = await asyncio.to_thread(database_url, os.environ.get("DATABASE_URL"))
    name = "petitionflow_devstack_selftest"

    url = await ensure_database(server_url, name, recreate=True)
    assert await _run_sql(url, "SELECT current_database()") == name
    await _run_sql(url, "CREATE TABLE marker (id int)")

    assert await ensure_database(server_url, name) == url
    assert await _run_sql(url, "SELECT to_regclass('marker') IS NOT NULL") is True

    await ensure_database(server_url, name, recreate=True)
    assert await _run_sql(url, "SELECT to_regclass('marker') IS NOT NULL") is False


embedded_only = pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")),
                                   reason="the embedded server's own settings")


@embedded_only
@pytest.mark.timeout(120)
async def test_the_embedded_server_is_postgresql_18_with_contrib_and_room_for_temporal() -> None:
    server_url = await asyncio.to_thread(database_url)
    assert int(str(await _run_sql(server_url, "SHOW server_version_num"))) >= 180000
    assert int(str(await _run_sql(server_url, "SHOW max_connections"))) >= 300
    data_dir = Path(str(await _run_sql(server_url, "SHOW data_directory")))
    assert data_dir.name == "pg18"
    assert await _run_sql(server_url, "SELECT count(*) FROM pg_available_extensions "
                                      "WHERE name IN ('btree_gist', 'btree_gin')") == 2


@embedded_only
@pytest.mark.timeout(120)
async def test_temporal_databases_are_the_temporal_roles_and_take_btree_gin() -> None:
    persistence, visibility = await asyncio.to_thread(temporal_databases)
    assert await asyncio.to_thread(temporal_databases) == (persistence, visibility)
    for url, name in ((persistence, "temporal"), (visibility, "temporal_visibility")):
        assert await _run_sql(url, "SELECT current_user || ' ' || current_database() || ' ' "
                                   "|| pg_get_userbyid(datdba) FROM pg_database "
                                   "WHERE datname = current_database()") \
            == f"temporal {name} temporal"
    # What Temporal's SQL visibility schema does first, as its own role.
    table = f"btree_gin_check_{uuid.uuid4().hex[:6]}"
    await _run_sql(visibility, "CREATE EXTENSION IF NOT EXISTS btree_gin")
    await _run_sql(visibility, f"CREATE TABLE {table} (namespace_id char(64), status int)")
    await _run_sql(visibility, f"CREATE INDEX ON {table} USING gin (namespace_id, status)")
    await _run_sql(visibility, f"DROP TABLE {table}")
    # Only the temporal role connects to them.
    app = await asyncio.to_thread(role_url, "petition_app", "temporal")
    with pytest.raises(DBAPIError, match="permission denied for database"):
        await _run_sql(app, "SELECT 1")


def test_starting_the_server_says_once_that_pgservers_directory_is_unused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import devstack.postgres as postgres

    monkeypatch.setattr(postgres, "_embedded_data_dir", lambda: tmp_path / "pg18")
    monkeypatch.setattr(postgres, "_noted", False)
    postgres._note_old_data_dir()
    assert capsys.readouterr().err == ""  # no old directory: nothing to say
    (tmp_path / "pg").mkdir()
    (tmp_path / "pg" / "PG_VERSION").write_text("16\n")
    postgres._note_old_data_dir()
    postgres._note_old_data_dir()
    said = capsys.readouterr().err.splitlines()
    assert said == [f"note: the embedded PostgreSQL 18 keeps its data in {tmp_path / 'pg18'}; "
                    f"{tmp_path / 'pg'} (PostgreSQL 16, pgserver) is no longer used and may "
                    "be deleted"]


@pytest.mark.timeout(180)
async def test_a_test_that_stalls_the_time_skipping_server_fails() -> None:
    """Terminating a workflow whose first workflow task nobody has taken yet leaves the
    Java server's time lock held for good: the test that did it fails (it is not hidden
    by a silent replacement), and the next test gets a fresh server that skips time."""
    from tests.conftest import TimeSkippingServer

    server = TimeSkippingServer()
    try:
        env = await server.ready()
        await server.check_after("a careful test")  # a healthy server: nothing to report
        handle = await env.client.start_workflow(
            LongSleepWorkflow.run, 1, id=f"devstack-stall-{uuid.uuid4()}",
            task_queue=f"nobody-polls-{uuid.uuid4()}")
        await handle.terminate(reason="a test ended with its workflow task outstanding")

        with pytest.raises(pytest.fail.Exception, match="a careless test left the time-skipping"):
            await server.check_after("a careless test")
        fresh = await server.ready()
        assert fresh is not env
        async with _worker(fresh.client):
            slept = await fresh.client.execute_workflow(
                LongSleepWorkflow.run, 30, id=f"devstack-sleep-{uuid.uuid4()}",
                task_queue=TASK_QUEUE)
        assert slept >= 30 * 24 * 3600
    finally:
        await server.close()
