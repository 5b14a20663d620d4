"""Benchmark 2: many open petitions waiting on their deadlines on one machine.

N registered petitions are imported (`petition import`, profile `bench`: routing in 120
minutes, reminder 1 minute before) with registration times chosen so that every
deadline falls due inside a window a few minutes ahead; their workflows are started by
the importer on a Temporal CLI dev server, with the bench worker in its own process.
While they start, the worker's resident memory is sampled against the number of open
cases. Then every deadline is awaited in real time and counted in the system of
record: each level-1 escalation row is one deadline that fired, `escalated_at` is when
the workflow acted on it; none may be early, lateness is `escalated_at - due_at`.

Baselines in the same run: the worker's memory with no case open, and the floor's
lateness -- `FloorWorkflow` timers to instants spread over a window of the same rate,
on the same server and worker.

    python -m bench.open_cases_bench [--cases 5000] [--window 600]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.common import Report, bench_dir, database, db_name, percentile
from bench.floor import FloorInput, FloorWorkflow
from bench.harness import Stack, WorkerProcess, lanes
from starter.legacy_import import COLUMNS, import_file

DATABASE = "petitionflow_bench_open"
PERIOD = timedelta(minutes=120)  # the bench profile's routing period: the longest lead
# Assumed workflow starts per second (with their first workflow tasks), to place the window
# after them; measured 97/s on an idle two-core machine, assumed lower so that the window
# does not open on a backlog of first tasks (the first 100,000-case run did).
START_RATE = 60.0


def write_cases(path: Path, count: int, first_due: datetime, window_s: float, *,
                part: int = 0, parts: int = 1, tag: str | None = None) -> Path:
    """Case i (of `count`) falls due at first_due + window * i / count; this file holds
    the cases with i % parts == part, so the parts interleave over the whole window."""
    tag = tag or uuid.uuid4().hex[:6]
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(COLUMNS))
        writer.writeheader()
        for i in range(part, count, parts):
            due = first_due + timedelta(seconds=window_s * i / count)
            registered = (due - PERIOD).isoformat()
            writer.writerow({
                "registration_no": f"OPEN-{tag}-{i:07d}", "intake_id": f"O{tag}{i:08d}",
                "unit": "QS-XFJ", "channel": "online", "category": "other",
                "received_at": registered, "stage": "registered", "profile": "bench",
                "petitioner_name": "某", "petitioner_id_number": f"{10**16 + i:017d}X",
                "subject": f"open case {i}"})
    return path


async def _settled(worker: WorkerProcess) -> float:
    """Worker RSS once it has finished the work in hand (its CPU has gone quiet)."""
    for _ in range(200):
        before = worker.cpu_seconds()
        await asyncio.sleep(2)
        if worker.cpu_seconds() - before < 0.2:
            break
    return worker.rss_mb()


async def _sample_memory(stack: Stack, worker: WorkerProcess, samples: list[tuple[int, float]],
                         stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:  # a server swamped by a deadline storm answers late: skip that sample
            count = await stack.client.count_workflows(
                "WorkflowType = 'PetitionWorkflow' AND ExecutionStatus = 'Running'",
                rpc_timeout=timedelta(seconds=5))
            samples.append((count.count, worker.rss_mb()))
        except Exception:  # noqa: BLE001 - a missed sample is not a failed benchmark
            pass
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=3)


async def floor_lateness(stack: Stack, count: int, window_s: float,
                         margin_s: float) -> list[float]:
    lead = count / START_RATE + margin_s / 3
    first = datetime.now(UTC) + timedelta(seconds=lead)
    handles = await lanes(count, 32, lambda i: stack.client.start_workflow(
        FloorWorkflow.run, FloorInput(fire_at=first + timedelta(seconds=window_s * i / count)),
        id=f"floor-timer-{uuid.uuid4().hex[:12]}", task_queue=stack.task_queue))
    return [float(ms) for ms in await asyncio.gather(*(h.result() for h in handles))]


async def run(cases: int, window_s: float, floor_cases: int, margin_s: float = 60,
              worker_settings: dict[str, str] | None = None) -> Report:
    report = Report("open_cases_bench", {"cases": cases, "window_s": window_s,
                                         "floor_timers": floor_cases})
    work = Path(tempfile.mkdtemp(prefix="bench-open-", dir=bench_dir()))
    settings = worker_settings or {}
    async with Stack.up(db_name(DATABASE)) as stack, stack.worker(**settings) as worker:
        report.params["worker"] = settings or "as shipped"
        floor = await floor_lateness(stack, floor_cases, window_s * floor_cases / cases,
                                     margin_s)
        await asyncio.sleep(2)
        idle_rss = await _settled(worker)
        lead = cases / START_RATE + margin_s
        first_due = datetime.now(UTC) + timedelta(seconds=lead)
        tag = uuid.uuid4().hex[:6]
        halves = [write_cases(work / f"open-{h}.csv", cases, first_due, window_s, part=h,
                              parts=2, tag=tag) for h in (0, 1)]
        samples: list[tuple[int, float]] = []
        stop = asyncio.Event()
        sampler = asyncio.create_task(_sample_memory(stack, worker, samples, stop))
        async with database(stack.db_url, pool_size=2) as (engine, _):
            started = time.perf_counter()
            # Two halves, the worker's memory settled after each: flat means the second
            # half of the open cases costs the worker (almost) nothing more.
            half_rss, starts = [], 0
            for half in halves:
                result = await import_file(half, engine, client=stack.client,
                                           task_queue=stack.task_queue, progress=False)
                assert result.error_count == 0 and not result.workflow_failures, \
                    result.errors[:3]
                starts += result.workflows_started
                half_rss.append(await _settled(worker))
            start_s = time.perf_counter() - started
            backlog = await _workflow_task_backlog(stack)
            report.note(f"workflow task backlog when the starts had settled: {backlog}; the "
                        f"window opened {(first_due - datetime.now(UTC)).total_seconds():.0f} "
                        "s later")
            if datetime.now(UTC) > first_due:
                report.note("the window began before every case had started: starts were "
                            "slower than assumed, early deadlines are later than they'd be")
            last_due = first_due + timedelta(seconds=window_s)
            fired = await _wait_for_escalations(engine, cases, last_due)
            stop.set()
            sampler.cancel()
            peak_rss = max((rss for _, rss in samples), default=worker.rss_mb())
            rows = await _lateness(engine)
    late = rows
    early = sum(1 for ms in late if ms < 0)
    report.add("open cases started", starts, "")
    report.add("workflow starts per second (import, incl. settling)", starts / start_s, "/s")
    report.add("deadlines fired (level-1 escalations)", fired, "", goal=f"= {cases}",
               met=fired == cases)
    report.add("fired early", early, "", goal="0", met=early == 0)
    for p in (50, 99):
        report.add(f"deadline lateness p{p}", percentile(late, p), "ms",
                   baseline=percentile(floor, p), baseline_name="floor timer lateness")
    report.add("deadline lateness max", max(late, default=float("nan")), "ms",
               baseline=max(floor, default=float("nan")), baseline_name="floor max")
    report.add(f"worker RSS, {cases // 2:,} open", half_rss[0], "MB", baseline=idle_rss,
               baseline_name="no case open")
    report.add(f"worker RSS, {cases:,} open", half_rss[1], "MB", baseline=half_rss[0],
               baseline_name=f"{cases // 2:,} open", goal="flat (<= 1.1x)",
               met=half_rss[1] <= 1.1 * half_rss[0])
    report.add("worker RSS at peak (deadline storm included)", peak_rss, "MB",
               baseline=idle_rss, baseline_name="no case open")
    if cases < 100_000:
        report.note(f"scaled down: {cases:,} open cases, not 100,000 (see bench/README.md)")
    return report


async def _workflow_task_backlog(stack: Stack) -> int | str:
    """Tasks waiting on the shared workflow task queue (the server's approximation)."""
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    try:
        answer = await stack.client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(namespace=stack.client.namespace,
                                     task_queue=TaskQueue(name=stack.task_queue),
                                     task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
                                     report_stats=True),
            timeout=timedelta(seconds=10))
        return int(answer.stats.approximate_backlog_count)
    except Exception as err:  # noqa: BLE001 - a figure for the report, not a condition
        return f"unknown ({type(err).__name__})"


async def _wait_for_escalations(engine: AsyncEngine, cases: int, last_due: datetime) -> int:
    """Level-1 escalations recorded so far; waits until all are there or the grace ends."""
    grace = last_due + timedelta(minutes=15)
    while True:
        async with engine.connect() as conn:
            fired = int(await conn.scalar(text(
                "SELECT count(*) FROM escalations WHERE level = 1")) or 0)
        if fired >= cases or datetime.now(UTC) > grace:
            return fired
        await asyncio.sleep(5)


async def _lateness(engine: AsyncEngine) -> list[float]:
    async with engine.connect() as conn:
        rows = await conn.execute(text(
            "SELECT extract(epoch FROM escalated_at - due_at) * 1000 FROM escalations "
            "WHERE level = 1"))
        return [float(r[0]) for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--window", type=float, default=600.0)
    parser.add_argument("--floor-timers", type=int, default=1000)
    parser.add_argument("--margin", type=float, default=60.0,
                        help="seconds between the expected end of the starts and the window")
    parser.add_argument("--worker", default="",
                        help="worker settings, e.g. max_cached_workflows=6000;passthrough="
                             "+workflows")
    args = parser.parse_args()
    settings = dict(part.split("=", 1) for part in args.worker.split(";") if "=" in part)
    report = asyncio.run(run(args.cases, args.window, args.floor_timers, args.margin,
                             settings))
    report.finish()


if __name__ == "__main__":
    main()
