"""Benchmark 4: `petition import` (COPY) against an ORM insert baseline, same run.

1. Generate the legacy CSV (default 1,000,000 rows, 1% still open).
2. Baseline: the same parsing, validation and replay through the domain core, then
   SQLAlchemy ORM `session.add_all` in batches of 1,000 (petition, registration number,
   its history in the audit trail, termination entry: exactly the rows the importer
   writes),
   on a sample (default the first 20,000 rows) in a fresh database.
3. The COPY import of the same sample in a fresh database (equal-size comparison), as
   is and `--offline` (secondary indexes rebuilt at the end of the transaction).
4. The COPY import of every row into the bench database `petitionflow_bench`, which the
   supervisor-query benchmark then reads; open cases start their workflows on a
   throwaway Temporal dev server (no worker: starting them is what is measured).

    python -m bench.import_bench [--rows 1000000] [--sample 20000] [--open-share 0.01]
                                 [--offline]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from adapters.data_keys import vault_from_settings
from adapters.settings import get_settings
from adapters.tables import (
    Petition,
    PetitionEvent,
    RegistrationNumber,
    TerminationEntry,
)
from bench.common import Report, Stopwatch, bench_dir, database, db_name, drop, fresh_database
from bench.legacy_data import write_csv
from security.blind_index import index_from_settings
from starter.legacy.importer import (
    Preparer,
    collector_paused,
    import_file,
    load_directory,
    worker_calendar,
)
from starter.legacy.load import EVENT_COLUMNS, PETITION_COLUMNS, seal_rows
from starter.legacy.read import read_chunks

BENCH_DATABASE = "petitionflow_bench"
BASELINE_DATABASE = "petitionflow_bench_orm"
ORM_BATCH = 1_000
_COL = {name: i for i, name in enumerate(PETITION_COLUMNS)}
_EV = {name: i for i, name in enumerate(EVENT_COLUMNS)}


async def orm_import(path: Path, engine: AsyncEngine,
                     sessions: async_sessionmaker[AsyncSession]) -> int:
    """The baseline: the importer's own parsing, validation and replay, then ORM inserts."""
    import json
    from datetime import UTC, datetime

    directory = await load_directory(sessions)
    vault = vault_from_settings(get_settings(), sessions)
    index = index_from_settings(get_settings())
    prep = Preparer(directory, worker_calendar(), datetime.now(UTC), path.name)
    count = 0
    for chunk in read_chunks(path, ORM_BATCH):
        batch = prep.prepare(chunk)
        assert not batch.errors, batch.errors[:3]
        rows, sealed_events = await seal_rows(vault, index, batch.petitions, batch.events)
        events: dict[str, list[tuple[Any, ...]]] = {}
        for event in sealed_events:
            events.setdefault(event[_EV["intake_id"]], []).append(event)
        async with sessions() as session:
            petitions = [_petition(row) for row in rows]
            session.add_all(petitions)
            session.add_all(RegistrationNumber(
                intake_id=row[_COL["intake_id"]], registration_no=row[_COL["registration_no"]],
                unit_code=row[_COL["registered_unit"]], allocated_at=row[_COL["registered_at"]])
                for row in rows)
            await session.flush()
            session.add_all(PetitionEvent(
                petition_id=p.id, workflow_id=p.workflow_id,
                idempotency_key=e[_EV["idempotency_key"]], seq=e[_EV["seq"]],
                action=e[_EV["action"]], actor_id=e[_EV["actor_id"]],
                actor_role=e[_EV["actor_role"]], actor_unit=e[_EV["actor_unit"]],
                from_stage=e[_EV["from_stage"]], to_stage=e[_EV["to_stage"]], accepted=True,
                detail=json.loads(e[_EV["detail"]]), detail_sealed=e[_EV["detail_sealed"]],
                at=e[_EV["at"]])
                for p in petitions for e in events[p.intake_id])
            session.add_all(TerminationEntry(
                petition_id=p.id, matter_key=p.matter_key, registration_no=p.registration_no,
                concluded_at=row[_COL["concluded_at"]],
                concluded_by_unit=row[_COL["concluded_by"]])
                for p, row in zip(petitions, rows, strict=True)
                if row[_COL["concluded_at"]] is not None)
            await session.commit()
        count += len(rows)
    return count


def _petition(row: tuple[Any, ...]) -> Petition:
    v = {name: row[i] for name, i in _COL.items()}
    return Petition(
        intake_id=v["intake_id"], workflow_id=v["workflow_id"],
        registration_no=v["registration_no"], registered_unit=v["registered_unit"],
        holding_unit=v["holding_unit"], responsible_unit=v["responsible_unit"],
        handler_id=v["handler_id"], leader_id=v["leader_id"], channel=v["channel"],
        category=v["category"], law_related=v["law_related"], profile=v["profile"],
        persons=v["persons"], matter_key=v["matter_key"],
        petitioner_id_index=v["petitioner_id_index"],
        petitioner_phone_index=v["petitioner_phone_index"],
        petitioner_sealed=v["petitioner_sealed"], subject_sealed=v["subject_sealed"],
        content_sealed=v["content_sealed"], attachments_sealed=v["attachments_sealed"],
        stage=v["stage"],
        outcome=v["outcome"], received_at=v["received_at"], registered_at=v["registered_at"],
        accepted_at=v["accepted_at"], replied_at=v["replied_at"], closed_at=v["closed_at"],
        acceptance_due=v["acceptance_due"], handling_due=v["handling_due"],
        next_deadline=v["next_deadline"], overdue=v["overdue"], was_overdue=v["was_overdue"],
        escalation_level=v["escalation_level"], extension_days=v["extension_days"],
        satisfaction=v["satisfaction"], repeat_visits=v["repeat_visits"],
        reviewed=v["reviewed"], last_seq=v["last_seq"])


def _head(source: Path, target: Path, rows: int) -> Path:
    """The first `rows` records of `source` (one record per line: the generator writes no
    line breaks inside cells)."""
    with source.open(encoding="utf-8") as src, target.open("w", encoding="utf-8") as out:
        out.writelines(itertools.islice(src, rows + 1))
    return target


async def run(rows: int, sample: int, open_share: float, *, keep_csv: bool = True,
              full_offline: bool = False) -> Report:
    from devstack.temporal_server import start_dev_server
    from worker import data_converter

    database_name, baseline_db = db_name(BENCH_DATABASE), db_name(BASELINE_DATABASE)
    report = Report("import_bench", {"rows": rows, "sample": sample, "open_share": open_share,
                                     "orm_batch": ORM_BATCH})
    work = Path(tempfile.mkdtemp(prefix="bench-import-", dir=bench_dir()))
    csv_path = work / f"legacy-{rows}.csv"
    clock = Stopwatch()
    write_csv(csv_path, rows, open_share=open_share)
    report.note(f"generated {rows:,} rows ({csv_path.stat().st_size / 1e6:.0f} MB) "
                f"in {clock():.1f} s")
    sample = min(sample, rows)
    sample_path = _head(csv_path, work / f"legacy-sample-{sample}.csv", sample)

    # Baseline and the equal-size COPY run share one throwaway database, recreated between.
    url = await fresh_database(baseline_db)
    async with database(url) as (engine, sessions):
        clock = Stopwatch()
        with collector_paused():  # the importer's own GC setting, so only the writes differ
            done = await orm_import(sample_path, engine, sessions)
        orm_rate = done / clock()
    env = await start_dev_server(db_filename=None, ui=False, data_converter=data_converter())
    async with env:
        for offline in (False, True):
            url = await fresh_database(baseline_db)
            async with database(url) as (engine, _):
                small = await import_file(sample_path, engine, client=env.client,
                                          task_queue="bench-import", progress=False,
                                          offline=offline)
            await drop(baseline_db)
            assert small.error_count == 0, small.errors[:5]
            small_rate = small.rows / (small.timings["total_s"]
                                       - small.timings.get("workflows_s", 0))
            report.add(f"COPY import{' --offline' if offline else ''}, {sample:,} rows",
                       small_rate, "rows/s", baseline=orm_rate,
                       baseline_name=f"ORM add_all, same {sample:,} rows", goal=">= 10x",
                       met=small_rate >= 10 * orm_rate)

        url = await fresh_database(database_name)
        async with database(url) as (engine, _):
            result = await import_file(csv_path, engine, client=env.client,
                                       task_queue="bench-import", progress=True,
                                       offline=full_offline)
        assert result.error_count == 0, result.errors[:5]
    t = result.timings
    load_s = t["total_s"] - t.get("workflows_s", 0.0)
    rate = result.rows / load_s
    report.add(f"COPY import{' --offline' if full_offline else ''}, {rows:,} rows", rate,
               "rows/s", baseline=orm_rate,
               baseline_name=f"ORM add_all, {sample:,}-row sample", goal=">= 10x",
               met=rate >= 10 * orm_rate)
    report.add("  of which validate+replay+stage", t["validate_s"], "s")
    report.add("  of which COPY to staging", t["copy_s"], "s")
    report.add("  of which INSERT ... SELECT (overlapped)", t.get("insert_s", 0.0), "s")
    report.add("  of which waiting for the server", t.get("wait_s", 0.0), "s")
    if full_offline:
        report.add("  of which rebuilding indexes", t.get("reindex_s", 0.0), "s")
    if result.open_cases:
        report.add(f"workflow starts ({result.open_cases:,} open cases)",
                   result.workflows_started / t["workflows_s"], "starts/s")
    report.note(f"imported {result.imported:,} rows into database {database_name!r} "
                f"(kept for bench.query_bench)")
    if not keep_csv:
        csv_path.unlink()
    report.params["csv"] = str(csv_path)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=20_000)
    parser.add_argument("--open-share", type=float, default=0.01)
    parser.add_argument("--offline", action="store_true",
                        help="the full import with `--offline` (indexes rebuilt at the end)")
    args = parser.parse_args()
    report = asyncio.run(run(args.rows, args.sample, args.open_share,
                             full_offline=args.offline))
    report.finish()


if __name__ == "__main__":
    main()
