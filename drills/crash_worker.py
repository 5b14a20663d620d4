"""`python -m drills.crash_worker`: the production worker with crash points.

Right after a payment or a transfer order is COMMITTED, and before its activity can
report back, the process kills itself with SIGKILL: the worst moment for exactly-once.
`DRILL_CRASH_DIR` holds `armed-<kind>` switches and one marker file per crash taken, shared by
every incarnation, so the worker crashes `DRILL_CRASH_BUDGET` times per kind armed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities import build_desks
from activities.contracts import (
    TransferOrderInput,
    TransferOrderResult,
)
from activities.transfers import TransferDesk
from adapters.engine import (
    create_engine,
    require_current_schema,
    resolve_database_url,
    session_maker,
)
from adapters.settings import get_settings
from drills.processes import READY
from security.sealing import Vault
from worker import build_worker, connect

log = logging.getLogger("petitionflow.drills")


class CrashPoints:
    """Crash only while `armed-<kind>` exists in the directory, at most `budget` times per
    kind, counted by marker files every incarnation sees."""

    def __init__(self, directory: Path, budget: int):
        self.directory = directory
        self.budget = budget

    def hook(self, kind: str) -> Callable[[str], None]:
        def crash_after(key: str) -> None:
            if not (self.directory / f"armed-{kind}").exists():
                return
            for n in range(self.budget):
                marker = self.directory / f"crash-{kind}-{n}"
                try:
                    fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    continue
                os.write(fd, f"{kind} {key}".encode())
                os.close(fd)
                log.warning("crash point: %s %s committed; killing the worker", kind, key)
                os.kill(os.getpid(), signal.SIGKILL)

        return crash_after


class CrashingTransferDesk(TransferDesk):
    def __init__(self, sessions: async_sessionmaker[AsyncSession], vault: Vault,
                 after_order_written: Callable[[str], None]):
        super().__init__(sessions, vault)
        self._after_order_written = after_order_written

    @activity.defn(name="issue_transfer_order")
    async def issue_transfer_order(self, order: TransferOrderInput) -> TransferOrderResult:
        result = await super().issue_transfer_order(order)
        self._after_order_written(f"{order.workflow_id}:{order.seq}:{order.kind}")
        return result


async def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    from security.redact import install_redaction

    install_redaction()  # nothing personal in failed attempts' tracebacks
    settings = get_settings()
    points = CrashPoints(Path(os.environ["DRILL_CRASH_DIR"]),
                         int(os.environ.get("DRILL_CRASH_BUDGET", "1")))
    engine = create_engine(resolve_database_url(settings), pool_size=settings.db_pool_size)
    await require_current_schema(engine)
    sessions = session_maker(engine)
    desks = build_desks(sessions, after_payment_written=points.hook("payment"))
    desks.transfers = CrashingTransferDesk(sessions, desks.vault, points.hook("transfer"))
    client = await connect(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with build_worker(client, desks, task_queue=settings.task_queue, settings=settings):
        log.info("%s %r (with crash points)", READY, settings.task_queue)
        await stop.wait()
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
