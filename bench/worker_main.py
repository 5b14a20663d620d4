"""The benchmark worker, a process of its own (so the load driver does not share its
interpreter): PetitionWorkflow with the real activity desks and PostgreSQL, plus the
floor workflow. Configured like the production worker, from the environment
(DATABASE_URL, TEMPORAL_ADDRESS, PETITION_TASK_QUEUE, PETITION_MAX_CACHED_WORKFLOWS,
PETITION_MAX_CONCURRENT_ACTIVITIES, PETITION_MAX_CONCURRENT_WORKFLOW_TASKS,
PETITION_DB_POOL_SIZE); BENCH_PASSTHROUGH=0 runs without the sandbox passthrough,
BENCH_PASSTHROUGH=+workflows,... passes more modules through.
Stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable

from activities import build_desks
from adapters.engine import create_engine, resolve_database_url, session_maker
from adapters.settings import get_settings
from bench.floor import FloorWorkflow, floor_noop
from workflows.petition import PetitionWorkflow


async def main() -> None:
    import worker

    logging.basicConfig(level=logging.WARNING)
    from security.redact import install_redaction

    install_redaction()  # nothing personal in failed attempts' tracebacks
    passthrough = os.environ.get("BENCH_PASSTHROUGH", "")
    if passthrough == "0":
        worker.PASSTHROUGH = ()  # type: ignore[assignment]
    elif passthrough.startswith("+"):  # e.g. "+workflows": more modules passed through
        worker.PASSTHROUGH = (*worker.PASSTHROUGH, *passthrough[1:].split(","))  # type: ignore[assignment]
    await serve_until_stopped(lambda task_queue: print("worker ready", flush=True))


async def serve_until_stopped(ready: Callable[[str], None]) -> None:
    """The petition and floor workflows with the real desks on the configured task queue,
    `ready(task_queue)` once polling, until SIGINT or SIGTERM (shared with
    bench/cluster_worker.py)."""
    import worker

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
        ready(settings.task_queue)
        await stop.wait()
    await engine.dispose()

if __name__ == "__main__":
    asyncio.run(main())
