"""Open petitions' deadlines on the production-shaped cluster, with faults (issue 16, item 4).

The cluster (devstack/temporal_cluster.py: temporal-server v1.29.1, history x2, matching
x2, frontend, worker, its stores on PostgreSQL, mTLS) with the petitions' database on the
same PostgreSQL (drills/cluster.py), and TWO worker processes (`bench.cluster_worker`).
N registered petitions are imported under profile `bench` (routing in 120 minutes,
reminder 1 minute before) with registration times chosen so that their deadlines fall
due evenly over `--window` seconds, opening `--margin` seconds after the expected end of
the starts; the importer starts their workflows. Each deadline that fires is a level-1
escalation row: every one must fire, none early; lateness = `escalated_at - due_at`.

Baselines in the same run: floor timers (`FloorWorkflow`: only a durable timer and a no-op
activity) at due times spread over the SAME window, on the same workers, started after
the petitions, so both feel the same load; the workers' memory with no case open.

`--faults`: during the window, kill -9 of a history process, of a matching process, of a
worker process, a restart of the frontend and of PostgreSQL (Temporal's stores and the
petitions' database together), one after the other, while `--active` petitions are
transferred, accepted and paid assistance twice each. Afterwards, from the database:
every waiting case has exactly one reminder notice, one level-1 escalation and its notice,
no level 2, and its audit trail and other notices unchanged since the starts; every
active case's transitions, transfer orders and payments exactly once
(`drills.ledger.check_ledger`).

    python -m bench.cluster_deadlines [--cases 20000] [--window 1200] [--faults]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import WorkflowHandle

from bench.common import Report, bench_dir, percentile
from bench.floor import FloorInput, FloorWorkflow
from bench.harness import lanes
from bench.open_cases_bench import write_cases
from drills.cluster import KINDS, ClusterStack, FaultInjector, cluster_stack
from drills.ledger import Tally, check_ledger
from drills.processes import WorkerProcess
from drills.scenarios import PatientClient, transfer_and_pay
from starter.legacy_import import import_file

# Workflow starts per second on the cluster (import + first workflow task), to place the
# window after them; measured 26/s for 300 cases here (two workers, two shared cores).
START_RATE = 25.0
REMINDER_LEAD = timedelta(minutes=1)  # profile `bench`: the reminder a minute before


def rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def workers_rss(workers: Sequence[WorkerProcess]) -> float:
    """Resident memory of the worker processes, summed."""
    return sum(rss_mb(w.proc.pid) for w in workers if w.proc is not None and w.alive)


async def settled(workers: Sequence[WorkerProcess], quiet: float = 0.3) -> float:
    """The workers' RSS once they have finished the work in hand (CPU gone quiet)."""
    for _ in range(300):
        pids = [w.proc.pid for w in workers if w.proc is not None]
        before = sum(cpu_seconds(p) for p in pids)
        await asyncio.sleep(2)
        if sum(cpu_seconds(p) for p in pids) - before < quiet:
            break
    return workers_rss(workers)


async def open_cases(stack: ClusterStack, cases: int, first_due: datetime, window_s: float,
                     work: Path, *, settle: bool = True) -> tuple[int, list[float]]:
    """Import `cases` registered petitions in two interleaved halves (deadlines from
    `first_due` over `window_s`), their workflows started; the workers' RSS after each."""
    tag = uuid.uuid4().hex[:6]
    halves = [write_cases(work / f"open-{h}.csv", cases, first_due, window_s, part=h,
                          parts=2, tag=tag) for h in (0, 1)]
    starts, rss = 0, []
    for half in halves:
        result = await import_file(half, stack.engine, client=stack.client,
                                   task_queue=stack.task_queue, progress=False)
        if result.error_count or result.workflow_failures:
            raise RuntimeError(f"import failed: {result.errors[:3]}")
        starts += result.workflows_started
        rss.append(await settled(stack.workers) if settle else workers_rss(stack.workers))
    return starts, rss


async def start_floor(stack: ClusterStack, count: int, first_due: datetime,
                      window_s: float) -> list[WorkflowHandle[Any, Any]]:
    return await lanes(count, 16, lambda i: stack.client.start_workflow(
        FloorWorkflow.run,
        FloorInput(fire_at=first_due + timedelta(seconds=window_s * (i + 0.5) / count)),
        id=f"floor-timer-{uuid.uuid4().hex[:12]}", task_queue=stack.task_queue))


async def floor_results(handles: Sequence[WorkflowHandle[Any, Any]]) -> list[float]:
    async def one(handle: WorkflowHandle[Any, Any]) -> float:
        for _ in range(60):
            with contextlib.suppress(Exception):  # a frontend restart: ask again
                return float(await handle.result())
            await asyncio.sleep(1)
        return float("nan")

    return [ms for ms in await asyncio.gather(*(one(h) for h in handles)) if ms == ms]


# Per waiting (profile `bench`) case: its escalations, reminder and escalation notices,
# and what must not change while it waits (audit rows, other notices).
_PER_CASE = text("""
SELECT p.id,
  (SELECT count(*) FROM escalations e WHERE e.petition_id = p.id AND e.level = 1) AS level1,
  (SELECT count(*) FROM escalations e WHERE e.petition_id = p.id AND e.level > 1) AS higher,
  (SELECT count(*) FROM notices n WHERE n.petition_id = p.id AND n.template = 'reminder')
    AS reminders,
  (SELECT count(*) FROM notices n WHERE n.petition_id = p.id AND n.template = 'escalation')
    AS escalation_notices,
  (SELECT count(*) FROM notices n WHERE n.petition_id = p.id
     AND n.template NOT IN ('reminder', 'escalation')) AS other_notices,
  (SELECT count(*) FROM petition_events ev WHERE ev.workflow_id = p.workflow_id) AS events,
  (SELECT min(e.due_at) FROM escalations e WHERE e.petition_id = p.id) AS due_at
FROM petitions p WHERE p.profile = 'bench'
""")


async def waiting_snapshot(engine: AsyncEngine) -> dict[int, tuple[int, int]]:
    """Per waiting case: (audit rows, other notices), which waiting must not change."""
    async with engine.connect() as conn:
        rows = (await conn.execute(_PER_CASE)).mappings().all()
    return {r["id"]: (r["events"], r["other_notices"]) for r in rows}


@dataclass
class DeadlineTally:
    cases: int = 0
    fired: int = 0
    early: int = 0
    lateness_ms: list[float] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)


async def check_deadlines(engine: AsyncEngine, before: dict[int, tuple[int, int]],
                          started: datetime) -> DeadlineTally:
    """`started`: when every workflow had started. A reminder due before its case was
    imported is not sent (the import records it as past); one due after `started` must be
    sent exactly once; in between, at most once."""
    tally = DeadlineTally()
    async with engine.connect() as conn:
        rows = (await conn.execute(_PER_CASE)).mappings().all()
        late = await conn.execute(text(
            "SELECT extract(epoch FROM e.escalated_at - e.due_at) * 1000 FROM escalations e "
            "JOIN petitions p ON p.id = e.petition_id WHERE p.profile = 'bench' "
            "AND e.level = 1"))
        tally.lateness_ms = [float(r[0]) for r in late]
    tally.cases = len(rows)
    tally.fired = sum(1 for r in rows if r["level1"] >= 1)
    tally.early = sum(1 for ms in tally.lateness_ms if ms < 0)
    for r in rows:
        case = f"petition {r['id']}"
        reminder_due = r["due_at"] is not None and r["due_at"] - REMINDER_LEAD > started
        for what, n in (("level-1 escalation", r["level1"]), ("reminder notice", r["reminders"]),
                        ("escalation notice", r["escalation_notices"])):
            if n == 0 and (what != "reminder notice" or reminder_due):
                tally.lost.append(f"{case}: no {what}")
            elif n > 1:
                tally.duplicated.append(f"{case}: {n} x {what}")
        if r["higher"]:
            tally.duplicated.append(f"{case}: escalated past level 1 ({r['higher']})")
        if before.get(r["id"]) != (r["events"], r["other_notices"]):
            tally.duplicated.append(f"{case}: audit rows / other notices {before.get(r['id'])}"
                                    f" -> {(r['events'], r['other_notices'])} while waiting")
    missing = set(before) - {r["id"] for r in rows}
    tally.lost += [f"petition {pid}: gone" for pid in sorted(missing)]
    return tally


async def wait_fired(engine: AsyncEngine, cases: int, until: datetime) -> int:
    """Level-1 escalations of waiting cases so far; waits for all of them or `until`."""
    fired = 0
    while True:
        try:
            async with engine.connect() as conn:
                fired = int(await conn.scalar(text(
                    "SELECT count(*) FROM escalations e JOIN petitions p "
                    "ON p.id = e.petition_id WHERE p.profile = 'bench' AND e.level = 1")) or 0)
        except Exception:  # noqa: BLE001 - PostgreSQL restarting (a fault of the run): ask again
            pass
        if fired >= cases or datetime.now(UTC) > until:
            return fired
        await asyncio.sleep(2)


async def active_cases(stack: ClusterStack, count: int, spread_s: float) -> list[str]:
    """`count` petitions transferred, accepted and paid assistance twice, started over
    `spread_s` seconds by patient clients (they retry through every fault)."""
    # Patient indeed: on a saturated machine an Update can wait minutes behind the storm.
    client = PatientClient(stack.drill_stack(), patience=3600)

    async def one(i: int) -> str:
        await asyncio.sleep(spread_s * i / max(count, 1))
        return await transfer_and_pay(client, payments=2)

    async with asyncio.TaskGroup() as group:  # one fails: the others are cancelled
        tasks = [group.create_task(one(i)) for i in range(count)]
    return [t.result() for t in tasks]


async def faults_during(injector: FaultInjector, start_at: datetime, span_s: float,
                        kinds: Sequence[str] = KINDS) -> None:
    """The kinds one after the other, evenly over `span_s` seconds from `start_at`."""
    for n, kind in enumerate(kinds):
        at = start_at + timedelta(seconds=span_s * n / len(kinds))
        await asyncio.sleep(max(0.0, (at - datetime.now(UTC)).total_seconds()))
        await injector.inject(kind)


async def sample_memory(workers: Sequence[WorkerProcess], samples: list[float],
                        stop: asyncio.Event) -> None:
    while not stop.is_set():
        samples.append(workers_rss(workers))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=5)


async def run(cases: int, window_s: float, floor_timers: int, margin_s: float,
              faults: bool, active: int, grace_s: float, keep: bool = False) -> Report:
    report = Report("cluster_deadlines", {
        "cases": cases, "window_s": window_s, "floor_timers": floor_timers,
        "faults": faults, "active_cases": active if faults else 0, "workers": 2})
    work = Path(tempfile.mkdtemp(prefix="bench-cluster-", dir=bench_dir()))
    with contextlib.ExitStack() as cleanup:
        if keep:
            report.note(f"kept: {work}")
        else:  # the cluster's PostgreSQL data and logs: about 1 GB for 10,000 cases
            cleanup.callback(shutil.rmtree, work, ignore_errors=True)
        return await _run(report, work, cases, window_s, floor_timers, margin_s, faults,
                          active, grace_s)


async def _run(report: Report, work: Path, cases: int, window_s: float, floor_timers: int,
               margin_s: float, faults: bool, active: int, grace_s: float) -> Report:
    async with cluster_stack(work) as stack:
        workers = await stack.start_workers(2)
        idle_rss = await settled(workers)
        lead = cases / START_RATE + margin_s
        first_due = datetime.now(UTC) + timedelta(seconds=lead)
        samples: list[float] = []
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample_memory(workers, samples, stop))
        started = time.perf_counter()
        starts, half_rss = await open_cases(stack, cases, first_due, window_s, work)
        start_s = time.perf_counter() - started
        floor = await start_floor(stack, floor_timers, first_due, window_s)
        before = await waiting_snapshot(stack.engine)
        all_started = datetime.now(UTC)
        opened_in = (first_due - datetime.now(UTC)).total_seconds()
        report.note(f"the starts settled {opened_in:.0f} s before the window opened"
                    if opened_in > 0 else
                    f"the window opened {-opened_in:.0f} s before the starts settled")
        injector = FaultInjector(stack)
        side: list[asyncio.Task[Any]] = []
        try:
            if faults:
                side.append(asyncio.create_task(faults_during(
                    injector, first_due + timedelta(seconds=0.1 * window_s), 0.8 * window_s)))
                side.append(asyncio.create_task(active_cases(stack, active, 0.8 * window_s)))
            fired = await wait_fired(stack.engine, cases,
                                     first_due + timedelta(seconds=window_s + grace_s))
            active_ids: list[str] = []
            for task in side:
                result = await task
                if isinstance(result, list):
                    active_ids = result
            floor_ms = await floor_results(floor)
            stop.set()
            await sampler
            tally = await check_deadlines(stack.engine, before, all_started)
            ledger = (await check_ledger(stack.client, stack.sessions, active_ids, patience=120)
                      if active_ids else Tally())
        finally:  # an error above: nothing left running against a cluster going away
            stop.set()
            for task in (*side, sampler):
                task.cancel()
        cluster_mb = stack.cluster.memory_mb()
    late = tally.lateness_ms
    report.add("open cases started", starts, "")
    report.add("workflow starts per second (import, incl. settling)", starts / start_s, "/s")
    report.add("deadlines fired (level-1 escalations)", fired, "", goal=f"= {cases}",
               met=tally.fired == cases)
    report.add("fired early", tally.early, "", goal="0", met=tally.early == 0)
    for p in (50, 99):
        report.add(f"deadline lateness p{p}", percentile(late, p), "ms",
                   baseline=percentile(floor_ms, p), baseline_name="floor timer lateness")
    report.add("deadline lateness max", max(late, default=float("nan")), "ms",
               baseline=max(floor_ms, default=float("nan")), baseline_name="floor max")
    report.add("floor timers fired", len(floor_ms), "", goal=f"= {floor_timers}",
               met=len(floor_ms) == floor_timers)
    report.add(f"workers' RSS, {cases // 2:,} open", half_rss[0], "MB", baseline=idle_rss,
               baseline_name="no case open")
    report.add(f"workers' RSS, {cases:,} open", half_rss[1], "MB", baseline=half_rss[0],
               baseline_name=f"{cases // 2:,} open", goal="flat (<= 1.1x)",
               met=half_rss[1] <= 1.1 * half_rss[0])
    report.add("workers' RSS at peak (window included)", max(samples, default=0.0), "MB",
               baseline=idle_rss, baseline_name="no case open")
    report.add("cluster service processes' RSS at the end", cluster_mb, "MB")
    lost = len(tally.lost) + len(ledger.lost)
    duplicated = len(tally.duplicated) + len(ledger.duplicated)
    report.add("waiting cases lost anything (reminder, escalation, notice)", len(tally.lost),
               "", goal="0", met=not tally.lost)
    report.add("waiting cases got something twice, or changed", len(tally.duplicated), "",
               goal="0", met=not tally.duplicated)
    if faults:
        report.add("faults injected", injector.total, "", goal=f"= {len(KINDS)}",
                   met=injector.total == len(KINDS))
        report.add("active cases (transfer, accept, 2 payments)", ledger.petitions, "",
                   goal=f"= {active}", met=ledger.petitions == active)
        report.add("their transitions / payments / transfer orders checked",
                   ledger.transitions, f"/ {ledger.payments} / {ledger.transfers}")
        report.add("active cases: lost or duplicated", len(ledger.lost) + len(ledger.duplicated),
                   "", goal="0", met=ledger.clean)
        for at, what, seconds in injector.log:
            wall = datetime.fromtimestamp(time.time() - (time.monotonic() - at), UTC)
            report.note(f"fault: {what} ({seconds:.1f} s) at {wall:%H:%M:%S}")
    for problem in (tally.lost + tally.duplicated + ledger.lost + ledger.duplicated)[:10]:
        report.note(f"PROBLEM: {problem}")
    report.params["lost"], report.params["duplicated"] = lost, duplicated
    if cases < 100_000:
        report.note(f"scaled down: {cases:,} open cases, not 100,000 (see bench/README.md)")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--window", type=float, default=3600.0,
                        help="seconds over which the deadlines fall due")
    parser.add_argument("--floor-timers", type=int, default=0,
                        help="floor timers in the same window (default: a tenth of --cases, "
                             "at most 2,000)")
    parser.add_argument("--margin", type=float, default=90.0,
                        help="seconds between the expected end of the starts and the window")
    parser.add_argument("--faults", action="store_true",
                        help="kill/restart history, matching, a worker, the frontend and "
                             "PostgreSQL during the window, with --active paying cases")
    parser.add_argument("--active", type=int, default=20)
    parser.add_argument("--keep", action="store_true",
                        help="keep the cluster's directory (logs, PostgreSQL data)")
    parser.add_argument("--grace", type=float, default=600.0,
                        help="seconds after the window to wait for late deadlines")
    args = parser.parse_args()
    # A benchmark's throwaway data: the development keys, as `make` sets them.
    os.environ.setdefault("PETITION_DEV_KEYS", "true")
    floor = args.floor_timers or min(2000, max(10, args.cases // 10))
    report = asyncio.run(run(args.cases, args.window, floor, args.margin, args.faults,
                             args.active, args.grace, args.keep))
    report.finish()
    raise SystemExit(1 if report.params.get("lost") or report.params.get("duplicated") else 0)


if __name__ == "__main__":
    main()
