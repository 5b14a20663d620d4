"""Drill: stop the Temporal dev server with open petitions and start it again on the same
database file and port.

The petitions run under the `demo` profile (national clocks played in seconds: the
acceptance reminder 12 s after registration, level-1 escalation at 20 s, level 2 at
30 s), and the server stays down across their reminders, so the timers that fall due
while it is down must fire after it comes back: once each, none lost. Then every petition
takes its next action, as if nothing happened.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from adapters.tables import Escalation, Notice, Petition
from devstack.temporal_server import free_port, start_dev_server
from domain.models import Accept, Action, ClockName, Stage
from domain.policy import load_profile
from drills.ledger import check_ledger, summary
from drills.processes import WorkerProcess
from drills.scenarios import HANDLER, PatientClient, Stack, drill_intake, rid, terminate_all
from worker import data_converter
from workflows.petition import PetitionWorkflow

PROFILE = "demo"


async def _server(db_file: Path, port: int) -> WorkflowEnvironment:
    return await start_dev_server(db_filename=str(db_file), port=port, ui=False,
                                  data_converter=data_converter())


async def _fired(sessions: async_sessionmaker[AsyncSession], workflow_id: str
                 ) -> tuple[list[datetime], list[int]]:
    async with sessions() as session:
        petition_id = await session.scalar(
            select(Petition.id).where(Petition.workflow_id == workflow_id))
        reminders = list(await session.scalars(
            select(Notice.created_at).where(Notice.petition_id == petition_id,
                                            Notice.template == "reminder")))
        levels = list(await session.scalars(
            select(Escalation.level).where(Escalation.petition_id == petition_id)
            .order_by(Escalation.level)))
    return reminders, levels


async def wait_escalated(client: Client, workflow_ids: list[str], patience: float) -> None:
    """Until each petition reached escalation level 2 or `patience` seconds passed (the
    server or its workers may still be recovering from a fault: queries may fail)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    for wf in workflow_ids:
        handle = client.get_workflow_handle_for(PetitionWorkflow.run, wf)
        while loop.time() < deadline:
            try:
                if (await handle.query(PetitionWorkflow.status)).escalation_level >= 2:
                    break
            except Exception:  # the worker may still be catching up after the restart
                pass
            await asyncio.sleep(0.5)


async def run(sessions: async_sessionmaker[AsyncSession], database_url: str, work_dir: Path,
              *, petitions: int = 4, restarts: int = 1, task_queue: str = "drill-restart"
              ) -> dict[str, Any]:
    started = time.monotonic()
    db_file, port = work_dir / "temporal.db", free_port()
    env = await _server(db_file, port)
    address = f"127.0.0.1:{port}"
    worker = WorkerProcess(address=address, database_url=database_url, task_queue=task_queue,
                           log_dir=work_dir / "worker")
    stack = Stack(env.client, sessions, database_url, address, task_queue, work_dir)
    client = PatientClient(stack)
    await worker.start()
    worker.supervise()
    profile = load_profile(PROFILE)
    acceptance = profile.clock(ClockName.ACCEPTANCE)
    assert acceptance is not None and acceptance.reminder_before is not None
    remind_after = timedelta(hours=acceptance.period.nominal_hours()
                             - acceptance.reminder_before.nominal_hours())
    workflow_ids: list[str] = []
    downs: list[tuple[datetime, datetime]] = []
    lost: list[str] = []
    duplicated: list[str] = []
    try:
        workflow_ids = list(await asyncio.gather(*(
            client.submit(drill_intake("QS-HRSS", profile=PROFILE, tag="RESTART"))
            for _ in range(petitions))))
        registered = datetime.now(UTC)
        for n in range(restarts):
            # Down across the reminders (first restart) and the level-1 escalations (second).
            worker.paused = True
            await env.shutdown()
            down = datetime.now(UTC)
            due = registered + remind_after + timedelta(seconds=1) if n == 0 else \
                registered + timedelta(hours=acceptance.period.nominal_hours(), seconds=1)
            await asyncio.sleep(max((due - datetime.now(UTC)).total_seconds(), 1.0))
            env = await _server(db_file, port)
            up = datetime.now(UTC)
            downs.append((down, up))
            stack.client = env.client
            worker.paused = False
            if not worker.alive:
                await worker.start()
        await wait_escalated(stack.client, workflow_ids, patience=90)
        timers = 0
        for wf in workflow_ids:
            reminders, levels = await _fired(sessions, wf)
            timers += len(reminders) + len(levels)
            (lost if len(reminders) < 1 else duplicated if len(reminders) > 1 else []).append(
                f"{wf}: {len(reminders)} acceptance reminders, not 1")
            if reminders and min(reminders) < downs[0][1] - timedelta(seconds=1):
                raise RuntimeError(f"{wf}: the reminder fired at {min(reminders)}, before the "
                                   f"server came back at {downs[0][1]}: the drill missed it")
            lost += [f"{wf}: no level-{n} escalation" for n in (1, 2) if n not in levels]
            if len(levels) > len(set(levels)):
                duplicated.append(f"{wf}: escalations {levels}")
        # Every open petition resumes: the next action goes through.
        for wf in workflow_ids:
            status = await client.act(wf, Action.ACCEPT, Accept(actor=HANDLER,
                                                                request_id=rid(wf, "accept")))
            if status.stage is not Stage.IN_HANDLING:
                lost.append(f"{wf}: stage {status.stage} after accept")
        tally = await check_ledger(stack.client, sessions, workflow_ids)
        async with sessions() as session:
            open_rows = await session.scalar(select(func.count()).select_from(Petition).where(
                Petition.workflow_id.in_(workflow_ids), Petition.stage == Stage.IN_HANDLING))
        if open_rows != len(workflow_ids):
            lost.append(f"read model: {open_rows} of {len(workflow_ids)} in handling")
    finally:
        await terminate_all(stack.client, workflow_ids)
        await worker.stop()
        await env.shutdown()
    lost += tally.lost
    duplicated += tally.duplicated
    return {
        "drill": "server restart",
        "faults_injected": len(downs),
        "seconds_down": [round((up - down).total_seconds(), 1) for down, up in downs],
        "timers_checked": timers, "worker_restarts": worker.starts - 1,
        **summary(tally), "lost": len(lost), "duplicated": len(duplicated),
        "client_retries": sum(client.retries.values()),
        "seconds": round(time.monotonic() - started, 1),
        "problems": lost + duplicated,
    }
