"""Local Temporal servers: the persistent dev server behind `petition dev`, and the
time-skipping test server the tests use to run months of petition deadlines in seconds.
"""

from __future__ import annotations

import asyncio
import socket
from datetime import timedelta
from pathlib import Path

from temporalio.api.enums.v1 import EventType, IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment

from adapters.search_attributes import ALL_KEYS
from devstack.postgres import project_data_dir
from devstack.temporal_cli import resolve_temporal_cli, resolve_test_server

DEV_PORT = 7233
DEV_UI_PORT = 8233


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (for tests running side by side).

    There is a small race between closing this socket and the server binding the port;
    acceptable for tests, which is the only place ports are picked this way.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# The SDK waits 5 s for a server to come up; a JVM or the CLI on two busy cores (a full
# test run with a benchmark beside it) has been seen to need more.
STARTUP_TIMEOUT = timedelta(seconds=60)


async def start_dev_server(
    *,
    db_filename: str | None,
    port: int | None = None,
    ui: bool = True,
    ui_port: int | None = None,
    data_converter: DataConverter = DataConverter.default,
    ui_codec_endpoint: str | None = None,
) -> WorkflowEnvironment:
    """Start a Temporal CLI dev server with the petition search attributes registered.

    `ui_codec_endpoint` points the Web UI at a codec server (security/codec_server.py)
    that decrypts payloads for it; without one the UI shows them encrypted.

    With a `db_filename` the server keeps its state in that SQLite file, so open petitions
    survive a restart; None keeps everything in memory. Re-registering the same search
    attributes against an existing file is accepted by the CLI, so restarts are safe.
    """
    # Resolving may build the CLI with Go (minutes); keep the event loop responsive meanwhile.
    cli = await asyncio.to_thread(resolve_temporal_cli)
    if db_filename is not None:
        Path(db_filename).parent.mkdir(parents=True, exist_ok=True)
    return await WorkflowEnvironment.start_local(
        data_converter=data_converter,
        port=port,
        ui=ui,
        ui_port=ui_port,
        search_attributes=ALL_KEYS,
        dev_server_existing_path=cli,
        dev_server_database_filename=db_filename,
        dev_server_extra_args=["--ui-codec-endpoint", ui_codec_endpoint]
        if ui_codec_endpoint else [],
        dev_server_startup_timeout=STARTUP_TIMEOUT,
    )


async def start_project_dev_server(
    data_converter: DataConverter = DataConverter.default,
    ui_codec_endpoint: str | None = None,
) -> WorkflowEnvironment:
    """The server `petition dev` runs: well-known ports, state in `<project>/.data/temporal.db`."""
    return await start_dev_server(
        db_filename=str(project_data_dir() / "temporal.db"),
        port=DEV_PORT,
        ui=True,
        ui_port=DEV_UI_PORT,
        data_converter=data_converter,
        ui_codec_endpoint=ui_codec_endpoint,
    )


async def start_time_skipping(
    data_converter: DataConverter = DataConverter.default,
) -> WorkflowEnvironment:
    """Start the Java time-skipping test server (provisioned from Maven Central if needed)."""
    launcher = await asyncio.to_thread(resolve_test_server)
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=data_converter,
        test_server_existing_path=launcher,
        test_server_startup_timeout=STARTUP_TIMEOUT,
    )
    # The Java test server refuses upserts of unknown keys, like a real server would.
    await register_search_attributes(env.client)
    return env


async def register_search_attributes(client: Client) -> None:
    """Register the petition search attributes (idempotent for the same types)."""
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=client.namespace,
            search_attributes={
                key.name: IndexedValueType.ValueType(key.indexed_value_type) for key in ALL_KEYS
            },
        )
    )


# What opens and what closes a workflow task or an activity (retries add no events).
_OPENS = {EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED: "task",
          EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: "activity"}
_CLOSES = {EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED: "task",
           EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED: "task",
           EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT: "task",
           EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: "activity",
           EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: "activity",
           EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: "activity",
           EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED: "activity"}


async def quiescent(client: Client, workflow_id: str) -> bool:
    """The latest run waits: no workflow task and no activity outstanding.

    Counted from the history: the Java test server's `describe()` never reports a pending
    workflow task, and cannot be decoded for a closed case (see `finished`)."""
    outstanding = {"task": 0, "activity": 0}
    async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
        if event.event_type in _OPENS:
            outstanding[_OPENS[event.event_type]] += 1
        elif event.event_type in _CLOSES:
            outstanding[_CLOSES[event.event_type]] -= 1
    return not any(outstanding.values())


async def settled(client: Client, workflow_id: str, within: float = 15.0) -> bool:
    """Wait up to `within` seconds for the workflow to be `quiescent`; whether it became so.
    Before terminating a case on the time-skipping server, or counting its history."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await quiescent(client, workflow_id):
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True
