"""Drill: back up the whole stack under load, lose it, restore into an empty stack.

`python -m drills --backup`: the production-shaped cluster (drills/cluster.py) with the
petitions' database on its PostgreSQL, the production worker in two processes, `--lanes`
clients taking petitions through transfer, acceptance and paid assistance without pause,
and `--waiting` open petitions imported under profile `bench` that only wait on their
routing clock, received so that their deadlines fall due one after another across the drill: some
before the backup, some while the stack is gone, most after the restore.

While the lanes run, `adapters.backup.take_backup` takes one encrypted physical backup of
the server. Then the stack is shut down and its directory left behind, as if the host was
lost; `restore_backup` makes a new data directory from the backup alone, and a new cluster
and new workers start on it. From the restored stack:

- every petition that existed before the backup began exists, with its workflow;
- every open petition is open with the deadlines it had (before or after the backup,
  whichever its state is), and its workflow is running;
- every transition, payment and transfer order once (`drills.ledger`);
- every waiting petition's reminder and escalation exactly once: those due before the
  backup not again, those due while the stack was gone fired on its return, those due
  after the restore on time (their lateness, as the workflow saw it, is reported).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowExecutionStatus

from adapters.backup import restore_backup, take_backup
from adapters.tables import Escalation, Notice, Petition
from bench.cluster_deadlines import REMINDER_LEAD, open_cases
from bench.common import percentile
from devstack.temporal_cluster import running_cluster
from domain.models import OPEN_STAGES
from drills.cluster import ClusterStack, cluster_stack
from drills.ledger import check_ledger, summary
from drills.scenarios import PatientClient, transfer_and_pay

log = logging.getLogger("petitionflow.drills")


@dataclass(frozen=True)
class Row:
    stage: str
    seq: int
    deadlines: tuple[datetime | None, ...]


async def snapshot(sessions: async_sessionmaker[AsyncSession]) -> dict[str, Row]:
    async with sessions() as session:
        rows = (await session.execute(select(
            Petition.workflow_id, Petition.stage, Petition.last_seq, Petition.acceptance_due,
            Petition.handling_due, Petition.next_deadline))).all()
    return {wf: Row(stage, seq, (a, h, n)) for wf, stage, seq, a, h, n in rows}


def compare(before: dict[str, Row], after: dict[str, Row], restored: dict[str, Row]
            ) -> list[str]:
    """Each petition of `before` in `restored`, in the state of `before`, of `after`, or
    one between (it moved while the backup ran), with that state's deadlines."""
    problems = []
    for wf, old in before.items():
        new, later = restored.get(wf), after.get(wf, old)
        if new is None:
            problems.append(f"{wf}: registered before the backup, missing after the restore")
        elif new.seq == old.seq and new != old:
            problems.append(f"{wf}: at seq {old.seq} before and after, but {old} became {new}")
        elif new.seq == later.seq and new != later:
            problems.append(f"{wf}: at seq {later.seq}, but {later} became {new}")
        elif not old.seq <= new.seq <= later.seq:
            problems.append(f"{wf}: seq {new.seq} restored, outside {old.seq}..{later.seq}")
    return problems


async def running_workflows(client: Client, rows: dict[str, Row]) -> list[str]:
    """Open petitions whose workflow is not running in the restored cluster."""
    problems = []
    for wf, row in rows.items():
        if row.stage not in OPEN_STAGES:
            continue
        status = (await client.get_workflow_handle(wf).describe()).status
        if status != WorkflowExecutionStatus.RUNNING:
            problems.append(f"{wf}: open ({row.stage}) but its workflow is {status}")
    return problems


async def fired(sessions: async_sessionmaker[AsyncSession], workflow_id: str
                ) -> dict[str, list[tuple[datetime, datetime]]]:
    """The petition's deadline timers that fired, as (due, fired) by kind: its reminders
    (due a minute before the deadline under `bench`) and its escalations."""
    async with sessions() as session:
        petition_id = await session.scalar(
            select(Petition.id).where(Petition.workflow_id == workflow_id))
        escalations = (await session.execute(select(Escalation.due_at, Escalation.escalated_at)
                                             .where(Escalation.petition_id == petition_id))).all()
        reminders = (await session.scalars(select(Notice.created_at).where(
            Notice.petition_id == petition_id, Notice.template == "reminder"))).all()
    due = escalations[0][0] if escalations else None
    return {"escalation": [(d, at) for d, at in escalations],
            "reminder": [(due - REMINDER_LEAD if due else at, at) for at in reminders]}


async def register_waiting(stack: ClusterStack, count: int, first_due: datetime,
                           spread: float) -> dict[str, datetime]:
    """`count` open petitions imported as bench.cluster_deadlines imports them (profile
    `bench`, received 120 minutes -- the profile's period -- before their routing
    deadline), which fall due from `first_due` on, over `spread` seconds."""
    await open_cases(stack, count, first_due, spread, stack.work_dir, settle=False)
    async with stack.sessions() as session:
        rows = (await session.execute(select(Petition.workflow_id, Petition.registration_no)
                                      .where(Petition.registration_no.like("OPEN-%")))).all()
    # bench.open_cases_bench.write_cases numbers case i (of `count`) OPEN-<tag>-<i>.
    return {wf: first_due + timedelta(seconds=spread * int(no.rsplit("-", 1)[1]) / count)
            for wf, no in rows}


@dataclass
class Timeline:
    backup_started: datetime
    backup_finished: datetime
    cluster_up: datetime  # the restored cluster serves
    workers_up: datetime  # and the workers run


@dataclass
class TimerCheck:
    """The waiting petitions' timers: each exactly once, bucketed by when it fell due."""

    lost: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)
    before_backup: int = 0
    while_down: list[float] = field(default_factory=list)  # fired, s after the cluster was up
    after_restore: list[float] = field(default_factory=list)  # lateness, s

    def add(self, workflow_id: str, kind: str, timers: list[tuple[datetime, datetime]],
            due: datetime, times: Timeline) -> None:
        if len(timers) != 1:
            (self.lost if not timers else self.doubled).append(
                f"{workflow_id}: {len(timers)} {kind}s due {due.isoformat()}, not 1")
            return
        recorded_due, fired_at = timers[0]
        if kind == "escalation" and recorded_due != due:
            self.lost.append(f"{workflow_id}: deadline {recorded_due.isoformat()}, "
                             f"imported for {due.isoformat()}")
        if due <= times.backup_started:
            self.before_backup += 1
        elif due > times.workers_up:
            self.after_restore.append((fired_at - due).total_seconds())
        elif due > times.backup_finished:
            self.while_down.append((fired_at - times.cluster_up).total_seconds())

    def figures(self) -> dict[str, Any]:
        late = self.after_restore
        return {
            "timers_due_before_backup": self.before_backup,
            "timers_due_while_down": len(self.while_down),
            "timers_due_after_restore": len(late),
            "while_down_fired_within_s": round(max(self.while_down, default=0.0), 2),
            "after_restore_lateness_p50_s": round(percentile(late, 50), 3) if late else None,
            "after_restore_lateness_max_s": round(max(late, default=0.0), 3),
        }


async def check_timers(sessions: async_sessionmaker[AsyncSession], waiting: dict[str, datetime],
                       times: Timeline) -> TimerCheck:
    check = TimerCheck()
    for wf, due in waiting.items():
        for kind, timers in (await fired(sessions, wf)).items():
            check.add(wf, kind, timers, due - REMINDER_LEAD if kind == "reminder" else due,
                      times)
    return check


async def _load(client: PatientClient, stop: asyncio.Event, active: list[str]) -> None:
    while not stop.is_set():
        active.append(await transfer_and_pay(client, 1))


async def run(work: Path, *, waiting: int = 24, lanes: int = 2, workers: int = 2,
              load_seconds: float = 15.0, spread: float = 120.0,
              on_time: float = 5.0) -> dict[str, Any]:
    """`spread`: seconds over which the waiting petitions' deadlines fall due, from 10 s
    after the backup begins (their reminders a minute earlier); `on_time`: the lateness
    above which a timer due after the restore counts as late."""
    import pyrage

    started = time.monotonic()
    identity = pyrage.x25519.Identity.generate()
    backup_dir = work / "backup"
    async with cluster_stack(work / "lost") as stack:
        await stack.start_workers(workers, module=None)
        client = PatientClient(stack.drill_stack(), patience=300)
        task_queue = stack.task_queue
        # Every reminder after the import (the importer counts earlier ones as sent).
        first_due = datetime.now(UTC) + REMINDER_LEAD + timedelta(seconds=load_seconds)
        due_at = await register_waiting(stack, waiting, first_due, spread)
        if len(due_at) != waiting:
            raise RuntimeError(f"{len(due_at)} of {waiting} waiting petitions registered")
        stop, active = asyncio.Event(), list[str]()
        lanes_ = [asyncio.create_task(_load(client, stop, active)) for _ in range(lanes)]
        await asyncio.sleep(max(0.0, (first_due - datetime.now(UTC)).total_seconds() - 10))
        before = await snapshot(stack.sessions)
        info = await asyncio.to_thread(take_backup, _conninfo(stack), backup_dir,
                                       recipients=[str(identity.to_public())])
        after = await snapshot(stack.sessions)
        log.info("backup of %d petitions in %.1f s (%d bytes); the stack goes down",
                 len(after), info.seconds, info.bytes)
        stop.set()
        for task in lanes_:
            task.cancel()
        await asyncio.gather(*lanes_, return_exceptions=True)
    gone = time.monotonic()
    data = work / "restored" / "cluster" / "pgdata"
    await asyncio.to_thread(restore_backup, backup_dir, data, identities=[identity])
    restored_seconds = time.monotonic() - gone
    async with running_cluster(work / "restored" / "cluster", restored=data) as cluster, \
            cluster_stack(work / "restored", cluster=cluster, restored=True,
                          task_queue=task_queue) as stack:
        cluster_up = datetime.now(UTC)
        await stack.start_workers(workers, module=None)
        times = Timeline(info.started_at, info.finished_at, cluster_up, datetime.now(UTC))
        down_seconds = time.monotonic() - gone
        log.info("restored stack up after %.1f s", down_seconds)
        return await _check(stack, before, after, due_at, times, {
            "drill": "backup and restore",
            "backup_seconds": round(info.seconds, 1), "backup_bytes": info.bytes,
            "restore_seconds": round(restored_seconds, 1),
            "seconds_down": round(down_seconds, 1),
            "petitions_before_backup": len(before), "petitions_in_backup_window":
                len(after) - len(before), "waiting_petitions": len(due_at),
            "active_petitions": len(active),
        }, on_time, started)


def _conninfo(stack: ClusterStack) -> str:
    """As production takes it (docs/backup.md): a role that may replicate and nothing
    else, over TCP with its password, from a passfile rather than the command line."""
    pg = stack.cluster.own_postgres
    if pg is None:
        raise ValueError("the cluster runs on a PostgreSQL it does not own")
    password = secrets.token_urlsafe(18)
    pg.psql(f"CREATE ROLE petition_backup LOGIN REPLICATION PASSWORD '{password}'")
    passfile = stack.work_dir / "backup.pgpass"
    passfile.write_text(f"127.0.0.1:{pg.port}:*:petition_backup:{password}\n")
    passfile.chmod(0o600)
    return f"host=127.0.0.1 port={pg.port} user=petition_backup passfile={passfile}"


async def _check(stack: ClusterStack, before: dict[str, Row], after: dict[str, Row],
                 due_at: dict[str, datetime], times: Timeline, report: dict[str, Any],
                 on_time: float, started: float) -> dict[str, Any]:
    restored = await snapshot(stack.sessions)
    lost = compare(before, after, restored)
    lost += await running_workflows(stack.client, restored)
    last_due = max(due_at.values())
    await asyncio.sleep(max(0.0, (last_due - datetime.now(UTC)).total_seconds() + 10))
    tally = await check_ledger(stack.client, stack.sessions, sorted(restored), patience=120)
    timers = await check_timers(stack.sessions, due_at, times)
    late = [f"a timer due after the restore fired {s:.1f} s late"
            for s in timers.after_restore if s > on_time]
    lost += timers.lost + tally.lost + late
    doubled = timers.doubled + tally.duplicated
    return {
        **report, **summary(tally), **timers.figures(),
        "petitions_restored": len(restored),
        "open_petitions_restored": sum(r.stage in OPEN_STAGES for r in restored.values()),
        "timers_checked": 2 * len(due_at),
        "lost": len(lost), "duplicated": len(doubled),
        "seconds": round(time.monotonic() - started, 1),
        "problems": lost + doubled,
    }
