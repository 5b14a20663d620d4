"""`python -m drills`: run the fault drills against a fresh stack and print their counts.

    python -m drills                      # all three, full size (about five minutes)
    python -m drills --only worker-kills --petitions 10 --kills 8
    python -m drills --outage 60          # PostgreSQL down for a minute
    python -m drills --cluster --faults 200   # on the production-shaped cluster (about 5 min)
    python -m drills --backup             # back up under load, restore into an empty stack

Exit status 1 if anything was lost or done twice.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from adapters.engine import create_engine, session_maker
from devstack.postgres import database_url, drop_database, ensure_database
from devstack.temporal_server import start_dev_server
from drills import postgres_outage, server_restart, worker_kills
from drills.scenarios import Stack
from starter.runtime import SAMPLE_DIRECTORY, load_directory_file, migrate_async
from worker import data_converter

DRILLS = ("worker-kills", "server-restart", "postgres-outage")


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m drills", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=DRILLS, action="append")
    parser.add_argument("--petitions", type=int, default=6)
    parser.add_argument("--kills", type=int, default=4, help="random kill -9s of the worker")
    parser.add_argument("--crash-points", type=int, default=2,
                        help="kills right after a payment/transfer order is committed")
    parser.add_argument("--restarts", type=int, default=2, help="Temporal server restarts")
    parser.add_argument("--outage", type=float, default=60.0,
                        help="seconds PostgreSQL stays down")
    parser.add_argument("--cluster", action="store_true",
                        help="the cluster drill instead (drills/cluster_faults.py): kill -9 of "
                             "history, matching and worker processes, restarts of the frontend "
                             "and PostgreSQL, in turn, under load")
    parser.add_argument("--faults", type=int, default=200, help="with --cluster: how many")
    parser.add_argument("--lanes", type=int, default=3,
                        help="with --cluster: concurrent clients taking petitions through")
    parser.add_argument("--backup", action="store_true",
                        help="the backup-and-restore drill instead (drills/backup_restore.py), "
                             "on the production-shaped cluster")
    parser.add_argument("--waiting", type=int, default=24,
                        help="with --backup: petitions waiting on deadlines due across it")
    parser.add_argument("--json", action="store_true", help="print the reports as JSON")
    return parser.parse_args()


async def run_cluster(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    from drills import cluster_faults
    from drills.cluster import cluster_stack

    async with cluster_stack(work) as stack:
        return [await cluster_faults.run(stack, faults=args.faults, lanes=args.lanes)]


async def run_backup(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    from drills import backup_restore

    return [await backup_restore.run(work, waiting=args.waiting, lanes=args.lanes)]


async def run_all(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    chosen = args.only or list(DRILLS)
    base = database_url(os.environ.get("DATABASE_URL"))
    name = f"petitionflow_drills_{os.getpid()}"
    url = await ensure_database(base, name, recreate=True)
    await migrate_async(url)
    engine = create_engine(url, pool_size=10)
    sessions = session_maker(engine)
    await load_directory_file(sessions, SAMPLE_DIRECTORY)
    runs = []
    try:
        env = await start_dev_server(db_filename=None, ui=False, data_converter=data_converter())
        async with env:
            address = env.client.service_client.config.target_host
            if "worker-kills" in chosen:
                stack = Stack(env.client, sessions, url, address,
                              f"drill-kills-{uuid.uuid4().hex[:6]}", work / "kills")
                runs.append(worker_kills.run(stack, petitions=args.petitions,
                                             kills=args.kills, crash_budget=args.crash_points))
            if "server-restart" in chosen:
                runs.append(server_restart.run(sessions, url, work / "restart",
                                               petitions=args.petitions,
                                               restarts=args.restarts))
            if "postgres-outage" in chosen:
                runs.append(postgres_outage.run(env.client, address, work / "postgres",
                                                petitions=args.petitions,
                                                outage_seconds=args.outage))
            return list(await asyncio.gather(*runs))
    finally:
        await engine.dispose()
        await drop_database(base, name)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    from security.redact import install_redaction

    install_redaction()  # nothing personal in failed attempts' tracebacks
    args = _args()
    on_cluster = args.cluster or args.backup
    if on_cluster:  # one line per fault or step, to follow a long run
        logging.getLogger("petitionflow.drills").setLevel(logging.INFO)
    with tempfile.TemporaryDirectory(prefix="petition-drills-") as tmp:
        if on_cluster:
            # Throwaway data on a throwaway cluster: the development keys, as `make` sets them.
            os.environ.setdefault("PETITION_DEV_KEYS", "true")
        drill = run_backup if args.backup else run_cluster if args.cluster else run_all
        reports = asyncio.run(drill(args, Path(tmp)))
    if args.json:
        print(json.dumps(reports, indent=2, ensure_ascii=False, default=str))
    for report in reports:
        problems = report.pop("problems")
        print(f"{report.pop('drill')}: " + ", ".join(f"{k}={v}" for k, v in report.items()))
        for problem in problems:
            print(f"  PROBLEM: {problem}")
    totals = {key: sum(int(r.get(key, 0)) for r in reports) for key in (
        "faults_injected", "petitions", "transitions_checked", "payments_checked",
        "transfer_orders_checked", "timers_checked", "lost", "duplicated")}
    print("total: " + ", ".join(f"{k}={v}" for k, v in totals.items())
          + f", drills={len(reports)}")
    sys.exit(1 if totals["lost"] or totals["duplicated"] else 0)


if __name__ == "__main__":
    main()
