"""The benchmark stack: a Temporal CLI dev server, a fresh PostgreSQL database with the
sample directory, and the bench worker as a separate process (`bench.worker_main`).

    async with Stack.up("petitionflow_bench_tp") as stack:
        async with stack.worker(max_cached_workflows=2000) as w:
            ...  # stack.client, stack.task_queue, w.rss_mb()
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from adapters.settings import PROJECT_ROOT
from bench.common import bench_dir, drop, fresh_database
from devstack.temporal_server import start_dev_server
from worker import data_converter


@dataclass
class WorkerProcess:
    process: asyncio.subprocess.Process
    log: Path
    settings: dict[str, str]

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_mb(self) -> float:
        """Resident memory of the worker process, from /proc (Linux)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks


@dataclass
class Stack:
    env: WorkflowEnvironment
    db_url: str
    db_name: str
    task_queue: str

    @property
    def client(self) -> Client:
        return self.env.client

    @property
    def address(self) -> str:
        return self.env.client.service_client.config.target_host

    @classmethod
    @asynccontextmanager
    async def up(cls, db_name: str, *, keep_db: bool = False, server_db: Path | None = None,
                 dynamic_config: Sequence[str] = ()) -> AsyncIterator[Stack]:
        """`dynamic_config`: server settings, e.g. `system.enableActivityEagerExecution=true`."""
        url = await fresh_database(db_name)
        with tempfile.TemporaryDirectory(prefix="bench-temporal-") as tmp:
            filename = str(server_db or Path(tmp) / "temporal.db")
            env = await _dev_server(filename, dynamic_config)
            try:
                async with env:
                    yield cls(env, url, db_name, f"bench-{uuid.uuid4().hex[:8]}")
            finally:
                if not keep_db:
                    await drop(db_name)

    @asynccontextmanager
    async def worker(self, **settings: Any) -> AsyncIterator[WorkerProcess]:
        """The bench worker process with these settings (Settings field names)."""
        values = {k: str(v) for k, v in settings.items()}
        env = {**os.environ, "DATABASE_URL": self.db_url, "TEMPORAL_ADDRESS": self.address,
               "PETITION_TASK_QUEUE": self.task_queue, "PYTHONPATH": str(PROJECT_ROOT)}
        for key, value in values.items():
            if key == "passthrough":
                env["BENCH_PASSTHROUGH"] = value
            else:
                env[f"PETITION_{key.upper()}"] = value
        log = bench_dir() / f"worker-{self.task_queue}-{uuid.uuid4().hex[:4]}.log"
        with log.open("w") as out:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.worker_main", env=env, cwd=str(PROJECT_ROOT),
                stdout=asyncio.subprocess.PIPE, stderr=out)
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), timeout=120)
            if b"worker ready" not in line:
                raise RuntimeError(f"bench worker did not start; see {log}")
            yield WorkerProcess(process, log, values)
        finally:
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), timeout=30)
                except TimeoutError:
                    process.kill()
                    await process.wait()


async def _dev_server(filename: str, dynamic_config: Sequence[str]) -> WorkflowEnvironment:
    if not dynamic_config:
        return await start_dev_server(db_filename=filename, ui=False,
                                      data_converter=data_converter())
    # devstack's starter takes no extra server arguments: the same call, with them.
    from adapters.search_attributes import ALL_KEYS
    from devstack.temporal_cli import resolve_temporal_cli

    extra = [arg for value in dynamic_config for arg in ("--dynamic-config-value", value)]
    return await WorkflowEnvironment.start_local(
        data_converter=data_converter(), ui=False, search_attributes=ALL_KEYS,
        dev_server_existing_path=await asyncio.to_thread(resolve_temporal_cli),
        dev_server_database_filename=filename, dev_server_extra_args=extra)


async def lanes(count: int, concurrency: int, job: Any) -> list[Any]:
    """Run `job(i)` for i in range(count), at most `concurrency` at a time."""
    results: list[Any] = [None] * count
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def lane() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            results[i] = await job(i)

    await asyncio.gather(*(lane() for _ in range(min(concurrency, count))))
    return results
