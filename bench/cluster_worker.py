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

from bench.worker_main import serve_until_stopped
from drills.processes import READY

log = logging.getLogger("petitionflow.bench")


async def main() -> None:
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    log.setLevel(logging.INFO)
    from security.redact import install_redaction

    install_redaction()  # nothing personal in failed attempts' tracebacks
    await serve_until_stopped(lambda task_queue: log.info("%s %r", READY, task_queue))


if __name__ == "__main__":
    asyncio.run(main())
