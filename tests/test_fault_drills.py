"""Issue 6: the fault drills, in short form (`python -m drills` runs them full size).

kill -9 of the worker right after a payment is committed, a transfer order in flight; the
Temporal dev server stopped while reminders fall due and started again on its database
file; PostgreSQL stopped under load. They run side by side: each checks afterwards that
every payment is in the ledger exactly once, every transfer order and every transition
once with no gap, every timer fired once, and that the read model converged."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from drills import postgres_outage, server_restart, worker_kills
from drills.scenarios import Stack

pytestmark = pytest.mark.servers  # starts its own servers: not in the fast tier


async def test_crashes_restarts_and_outages_lose_nothing_and_do_nothing_twice(
        dev_env, sessions, db_url, tmp_path: Path, capsys) -> None:
    address = dev_env.client.service_client.config.target_host
    stack = Stack(dev_env.client, sessions, db_url, address,
                  f"drill-kills-{uuid.uuid4().hex[:6]}", tmp_path / "kills")
    kills, restart, outage = await asyncio.gather(
        worker_kills.run(stack, overlapped=True),
        server_restart.run(sessions, db_url, tmp_path / "restart", petitions=3,
                           task_queue=f"drill-restart-{uuid.uuid4().hex[:6]}"),
        postgres_outage.run(dev_env.client, address, tmp_path / "postgres", petitions=3,
                            outage_seconds=5.0,
                            task_queue=f"drill-pg-{uuid.uuid4().hex[:6]}"))
    with capsys.disabled():
        for report in (kills, restart, outage):
            print(f"\n[drill] {report}")
    for report in (kills, restart, outage):
        assert report["problems"] == [], report
        assert report["lost"] == 0 and report["duplicated"] == 0, report

    # The faults landed where they were meant to.
    # One kill -9 right after a payment was committed, with a transfer order mid-transaction:
    # both activities ran again, and the ledger still has each exactly once.
    assert kills["crash_point_kills"] == 1
    assert [c.split()[0] for c in kills["crash_points"]] == ["payment"]
    assert {"issue_transfer_order", "disburse_assistance"} <= set(kills["activities_retried"])
    assert kills["payments_checked"] == 1 and kills["transfer_orders_checked"] == 2
    assert restart["faults_injected"] == 1 and restart["timers_checked"] == 9
    assert "file_assistance_application" in outage["activities_retried"], outage
    # 3 petitions handled and paid through the outage, 1 registered during it.
    assert outage["petitions"] == 4 and outage["payments_checked"] == 3
    assert outage["transitions_checked"] == 3 * 5 + 1
