"""Benchmark 1: petition lifecycles per second and the Update round trip, against the floor.

On one Temporal CLI dev server, one bench worker process (`bench.worker_main`) and one
PostgreSQL database, the same driver runs:

* the FLOOR: `FloorWorkflow` started and awaited, one no-op activity each (one floor
  transition per workflow); and its no-op Update, sequentially, for the latency floor;
* PETITIONS: complete lifecycles with the real activities and PostgreSQL -- start and
  register, `accept`, `reply`, then `withdraw` to close (4 state transitions). On a real
  clock the review window would take 15 days to lapse (the `demo` profile's 60 s would
  measure the timer, not the system), so the close is the petitioner's withdrawal, the
  same record-and-notice work as the lapse; and the `accept` Update round trip.

The floor is measured before AND after the petitions and averaged, so a machine whose
load drifts during the run does not favour either side. Each worker configuration
(`--configs`) is a separate worker process: tuning before/after, side by side.

    python -m bench.throughput_bench [--lifecycles 200] [--concurrency 20] [--samples 100]
                                     [--configs shipped,workflows-passthrough]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from adapters.petition_client import PetitionClient
from adapters.settings import Settings
from bench.common import Report, db_name, percentile
from bench.floor import FloorInput, FloorNote, FloorWorkflow
from bench.harness import Stack, WorkerProcess, lanes
from domain.models import Accept, Actor, PetitionIntake, Reply, Role, Withdraw, reference

DATABASE = "petitionflow_bench_throughput"
TRANSITIONS_PER_LIFECYCLE = 4  # register, accept, reply, close (withdraw)
HANDLER = Actor(id="QS-XFJ.h1", role=Role.HANDLER, unit="QS-XFJ")
PETITIONER = Actor(id="petitioner", role=Role.PETITIONER, unit="QS-XFJ")

_DEFAULTS = Settings()
CONFIGS: dict[str, dict[str, Any]] = {
    # As the product ships (adapters/settings.py, worker.py).
    "shipped": {},
    # Without the sandbox passthrough of domain/activities/pydantic/sqlalchemy/holidays.
    "no-passthrough": {"passthrough": "0"},
    "small-cache": {"max_cached_workflows": 10},
    "pool-20": {"db_pool_size": 20},
    "tasks-20": {"max_concurrent_workflow_tasks": 20, "max_concurrent_activities": 40},
    # The workflow package passed through the sandbox too (see bench/README.md); worker.py
    # has shipped with it since the open-cases runs, so this now equals "shipped".
    "workflows-passthrough": {"passthrough": "+workflows"},
    # The SDK's default pollers (five per queue kind, one of the workflow five on the
    # shared queue), as shipped before this session.
    "sdk-pollers": {"workflow_task_pollers": 0, "activity_task_pollers": 0},
}


def intake(tag: str) -> PetitionIntake:
    unique = uuid.uuid4().hex
    return PetitionIntake.model_validate({
        "intake_id": reference(f"B-{tag}", 16), "channel": "online", "category": "wage_arrears",
        "unit": "QS-XFJ", "received_at": datetime.now(UTC),
        "petitioner": {"name": "测试", "id_number": str(int(unique[:12], 16))[:17].rjust(17, "1")
                       + "X"},
        "subject": f"bench {unique[:12]}", "content": "benchmark petition",
    })


def petition_client(stack: Stack) -> PetitionClient:
    return PetitionClient(stack.client, stack.task_queue)


async def _start_petition(stack: Stack, tag: str) -> str:
    """Start and register a petition; its workflow id."""
    return (await petition_client(stack).submit(intake(tag))).workflow_id


async def petition_lifecycle(stack: Stack, tag: str) -> None:
    client = petition_client(stack)
    workflow_id = await _start_petition(stack, tag)
    await client.act(workflow_id, Accept(actor=HANDLER))
    await client.act(workflow_id, Reply(actor=HANDLER, opinion="done"))
    await client.act(workflow_id, Withdraw(actor=PETITIONER))
    await client.handle(workflow_id).result()


async def floor_lifecycle(stack: Stack, tag: str) -> None:
    await stack.client.execute_workflow(FloorWorkflow.run, FloorInput(),
                                        id=f"floor-{tag}-{uuid.uuid4().hex[:12]}",
                                        task_queue=stack.task_queue)


async def rate(count: int, concurrency: int, job: Any) -> float:
    started = time.perf_counter()
    await lanes(count, concurrency, job)
    return count / (time.perf_counter() - started)


async def floor_update_latencies(stack: Stack, samples: int) -> list[float]:
    handles = [await stack.client.start_workflow(
        FloorWorkflow.run, FloorInput(hold=True), id=f"floor-hold-{uuid.uuid4().hex[:12]}",
        task_queue=stack.task_queue) for _ in range(samples)]
    latencies = []
    for handle in handles:
        await handle.execute_update(FloorWorkflow.noop, FloorNote())  # admitted and running
    for handle in handles:
        t = time.perf_counter()
        await handle.execute_update(FloorWorkflow.noop, FloorNote(n=1))
        latencies.append((time.perf_counter() - t) * 1000)
    for handle in handles:
        await handle.execute_update(FloorWorkflow.finish)
    return latencies


async def accept_latencies(stack: Stack, samples: int) -> list[float]:
    client = petition_client(stack)
    workflow_ids = [await _start_petition(stack, "lat") for _ in range(samples)]
    latencies = []
    for workflow_id in workflow_ids:
        t = time.perf_counter()
        await client.act(workflow_id, Accept(actor=HANDLER))
        latencies.append((time.perf_counter() - t) * 1000)
    for workflow_id in workflow_ids:
        await client.act(workflow_id, Withdraw(actor=PETITIONER))
    return latencies


async def measure(stack: Stack, worker: WorkerProcess, label: str, report: Report,
                  lifecycles: int, concurrency: int, samples: int) -> dict[str, float]:
    # Warm up both paths (imports, caches, connection pools, the server's task queues).
    warm = min(10, lifecycles)
    await lanes(2 * warm, 10, lambda i: floor_lifecycle(stack, "warm"))
    await lanes(warm, 10, lambda i: petition_lifecycle(stack, "warm"))
    cpu0 = worker.cpu_seconds()
    floor_before = await rate(2 * lifecycles, concurrency, lambda i: floor_lifecycle(stack, "f"))
    cpu1 = worker.cpu_seconds()
    petitions = await rate(lifecycles, concurrency, lambda i: petition_lifecycle(stack, "p"))
    cpu2 = worker.cpu_seconds()
    floor_after = await rate(2 * lifecycles, concurrency, lambda i: floor_lifecycle(stack, "f"))
    floor = (floor_before + floor_after) / 2
    transitions = petitions * TRANSITIONS_PER_LIFECYCLE
    floor_lat = await floor_update_latencies(stack, samples)
    accept_lat = await accept_latencies(stack, samples)
    prefix = f"[{label}] "
    report.add(prefix + "petition lifecycles/s", petitions, "/s", baseline=floor,
               baseline_name="floor workflows/s")
    met = transitions >= 0.8 * floor
    report.add(prefix + "petition transitions/s", transitions, "/s", baseline=floor,
               baseline_name="floor transitions/s", goal=">= 0.8x", met=met)
    report.add(prefix + "worker CPU per petition transition", (cpu2 - cpu1) * 1000
               / (lifecycles * TRANSITIONS_PER_LIFECYCLE), "ms",
               baseline=(cpu1 - cpu0) * 1000 / (2 * lifecycles),
               baseline_name="per floor transition")
    for p in (50, 95, 99):
        figure = report.add(prefix + f"accept Update p{p}", percentile(accept_lat, p), "ms",
                            baseline=percentile(floor_lat, p), baseline_name="no-op Update")
        if p == 95:
            figure.goal, figure.met = "<= 1.5x", (figure.ratio or 99) <= 1.5
    report.add(prefix + "worker RSS after the run", worker.rss_mb(), "MB")
    report.note(f"{label}: floor {floor_before:.1f}/s before, {floor_after:.1f}/s after "
                f"the petitions; settings {worker.settings or 'as shipped'}")
    return {"lifecycles_s": petitions, "floor_s": floor}


async def run(lifecycles: int, concurrency: int, samples: int, configs: list[str],
              dynamic_config: tuple[str, ...] = ()) -> Report:
    report = Report("throughput_bench", {
        "lifecycles": lifecycles, "concurrency": concurrency, "latency_samples": samples,
        "configs": ",".join(configs), "server_dynamic_config": list(dynamic_config),
        "shipped": {
            "max_cached_workflows": _DEFAULTS.max_cached_workflows,
            "max_concurrent_activities": _DEFAULTS.max_concurrent_activities,
            "max_concurrent_workflow_tasks": _DEFAULTS.max_concurrent_workflow_tasks,
            "db_pool_size": _DEFAULTS.db_pool_size}})
    async with Stack.up(db_name(DATABASE), dynamic_config=dynamic_config) as stack:
        for label in configs:
            settings = CONFIGS[label] if label in CONFIGS else _parse(label)
            async with stack.worker(**settings) as worker:
                await measure(stack, worker, label, report, lifecycles, concurrency, samples)
    return report


def _parse(spec: str) -> dict[str, Any]:
    """`key=value;key=value`, e.g. `max_cached_workflows=2000;db_pool_size=20`."""
    return dict(part.split("=", 1) for part in spec.split(";") if "=" in part)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lifecycles", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--configs", default="shipped")
    parser.add_argument("--server-config", action="append", default=[],
                        help="dev server dynamic config, e.g. "
                             "system.enableActivityEagerExecution=true (repeatable)")
    args = parser.parse_args()
    report = asyncio.run(run(args.lifecycles, args.concurrency, args.samples,
                             args.configs.split(","), tuple(args.server_config)))
    report.finish()


if __name__ == "__main__":
    main()
