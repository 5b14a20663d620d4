"""`petition report`, `petition views` and `petition demo`: the supervisor's commands."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import NoReturn

import click

from reports.periods import BEIJING, PeriodError, PeriodKind, current_period, parse_period

__all__ = ["demo_cmd", "report_cmd", "views_cmd"]


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def _as_of(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        _fail(f"--as-of {text!r}: use an ISO time with a zone, e.g. 2026-11-01T00:00:00+08:00")
    if value.tzinfo is None:
        _fail(f"--as-of {text!r}: add a time zone, e.g. +08:00")
    return value


@click.command("report")
@click.option("--unit", required=True,
              help="by territory: a territory code (QS), or a petition bureau standing for "
                   "the territory it is located in (QS-XFJ); any other unit alone. By line: "
                   "a unit, with the units below it in its line")
@click.option("--by", "by", type=click.Choice(["territory", "line"]), default="territory",
              show_default=True,
              help="roll-up: every unit located in a territory, or a unit and its line "
                   "below it (a city department with the county departments of its line)")
@click.option("--period", "period_text", default=None,
              help="2026 | 2026-Q4 | 2026-10 | 2026-W43 | 2026-10-05 (Beijing time); default: "
                   "this month")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True)
@click.option("--chart", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="also draw the trend of the main rates (PNG) for the root and its children")
@click.option("--periods", "trend_length", type=click.IntRange(2, 60), default=12,
              show_default=True, help="how many periods the chart covers, ending with --period")
@click.option("--as-of", "as_of_text", default=None,
              help="judge pending deadlines as of this time (default: now)")
def report_cmd(unit: str, by: str, period_text: str | None, fmt: str, chart: Path | None,
               trend_length: int, as_of_text: str | None) -> None:
    """Assessment report of UNIT for one period, from the system of record.

    \b
    Rates are over the petitions registered in the period (the cohort), rolled up from
    summed counts (never averaged):
      timely acceptance   of petitions accepted, declined or diverted, decided within the
                          acceptance period of the unit that decided (a transferred
                          petition: the receiving unit, counted from its receipt)
      timely routing      of petitions a petition bureau transferred or assigned, routed
                          within its routing period
      on-schedule         handling opinion within the handling period, extension included
      7-day / 3-month     procuratorate profile: first reply, result
      satisfaction        (satisfied + basically satisfied) / rated
      one-time resolution of petitions given a handling opinion, closed without a
                          request for review (declined and diverted ones are not in it)
      repeat petitions    repeating an earlier case or with repeat visits / registered
    Counts: registered, open, closed, transfers made, diversions (same cohort); overdue,
    listed supervision, assistance paid and hearings held in the period.
    Definitions in full: --format json ("definitions"), or reports/metrics.py.
    """
    from sqlalchemy.exc import DBAPIError

    from adapters.engine import SchemaNotMigratedError, require_current_schema
    from reports.metrics import UnknownUnitError
    from reports.render import as_csv, as_json, as_table
    from reports.report import RollUp, build_report, build_trend
    from starter.runtime import runtime

    try:
        period = (parse_period(period_text) if period_text
                  else current_period(PeriodKind.MONTH))
    except PeriodError as err:
        _fail(str(err))
    as_of = _as_of(as_of_text) or datetime.now(UTC)
    roll_up = RollUp(by)

    async def go() -> str:
        async with runtime(purpose="reports") as rt:
            await require_current_schema(rt.engine)
            report = await build_report(rt.sessions, unit, period, as_of, by=roll_up)
            if chart is not None:
                from reports.chart import draw_trend

                trend = await build_trend(rt.sessions, unit, period, trend_length, as_of,
                                          by=roll_up)
                await asyncio.to_thread(draw_trend, trend, chart)
        return {"table": as_table, "csv": as_csv, "json": as_json}[fmt](report)

    try:
        output = asyncio.run(go())
    except UnknownUnitError as err:
        _fail(str(err.args[0]))
    except (SchemaNotMigratedError, OSError, DBAPIError) as err:
        _fail(f"cannot read the system of record: {str(err).splitlines()[0]}")
    click.echo(output, nl=not output.endswith("\n"))
    if chart is not None:
        click.echo(f"chart: {chart}", err=True)


@click.command("views")
@click.option("--unit", "units", multiple=True,
              help="restrict every view to this responsible unit (repeatable)")
@click.option("--subtree", is_flag=True,
              help="with --unit: include every unit under it (reads the directory)")
@click.option("--today", "today_text", default=None,
              help="compute 'this week' / 'this month' for this date (YYYY-MM-DD, Beijing)")
@click.option("--ui", "ui_url", default="http://localhost:8233", show_default=True,
              help="Web UI address for the ready links")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
def views_cmd(units: tuple[str, ...], subtree: bool, today_text: str | None, ui_url: str,
              fmt: str) -> None:
    """Saved supervisor views: Temporal list filters to paste into the Web UI's search."""
    from reports.views import saved_views, ui_link

    now = datetime.now(UTC)
    if today_text is not None:
        try:
            day = date.fromisoformat(today_text)
        except ValueError:
            _fail(f"--today {today_text!r}: use YYYY-MM-DD")
        now = datetime.combine(day, datetime.min.time().replace(hour=12), BEIJING)
    chosen = list(units)
    if subtree and chosen:
        chosen = asyncio.run(_expand(chosen))
    try:
        views = saved_views(chosen, now)
    except ValueError as err:
        _fail(str(err))
    if fmt == "json":
        click.echo(json.dumps([{"key": v.key, "title": v.title, "query": v.query,
                                "note": v.note, "link": ui_link(v, ui_url)} for v in views],
                              ensure_ascii=False, indent=2))
        return
    for view in views:
        click.echo(f"# {view.title}\n#   {view.note}\n{view.query}\n#   {ui_link(view, ui_url)}\n")


async def _expand(units: list[str]) -> list[str]:
    from reports.metrics import UnknownUnitError, load_unit_tree
    from starter.runtime import runtime

    out: list[str] = []
    async with runtime(purpose="reports") as rt, rt.sessions() as session:
        for unit in units:
            try:
                tree = await load_unit_tree(session, unit)
            except UnknownUnitError as err:
                _fail(str(err.args[0]))
            out.extend(u for u in tree.descendants(unit) if u not in out)
    return out


@click.command("demo")
@click.option("--count", type=click.IntRange(1, 5000), default=300, show_default=True,
              help="how many petitions to register")
@click.option("--seed", type=int, default=None, help="repeat a previous demo's mix exactly")
@click.option("--worker/--no-worker", default=True, show_default=True,
              help="run a worker in this process (not needed next to `petition dev`)")
def demo_cmd(count: int, seed: int | None, worker: bool) -> None:
    """A realistic mixed load on the configured Temporal server, under the `demo` profile."""
    from starter.demo import run_demo_command

    asyncio.run(run_demo_command(count=count, seed=seed, with_worker=worker))
