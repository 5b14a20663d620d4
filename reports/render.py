"""A report as a readable table (rich), CSV or JSON. Empty denominators: "n/a" / null."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table

from reports.metrics import RATES, Figures, Rate, RollUp
from reports.report import Report, ReportRow

__all__ = ["as_csv", "as_json", "as_table", "format_rate", "to_dict"]

COUNT_ROWS: tuple[tuple[str, str], ...] = (
    ("registered", "Registered"),
    ("open_cases", "Still open"),
    ("closed", "Closed"),
    ("transfers", "Transfers made (转送 / 交办)"),
    ("diversions", "Diversions (诉访分离)"),
    ("overdue", "Went overdue (level 1)"),
    ("escalated_level2", "Listed supervision (level 2)"),
    ("assistance_cases", "Assistance paid: cases"),
    ("assistance_persons", "Assistance paid: persons"),
    ("assistance_yuan", "Assistance paid: yuan"),
    ("hearings_held", "Hearings held"),
)


def format_rate(figures: Figures, rate: Rate) -> str:
    value = figures.rate(rate)
    numerator, denominator = getattr(figures, rate.numerator), getattr(figures, rate.denominator)
    if value is None:
        return "n/a"
    return f"{value:.1%} ({numerator}/{denominator})"


def _heading(row: ReportRow) -> str:
    return f"{row.unit} (own)" if row.scope == "own" else row.unit


CAPTIONS = {
    RollUp.TERRITORY: "By territory: a territory's total includes every unit located in it.",
    RollUp.LINE: "By line: a unit's total includes the units below it in its line.",
}


def _outcomes(figures: Figures) -> str:
    parts = [f"{k.replace('_', ' ')} {v}" for k, v in figures.hearing_outcomes.items() if v]
    return ", ".join(parts) or "—"


def as_table(report: Report, console: Console | None = None) -> str:
    """Metrics down the side, units across: the root's total, its own share, each child."""
    table = Table(title=f"Assessment report · {report.unit} {report.total.name} · by "
                        f"{report.by} · {report.period.label} "
                        f"({report.period.kind}) · as of "
                        f"{report.as_of.astimezone(report.period.start.tzinfo):%Y-%m-%d %H:%M}"
                        " Beijing",
                  caption="Rates over petitions registered in the period; n/a = nothing to "
                          f"measure. {CAPTIONS[report.by]}")
    table.add_column("Figure", style="bold")
    for row in report.rows:
        table.add_column(_heading(row), justify="right")
    for rate in RATES:
        table.add_row(rate.title, *(format_rate(r.figures, rate) for r in report.rows))
    table.add_section()
    for key, title in COUNT_ROWS:
        table.add_row(title, *(_count(getattr(r.figures, key)) for r in report.rows))
    table.add_row("Hearing outcomes", *(_outcomes(r.figures) for r in report.rows))
    out = console or Console(file=io.StringIO(), width=max(100, 34 + 22 * len(report.rows)),
                             force_terminal=False, color_system=None)
    out.print(table)
    return out.file.getvalue() if isinstance(out.file, io.StringIO) else ""


def _count(value: Any) -> str:
    if isinstance(value, Decimal):
        return f"{value:,.2f}"
    return f"{value:,}"


def _rate_value(figures: Figures, rate: Rate) -> float | None:
    value = figures.rate(rate)
    return None if value is None else round(value, 6)


def to_dict(report: Report) -> dict[str, Any]:
    return {
        "unit": report.unit,
        "by": str(report.by),
        "period": report.period.label,
        "kind": str(report.period.kind),
        "start": report.period.start.isoformat(),
        "end": report.period.end.isoformat(),
        "as_of": report.as_of.isoformat(),
        "rows": [
            {
                "unit": row.unit, "name": row.name, "node": row.node, "scope": row.scope,
                "rates": {rate.key: _rate_value(row.figures, rate) for rate in RATES},
                "counts": {k: (str(v) if isinstance(v, Decimal) else v)
                           for k, v in row.figures.counts().items()},
            }
            for row in report.rows
        ],
        "definitions": {rate.key: rate.definition for rate in RATES},
    }


def as_json(report: Report) -> str:
    return json.dumps(to_dict(report), ensure_ascii=False, indent=2)


def as_csv(report: Report) -> str:
    """One line per row; rates as fractions ("n/a" when nothing to measure), then counts."""
    buffer = io.StringIO()
    count_keys = list(Figures().counts())
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["period", "by", "unit", "name", "node", "scope", *(r.key for r in RATES),
                     *count_keys])
    for row in report.rows:
        rates = [_rate_value(row.figures, r) for r in RATES]
        counts = row.figures.counts()
        writer.writerow([report.period.label, report.by, row.unit, row.name, row.node, row.scope,
                         *("n/a" if v is None else f"{v:.6f}" for v in rates),
                         *(str(counts[k]) for k in count_keys)])
    return buffer.getvalue()
