"""Benchmark 3: a county's year in virtual time, under two deadline profiles.

Qingshan County's year (`bench.year_sim.plan_year`: arrivals, transfers, acceptances,
handling, extensions, replies, ratings, reviews and re-reviews) is played through the
real PetitionWorkflow, activities and PostgreSQL on the Java time-skipping test server,
until every case has closed; then the assessment report (`reports.report.build_report`,
the code behind `petition report`) is taken for the year over the county (by territory).

The SAME plan is then played under a second profile (default `sichuan`: handling in 30
days instead of 60). People behave the same; the rules differ; the rates move. Figures
of the second run are ratios to the first (the baseline of this benchmark), and the run
time is a ratio of virtual to wall-clock time.

    python -m bench.year_bench [--petitions 2000] [--profiles national,sichuan]

About 8,000 petitions is the volume of one county in the seeds; `--petitions 8000`
plays it (about four times the default's wall time).
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from activities import build_desks
from adapters.settings import Settings
from adapters.tables import Escalation, Petition
from bench.common import Report, Stopwatch, database, db_name, drop, fresh_database
from bench.harness import lanes
from bench.year_sim import CaseScript, YearClock, plan_year, year_start
from devstack.temporal_server import start_time_skipping
from security.assertion import assertion_ring
from worker import build_worker, data_converter
from workflows.interceptor import AssertionInterceptor
from workflows.petition import PetitionWorkflow

COUNTY = "QS"  # the territory of COUNTY_BUREAU and DEPARTMENTS (domain/directory/sample.toml)
RATES = ("timely_acceptance", "on_schedule_completion", "satisfaction", "one_time_resolution")


@dataclass
class YearResult:
    profile: str
    petitions: int
    wall_s: float
    virtual_s: float
    rates: dict[str, float | None]
    counts: dict[str, int]
    still_open: list[Any]


async def play_year(profile: str, count: int, seed: int) -> YearResult:
    from reports.metrics import RATE_BY_KEY
    from reports.periods import PeriodKind, ReportPeriod
    from reports.report import build_report

    db = db_name(f"petitionflow_bench_year_{profile}")
    url = await fresh_database(db)
    env = await start_time_skipping(data_converter=data_converter())
    task_queue = f"year-{uuid.uuid4().hex[:8]}"
    # The year keeps ~2,000 cases and their scripts open at once: a cache that holds them
    # all avoids replaying evicted histories.
    settings = Settings(max_cached_workflows=10_000, max_concurrent_activities=200,
                        max_concurrent_workflow_tasks=200)
    try:
        async with env, database(url, pool_size=20) as (engine, sessions):
            worker = build_worker(env.client, build_desks(sessions), task_queue=task_queue,
                                  settings=settings,
                                  workflows=(PetitionWorkflow, CaseScript, YearClock),
                                  # The scripts signal their petitions, and the time-skipping
                                  # server drops signal headers: the scripts vouch for them.
                                  interceptor=AssertionInterceptor(
                                      assertion_ring(settings), trusted_parent_prefix="script-"))
            async with worker:
                began = await env.get_current_time()
                start = year_start(began)
                plans = plan_year(count, start, profile, seed=seed)
                until = max(p.ends for p in plans)
                clock = Stopwatch()
                await lanes(len(plans), 50, lambda i: env.client.start_workflow(
                    CaseScript.run, plans[i], id=f"script-{plans[i].intake.intake_id}",
                    task_queue=task_queue))
                await env.client.execute_workflow(
                    YearClock.run, (until - began).total_seconds(),
                    id=f"year-clock-{task_queue}", task_queue=task_queue)
                ended = until
                for extra in range(2):  # a straggler gets one more window, twice at most
                    if not await _open_count(sessions):
                        break
                    await env.client.execute_workflow(
                        YearClock.run, 35 * 86_400.0, id=f"year-clock-{task_queue}-{extra}",
                        task_queue=task_queue)
                    ended += timedelta(days=35)
                wall = clock()
            async with sessions() as session:
                stored = await session.scalar(select(func.count()).select_from(Petition))
                still_open = await session.scalar(select(func.count()).select_from(Petition)
                                                  .where(Petition.stage != "closed"))
                open_rows = (await session.execute(
                    select(Petition.intake_id, Petition.stage, Petition.next_deadline)
                    .where(Petition.stage != "closed").limit(5))).all()
                level1 = await session.scalar(select(func.count()).select_from(Escalation)
                                              .where(Escalation.level == 1))
                level2 = await session.scalar(select(func.count()).select_from(Escalation)
                                              .where(Escalation.level == 2))
            period = ReportPeriod(PeriodKind.YEAR, start.date())
            # The county's figures: every unit located in Qingshan County (by territory).
            report = await build_report(sessions, COUNTY, period, as_of=ended)
            county = report.total.figures
    finally:
        await drop(db)
    rates = {key: county.rate(RATE_BY_KEY[key]) for key in RATES}
    return YearResult(profile, count, wall, (ended - began).total_seconds(), rates, {
        "registered": county.registered, "stored": int(stored or 0),
        "open_at_end": int(still_open or 0), "escalations_level1": int(level1 or 0),
        "escalations_level2": int(level2 or 0), "closed": county.closed},
        [tuple(r) for r in open_rows])


async def _open_count(sessions: Any) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Petition)
                                        .where(Petition.stage != "closed")) or 0)


async def run(count: int, profiles: list[str], seed: int) -> Report:
    report = Report("year_bench", {"petitions": count, "profiles": ",".join(profiles),
                                   "seed": seed})
    results = [await play_year(p, count, seed) for p in profiles]
    base = results[0]
    for r in results:
        label = f"[{r.profile}] "
        report.add(label + "virtual days per wall-clock second", r.virtual_s / 86_400 / r.wall_s,
                   "d/s")
        report.add(label + "wall time for the year", r.wall_s / 60, "min")
        report.add(label + "petitions registered (county units)", r.counts["registered"], "")
        report.add(label + "still open when the clock stopped", r.counts["open_at_end"], "",
                   goal="0", met=r.counts["open_at_end"] == 0)
        if r.still_open:
            report.note(f"{r.profile}: still open: {r.still_open}")
        for key, value in r.rates.items():
            report.add(label + key.replace("_", " ") + " rate", _pct(value), "%",
                       baseline=None if r is base else _pct(base.rates[key]),
                       baseline_name=base.profile)
        for key in ("escalations_level1", "escalations_level2"):
            report.add(label + key.replace("_", " "), r.counts[key], "",
                       baseline=None if r is base else base.counts[key],
                       baseline_name=base.profile)
    if count < 8_000:
        report.note(f"scaled down: {count:,} petitions, not the county's ~8,000 "
                    "(`--petitions 8000` plays the full year)")
    return report


def _pct(value: float | None) -> Any:
    return None if value is None else value * 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--petitions", type=int, default=2000)
    parser.add_argument("--profiles", default="national,sichuan")
    parser.add_argument("--seed", type=int, default=2027)
    args = parser.parse_args()
    report = asyncio.run(run(args.petitions, args.profiles.split(","), args.seed))
    report.finish()



if __name__ == "__main__":
    main()
