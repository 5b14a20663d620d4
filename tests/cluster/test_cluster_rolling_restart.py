"""A rolling restart of the workers loses no work and repeats no side effect (issue 16,
item 5): two workers on one task queue, petitions registered, accepted and replied while
each worker in turn is shut down gracefully and replaced; every petition ends replied,
each transition and notice written exactly once."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from sqlalchemy import func, select
from temporalio.worker import Worker

from activities import build_desks
from adapters.petition_client import PetitionClient
from adapters.tables import Notice, Petition, PetitionEvent
from devstack.temporal_cluster import Cluster
from domain.models import Accept, Actor, Reply, Role, Stage
from tests.conftest import make_intake
from worker import build_worker, data_converter

pytestmark = pytest.mark.cluster

HANDLER = Actor(id="qs-xfj-h1", role=Role.HANDLER, unit="QS-XFJ")
CASES = 24
RESTARTS = 2  # rounds: each round restarts worker A, then worker B


async def test_rolling_restart_of_two_workers_loses_and_repeats_nothing(
        temporal_cluster: Cluster, dev_env, sessions, task_queue, petitions):
    client = dev_env.client

    async def new_worker() -> tuple[Worker, asyncio.Task[None]]:
        # A connection of its own, as a worker process has (the SDK allows one worker per
        # client and task queue).
        own = await temporal_cluster.connect(data_converter=data_converter())
        worker = build_worker(own, build_desks(sessions), task_queue=task_queue)
        return worker, asyncio.create_task(worker.run())

    workers = [await new_worker(), await new_worker()]
    intakes = [make_intake() for _ in range(CASES)]
    actions = PetitionClient(client, task_queue="")

    async def one_case(index: int) -> Stage:
        await asyncio.sleep(0.25 * index)  # spread over the restarts
        handle = await petitions.start(dev_env, intakes[index])
        await actions.act(handle.id, Accept(actor=HANDLER))
        status = await actions.act(handle.id, Reply(actor=HANDLER, opinion="处理意见"))
        assert status is not None
        return status.stage

    driver = asyncio.ensure_future(asyncio.gather(*(one_case(i) for i in range(CASES))))
    restarted = 0
    try:
        for _ in range(RESTARTS):
            for slot in range(len(workers)):
                await asyncio.sleep(1.5)
                old, task = workers[slot]
                workers[slot] = await new_worker()  # the replacement polls before the old one goes
                await old.shutdown()  # graceful: running activities finish
                await task
                restarted += 1
        stages = await asyncio.wait_for(driver, timeout=240)
    finally:
        driver.cancel()
        for worker, task in workers:
            with contextlib.suppress(Exception):
                await worker.shutdown()
                await task
    assert restarted == RESTARTS * 2
    assert stages == [Stage.REPLIED] * CASES

    ids = [i.intake_id for i in intakes]
    async with sessions() as session:
        registered = await session.scalar(
            select(func.count()).select_from(Petition).where(Petition.intake_id.in_(ids)))
        workflow_ids = (await session.scalars(
            select(Petition.workflow_id).where(Petition.intake_id.in_(ids)))).all()
        events = (await session.execute(
            select(PetitionEvent.workflow_id, PetitionEvent.action)
            .where(PetitionEvent.workflow_id.in_(workflow_ids))
            .order_by(PetitionEvent.workflow_id, PetitionEvent.seq))).all()
        notice_keys = (await session.scalars(
            select(Notice.idempotency_key).join(Petition, Petition.id == Notice.petition_id)
            .where(Petition.intake_id.in_(ids)))).all()
    assert registered == CASES
    by_case: dict[str, list[str]] = {}
    for workflow_id, action in events:
        by_case.setdefault(workflow_id, []).append(str(action))
    assert sorted(by_case) == sorted(workflow_ids)
    assert {tuple(v) for v in by_case.values()} == {("register", "accept", "reply")}
    assert notice_keys and len(notice_keys) == len(set(notice_keys))
