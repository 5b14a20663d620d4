"""One assessment report: a unit, its children, one period (and optionally a trend)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from reports.metrics import Figures, UnitTree, compute_figures, load_unit_tree
from reports.periods import ReportPeriod

__all__ = ["Report", "ReportRow", "Trend", "build_report", "build_trend"]


@dataclass(frozen=True)
class ReportRow:
    unit: str
    name: str
    scope: str  # "total": the unit and everything under it; "own": the unit alone
    figures: Figures


@dataclass(frozen=True)
class Report:
    unit: str
    period: ReportPeriod
    as_of: datetime
    rows: list[ReportRow]

    @property
    def total(self) -> ReportRow:
        return self.rows[0]


@dataclass(frozen=True)
class Trend:
    """Rolled-up figures of the unit and each child, for consecutive periods."""

    unit: str
    units: list[str]  # the unit first, then its children
    periods: list[ReportPeriod]
    figures: list[dict[str, Figures]]  # one per period: unit -> rolled-up figures


async def _figures(session: AsyncSession, tree: UnitTree, period: ReportPeriod,
                   as_of: datetime) -> dict[str, Figures]:
    return tree.rolled_up(await compute_figures(session, tree, period, as_of))


async def build_report(sessions: async_sessionmaker[AsyncSession], unit: str,
                       period: ReportPeriod, as_of: datetime | None = None) -> Report:
    """Rows: the unit's total, its own share (when it has children), each child's total."""
    as_of = as_of or datetime.now(UTC)
    async with sessions() as session:
        tree = await load_unit_tree(session, unit)
        own = await compute_figures(session, tree, period, as_of)
    total = tree.rolled_up(own)
    children = tree.children[unit]
    rows = [ReportRow(unit, tree.names[unit], "total", total[unit])]
    if children:
        rows.append(ReportRow(unit, tree.names[unit], "own", own[unit]))
    rows.extend(ReportRow(c, tree.names[c], "total", total[c]) for c in children)
    return Report(unit, period, as_of, rows)


async def build_trend(sessions: async_sessionmaker[AsyncSession], unit: str,
                      period: ReportPeriod, count: int = 12,
                      as_of: datetime | None = None) -> Trend:
    """The last `count` periods up to `period`, for the unit and each child (rolled up)."""
    as_of = as_of or datetime.now(UTC)
    periods = period.trend(count)
    async with sessions() as session:
        tree = await load_unit_tree(session, unit)
        per_period = [await _figures(session, tree, p, as_of) for p in periods]
    units = [unit, *tree.children[unit]]
    return Trend(unit, units, periods,
                 [{u: figures[u] for u in units} for figures in per_period])
