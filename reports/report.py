"""One assessment report: a unit or a territory, what lies under it, one period (and
optionally a trend). Rolled up by territory or by line (`reports.metrics.RollUp`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from adapters.tables import Petition
from reports.metrics import (
    Figures,
    ReportTree,
    RollUp,
    UnknownUnitError,
    compute_figures,
    counted_items,
    load_report_tree,
)
from reports.periods import ReportPeriod

__all__ = ["CaseEntry", "CaseList", "Report", "ReportRow", "RollUp", "Trend", "build_case_list",
           "build_report", "build_trend"]


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
    units: tuple[str, ...] = ()  # every unit the report covers (its tree's units)

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
    return Report(root, period, as_of, rows, by, tuple(sorted(tree.unit_codes)))


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


@dataclass(frozen=True)
class CaseEntry:
    """One item behind a figure: the petition as the read model has it now, the unit it
    counts for, and (a rate) whether it is in the numerator."""

    registration_no: str
    workflow_id: str
    stage: str
    outcome: str | None
    unit: str
    registered_at: datetime
    next_deadline: datetime | None
    overdue: bool
    escalation_level: int
    met: bool
    persons: int | None = None
    yuan: Decimal | None = None


@dataclass(frozen=True)
class CaseList:
    unit: str  # the report's root
    row: str  # the row's node: the root or one of the nodes under it
    scope: str  # "total" or "own", as in ReportRow
    figure: str  # a rate key or a count key (reports.metrics.FIGURE_KEYS)
    period: ReportPeriod
    as_of: datetime
    by: RollUp
    names: dict[str, str]  # every node of the report's tree -> its name
    entries: list[CaseEntry]


async def build_case_list(sessions: async_sessionmaker[AsyncSession], unit: str,
                          period: ReportPeriod, figure: str, as_of: datetime | None = None,
                          by: RollUp = RollUp.TERRITORY, row: str | None = None,
                          scope: str = "total") -> CaseList:
    """The cases behind `figure` in one row of `build_report(unit, period, as_of, by)`:
    the row of node `row` (default: the root) with everything under it ("total"), or the
    root unit's own share ("own"). Counted by the same queries as the report, on the same
    tree: as many entries as the figure (a rate: its denominator)."""
    as_of = as_of or datetime.now(UTC)
    async with sessions() as session:
        tree = await load_report_tree(session, unit, by)
        node = row or tree.root
        if node not in tree.parent:
            raise UnknownUnitError(f"{node!r} is not in the report of {unit!r} by {by}")
        if scope == "own":
            if node != tree.root or tree.is_territory(node) or not tree.children[node]:
                raise UnknownUnitError(f"the report of {unit!r} by {by} has no own row for "
                                       f"{node!r}")
            units = {node}
        elif scope == "total":
            units = set(tree.descendants(node)) & tree.unit_codes
        else:
            raise ValueError(f"scope {scope!r}: 'total' or 'own'")
        items = await counted_items(session, tree, period, as_of, figure, units)
        P = Petition.__table__
        facts = {r.id: r for r in (await session.execute(
            select(P.c.id, P.c.registration_no, P.c.workflow_id, P.c.stage, P.c.outcome,
                   P.c.registered_at, P.c.next_deadline, P.c.overdue, P.c.escalation_level)
            .where(P.c.id.in_({i.petition_id for i in items})))).all()}
    entries = [CaseEntry(f.registration_no, f.workflow_id, f.stage, f.outcome, i.unit,
                         f.registered_at, f.next_deadline, bool(f.overdue),
                         int(f.escalation_level or 0), i.met, i.persons, i.yuan)
               for i in items for f in (facts[i.petition_id],)]
    entries.sort(key=lambda e: (e.registered_at, e.registration_no))
    return CaseList(tree.root, node, scope, figure, period, as_of, by, dict(tree.names), entries)
