"""Issue 7: every benchmark under `bench/` runs, at a tiny size, end to end.

These prove the harnesses work and count what they claim to count; they assert no
timings (the figures come from `python -m bench.<name>` at full size, see
bench/README.md). Each run uses databases of its own (PETITION_BENCH_DB_SUFFIX).
"""

from __future__ import annotations

import os

import pytest
from sqlalchemy import text

from bench import (
    import_bench,
    keys_bench,
    open_cases_bench,
    query_bench,
    service_bench,
    throughput_bench,
    year_bench,
)
from bench.common import Report, database, db_name, drop, existing_database

pytestmark = pytest.mark.servers  # starts its own servers: not in the fast tier


@pytest.fixture(autouse=True)
def own_databases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PETITION_BENCH_DB_SUFFIX", f"_smoke_{os.getpid()}")


def figures(report: Report) -> dict[str, float]:
    return {f.name: f.value for f in report.figures}


async def test_import_then_supervisor_queries():
    try:
        imported = await import_bench.run(400, 100, 0.02, keep_csv=False)
        got = figures(imported)
        assert got["COPY import, 400 rows"] > 0 and got["COPY import, 100 rows"] > 0
        assert got["COPY import --offline, 100 rows"] > 0
        copy = next(f for f in imported.figures if f.name == "COPY import, 400 rows")
        assert copy.baseline and copy.baseline > 0  # the ORM baseline really ran
        url = await existing_database(db_name(import_bench.BENCH_DATABASE))
        async with database(url, pool_size=1) as (engine, _), engine.connect() as conn:
            stored = await conn.scalar(text("SELECT count(*) FROM petitions"))
            history = await conn.scalar(text(
                "SELECT count(DISTINCT workflow_id) FROM petition_events"))
        assert stored == 400 and history == 400

        queried = await query_bench.run(3, 0)
        names = {f.name for f in queried.figures}
        assert {"overdue list, province (100 rows) p95", "monthly report, unit subtree p95",
                "overdue list, one unit (100 rows) p95"} <= names
        assert all(f.baseline is not None for f in queried.figures)
        assert queried.params["petitions"] == 400
    finally:
        await drop(db_name(import_bench.BENCH_DATABASE))


async def test_throughput_against_the_floor():
    report = await throughput_bench.run(3, 2, 3, ["shipped"])
    got = figures(report)
    assert got["[shipped] petition lifecycles/s"] > 0
    assert got["[shipped] petition transitions/s"] == pytest.approx(
        4 * got["[shipped] petition lifecycles/s"])
    p95 = next(f for f in report.figures if f.name == "[shipped] accept Update p95")
    assert p95.baseline and p95.baseline > 0 and p95.met is not None


async def test_a_small_year_under_two_profiles_closes_every_case():
    report = await year_bench.run(6, ["national", "sichuan"], seed=7)
    got = figures(report)
    for profile in ("national", "sichuan"):
        assert got[f"[{profile}] petitions registered (county units)"] == 6
        assert got[f"[{profile}] still open when the clock stopped"] == 0
    sichuan = next(f for f in report.figures
                   if f.name == "[sichuan] on schedule completion rate")
    assert sichuan.baseline_name == "national"


async def test_open_cases_all_fire_and_none_early():
    report = await open_cases_bench.run(12, 6.0, 4, margin_s=8)
    got = figures(report)
    assert got["open cases started"] == 12
    assert got["deadlines fired (level-1 escalations)"] == 12
    assert got["fired early"] == 0
    assert got["worker RSS, 12 open"] > 0 and got["worker RSS, 6 open"] > 0


async def test_an_action_through_the_service_against_the_direct_update():
    report = await service_bench.run(3)
    p95 = next(f for f in report.figures if f.name == "accept through the service p95")
    assert p95.value > 0 and p95.baseline and p95.baseline > 0 and p95.met is not None


async def test_retiring_a_key_reseals_every_value_of_the_petitions():
    report = await keys_bench.run(40, 7)
    retired = next(f for f in report.figures if f.name.startswith("retire a data key"))
    assert "of 40 petitions" in retired.name and retired.baseline and retired.value > 0
    assert any(f.name.startswith("open all 160 petition values") for f in report.figures)
