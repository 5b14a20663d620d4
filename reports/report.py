"""One assessment report: a unit or a territory, what lies under it, one period (and
optionally a trend). Rolled up by territory or by line (`reports.metrics.RollUp`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from reports.metrics import Figures, ReportTree, RollUp, compute_figures, load_report_tree
from reports.periods import ReportPeriod

__all__ = ["Report", "ReportRow", "RollUp", "Trend", "build_report", "build_trend"]


@dataclass(frozen=True)
class ReportRow:
    unit: str  # a unit code, or a territory code when `node` is "territory"
    name: str
    scope: str  # "total": the node and everything under it; "own": the unit alone
    figures: Figures
    node: str = "unit"  # "unit" or "territory"


@dataclass(frozen=True)
class Report:
    unit: str  # the root: a unit, or (by territory) a territory
    period: ReportPeriod
    as_of: datetime
    rows: list[ReportRow]
    by: RollUp = RollUp.TERRITORY

    @property
    def total(self) -> ReportRow:
        return self.rows[0]


@dataclass(frozen=True)
class Trend:
    """Rolled-up figures of the root and each child, for consecutive periods."""

    unit: str
    units: list[str]  # the root first, then its children
    periods: list[ReportPeriod]
    figures: list[dict[str, Figures]]  # one per period: node -> rolled-up figures


def _row(tree: ReportTree, code: str, scope: str, figures: Figures) -> ReportRow:
    return ReportRow(code, tree.names[code], scope, figures,
                     "territory" if tree.is_territory(code) else "unit")


async def build_report(sessions: async_sessionmaker[AsyncSession], unit: str,
                       period: ReportPeriod, as_of: datetime | None = None,
                       by: RollUp = RollUp.TERRITORY) -> Report:
    """Rows: the root's total, the root unit's own share (by line, when it has units below
    it), then each child's total -- by territory, the units located directly in the
    territory and then the territories inside it."""
    as_of = as_of or datetime.now(UTC)
    async with sessions() as session:
        tree = await load_report_tree(session, unit, by)
        own = await compute_figures(session, tree, period, as_of)
    total = tree.rolled_up(own)
    root, children = tree.root, tree.children[tree.root]
    rows = [_row(tree, root, "total", total[root])]
    if children and not tree.is_territory(root):
        rows.append(_row(tree, root, "own", own[root]))
    rows.extend(_row(tree, c, "total", total[c]) for c in children)
    return Report(root, period, as_of, rows, by)


async def build_trend(sessions: async_sessionmaker[AsyncSession], unit: str,
                      period: ReportPeriod, count: int = 12,
                      as_of: datetime | None = None,
                      by: RollUp = RollUp.TERRITORY) -> Trend:
    """The last `count` periods up to `period`, for the root and each child (rolled up)."""
    as_of = as_of or datetime.now(UTC)
    periods = period.trend(count)
    async with sessions() as session:
        tree = await load_report_tree(session, unit, by)
        per_period = [tree.rolled_up(await compute_figures(session, tree, p, as_of))
                      for p in periods]
    units = [tree.root, *tree.children[tree.root]]
    return Trend(tree.root, units, periods,
                 [{u: figures[u] for u in units} for figures in per_period])
