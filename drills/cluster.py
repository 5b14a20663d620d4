"""The fault drills on the production-shaped cluster (devstack/temporal_cluster.py).

`ClusterStack`: a cluster with the system of record on the cluster's own PostgreSQL, so
that restarting "PostgreSQL" hits Temporal's two stores AND the petitions' database at
once, as it would in a deployment with one database server; the workers are separate
processes (`drills.processes.WorkerProcess`) that reach the frontend over mTLS.

`FaultInjector`: one fault at a time, of five kinds -- kill -9 of a history process, kill -9
of a matching process (each restarted after `down` seconds), kill -9 of a worker process
(its supervisor starts a new one; the next worker fault picks a live one), a restart of
the frontend, a restart of PostgreSQL (fast shutdown, or SIGKILL every other time) --
counted by kind.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from adapters.engine import create_engine, session_maker
from devstack.roles import ensure_roles
from devstack.temporal_cli import ProvisioningError
from devstack.temporal_cluster import VALUES, Cluster, running_cluster
from drills.processes import WorkerProcess
from drills.scenarios import Stack
from starter.runtime import SAMPLE_DIRECTORY, load_directory_file, migrate_async
from worker import data_converter

log = logging.getLogger("petitionflow.drills")
KINDS = ("history", "matching", "worker", "frontend", "postgres")
APP_DATABASE = "petitionflow"


def worker_env(cluster: Cluster) -> dict[str, str]:
    """What a worker process needs to reach the cluster: its namespace and mTLS files."""
    certs = cluster.certs
    return {
        "PETITION_TEMPORAL_NAMESPACE": cluster.namespace,
        "PETITION_TEMPORAL_TLS_CA": str(certs.ca_cert),
        "PETITION_TEMPORAL_TLS_CERT": str(certs.client_cert),
        "PETITION_TEMPORAL_TLS_KEY": str(certs.client_key),
        "PETITION_TEMPORAL_TLS_SERVER_NAME": VALUES["TEMPORAL_TLS_SERVER_NAME"],
    }


def app_database_url(cluster: Cluster, name: str = APP_DATABASE) -> str:
    """The petitions' database on the cluster's own PostgreSQL, as its superuser on the
    unix socket in the data directory."""
    pg = cluster.own_postgres
    if pg is None:
        raise ValueError("the cluster runs on a PostgreSQL it does not own")
    return f"postgresql+asyncpg://postgres@/{name}?host={pg.data}&port={pg.port}"


async def app_database_on(cluster: Cluster, name: str = APP_DATABASE) -> str:
    """The petitions' database, migrated, with the sample directory, on the cluster's own
    PostgreSQL (its superuser, on the unix socket in the data directory, as the
    `postgres_outage` drill does on a server of its own). Returns its URL."""
    from devstack.postgres import ensure_database

    admin = app_database_url(cluster, "postgres")
    await ensure_roles(admin)
    url = await ensure_database(admin, name, recreate=True)
    await migrate_async(url)
    engine = create_engine(url, pool_size=2)
    try:
        await load_directory_file(session_maker(engine), SAMPLE_DIRECTORY)
    finally:
        await engine.dispose()
    return url


@dataclass
class ClusterStack:
    cluster: Cluster
    client: Client
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    database_url: str
    task_queue: str
    work_dir: Path
    workers: list[WorkerProcess] = field(default_factory=list)

    def drill_stack(self) -> Stack:
        return Stack(self.client, self.sessions, self.database_url, self.cluster.address,
                     self.task_queue, self.work_dir)

    def worker(self, n: int, module: str | None = "bench.cluster_worker",
               extra_env: dict[str, str] | None = None) -> WorkerProcess:
        return WorkerProcess(address=self.cluster.address, database_url=self.database_url,
                             task_queue=self.task_queue, log_dir=self.work_dir / f"worker-{n}",
                             module=module,
                             extra_env={**worker_env(self.cluster), **(extra_env or {})})

    async def start_workers(self, count: int, module: str | None = "bench.cluster_worker"
                            ) -> list[WorkerProcess]:
        """`count` supervised processes of `module` (None: `worker.py`, the production
        worker); a worker that dies is started again."""
        started = [self.worker(len(self.workers) + n, module) for n in range(count)]
        for worker in started:
            await worker.start()
            worker.supervise()
        self.workers += started
        return started


@asynccontextmanager
async def cluster_stack(work_dir: Path, *, cluster: Cluster | None = None,
                        database: str = APP_DATABASE, pool_size: int = 10,
                        restored: bool = False, task_queue: str | None = None
                        ) -> AsyncIterator[ClusterStack]:
    """A cluster (started here unless given) and the petitions' database on its PostgreSQL
    (created afresh, or with `restored` the one the cluster's data directory holds); the
    worker processes started through the stack are stopped on exit."""
    async with AsyncExitStack() as exits:
        if cluster is None:
            cluster = await exits.enter_async_context(running_cluster(work_dir / "cluster"))
        url = (app_database_url(cluster, database) if restored
               else await app_database_on(cluster, database))
        engine = create_engine(url, pool_size=pool_size)
        exits.push_async_callback(engine.dispose)
        client = await cluster.connect(data_converter=data_converter())
        stack = ClusterStack(cluster, client, engine, session_maker(engine), url,
                             task_queue or f"cluster-{uuid.uuid4().hex[:8]}", work_dir)

        async def stop_workers() -> None:
            await asyncio.gather(*(w.stop() for w in stack.workers))

        exits.push_async_callback(stop_workers)
        yield stack


@dataclass
class FaultInjector:
    """One fault at a time on the cluster and the stack's workers."""

    stack: ClusterStack
    down: float = 2.0  # seconds a killed history/matching process stays down
    seed: int = 16
    injected: Counter[str] = field(default_factory=Counter)
    log: list[tuple[float, str, float]] = field(default_factory=list)  # (at, what, seconds)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    @property
    def total(self) -> int:
        return sum(self.injected.values())

    async def inject(self, kind: str) -> str:
        cluster = self.stack.cluster
        started = time.monotonic()
        if kind in ("history", "matching"):
            names = sorted(n for n, p in cluster.processes.items() if p.service == kind)
            what = self._rng.choice(names)
            cluster.kill(what)
            await asyncio.sleep(self._rng.uniform(0.5, 1.5) * self.down)
            await cluster.start_process(what)
            what = f"kill -9 {what}"
        elif kind == "worker":
            worker = self._rng.choice([w for w in self.stack.workers if w.alive]
                                      or self.stack.workers)
            pid = worker.proc.pid if worker.proc else "?"
            await worker.kill()  # kill -9; its supervisor starts a fresh process
            what = f"kill -9 worker (pid {pid})"
        elif kind == "frontend":
            await cluster.restart("frontend")
            what = "restart frontend"
        elif kind == "postgres":
            kill = self.injected["postgres"] % 2 == 1
            await self._restart_postgres(kill)
            what = "kill -9 + restart postgres" if kill else "restart postgres"
        else:
            raise ValueError(f"unknown fault {kind!r}: one of {KINDS}")
        self.injected[kind] += 1
        self.log.append((started, what, time.monotonic() - started))
        return what

    async def _restart_postgres(self, kill: bool) -> None:
        """Like `Cluster.restart("postgres", kill=...)`, but after a SIGKILL the old server's
        backends may still hold its shared memory for a moment ("pre-existing shared memory
        block is still in use"): the start is tried again until they are gone."""
        cluster = self.stack.cluster
        pg = cluster.own_postgres
        if pg is None:
            raise ValueError("the cluster runs on a PostgreSQL it does not own")
        (cluster.kill if kill else cluster.stop)("postgres")
        for attempt in range(40):
            pg.start()
            try:
                await asyncio.to_thread(pg.wait_ready)
                return
            except ProvisioningError:
                if attempt == 39:
                    raise
                await asyncio.sleep(0.5)

    async def run(self, count: int, *, kinds: Sequence[str] = KINDS, gap: float = 1.0,
                  until: asyncio.Event | None = None) -> None:
        """`count` faults, the kinds in turn, `gap` seconds apart (or fewer if `until` is
        set first)."""
        for n in range(count):
            if until is not None and until.is_set():
                return
            what = await self.inject(kinds[n % len(kinds)])
            log.info("fault %d/%d: %s (%.1f s)", n + 1, count, what, self.log[-1][2])
            await asyncio.sleep(gap)
