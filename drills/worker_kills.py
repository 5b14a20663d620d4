"""Drill: kill -9 the worker in the middle of transfers and disbursements.

Two kinds of fault: random SIGKILLs from outside whenever work is flowing, and crash
points inside the worker that kill it right after a payment or a transfer order is
committed, before the activity can report back (`drills.crash_worker`). A supervisor
restarts the worker each time. Afterwards every payment must be in the ledger exactly
once, every transfer order once, every transition recorded once with no gap.
"""

from __future__ import annotations

import asyncio
import random
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text

from adapters.tables import AssistancePayment, PetitionEvent, TransferOrder
from domain.models import Accept, Action, DecideAssistance, RequestAssistance, Transfer
from drills.ledger import check_ledger, retried_activities, summary
from drills.processes import WorkerProcess
from drills.scenarios import (
    BUREAU_HANDLER,
    HANDLER,
    HEAD,
    PatientClient,
    Stack,
    drill_intake,
    rid,
    terminate_all,
    transfer_and_pay,
)


async def _progress(stack: Stack) -> int:
    async with stack.sessions() as session:
        return sum([
            await session.scalar(select(func.count()).select_from(PetitionEvent)) or 0,
            await session.scalar(select(func.count()).select_from(AssistancePayment)) or 0,
            await session.scalar(select(func.count()).select_from(TransferOrder)) or 0,
        ])


async def _killer(stack: Stack, worker: WorkerProcess, kills: int, done: asyncio.Event,
                  rng: random.Random) -> None:
    """Each kill lands while work is flowing: right after the ledger moved."""
    for _ in range(kills):
        seen = await _progress(stack)
        while not done.is_set() and await _progress(stack) == seen:  # noqa: ASYNC110 - polls the database
            await asyncio.sleep(0.02)
        if done.is_set():
            return
        await asyncio.sleep(rng.uniform(0, 0.15))
        await worker.restart()


async def _waiting_on_transfer_orders(stack: Stack) -> bool:
    async with stack.sessions() as session:
        return bool(await session.scalar(text(
            "SELECT count(*) FROM pg_locks WHERE NOT granted "
            "AND relation = 'transfer_orders'::regclass")))


async def _overlapped(stack: Stack, client: PatientClient, worker: WorkerProcess,
                      crash_dir: Path) -> list[str]:
    """A single crash that interrupts a disbursement and a transfer together: one
    petition's transfer order is held mid-transaction (the drill locks the table), then
    the other petition's payment is committed and the worker is killed on the spot."""
    paid = await client.submit(drill_intake("QS-XFJ"))
    moved = await client.submit(drill_intake("QS-XFJ"))
    await client.act(paid, Action.TRANSFER, Transfer(
        actor=BUREAU_HANDLER, to_unit="QS-HRSS", request_id=rid(paid, "transfer")))
    await client.act(paid, Action.ACCEPT, Accept(actor=HANDLER, request_id=rid(paid, "accept")))
    await client.act(paid, Action.REQUEST_ASSISTANCE, RequestAssistance(
        actor=HANDLER, kind="hardship", amount_yuan=Decimal("1800"), reason="困难",
        request_id=rid(paid, "apply")))
    async with stack.sessions() as session:
        await session.execute(text("LOCK TABLE transfer_orders IN SHARE ROW EXCLUSIVE MODE"))
        transfer = asyncio.create_task(client.act(moved, Action.TRANSFER, Transfer(
            actor=BUREAU_HANDLER, to_unit="QS-HRSS", request_id=rid(moved, "transfer"))))
        for _ in range(600):
            if await _waiting_on_transfer_orders(stack):
                break
            await asyncio.sleep(0.05)
        (crash_dir / "armed-payment").touch()
        decide = asyncio.create_task(client.act(paid, Action.DECIDE_ASSISTANCE, DecideAssistance(
            actor=HEAD, application_no=1, approved=True, reason="同意",
            request_id=rid(paid, "decide"))))
        for _ in range(1200):
            if worker.deaths:
                break
            await asyncio.sleep(0.05)
        await session.rollback()  # the dead worker's transfer transaction is gone already
    await asyncio.gather(transfer, decide)
    await client.act(moved, Action.ACCEPT, Accept(actor=HANDLER, request_id=rid(moved, "accept")))
    return [paid, moved]


async def run(stack: Stack, *, petitions: int = 4, payments: int = 2, kills: int = 3,
              crash_budget: int = 2, overlapped: bool = False, seed: int = 6) -> dict[str, Any]:
    """`overlapped` is the short form for tests: two petitions, one crash that hits a
    payment and a transfer at once. Otherwise `petitions` run transfer-and-pay side by
    side while `kills` random SIGKILLs and `crash_budget` crash points strike."""
    started = time.monotonic()
    crash_dir = stack.work_dir / "crash-points"
    crash_dir.mkdir(parents=True, exist_ok=True)
    worker = WorkerProcess(address=stack.address, database_url=stack.database_url,
                           task_queue=stack.task_queue, log_dir=stack.work_dir / "worker",
                           module="drills.crash_worker",
                           extra_env={"DRILL_CRASH_DIR": str(crash_dir),
                                      "DRILL_CRASH_BUDGET": str(1 if overlapped
                                                                else crash_budget)})
    client = PatientClient(stack)
    await worker.start()
    worker.supervise()
    done = asyncio.Event()
    killer = asyncio.create_task(_killer(stack, worker, 0 if overlapped else kills, done,
                                         random.Random(seed)))
    workflow_ids: list[str] = []
    try:
        if overlapped:
            workflow_ids = await _overlapped(stack, client, worker, crash_dir)
        else:
            for kind in ("payment", "transfer"):
                (crash_dir / f"armed-{kind}").touch()
            workflow_ids = list(await asyncio.gather(
                *(transfer_and_pay(client, payments) for _ in range(petitions))))
        done.set()
        await killer
        tally = await check_ledger(stack.client, stack.sessions, workflow_ids)
        retried = await retried_activities(stack.client, workflow_ids)
    finally:
        done.set()
        killer.cancel()
        await terminate_all(stack.client, workflow_ids)
        await worker.stop()
    crashes = sorted(p.read_text() for p in crash_dir.glob("crash-*"))
    return {
        "drill": "worker kills",
        "faults_injected": worker.kills + worker.deaths,
        "random_kills": worker.kills, "crash_point_kills": worker.deaths,
        **summary(tally), "client_retries": sum(client.retries.values()),
        "seconds": round(time.monotonic() - started, 1),
        "crash_points": crashes, "activities_retried": retried,
        "problems": tally.lost + tally.duplicated,
    }
