"""Saved views: ready Temporal list filters supervisors paste into the Web UI's search box.

They use only the petition search attributes (domain/search_attributes.py, DOMAIN.md
"External names") and Temporal's own `WorkflowType`, `ExecutionStatus` and `CloseTime`.
Times are computed for "this week" / "this month" in Beijing time and written as UTC
RFC 3339 literals, which the visibility store compares as instants.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from adapters import search_attributes as sa
from domain.models import Outcome, Stage
from reports.periods import PeriodKind, current_period

__all__ = ["SavedView", "saved_views", "ui_link"]

PETITIONS = "WorkflowType = 'PetitionWorkflow'"
RUNNING = "ExecutionStatus = 'Running'"
_CODE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")


@dataclass(frozen=True)
class SavedView:
    key: str
    title: str
    query: str
    note: str


def _instant(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _unit_clause(units: Sequence[str]) -> str | None:
    for unit in units:
        if not unit or set(unit) - _CODE_CHARS:
            raise ValueError(f"not a unit code: {unit!r} (letters, digits, '_', '.', '-')")
    if not units:
        return None
    name = sa.RESPONSIBLE_UNIT.name
    if len(units) == 1:
        return f"{name} = '{units[0]}'"
    return f"{name} IN ({', '.join(repr(u) for u in units)})"


def _where(*clauses: str | None) -> str:
    return " AND ".join(c for c in clauses if c)


def saved_views(units: Sequence[str] = (), now: datetime | None = None) -> list[SavedView]:
    """The supervisor views for `units` (all units if empty), as of `now` (Beijing week/month).

    A deadline ending at 24:00 Sunday is stored as 00:00 Monday, so "due this week" is
    the half-open range (Monday 00:00, next Monday 00:00] in Beijing time.
    """
    now = now or datetime.now(UTC)
    unit = _unit_clause(units)
    who = " at " + ", ".join(units) if units else " (all units)"
    week = current_period(PeriodKind.WEEK, now)
    month = current_period(PeriodKind.MONTH, now)
    deadline = sa.NEXT_DEADLINE.name
    return [
        SavedView(
            "open", f"Open petitions{who}",
            _where(PETITIONS, RUNNING, unit),
            "Every petition still running: registered, in handling, replied or under "
            "review; add the RegistrationNo, PetitionStage, ResponsibleUnit, NextDeadline "
            "and Overdue columns once (Configure Columns)."),
        SavedView(
            "overdue", f"Overdue petitions{who}",
            _where(PETITIONS, RUNNING, f"{sa.OVERDUE.name} = true", unit),
            "A deadline of the responsible (or holding) unit has passed; escalated to its "
            "supervising leader (level 1) or further."),
        SavedView(
            "escalated_level2", f"Escalated to level 2 (listed supervision, 督办){who}",
            _where(PETITIONS, RUNNING, f"{sa.ESCALATION_LEVEL.name} >= 2", unit),
            "Still overdue a policy period after expiry: with the superior petition bureau."),
        SavedView(
            "due_this_week",
            f"Due this week ({week.label}, Beijing){who}",
            _where(PETITIONS, RUNNING, f"{deadline} > '{_instant(week.start)}'",
                   f"{deadline} <= '{_instant(week.end)}'", unit),
            f"Next deadline from Monday {week.start:%Y-%m-%d} 00:00 to Sunday "
            f"{week.end - timedelta(days=1):%Y-%m-%d} 24:00 Beijing time; recompute weekly "
            "with `petition views`."),
        SavedView(
            "diverted_law_related", f"Diverted law-related matters (诉访分离){who}",
            _where(PETITIONS, f"{sa.LAW_RELATED.name} = true",
                   f"{sa.OUTCOME.name} = '{Outcome.DIVERTED}'", unit),
            "Left the petition track for litigation, arbitration, review or discipline."),
        SavedView(
            "concluded_this_month", f"Concluded this month ({month.label}, 终结){who}",
            _where(PETITIONS, f"{sa.OUTCOME.name} = '{Outcome.CONCLUDED}'",
                   f"CloseTime >= '{_instant(month.start)}'",
                   f"CloseTime < '{_instant(month.end)}'", unit),
            "Re-review opinion given this month: the matter is concluded and in the "
            "termination registry."),
        SavedView(
            "closed_this_month", f"Closed this month ({month.label}), any outcome{who}",
            _where(PETITIONS, f"{sa.PETITION_STAGE.name} = '{Stage.CLOSED}'",
                   f"CloseTime >= '{_instant(month.start)}'",
                   f"CloseTime < '{_instant(month.end)}'", unit),
            "Resolved, not accepted, diverted, withdrawn or concluded this month."),
    ]


def ui_link(view: SavedView, ui_url: str = "http://localhost:8233",
            namespace: str = "default") -> str:
    """The Web UI's workflow list, already filtered by `view`."""
    return (f"{ui_url.rstrip('/')}/namespaces/{quote(namespace)}/workflows?query="
            f"{quote(view.query, safe='')}")
