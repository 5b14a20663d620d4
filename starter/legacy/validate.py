"""Row checks of a legacy record: what one row must say about itself before it is replayed.

Which milestones a stage or an outcome needs is read from the lifecycle table
(`domain.lifecycle`): a milestone column carries the time of one row of the table
(`MILESTONES`), and the stage a record claims must be the stage those rows lead to. What
the table's guard refuses on top (a review organ that is not the superior one, an
extension beyond the profile's limit) is found by the replay (`starter.legacy.replay`).

Written for speed (a million rows): plain attribute tests, no reflection per row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from domain.lifecycle import TABLE, TRANSITIONS
from domain.models import Action, Outcome, Stage

if TYPE_CHECKING:
    from starter.legacy.read import LegacyRecord

# The columns that carry the time of one row of the table, in lifecycle order: the only
# path a legacy record can describe (transfers and closings are replayed besides).
MILESTONES: tuple[tuple[str, Action], ...] = (
    ("accepted_at", Action.ACCEPT),
    ("replied_at", Action.REPLY),
    ("review_requested_at", Action.REQUEST_REVIEW),
    ("review_replied_at", Action.REVIEW_OPINION),
    ("re_review_requested_at", Action.REQUEST_RE_REVIEW),
)
# The organ each request names, required with its time.
ORGANS: dict[str, str] = {"review_requested_at": "review_organ",
                          "re_review_requested_at": "re_review_organ"}


def _path() -> tuple[Stage, ...]:
    """The stage after 0, 1, 2 ... milestones: registered, then each row's target."""
    stages = [Stage.REGISTERED]
    for _, action in MILESTONES:
        row = TABLE[action]
        assert stages[-1] in row.from_stages and row.to_stage is not None, row.action
        stages.append(row.to_stage)
    return tuple(stages)


PATH = _path()
# How many milestones an open stage has behind it.
MILESTONES_BEHIND: dict[Stage, int] = {stage: i for i, stage in enumerate(PATH)}
# How many milestones a case closing with an outcome may have behind it (the stages its
# closing rows leave from).
CLOSING_AFTER: dict[Outcome, frozenset[int]] = {
    outcome: frozenset(i for i, stage in enumerate(PATH)
                       if any(row.outcome is outcome and stage in row.from_stages
                              for row in TRANSITIONS))
    for outcome in Outcome
}

# Times that must not go backwards, in the order the case lived them.
_TIME_ORDER = ("registered_at", "transferred_at", *(c for c, _ in MILESTONES), "closed_at")
# Columns that only make sense with one outcome.
_OUTCOME_COLUMNS = (("decline_reason", Outcome.NOT_ACCEPTED),
                    ("divert_track", Outcome.DIVERTED), ("divert_organ", Outcome.DIVERTED))
_UNIT_COLUMNS = ("unit", "holding_unit", "responsible_unit", "review_organ", "re_review_organ")


def inconsistencies(r: LegacyRecord, context: dict[str, Any]) -> list[str]:
    """Everything wrong with one record on its own (the model validator's check)."""
    problems: list[str] = []
    closed = r.stage is Stage.CLOSED
    if closed != (r.outcome is not None):
        problems.append("outcome is required for a closed case and only for one")
    if closed != (r.closed_at is not None):
        problems.append("closed_at is required for a closed case and only for one")
    times = [getattr(r, column) for column, _ in MILESTONES]
    behind = 0
    while behind < len(times) and times[behind] is not None:
        behind += 1
    for i in range(behind + 1, len(times)):
        if times[i] is not None:
            problems.append(f"{MILESTONES[i][0]} needs {MILESTONES[i - 1][0]}: the lifecycle "
                            "has no shortcut")
            break
    problems += _stage_problems(r, behind)
    for column, organ in ORGANS.items():
        if (getattr(r, column) is None) != (getattr(r, organ) is None):
            problems.append(f"{column} and {organ} go together")
    if r.satisfaction is not None and r.replied_at is None:
        problems.append("satisfaction needs replied_at: a petitioner rates a reply")
    if r.extension_days and r.accepted_at is None:
        problems.append("extension_days needs accepted_at: only a handling period is extended")
    if r.transferred_at is not None and r.holding == r.unit:
        problems.append("transferred_at is only for a case held by another unit than the one "
                        "that registered it")
    if r.responsible_unit is not None and r.accepted_at is None:
        problems.append("responsible_unit needs accepted_at: a unit becomes responsible by "
                        "accepting the case")
    if r.responsible_unit is not None and r.responsible_unit != r.holding:
        problems.append("responsible_unit must be the holding unit: the unit that holds a "
                        "case accepts it")
    for column, outcome in _OUTCOME_COLUMNS:
        if getattr(r, column) is not None and r.outcome is not outcome:
            problems.append(f"{column} is only for a case closed as {outcome}")
    problems += _time_problems(r)
    problems += _directory_problems(r, context)
    return problems


def _stage_problems(r: LegacyRecord, behind: int) -> list[str]:
    if r.stage is not Stage.CLOSED:
        allowed = frozenset({MILESTONES_BEHIND[r.stage]})
        where = f"in stage {r.stage}"
    elif r.outcome is not None:
        allowed = CLOSING_AFTER[r.outcome]
        where = f"in stage {r.stage} ({r.outcome})"
    else:
        return []
    if behind in allowed:
        return []
    if behind < min(allowed):
        return [f"{MILESTONES[i][0]} is required {where}" for i in range(behind, min(allowed))]
    last = max(allowed)
    leaves = ", ".join(sorted({PATH[i].value for i in allowed}))
    return [f"{MILESTONES[last][0]} must be empty {where}: such a case "
            f"{'closes' if r.outcome else 'is'} in stage {leaves}"]


def _time_problems(r: LegacyRecord) -> list[str]:
    problems = []
    previous_name, previous = "received_at", r.received_at
    for name in _TIME_ORDER:
        at = getattr(r, name)
        if at is None:
            continue
        if at < previous:
            problems.append(f"{name} ({at.isoformat()}) is before {previous_name} "
                            f"({previous.isoformat()})")
        previous_name, previous = name, at
    return problems


def _directory_problems(r: LegacyRecord, context: dict[str, Any]) -> list[str]:
    problems = []
    profiles = context.get("profiles")
    if r.profile is not None and profiles is not None and r.profile not in profiles:
        problems.append(f"unknown profile {r.profile!r}; available: {', '.join(sorted(profiles))}")
    units = context.get("units")
    if units is not None:
        for name in _UNIT_COLUMNS:
            code = getattr(r, name)
            if code is not None and code not in units:
                problems.append(f"{name}: unknown unit {code!r} (not in the directory)")
    return problems


@dataclass
class FileRepeats:
    """Every intake id and registration number seen so far in the file: a second row with
    either is an error on its own line, naming the first."""

    intake_ids: dict[str, int] = field(default_factory=dict)
    numbers: dict[str, int] = field(default_factory=dict)

    def problem(self, line: int, intake_id: str, registration_no: str) -> str | None:
        first = self.intake_ids.setdefault(intake_id, line)
        if first != line:
            return f"intake_id {intake_id!r} repeats line {first}"
        first = self.numbers.setdefault(registration_no, line)
        if first != line:
            return f"registration_no {registration_no!r} repeats line {first}"
        return None
