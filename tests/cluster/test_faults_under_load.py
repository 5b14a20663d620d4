"""Faults under load on the production-shaped cluster (issue 16, item 4), small: 300 open
petitions whose deadlines fall due within a minute, and four petitions being transferred,
accepted and paid twice, while a history process and a matching process are killed with
SIGKILL, a worker process is killed with SIGKILL, the frontend is restarted and so is
PostgreSQL -- which holds Temporal's stores AND the petitions' database here. Then, from
the database: every deadline fired, none early; each waiting case has exactly one
level-1 escalation, its notice and (when it fell due after the starts) one reminder, and
nothing else changed; each active case's transitions, transfer orders and payments are
there exactly once. `python -m bench.cluster_deadlines --faults` is the full-size run."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bench.cluster_deadlines import (
    active_cases,
    check_deadlines,
    faults_during,
    open_cases,
    wait_fired,
    waiting_snapshot,
)
from devstack.temporal_cluster import Cluster
from drills.cluster import KINDS, FaultInjector, cluster_stack
from drills.ledger import check_ledger

pytestmark = [pytest.mark.cluster, pytest.mark.processes]

CASES = 300
WINDOW = timedelta(seconds=60)
ACTIVE = 4


async def test_deadlines_payments_and_notices_survive_kills_and_restarts(
        temporal_cluster: Cluster, tmp_path: Path) -> None:
    if temporal_cluster.own_postgres is None:
        pytest.skip("the stores are on a PostgreSQL this cluster does not own")
    async with cluster_stack(tmp_path, cluster=temporal_cluster,
                             database="petitionflow_faults") as stack:
        await stack.start_workers(2)
        first_due = datetime.now(UTC) + timedelta(seconds=35)
        starts, _ = await open_cases(stack, CASES, first_due, WINDOW.total_seconds(),
                                     tmp_path, settle=False)
        assert starts == CASES
        before = await waiting_snapshot(stack.engine)
        all_started = datetime.now(UTC)
        assert all_started < first_due, "the starts ran into the window: raise the lead"
        injector = FaultInjector(stack, down=3.0)
        faults = asyncio.create_task(faults_during(
            injector, first_due + timedelta(seconds=3), WINDOW.total_seconds() * 0.75))
        try:
            active = await active_cases(stack, ACTIVE, WINDOW.total_seconds() * 0.6)
            await faults
        finally:
            faults.cancel()
        fired = await wait_fired(stack.engine, CASES, first_due + WINDOW + timedelta(minutes=3))
        tally = await check_deadlines(stack.engine, before, all_started)
        ledger = await check_ledger(stack.client, stack.sessions, active, patience=120)

    assert dict(injector.injected) == dict.fromkeys(KINDS, 1)
    assert all(p.running for p in temporal_cluster.processes.values())
    assert fired == CASES and tally.cases == CASES and tally.fired == CASES
    assert tally.early == 0 and min(tally.lateness_ms) >= 0
    assert tally.lost == [] and tally.duplicated == []
    assert ledger.petitions == ACTIVE and ledger.payments == 2 * ACTIVE
    assert ledger.transfers == ACTIVE and ledger.transitions == 7 * ACTIVE
    assert ledger.lost == [] and ledger.duplicated == []
