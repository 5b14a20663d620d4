"""Drill: hundreds of faults on the production-shaped cluster under steady load.

`python -m drills --cluster --faults 200`: the cluster (drills/cluster.py) with the
petitions' database on its PostgreSQL and two production worker processes (`worker.py`).
`--lanes` patient clients each take petition after petition through registration at the
county bureau, transfer, acceptance and two paid hardship applications, and register
one more petition under profile `demo` that only waits on its clocks (reminder at 12 s,
level-1 escalation at 20 s, level 2 at 30 s). Meanwhile `--faults` faults strike one
after another, the five kinds in turn: kill -9 of a history process, of a matching
process, of a worker process, a restart of the frontend, of PostgreSQL (fast shutdown and
SIGKILL alternately). Then, from the database and the workflows: every transition,
transfer order and payment exactly once (`drills.ledger`), every waiting petition's
reminder, level-1 and level-2 escalation exactly once.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from drills.cluster import ClusterStack, FaultInjector
from drills.ledger import check_ledger, summary
from drills.scenarios import PatientClient, drill_intake, terminate_all, transfer_and_pay
from drills.server_restart import _fired, wait_escalated

WAITING_PROFILE = "demo"
WAITING_SETTLES = 45.0  # seconds after registration by which a demo case reached level 2


async def run(stack: ClusterStack, *, faults: int = 200, lanes: int = 3, workers: int = 2,
              down: float = 1.0, gap: float = 0.3, payments: int = 2) -> dict[str, Any]:
    started = time.monotonic()
    await stack.start_workers(workers, module=None)
    client = PatientClient(stack.drill_stack(), patience=600)
    injector = FaultInjector(stack, down=down)
    done = asyncio.Event()
    active: list[str] = []
    waiting: list[str] = []

    async def lane() -> None:
        while not done.is_set():
            waiting.append(await client.submit(drill_intake(
                "QS-HRSS", profile=WAITING_PROFILE, tag="CLWAIT")))
            active.append(await transfer_and_pay(client, payments))

    lanes_ = [asyncio.create_task(lane()) for _ in range(lanes)]
    try:
        await injector.run(faults, gap=gap)
        done.set()
        await asyncio.gather(*lanes_)
        faulted = time.monotonic() - started
        await asyncio.sleep(WAITING_SETTLES)
        await wait_escalated(stack.client, waiting, patience=120)
        tally = await check_ledger(stack.client, stack.sessions, active + waiting,
                                   patience=120)
        timers = 0
        lost: list[str] = []
        duplicated: list[str] = []
        for wf in waiting:
            reminders, levels = await _fired(stack.sessions, wf)
            timers += len(reminders) + len(levels)
            if len(reminders) != 1:
                (lost if not reminders else duplicated).append(
                    f"{wf}: {len(reminders)} acceptance reminders, not 1")
            lost += [f"{wf}: no level-{n} escalation" for n in (1, 2) if n not in levels]
            if len(levels) > len(set(levels)):
                duplicated.append(f"{wf}: escalations {levels}")
    finally:
        done.set()
        for task in lanes_:
            task.cancel()
        await terminate_all(stack.client, active + waiting)
    lost += tally.lost
    duplicated += tally.duplicated
    return {
        "drill": "cluster faults",
        "faults_injected": injector.total, "faults_by_kind": dict(injector.injected),
        "worker_restarts": sum(w.starts - 1 for w in stack.workers),
        **summary(tally), "waiting_petitions": len(waiting), "timers_checked": timers,
        "lost": len(lost), "duplicated": len(duplicated),
        "client_retries": sum(client.retries.values()),
        "seconds_under_faults": round(faulted, 1),
        "seconds": round(time.monotonic() - started, 1),
        "problems": lost + duplicated,
    }
