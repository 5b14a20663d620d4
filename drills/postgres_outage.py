"""Drill: stop PostgreSQL under load, and start it again.

A PostgreSQL of the drill's own (the embedded server's, in a data directory made for the
drill: never the shared development server) behind a real worker process. Petitions are accepted,
paid assistance and replied while PostgreSQL is stopped with `pg_ctl stop -m fast`:
activities fail and Temporal retries them with backoff; clients retry with the same
request ids. When PostgreSQL is back, everything must complete, nothing twice, and the
read model must converge on the workflows' state.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from temporalio.client import Client

from adapters.engine import create_engine, session_maker
from adapters.petition_client import PetitionClient
from devstack.postgres import database_url, ensure_database
from devstack.roles import ensure_roles
from domain.models import Accept, Action, RequestAssistance
from drills.ledger import check_ledger, retried_activities, summary
from drills.processes import WorkerProcess
from drills.scenarios import (
    HANDLER,
    PatientClient,
    Stack,
    drill_intake,
    pay_and_reply,
    rid,
    terminate_all,
)
from starter.runtime import SAMPLE_DIRECTORY, load_directory_file, migrate_async


class DrillPostgres:
    """The embedded PostgreSQL on a data directory of its own; stopped and started with
    pg_ctl."""

    def __init__(self, data_dir: Path):
        from devstack.postgres import start_server

        data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.server = start_server(data_dir, cleanup_mode="delete")

    def uri(self) -> str:
        return str(self.server.get_uri())

    def stop(self) -> None:
        from devstack.postgres import stop_server

        stop_server(self.server, timeout=60)

    def start(self) -> None:
        """Start it again (tries a few times: a loaded machine can be slow to let go of
        the old postmaster), naming the server log's last lines if it will not."""
        import subprocess
        import time as clock

        for attempt in range(5):
            try:
                with self.server._lock:
                    self.server.ensure_postgres_running()
                return
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
                if attempt == 4:
                    log = self.server.log.read_text(errors="replace").splitlines()[-15:]
                    raise RuntimeError("PostgreSQL did not start again:\n" + "\n".join(log)) \
                        from err
                clock.sleep(1 + attempt)

    def remove(self) -> None:
        self.server.cleanup()


async def run(client_: Client, address: str, work_dir: Path, *, petitions: int = 4,
              outage_seconds: float = 5.0, task_queue: str = "drill-postgres"
              ) -> dict[str, Any]:
    started = time.monotonic()
    pg = await asyncio.to_thread(DrillPostgres, work_dir / "pg")
    engine = None
    worker: WorkerProcess | None = None
    workflow_ids: list[str] = []
    try:
        admin = database_url(pg.uri())
        await ensure_roles(admin)  # a server of its own: its roles are the drill's to make
        url = await ensure_database(admin, "petitionflow_drill", recreate=True)
        await migrate_async(url)
        engine = create_engine(url, pool_size=petitions + 2)
        sessions = session_maker(engine)
        await load_directory_file(sessions, SAMPLE_DIRECTORY)
        stack = Stack(client_, sessions, url, address, task_queue, work_dir)
        worker = WorkerProcess(address=address, database_url=url, task_queue=task_queue,
                               log_dir=work_dir / "worker")
        await worker.start()
        worker.supervise()
        client = PatientClient(stack)
        workflow_ids = list(await asyncio.gather(
            *(client.submit(drill_intake("QS-HRSS", tag="PGDOWN")) for _ in range(petitions))))

        for wf in workflow_ids:
            await client.act(wf, Action.ACCEPT, Accept(actor=HANDLER, request_id=rid(wf, "accept")))
        await asyncio.to_thread(pg.stop)
        down = time.monotonic()
        # Applications for assistance reach the workflows (Temporal is up): their activities
        # find PostgreSQL down and are retried with backoff.
        petitions_ = PetitionClient(client_, task_queue="")
        in_flight = {wf: await petitions_.act_accepted(wf, RequestAssistance(
                    actor=HANDLER, kind="judicial", amount_yuan=Decimal("2500.00"),
                    reason="司法救助", request_id=rid(wf, "apply")))
            for wf in workflow_ids}

        async def then_pay(wf: str) -> None:
            await in_flight[wf].result()
            await pay_and_reply(client, wf)

        # Meanwhile new petitions arrive: their intake clients fail and retry.
        arrivals = [asyncio.create_task(client.submit(drill_intake("QS-HRSS", tag="PGDOWN")))
                    for _ in range(max(1, petitions // 2))]
        load = [asyncio.create_task(then_pay(wf)) for wf in workflow_ids]
        await asyncio.sleep(outage_seconds)
        await asyncio.to_thread(pg.start)
        outage = time.monotonic() - down
        await asyncio.gather(*load)
        workflow_ids += await asyncio.gather(*arrivals)
        tally = await check_ledger(client_, sessions, workflow_ids, patience=120)
        retried = await retried_activities(client_, workflow_ids)
    finally:
        await terminate_all(client_, workflow_ids)
        if worker is not None:
            await worker.stop()
        if engine is not None:
            await engine.dispose()
        await asyncio.to_thread(pg.remove)
    return {
        "drill": "postgres outage",
        "faults_injected": 1, "seconds_down": round(outage, 1),
        **summary(tally), "activities_retried": retried,
        "client_retries": sum(client.retries.values()),
        "worker_restarts": worker.starts - 1 if worker else 0,
        "seconds": round(time.monotonic() - started, 1),
        "problems": tally.lost + tally.duplicated,
    }
