"""Benchmark 5: what supervisors ask of 1,000,000 petitions, p95 against the same queries
without the supervisor indexes (migration 0003), measured in the same run.

Reads the database `petitionflow_bench` that `bench.import_bench` fills (run it first,
or pass `--import-rows N` to have this benchmark import N rows itself). Queries:

* overdue list, province-wide: open petitions past their next deadline, most overdue
  first, one page of 100 (what the supervisor opens every morning);
* overdue list of one unit (the same, for the unit answerable for the case);
* the monthly assessment report of a unit and its subtree (`reports.report.build_report`,
  the code behind `petition report`), for a month picked at random from the history.

Baseline: the database is taken back to the revision before 0003 (its indexes dropped),
every query is timed, then it is upgraded to head again and timed again.

    python -m bench.query_bench [--samples 60] [--import-rows 0]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bench.common import Report, database, db_name, existing_database, percentile
from bench.import_bench import BENCH_DATABASE

INDEX_REVISION = "0003"
GOAL_MS = 100.0
REPORT_UNITS = ("YZ-HRSS", "LJ-NR", "YZ-XFJ", "QS-HURD")
OVERDUE_UNITS = ("QS-HRSS", "YZ-HRSS", "LJ-NR", "BS-HURD", "YZ-PSB")

# The unit answerable for a case: its responsible unit once accepted, else the holder
# (the Web UI's ResponsibleUnit, and the unit the assessment reports count it for).
OVERDUE_PROVINCE = text("""
    SELECT registration_no, coalesce(responsible_unit, holding_unit) AS unit, stage,
           next_deadline, escalation_level
    FROM petitions
    WHERE stage <> 'closed' AND next_deadline < :now
    ORDER BY next_deadline LIMIT 100""")
OVERDUE_UNIT = text("""
    SELECT registration_no, stage, next_deadline, escalation_level
    FROM petitions
    WHERE stage <> 'closed' AND next_deadline < :now
      AND coalesce(responsible_unit, holding_unit) = :unit
    ORDER BY next_deadline LIMIT 100""")


def _index_migration(sync_conn: Any, direction: str) -> None:
    """Run only migration 0003 (the supervisor query indexes) down or up, in place: the
    baseline keeps every later column (a report needs 0004's unit territories)."""
    import importlib.util

    from alembic.operations import Operations
    from alembic.runtime.migration import MigrationContext

    from adapters.settings import PROJECT_ROOT

    [path] = (PROJECT_ROOT / "migrations" / "versions").glob(f"{INDEX_REVISION}_*.py")
    spec = importlib.util.spec_from_file_location("index_migration", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with Operations.context(MigrationContext.configure(sync_conn)):
        getattr(module, direction)()


async def index_migration(engine: AsyncEngine, direction: str) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(_index_migration, direction)


async def timed(samples: int, call: Callable[[int], Awaitable[Any]]) -> list[float]:
    await call(-1)  # warm the plan and the cache
    times = []
    for i in range(samples):
        t = time.perf_counter()
        await call(i)
        times.append((time.perf_counter() - t) * 1000)
    return times


async def measure(engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
                  samples: int, months: list[date]) -> dict[str, list[float]]:
    from reports.periods import PeriodKind, ReportPeriod
    from reports.report import build_report

    now = datetime.now(UTC)
    rng = random.Random(11)

    async def province(i: int) -> None:
        async with engine.connect() as conn:
            rows = (await conn.execute(OVERDUE_PROVINCE, {"now": now})).all()
            assert len(rows) <= 100

    async def unit(i: int) -> None:
        async with engine.connect() as conn:
            await conn.execute(OVERDUE_UNIT, {"now": now,
                                              "unit": OVERDUE_UNITS[i % len(OVERDUE_UNITS)]})

    async def monthly(i: int) -> None:
        period = ReportPeriod(PeriodKind.MONTH, rng.choice(months))
        await build_report(sessions, REPORT_UNITS[i % len(REPORT_UNITS)], period, as_of=now)

    return {"overdue list, province (100 rows)": await timed(samples, province),
            "overdue list, one unit (100 rows)": await timed(samples, unit),
            "monthly report, unit subtree": await timed(samples, monthly)}


async def run(samples: int, import_rows: int) -> Report:
    if import_rows:
        from bench.import_bench import run as import_run

        await import_run(import_rows, min(20_000, import_rows), 0.01)
    name = db_name(BENCH_DATABASE)
    url = await existing_database(name)
    report = Report("query_bench", {"samples": samples, "database": name})
    async with database(url, pool_size=4) as (engine, sessions):
        async with engine.connect() as conn:
            count = await conn.scalar(text("SELECT count(*) FROM petitions"))
            open_count = await conn.scalar(text(
                "SELECT count(*) FROM petitions WHERE stage <> 'closed'"))
            span = (await conn.execute(text(
                "SELECT min(registered_at), max(registered_at) FROM petitions"))).one()
        if not count:
            raise SystemExit(f"{name} is empty: run `python -m bench.import_bench` "
                             "first, or pass --import-rows")
        report.params.update(petitions=count, open=open_count)
        months = _months(span[0], span[1])
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            # Index-only scans need the visibility map; autovacuum would get there too.
            await conn.execute(text("VACUUM ANALYZE petitions, petition_events, escalations"))
        await index_migration(engine, "downgrade")
        await _analyze(engine)
        before = await measure(engine, sessions, samples, months)
        await index_migration(engine, "upgrade")
        await _analyze(engine)
        after = await measure(engine, sessions, samples, months)
    for name, times in after.items():
        base = before[name]
        for p in (50, 95, 99):
            figure = report.add(f"{name} p{p}", percentile(times, p), "ms",
                                baseline=percentile(base, p),
                                baseline_name=f"without {INDEX_REVISION}'s indexes")
            if p == 95:
                figure.goal, figure.met = f"<= {GOAL_MS:.0f} ms", figure.value <= GOAL_MS
    return report


async def _analyze(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("ANALYZE petitions"))


def _months(first: datetime, last: datetime) -> list[date]:
    months, d = [], date(first.year, first.month, 1)
    while d <= last.date():
        months.append(d)
        d = date(d.year + (d.month == 12), d.month % 12 + 1, 1)
    return months


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--import-rows", type=int, default=0)
    args = parser.parse_args()
    report = asyncio.run(run(args.samples, args.import_rows))
    report.finish()


if __name__ == "__main__":
    main()
