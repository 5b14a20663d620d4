"""The bench worker for the cluster benchmarks (`bench.cluster_deadlines`, the cluster
drill): the production worker's workflows and activities with PostgreSQL, plus the floor
workflow, as a process of its own, configured from the environment like `worker.py`
(DATABASE_URL, TEMPORAL_ADDRESS, PETITION_TEMPORAL_NAMESPACE, PETITION_TEMPORAL_TLS_*,
PETITION_TASK_QUEUE, ...). Logs `drills.processes.READY` when it polls, so
`drills.processes.WorkerProcess` can start, supervise and kill it. Stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from activities import build_desks
from adapters.engine import create_engine, resolve_database_url, session_maker
from adapters.settings import get_settings
from bench.floor import FloorWorkflow, floor_noop
from drills.processes import READY
from workflows.petition import PetitionWorkflow

log = logging.getLogger("petitionflow.bench")


async def main() -> None:
    import worker

    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    log.setLevel(logging.INFO)
    from security.redact import install_redaction

    install_redaction()  # nothing personal in failed attempts' tracebacks
    settings = get_settings()
    engine = create_engine(resolve_database_url(settings), pool_size=settings.db_pool_size)
    client = await worker.connect(settings)
    desks = build_desks(session_maker(engine))
    desks.extra.append(floor_noop)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = worker.build_worker(client, desks, task_queue=settings.task_queue,
                                 settings=settings, workflows=(PetitionWorkflow, FloorWorkflow))
    async with runner:
        log.info("%s %r", READY, settings.task_queue)
        await stop.wait()
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
