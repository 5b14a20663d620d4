"""`petition import FILE.csv`: historical petitions into the system of record, all or nothing.

Rows are read and validated (pydantic) chunk by chunk in a worker thread; each valid
chunk is COPYed (asyncpg `copy_records_to_table`) into a temporary staging table and
moved with one `INSERT ... SELECT` statement into `petitions`, `registration_numbers`,
`petition_events` (the transitions each case went through -- register, accept, reply,
review ..., closing -- at their original times, under the workflow's own idempotency
keys, so reports and `petition show` see the history), `termination_registry` (cases
concluded after re-review) and the per-unit registration counters (moved past the
imported numbers). The database moves chunk k while the thread validates chunk k+1.
Everything runs in ONE transaction: the first bad row stops all writing, the rest of
the file is still validated so that every bad row is reported with its line number,
and the transaction rolls back -- nothing is imported.

Open cases then start their workflows (`PetitionStart.carried`) with clocks whose
absolute due times are computed from the ORIGINAL start times under the case's
deadline profile, exactly as the workflow would have computed them. Re-running the
same file after a crash is safe: rows already imported unchanged (same intake id and
registration number) are skipped, and an open case whose workflow already exists is
left alone.

CSV columns (UTF-8, header row required, column order free, empty cell = not given;
times ISO 8601 WITH a time zone, e.g. `2024-03-05T09:30:00+08:00`):

| column | required | meaning |
|---|---|---|
| registration_no | yes | the legacy registration number (unique) |
| intake_id | yes | the intake system's id (unique); workflow id `petition-<intake_id>` |
| unit | yes | unit code that registered it (must be in the directory) |
| holding_unit | no | unit holding it now (default: `unit`) |
| responsible_unit | from in_handling on | unit that accepted it (default: holding_unit) |
| handler_id | no | handler person id |
| channel | yes | visit, letter, hotline_12345, hotline_12309, hotline_12368, online, video |
| category | yes | one of domain.models.Category (wage_arrears, ...) |
| received_at | yes | when the intake received it |
| registered_at | no | registration time (default: received_at) |
| transferred_at | no | when `holding_unit` received a transfer (registered stage only) |
| stage | yes | registered, in_handling, replied, under_review, review_replied, ... closed |
| outcome | closed only | resolved, not_accepted, diverted, withdrawn, concluded |
| accepted_at | from in_handling on | acceptance decision |
| replied_at | from replied on | delivery of the handling opinion |
| review_organ, review_requested_at | from under_review on | review request |
| review_replied_at | from review_replied on | delivery of the review opinion |
| re_review_organ, re_review_requested_at | under_re_review / concluded | re-review request |
| closed_at | closed only | when it closed |
| extension_days | no | approved extension of the handling period (default 0) |
| satisfaction | no | satisfied, basically_satisfied, unsatisfied (after a reply) |
| petitioner_name, petitioner_id_number | yes | personal data (18-character ID number) |
| petitioner_phone, petitioner_address | no | personal data |
| persons | no | joint petition size (default 1) |
| subject | yes | short subject |
| content | no | letter text (default: the subject) |
| respondent | no | whom the grievance is about (part of the repeat-matter key) |
| law_related | no | true/false (default false) |
| profile | no | deadline profile (default: the registering unit's profile) |

A clock whose reminder time has already passed at import is imported as reminded
(the legacy system's business); a deadline already passed escalates as soon as the
workflow starts, as it would for any overdue case.
"""

from __future__ import annotations

import asyncio
import csv
import gc
import hashlib
import json
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import click
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from adapters import search_attributes as sa
from adapters.tables import Unit
from domain.calendar import EXACT_UNITS, SHANGHAI, WorkingCalendar
from domain.case import CaseState, Clock, PetitionStart, TimelineEntry, UnitFacts
from domain.models import (
    Action,
    Actor,
    Category,
    Channel,
    ClockName,
    Code,
    LongText,
    Outcome,
    PetitionIntake,
    Role,
    Satisfaction,
    ShortText,
    Stage,
)
from domain.policy import (
    DeadlineProfile,
    Period,
    available_profiles,
    load_profile,
)
from starter.intake import static_summary, workflow_id_for

# Small enough that a file of a few tens of thousands of rows is already a pipeline (the
# thread validates chunk n+1 while the server moves chunk n), large enough that the
# per-statement costs of a chunk vanish.
CHUNK_ROWS = 5_000
MAX_ERRORS_KEPT = 1_000
WORKFLOW_STARTS_IN_FLIGHT = 64
IMPORT_ACTOR_ID = "legacy-import"

IntakeId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{3,63}$")]
IdNumber = Annotated[str, StringConstraints(pattern=r"^[0-9]{17}[0-9Xx]$")]
Phone = Annotated[str, StringConstraints(pattern=r"^\+?[0-9-]{5,20}$")]

# Stages in lifecycle order, to say which milestones a record must carry.
_ORDER = {s: i for i, s in enumerate((Stage.REGISTERED, Stage.IN_HANDLING, Stage.REPLIED,
                                      Stage.UNDER_REVIEW, Stage.REVIEW_REPLIED,
                                      Stage.UNDER_RE_REVIEW))}
_AFTER_REPLY_OUTCOMES = {Outcome.RESOLVED, Outcome.CONCLUDED}
_DECISION_OUTCOMES = {Outcome.NOT_ACCEPTED, Outcome.DIVERTED}


class LegacyRecord(BaseModel):
    """One CSV row. Unknown columns are refused at the header, before any row is read."""

    model_config = ConfigDict(extra="forbid")

    registration_no: Code
    intake_id: IntakeId
    unit: Code
    holding_unit: Code | None = None
    responsible_unit: Code | None = None
    handler_id: Code | None = None
    channel: Channel
    category: Category
    received_at: AwareDatetime
    registered_at: AwareDatetime | None = None
    transferred_at: AwareDatetime | None = None
    stage: Stage
    outcome: Outcome | None = None
    accepted_at: AwareDatetime | None = None
    replied_at: AwareDatetime | None = None
    review_organ: Code | None = None
    review_requested_at: AwareDatetime | None = None
    review_replied_at: AwareDatetime | None = None
    re_review_organ: Code | None = None
    re_review_requested_at: AwareDatetime | None = None
    closed_at: AwareDatetime | None = None
    extension_days: int = Field(default=0, ge=0, le=366)
    satisfaction: Satisfaction | None = None
    petitioner_name: ShortText
    petitioner_id_number: IdNumber
    petitioner_phone: Phone | None = None
    petitioner_address: ShortText | None = None
    persons: int = Field(default=1, ge=1, le=10_000)
    subject: ShortText
    content: LongText | None = None
    respondent: ShortText | None = None
    law_related: bool = False
    profile: Code | None = None

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> LegacyRecord:
        problems = _inconsistencies(self, info.context or {})
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def registered(self) -> datetime:
        return self.registered_at or self.received_at

    @property
    def holding(self) -> str:
        return self.holding_unit or self.unit


COLUMNS: tuple[str, ...] = tuple(LegacyRecord.model_fields)
REQUIRED_COLUMNS = frozenset(n for n, f in LegacyRecord.model_fields.items() if f.is_required())


def _inconsistencies(r: LegacyRecord, context: dict[str, Any]) -> list[str]:
    # Written for speed (a million rows): plain attribute tests, no reflection.
    problems: list[str] = []
    closed = r.stage is Stage.CLOSED
    if closed != (r.outcome is not None):
        problems.append("outcome is required for a closed case and only for one")
    if closed != (r.closed_at is not None):
        problems.append("closed_at is required for a closed case and only for one")
    reached = _ORDER.get(r.stage, -1)
    after_reply = closed and r.outcome in _AFTER_REPLY_OUTCOMES
    concluded = r.outcome is Outcome.CONCLUDED
    needs = (
        ("accepted_at", r.accepted_at, reached >= 1 or after_reply),
        ("replied_at", r.replied_at, reached >= 2 or after_reply),
        ("review_requested_at", r.review_requested_at, reached >= 3),
        ("review_organ", r.review_organ, reached >= 3),
        ("review_replied_at", r.review_replied_at, reached >= 4),
        ("re_review_requested_at", r.re_review_requested_at, reached >= 5 or concluded),
        ("re_review_organ", r.re_review_organ, reached >= 5 or concluded),
    )
    for name, value, needed in needs:
        if needed and value is None:
            problems.append(f"{name} is required in stage {r.stage}"
                            + (f" ({r.outcome})" if r.outcome else ""))
    chain = (("accepted_at", r.accepted_at), ("replied_at", r.replied_at),
             ("review_requested_at", r.review_requested_at),
             ("review_replied_at", r.review_replied_at),
             ("re_review_requested_at", r.re_review_requested_at))
    for (earlier, at_earlier), (later, at_later) in zip(chain, chain[1:], strict=False):
        if at_later is not None and at_earlier is None:
            problems.append(f"{later} needs {earlier}: the lifecycle has no shortcut")
    if r.outcome in (Outcome.NOT_ACCEPTED, Outcome.DIVERTED) and r.accepted_at is not None:
        problems.append(f"a case {r.outcome} was never accepted: accepted_at must be empty")
    if r.satisfaction is not None and r.replied_at is None:
        problems.append("satisfaction needs replied_at: a petitioner rates a reply")
    if r.transferred_at is not None and (r.stage is not Stage.REGISTERED
                                         or r.holding == r.unit):
        problems.append("transferred_at is only for a registered case held by another unit")
    previous_name, previous = "received_at", r.received_at
    for name, at in (("registered_at", r.registered_at), ("transferred_at", r.transferred_at),
                     ("accepted_at", r.accepted_at), ("replied_at", r.replied_at),
                     ("review_requested_at", r.review_requested_at),
                     ("review_replied_at", r.review_replied_at),
                     ("re_review_requested_at", r.re_review_requested_at),
                     ("closed_at", r.closed_at)):
        if at is None:
            continue
        if at < previous:
            problems.append(f"{name} ({at.isoformat()}) is before {previous_name} "
                            f"({previous.isoformat()})")
        previous_name, previous = name, at
    profiles = context.get("profiles")
    if r.profile is not None and profiles is not None and r.profile not in profiles:
        problems.append(f"unknown profile {r.profile!r}; available: {', '.join(sorted(profiles))}")
    units = context.get("units")
    if units is not None:
        for name, code in (("unit", r.unit), ("holding_unit", r.holding_unit),
                           ("responsible_unit", r.responsible_unit),
                           ("review_organ", r.review_organ),
                           ("re_review_organ", r.re_review_organ)):
            if code is not None and code not in units:
                problems.append(f"{name}: unknown unit {code!r} (not in the directory)")
    return problems


_ROWS = TypeAdapter(list[LegacyRecord])


# ----------------------------------------------------------------------- results


@dataclass
class RowError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class ImportResult:
    rows: int = 0
    imported: int = 0
    already_imported: int = 0
    open_cases: int = 0
    workflows_started: int = 0
    workflows_existing: int = 0
    workflow_failures: list[str] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    error_count: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error_count == 0 and not self.workflow_failures


class ImportFileError(ValueError):
    """The file as a whole cannot be read (missing, not CSV, bad header): nothing imported."""


# ------------------------------------------------------------------ deadlines


@dataclass(frozen=True)
class _Directory:
    units: dict[str, UnitFacts]
    profiles_by_unit: dict[str, str]


class _Deadlines:
    """Clock due times from the profile, memoised: for day-counted periods a due time
    depends only on the local start date, so a million rows need a few thousand sums."""

    def __init__(self, calendar: WorkingCalendar):
        self._calendar = calendar
        self._memo: dict[tuple[str, ClockName, Any, int], tuple[Any, ...]] = {}

    def times(self, profile: DeadlineProfile, name: ClockName, start: datetime,
              extend_days: int = 0) -> tuple[Any, ...] | None:
        """(due, reminder, level2) of clock `name` started at `start`; None if the profile
        has no such clock. ValueError: an extension beyond the profile's maximum."""
        policy = profile.clocks.get(name)
        if policy is None:
            return None
        key = (profile.name, name,
               start if policy.period.unit in EXACT_UNITS else _local_date(start), extend_days)
        times = self._memo.get(key)
        if times is None:
            times = self._memo[key] = self._compute(profile, name, start, extend_days)
        return times

    def due(self, profile: DeadlineProfile, name: ClockName, start: datetime,
            extend_days: int = 0) -> datetime | None:
        times = self.times(profile, name, start, extend_days)
        return times[0] if times else None

    def clock(self, profile: DeadlineProfile, name: ClockName, start: datetime, unit: str,
              *, extend_days: int = 0, now: datetime | None = None) -> Clock | None:
        times = self.times(profile, name, start, extend_days)
        if times is None:
            return None
        policy = profile.clocks[name]
        due, reminder, level2 = times
        return Clock(name=name, kind=policy.kind, article=policy.article,
                     period=str(policy.period), started_at=start, due_at=due,
                     reminder_at=reminder, level2_at=level2, unit=unit,
                     reminded=bool(now and reminder and reminder <= now))

    def _compute(self, profile: DeadlineProfile, name: ClockName, start: datetime,
                 extend_days: int) -> tuple[Any, ...]:
        cal = self._calendar
        due = profile.deadline(name, start, cal)
        assert due is not None
        if extend_days:
            # The same rule the workflow applies on decide_extension.
            unit = profile.extension.max_period.unit
            due = profile.extended_deadline(name, due, Period(amount=extend_days, unit=unit), cal)
        return (due, profile.reminder_at(name, due, cal), profile.level2_at(name, due, cal))


_BEIJING_OFFSET = timedelta(hours=8)


def _local_date(at: datetime) -> date:
    """The Asia/Shanghai date of `at`. China has kept UTC+8 without summer time since 1992,
    so plain arithmetic is exact from then on and much cheaper than a zone lookup."""
    if at.year >= 1992:
        offset = at.utcoffset() or timedelta(0)
        return (at.replace(tzinfo=None) - offset + _BEIJING_OFFSET).date()
    return at.astimezone(SHANGHAI).date()


def open_clocks(r: LegacyRecord, profile: DeadlineProfile, directory: _Directory,
                deadlines: _Deadlines, now: datetime) -> dict[ClockName, Clock]:
    """The clocks running in the record's stage, started at their original times, bound to
    the units the workflow would bind them to (see PetitionWorkflow._clock_unit)."""
    responsible = r.responsible_unit or r.holding
    wanted: list[tuple[ClockName, datetime, str, int]] = []
    if r.stage is Stage.REGISTERED:
        holder = directory.units.get(r.holding)
        entry = (ClockName.ROUTING if holder is not None and holder.is_petition_bureau
                 and r.transferred_at is None else ClockName.ACCEPTANCE)
        since = r.transferred_at or r.registered
        wanted += [(entry, since, r.holding, 0),
                   (ClockName.PROCEDURAL_REPLY, r.registered, r.holding, 0),
                   (ClockName.SETTLEMENT, r.registered, responsible, 0)]
        if r.transferred_at is not None:
            wanted.append((ClockName.TRANSFER_OBJECTION, r.transferred_at, r.holding, 0))
    elif r.stage is Stage.IN_HANDLING:
        assert r.accepted_at is not None
        wanted += [(ClockName.HANDLING, r.accepted_at, responsible, r.extension_days),
                   (ClockName.SETTLEMENT, r.registered, responsible, 0)]
    elif r.stage is Stage.REPLIED:
        assert r.replied_at is not None
        wanted.append((ClockName.REVIEW_REQUEST, r.replied_at, responsible, 0))
    elif r.stage is Stage.UNDER_REVIEW:
        assert r.review_requested_at is not None and r.review_organ is not None
        wanted.append((ClockName.REVIEW, r.review_requested_at, r.review_organ, 0))
    elif r.stage is Stage.REVIEW_REPLIED:
        assert r.review_replied_at is not None
        wanted.append((ClockName.RE_REVIEW_REQUEST, r.review_replied_at, responsible, 0))
    elif r.stage is Stage.UNDER_RE_REVIEW:
        assert r.re_review_requested_at is not None and r.re_review_organ is not None
        wanted.append((ClockName.RE_REVIEW, r.re_review_requested_at, r.re_review_organ, 0))
    clocks: dict[ClockName, Clock] = {}
    for name, start, unit, extend in wanted:
        clock = deadlines.clock(profile, name, start, unit, extend_days=extend, now=now)
        if clock is not None:
            clocks[name] = clock
    return clocks


# -------------------------------------------------------------- staging rows

STAGING_COLUMNS: tuple[tuple[str, str], ...] = (
    ("line", "integer"), ("intake_id", "text"), ("workflow_id", "text"),
    ("registration_no", "text"), ("registered_unit", "text"), ("holding_unit", "text"),
    ("responsible_unit", "text"), ("handler_id", "text"), ("channel", "text"),
    ("category", "text"), ("law_related", "boolean"), ("profile", "text"),
    ("persons", "integer"), ("matter_key", "text"), ("petitioner_name", "text"),
    ("petitioner_id_number", "text"), ("petitioner_phone", "text"),
    ("petitioner_address", "text"), ("subject", "text"), ("content", "text"),
    ("stage", "text"), ("outcome", "text"), ("received_at", "timestamptz"),
    ("registered_at", "timestamptz"), ("accepted_at", "timestamptz"),
    ("replied_at", "timestamptz"), ("closed_at", "timestamptz"),
    ("acceptance_due", "timestamptz"), ("handling_due", "timestamptz"),
    ("next_deadline", "timestamptz"), ("overdue", "boolean"), ("was_overdue", "boolean"),
    ("extension_days", "integer"), ("satisfaction", "text"), ("reviewed", "boolean"),
    ("last_seq", "integer"), ("review_requested_at", "timestamptz"),
    ("review_replied_at", "timestamptz"), ("re_review_requested_at", "timestamptz"),
    ("closing_action", "text"), ("closing_from", "text"),
)
STAGING = "legacy_import_staging"
_PROFILE_INDEX = [n for n, _ in STAGING_COLUMNS].index("profile")


def matter_key_of(r: LegacyRecord) -> str:
    """The same formula as `domain.case.matter_key`, so live repeats find imported cases."""
    about = (r.respondent or r.subject).strip().casefold()
    raw = f"{r.petitioner_id_number.upper()}|{r.category}|{about}"
    return hashlib.sha256(raw.encode()).hexdigest()[:40]


@dataclass
class _Prepared:
    row: tuple[Any, ...]
    clocks: dict[ClockName, Clock] | None  # set for open cases only


def _milestones(r: LegacyRecord) -> list[tuple[Action, datetime, Stage | None, Stage]]:
    steps: list[tuple[Action, datetime, Stage | None, Stage]] = [
        (Action.REGISTER, r.registered, None, Stage.REGISTERED)]
    if r.accepted_at:
        steps.append((Action.ACCEPT, r.accepted_at, Stage.REGISTERED, Stage.IN_HANDLING))
    if r.replied_at:
        steps.append((Action.REPLY, r.replied_at, Stage.IN_HANDLING, Stage.REPLIED))
    if r.review_requested_at:
        steps.append((Action.REQUEST_REVIEW, r.review_requested_at, Stage.REPLIED,
                      Stage.UNDER_REVIEW))
    if r.review_replied_at:
        steps.append((Action.REVIEW_OPINION, r.review_replied_at, Stage.UNDER_REVIEW,
                      Stage.REVIEW_REPLIED))
    if r.re_review_requested_at:
        steps.append((Action.REQUEST_RE_REVIEW, r.re_review_requested_at,
                      Stage.REVIEW_REPLIED, Stage.UNDER_RE_REVIEW))
    return steps


def prepare(line: int, r: LegacyRecord, directory: _Directory, deadlines: _Deadlines,
            now: datetime) -> _Prepared:
    """The staging row (and, for an open case, its clocks). ValueError: a bad extension."""
    profile = load_profile(r.profile or directory.profiles_by_unit.get(r.unit, "national"))
    holding = r.holding
    responsible = r.responsible_unit or (holding if r.accepted_at else None)
    holder = directory.units.get(holding)
    entry = (ClockName.ROUTING if holder is not None and holder.is_petition_bureau
             else ClockName.ACCEPTANCE)
    acceptance_due = deadlines.due(profile, entry, r.registered)
    handling_due = (deadlines.due(profile, ClockName.HANDLING, r.accepted_at, r.extension_days)
                    if r.accepted_at else None)
    # Late at its first decision (accept, or decline / divert, which close the case), or
    # late with its handling opinion -- or still waiting for either past the deadline.
    decided = r.accepted_at or (r.closed_at if r.outcome in _DECISION_OUTCOMES else None)
    was_overdue = bool(
        (acceptance_due and (decided or now) > acceptance_due
         and (decided is not None or r.stage is Stage.REGISTERED))
        or (handling_due and (r.replied_at or now) > handling_due
            and (r.replied_at is not None or r.stage is Stage.IN_HANDLING)))
    clocks = None
    next_deadline, overdue = None, False
    if r.stage is not Stage.CLOSED:
        clocks = open_clocks(r, profile, directory, deadlines, now)
        if ClockName.HANDLING in clocks:
            handling_due = clocks[ClockName.HANDLING].due_at
        next_deadline = min((c.due_at for c in clocks.values()), default=None)
        overdue = any(c.overdue(now) for c in clocks.values())
    steps = _milestones(r)
    closing = _closing_action(r) if r.stage is Stage.CLOSED else None
    milestones = len(steps) + (1 if closing else 0)
    return _Prepared(row=(
        line, r.intake_id, workflow_id_for(r.intake_id), r.registration_no, r.unit, holding,
        responsible, r.handler_id, r.channel.value, r.category.value, r.law_related,
        profile.name, r.persons, matter_key_of(r), r.petitioner_name, r.petitioner_id_number,
        r.petitioner_phone, r.petitioner_address, r.subject, r.content or r.subject,
        r.stage.value, r.outcome.value if r.outcome else None, r.received_at, r.registered,
        r.accepted_at, r.replied_at, r.closed_at, acceptance_due, handling_due, next_deadline,
        overdue, was_overdue or overdue, r.extension_days,
        r.satisfaction.value if r.satisfaction else None, r.review_requested_at is not None,
        milestones, r.review_requested_at, r.review_replied_at, r.re_review_requested_at,
        closing.value if closing else None, steps[-1][3].value if closing else None,
    ), clocks=clocks)


def _closing_action(r: LegacyRecord) -> Action:
    """The transition that closed the case, as the workflow would have recorded it."""
    if r.outcome is Outcome.RESOLVED:
        return (Action.RE_REVIEW_WINDOW_LAPSED if r.review_replied_at
                else Action.REVIEW_WINDOW_LAPSED)
    return {Outcome.NOT_ACCEPTED: Action.DECLINE, Outcome.DIVERTED: Action.DIVERT,
            Outcome.WITHDRAWN: Action.WITHDRAW,
            Outcome.CONCLUDED: Action.RE_REVIEW_OPINION}[r.outcome]  # type: ignore[index]


# ---------------------------------------------------------------- reading


_SURPLUS = "cells beyond the header"


def _read_chunks(path: Path, chunk_rows: int) -> Iterator[list[tuple[int, dict[str, str]]]]:
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as err:
        raise ImportFileError(f"{path}: {err.strerror}") from None
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise ImportFileError(f"{path}: empty file (a header row is required)") from None
        except (csv.Error, UnicodeDecodeError) as err:
            raise ImportFileError(f"{path}: line 1: {err}") from None
        header = [h.strip() for h in header]
        unknown = [h for h in header if h not in COLUMNS]
        missing = sorted(REQUIRED_COLUMNS - set(header))
        duplicated = sorted({h for h in header if header.count(h) > 1})
        if unknown or missing or duplicated:
            parts = ([f"unknown column(s) {', '.join(unknown)}"] if unknown else []) + (
                [f"missing required column(s) {', '.join(missing)}"] if missing else []) + (
                [f"repeated column(s) {', '.join(duplicated)}"] if duplicated else [])
            raise ImportFileError(f"{path}: header (line 1): {'; '.join(parts)}")
        chunk: list[tuple[int, dict[str, str]]] = []
        width = len(header)
        line = reader.line_num + 1  # where the next record starts (records may span lines)
        try:
            for values in reader:
                if any(v.strip() for v in values):
                    # Empty cells are absent, so the model's defaults apply; a surplus cell
                    # becomes a field the model refuses, reported on its line.
                    cells = {k: v for k, v in zip(header, values, strict=False) if v != ""}
                    if len(values) > width:
                        cells[_SURPLUS] = ",".join(values[width:])
                    chunk.append((line, cells))
                    if len(chunk) >= chunk_rows:
                        yield chunk
                        chunk = []
                line = reader.line_num + 1
        except (csv.Error, UnicodeDecodeError) as err:
            raise ImportFileError(f"{path}: line {line}: {err}") from None
        if chunk:
            yield chunk


def _field_errors(err: ValidationError, lines: Sequence[int]) -> list[RowError]:
    found = []
    for e in err.errors(include_url=False):
        loc = e["loc"]
        index = loc[0] if loc and isinstance(loc[0], int) else 0
        where = ".".join(str(p) for p in loc[1:])
        message = e["msg"].removeprefix("Value error, ")
        if where == _SURPLUS:
            message, where = "more cells than header columns", ""
        found.append(RowError(lines[index], f"{where}: {message}" if where else message))
    return found


def validate_chunk(chunk: list[tuple[int, dict[str, str]]],
                   context: dict[str, Any]) -> tuple[list[LegacyRecord], list[RowError]]:
    """Validate a chunk in one call into pydantic-core; on errors, the valid rows are still
    returned (validated one by one) so later cross-row checks see them."""
    lines = [line for line, _ in chunk]
    raw = [values for _, values in chunk]
    try:
        return _ROWS.validate_python(raw, context=context), []
    except ValidationError as err:
        errors = _field_errors(err, lines)
    bad = {e.line for e in errors}
    good = [LegacyRecord.model_validate(v, context=context)
            for line, v in chunk if line not in bad]
    return good, errors


# --------------------------------------------------------------- the import


async def _load_directory(sessions: async_sessionmaker[AsyncSession]) -> _Directory:
    async with sessions() as session:
        rows = (await session.scalars(select(Unit))).all()
    units = {u.code: UnitFacts(code=u.code, name=u.name, kind=u.kind, level=u.level,
                               parent=u.parent_code, superior_bureau=u.superior_bureau_code,
                               supervising_leader=u.supervising_leader_id, head=u.head_id)
             for u in rows}
    return _Directory(units=units, profiles_by_unit={u.code: u.profile for u in rows})


class _Progress:
    """rich.progress when wanted, else nothing (tests, benchmarks)."""

    def __init__(self, enabled: bool):
        self._bar: Any = None
        if enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(),
                                 console=Console(stderr=True))
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def add(self, key: str, description: str, total: int | None) -> None:
        if self._bar is not None:
            self._tasks[key] = self._bar.add_task(description, total=total)

    def advance(self, key: str, n: int) -> None:
        if self._bar is not None and key in self._tasks:
            self._bar.advance(self._tasks[key], n)

    def finish(self, key: str, total: int) -> None:
        if self._bar is not None and key in self._tasks:
            self._bar.update(self._tasks[key], total=total, completed=total)


@dataclass
class _OpenCase:
    line: int
    record: LegacyRecord
    clocks: dict[ClockName, Clock]
    profile: str


async def import_file(
    path: Path, engine: AsyncEngine, *, client: Client | None, task_queue: str,
    progress: bool = True, chunk_rows: int = CHUNK_ROWS, dry_run: bool = False,
    now: datetime | None = None, offline: bool = False,
) -> ImportResult:
    """Validate and import `path`; start the workflows of its open cases on `task_queue`.

    One transaction: chunk by chunk, rows are validated (in a thread) while the database
    moves the previous chunk from staging into the system of record; the first bad row
    stops all writing (the rest is only validated, to report every bad line) and the
    transaction rolls back. `client` may be None for a dry run or a file without open cases.

    `offline`: for the first migration, before the system goes live. The secondary
    indexes and the foreign keys of the tables written are dropped inside the transaction
    and restored before it commits (one sort per index instead of a million insertions,
    one join per foreign key instead of a check per row); the tables are locked against
    every other reader and writer until then. Unique indexes stay: they are what catches
    a clash.
    """
    with _collector_paused():
        return await _import_file(path, engine, client=client, task_queue=task_queue,
                                  progress=progress, chunk_rows=chunk_rows, dry_run=dry_run,
                                  now=now, offline=offline)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Validation allocates millions of short-lived, acyclic objects; with the cyclic
    garbage collector running, its repeated full passes over them cost as much as the
    validation itself. Paused for the import, run once after."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
        gc.collect()


async def _import_file(path: Path, engine: AsyncEngine, *, client: Client | None,
                       task_queue: str, progress: bool, chunk_rows: int, dry_run: bool,
                       now: datetime | None, offline: bool) -> ImportResult:
    from sqlalchemy.ext.asyncio import async_sessionmaker as maker

    started = time.perf_counter()
    now = now or datetime.now(UTC)
    result = ImportResult()
    directory = await _load_directory(maker(engine, expire_on_commit=False))
    prep = _Preparer(directory, now)
    chunks = _read_chunks(path, chunk_rows)
    open_cases: list[_OpenCase] = []
    ids: dict[int, int] = {}
    timings = result.timings
    for key in ("validate_s", "copy_s", "insert_s", "wait_s"):
        timings[key] = 0.0

    def error(e: RowError) -> None:
        result.error_count += 1
        if len(result.errors) < MAX_ERRORS_KEPT:
            result.errors.append(e)

    async def move(pg: Any) -> None:
        """Optimistic: the unique keys catch a clash with what is already stored; only
        then is the staged chunk searched for the lines to report."""
        t = time.perf_counter()
        try:
            async with pg.transaction():  # a savepoint: the clash search needs a live txn
                moved = await pg.fetch(_MOVE_SQL, path.name)
        except asyncpg.UniqueViolationError as err:
            clashes = await pg.fetch(_CONFLICTS_SQL)
            for c in clashes:
                error(RowError(c["line"], c["message"]))
            if not clashes:
                error(RowError(0, f"clash with stored records: {err}"))
            moved = []
        for row in moved:
            if row["line"] == 0:
                result.imported += row["id"]
            else:
                ids[row["line"]] = row["id"]
        timings["insert_s"] += time.perf_counter() - t

    async with engine.connect() as sa_conn:
        raw = await sa_conn.get_raw_connection()
        pg: Any = raw.driver_connection
        transaction = pg.transaction()
        await transaction.start()
        moving: asyncio.Task[None] | None = None
        try:
            columns = ", ".join(f"{n} {t}" for n, t in STAGING_COLUMNS)
            await pg.execute(f"CREATE TEMP TABLE {STAGING} ({columns}) ON COMMIT DROP")
            rebuild = await _drop_secondary_indexes(pg) if offline and not dry_run else []
            with _Progress(progress) as bar:
                bar.add("rows", f"validating and importing {path.name}", None)
                while True:
                    # The thread validates the next chunk while the server runs `moving`.
                    batch = await asyncio.to_thread(prep.next_chunk, chunks)
                    if moving is not None:
                        t = time.perf_counter()
                        await moving
                        timings["wait_s"] += time.perf_counter() - t
                        moving = None
                    if batch is None:
                        break
                    timings["validate_s"] += batch.seconds
                    result.rows += batch.size
                    for e in batch.errors:
                        error(e)
                    open_cases += batch.open_cases
                    bar.advance("rows", batch.size)
                    if result.error_count or dry_run:
                        continue
                    t = time.perf_counter()
                    await pg.execute(f"TRUNCATE {STAGING}")
                    await pg.copy_records_to_table(
                        STAGING, records=batch.rows, columns=[n for n, _ in STAGING_COLUMNS])
                    timings["copy_s"] += time.perf_counter() - t
                    moving = asyncio.create_task(move(pg))
                bar.finish("rows", result.rows)
                result.open_cases = len(open_cases)
                if result.error_count or dry_run:
                    await transaction.rollback()
                    timings["total_s"] = time.perf_counter() - started
                    return result
                if open_cases and client is None:
                    raise ImportFileError("open cases need a Temporal client to start them")
                if rebuild:
                    t = time.perf_counter()
                    bar.add("indexes", "rebuilding indexes and foreign keys", len(rebuild))
                    await pg.execute("SET LOCAL maintenance_work_mem = '256MB'")
                    for definition in rebuild:
                        await pg.execute(definition)
                        bar.advance("indexes", 1)
                    timings["reindex_s"] = time.perf_counter() - t
                await transaction.commit()
                result.already_imported = result.rows - result.imported
                if open_cases and client is not None:
                    t = time.perf_counter()
                    bar.add("workflows", "starting workflows of open cases", len(open_cases))
                    await _start_workflows(client, task_queue, open_cases, ids, directory,
                                           result, now, lambda: bar.advance("workflows", 1))
                    timings["workflows_s"] = time.perf_counter() - t
        except BaseException:
            if moving is not None and not moving.done():
                moving.cancel()
            if not transaction._done:  # noqa: SLF001 - asyncpg exposes no public flag
                await transaction.rollback()
            raise
    timings["total_s"] = time.perf_counter() - started
    return result


BULK_TABLES = ("petitions", "petition_events", "registration_numbers", "termination_registry")


async def _drop_secondary_indexes(pg: Any) -> list[str]:
    """Drop the indexes no constraint owns, and the foreign keys, of the tables the import
    writes; returns the statements that restore them, to run before the transaction
    commits: each index is then built by one sort, and each foreign key is checked by one
    join instead of a trigger per inserted row."""
    indexes = await pg.fetch("""
        SELECT i.indexname, i.indexdef FROM pg_indexes i
        WHERE i.schemaname = current_schema() AND i.tablename = ANY($1::text[])
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c
                          WHERE c.conname = i.indexname AND c.conrelid =
                                (quote_ident(i.schemaname) || '.' ||
                                 quote_ident(i.tablename))::regclass)
        ORDER BY i.indexname""", list(BULK_TABLES))
    foreign_keys = await pg.fetch("""
        SELECT c.conname, c.conrelid::regclass::text AS tbl, pg_get_constraintdef(c.oid) AS def
        FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
        WHERE c.contype = 'f' AND t.relname = ANY($1::text[])
          AND t.relnamespace = current_schema()::regnamespace
        ORDER BY c.conname""", list(BULK_TABLES))
    for row in indexes:
        await pg.execute(f'DROP INDEX "{row["indexname"]}"')
    for row in foreign_keys:
        await pg.execute(f'ALTER TABLE {row["tbl"]} DROP CONSTRAINT "{row["conname"]}"')
    return [*(row["indexdef"] for row in indexes),
            *(f'ALTER TABLE {row["tbl"]} ADD CONSTRAINT "{row["conname"]}" {row["def"]}'
              for row in foreign_keys)]


@dataclass
class _Batch:
    size: int
    rows: list[tuple[Any, ...]]
    open_cases: list[_OpenCase]
    errors: list[RowError]
    seconds: float


class _Preparer:
    """Reads, validates and prepares one chunk at a time (run in a worker thread), and
    remembers every intake id and registration number seen, to catch repeats in the file."""

    def __init__(self, directory: _Directory, now: datetime):
        self._directory = directory
        self._now = now
        self._context = {"units": frozenset(directory.units),
                         "profiles": frozenset(available_profiles())}
        self._deadlines = _Deadlines(WorkingCalendar())
        self._seen_intake: dict[str, int] = {}
        self._seen_number: dict[str, int] = {}

    def next_chunk(self, chunks: Iterator[list[tuple[int, dict[str, str]]]]) -> _Batch | None:
        chunk = next(chunks, None)
        if chunk is None:
            return None
        t = time.perf_counter()
        records, errors = validate_chunk(chunk, self._context)
        bad = {e.line for e in errors}
        lines = [line for line, _ in chunk if line not in bad]
        batch = _Batch(len(chunk), [], [], errors, 0.0)
        for line, r in zip(lines, records, strict=True):
            first = self._seen_intake.setdefault(r.intake_id, line)
            if first != line:
                errors.append(RowError(line, f"intake_id {r.intake_id!r} repeats line {first}"))
                continue
            first = self._seen_number.setdefault(r.registration_no, line)
            if first != line:
                errors.append(RowError(line, f"registration_no {r.registration_no!r} repeats "
                                             f"line {first}"))
                continue
            try:
                prepared = prepare(line, r, self._directory, self._deadlines, self._now)
            except ValueError as err:
                errors.append(RowError(line, str(err)))
                continue
            batch.rows.append(prepared.row)
            if prepared.clocks is not None:
                batch.open_cases.append(_OpenCase(line, r, prepared.clocks,
                                                  prepared.row[_PROFILE_INDEX]))
        errors.sort(key=lambda e: e.line)
        batch.seconds = time.perf_counter() - t
        return batch


_CONFLICTS_SQL = f"""
    -- Rows clashing with what the system of record already holds: a different petition
    -- under the same intake id or registration number. Identical rows are a resumed import.
    SELECT DISTINCT ON (line) line, message FROM (
        SELECT s.line, 'intake_id ' || quote_literal(s.intake_id) ||
               ' is already registered as ' || r.registration_no AS message
        FROM {STAGING} s JOIN registration_numbers r ON r.intake_id = s.intake_id
        WHERE r.registration_no <> s.registration_no
        UNION ALL
        SELECT s.line, 'registration_no ' || quote_literal(s.registration_no) ||
               ' already belongs to intake ' || r.intake_id
        FROM {STAGING} s JOIN registration_numbers r ON r.registration_no = s.registration_no
        WHERE r.intake_id <> s.intake_id
        UNION ALL
        SELECT s.line, 'intake_id ' || quote_literal(s.intake_id) ||
               ' is already a petition numbered ' || p.registration_no
        FROM {STAGING} s JOIN petitions p ON p.intake_id = s.intake_id
        WHERE p.registration_no <> s.registration_no
        UNION ALL
        SELECT s.line, 'registration_no ' || quote_literal(s.registration_no) ||
               ' is already the petition of intake ' || p.intake_id
        FROM {STAGING} s JOIN petitions p ON p.registration_no = s.registration_no
        WHERE p.intake_id <> s.intake_id
    ) clash ORDER BY line LIMIT {MAX_ERRORS_KEPT}"""

# One statement per chunk: the petitions, their registration numbers, one audit row
# each, the termination registry for cases concluded after re-review, and the unit
# counters moved past imported numbers in this system's own format (so a live
# registration never draws a number an imported case holds). A clash with stored rows
# breaks a unique key. Returns (0, rows inserted) and (line, petition id) of every open
# case, new or imported by an earlier run.
_MOVE_SQL = f"""
    WITH new AS (
        INSERT INTO petitions (intake_id, workflow_id, registration_no, registered_unit,
            holding_unit, responsible_unit, handler_id, channel, category, law_related,
            profile, persons, matter_key, petitioner, subject, content, attachments, stage,
            outcome, received_at, registered_at, accepted_at, replied_at, closed_at,
            acceptance_due, handling_due, next_deadline, overdue, was_overdue, extension_days,
            satisfaction, reviewed, last_seq)
        SELECT intake_id, workflow_id, registration_no, registered_unit, holding_unit,
            responsible_unit, handler_id, channel, category, law_related, profile, persons,
            matter_key,
            jsonb_build_object('name', petitioner_name, 'id_number', petitioner_id_number,
                               'phone', petitioner_phone, 'address', petitioner_address),
            subject, content, '[]'::jsonb, stage, outcome, received_at, registered_at,
            accepted_at, replied_at, closed_at, acceptance_due, handling_due, next_deadline,
            overdue, was_overdue, extension_days, satisfaction, reviewed, last_seq
        FROM {STAGING} s
        WHERE NOT EXISTS (SELECT 1 FROM petitions p WHERE p.intake_id = s.intake_id
                          AND p.registration_no = s.registration_no)
        RETURNING id, intake_id, workflow_id, registration_no, registered_unit, holding_unit,
            responsible_unit, stage, outcome, matter_key, registered_at, closed_at
    ), numbers AS (
        INSERT INTO registration_numbers (intake_id, registration_no, unit_code, allocated_at)
        SELECT intake_id, registration_no, registered_unit, registered_at FROM new n
        WHERE NOT EXISTS (SELECT 1 FROM registration_numbers r WHERE r.intake_id = n.intake_id
                          AND r.registration_no = n.registration_no)
    ), audit AS (
        -- The transitions the workflow would have recorded, at their original times and
        -- under the same idempotency keys, so reports and `petition show` see the history.
        INSERT INTO petition_events (petition_id, workflow_id, idempotency_key, seq, action,
            actor_id, actor_role, actor_unit, from_stage, to_stage, accepted, detail, at)
        SELECT n.id, n.workflow_id, n.workflow_id || ':' || m.seq || ':' || m.action, m.seq,
            m.action, '{IMPORT_ACTOR_ID}', 'system', n.registered_unit, m.from_stage,
            m.to_stage, true,
            jsonb_build_object('imported_from', $1::text, 'line', s.line), m.at
        FROM new n JOIN {STAGING} s USING (intake_id)
        CROSS JOIN LATERAL (VALUES
            (1, 'register', s.registered_at, NULL, 'registered'),
            (2, 'accept', s.accepted_at, 'registered', 'in_handling'),
            (3, 'reply', s.replied_at, 'in_handling', 'replied'),
            (4, 'request_review', s.review_requested_at, 'replied', 'under_review'),
            (5, 'review_opinion', s.review_replied_at, 'under_review', 'review_replied'),
            (6, 'request_re_review', s.re_review_requested_at, 'review_replied',
             'under_re_review'),
            (s.last_seq, s.closing_action, s.closed_at, s.closing_from, 'closed')
        ) AS m(seq, action, at, from_stage, to_stage)
        WHERE m.at IS NOT NULL
    ), concluded AS (
        INSERT INTO termination_registry (petition_id, matter_key, registration_no,
            concluded_at, concluded_by_unit)
        SELECT id, matter_key, registration_no, closed_at,
               coalesce(responsible_unit, holding_unit)
        FROM new WHERE outcome = 'concluded'
        ON CONFLICT (petition_id) DO NOTHING
    ), counters AS (
        INSERT INTO registration_counters (unit_code, year, last_seq)
        SELECT registered_unit, split_part(tail, '-', 1)::int,
               max(split_part(tail, '-', 2)::int)
        FROM (SELECT registered_unit,
                     substr(registration_no, length(registered_unit) + 2) AS tail
              FROM {STAGING}
              WHERE left(registration_no, length(registered_unit) + 1) = registered_unit || '-'
             ) t
        WHERE tail ~ '^[0-9]{{4}}-[0-9]{{1,9}}$'
        GROUP BY 1, 2
        ON CONFLICT (unit_code, year)
        DO UPDATE SET last_seq = GREATEST(registration_counters.last_seq, EXCLUDED.last_seq)
    )
    SELECT 0 AS line, count(*) AS id FROM new
    UNION ALL
    SELECT s.line, coalesce(n.id, p.id)
    FROM {STAGING} s LEFT JOIN new n USING (intake_id)
         LEFT JOIN petitions p ON p.intake_id = s.intake_id
    WHERE s.stage <> 'closed'"""


# ------------------------------------------------------------ open cases


def carried_state(case: _OpenCase, petition_id: int, directory: _Directory,
                  now: datetime) -> CaseState:
    r = case.record
    responsible = r.responsible_unit or (r.holding if r.accepted_at else None)
    wanted = {r.unit, r.holding, responsible, r.review_organ, r.re_review_organ}
    actor = Actor(id=IMPORT_ACTOR_ID, role=Role.SYSTEM, unit=r.unit)
    timeline = [TimelineEntry(seq=i, at=at, action=action, actor=actor, from_stage=src,
                              to_stage=dst, summary=f"{action}: imported from the legacy record")
                for i, (action, at, src, dst) in enumerate(_milestones(r), start=1)]
    return CaseState(
        workflow_id=workflow_id_for(r.intake_id), petition_id=petition_id,
        registration_no=r.registration_no, profile=load_profile(case.profile),
        channel=r.channel, category=r.category, law_related=r.law_related,
        registered_unit=r.unit, holding_unit=r.holding, responsible_unit=responsible,
        transferred_from=[r.unit] if r.holding != r.unit else [],
        review_organ=r.review_organ, re_review_organ=r.re_review_organ,
        handler_id=r.handler_id,
        units={c: directory.units[c] for c in wanted if c in directory.units},
        stage=r.stage, clocks=case.clocks, seq=len(timeline),
        extension_used=r.extension_days > 0, extension_days=r.extension_days,
        satisfaction=r.satisfaction,
        was_overdue=any(c.overdue(now) for c in case.clocks.values()),
        timeline=timeline,
    )


def intake_of(r: LegacyRecord, profile: str) -> PetitionIntake:
    return PetitionIntake.model_validate({
        "intake_id": r.intake_id, "channel": r.channel, "category": r.category,
        "unit": r.unit, "received_at": r.received_at,
        "petitioner": {"name": r.petitioner_name, "id_number": r.petitioner_id_number,
                       "phone": r.petitioner_phone, "address": r.petitioner_address},
        "persons": r.persons, "subject": r.subject, "content": r.content or r.subject,
        "respondent": r.respondent, "law_related": r.law_related, "profile": profile,
    })


def _search_attributes(state: CaseState) -> TypedSearchAttributes:
    """Set at start: a carried case publishes nothing until its next event, and supervisors
    must see imported cases at once."""
    now = datetime.now(UTC)
    pairs: list[SearchAttributePair[Any]] = [
        SearchAttributePair(sa.PETITION_STAGE, state.stage.value),
        SearchAttributePair(sa.REGISTRATION_NO, state.registration_no),
        SearchAttributePair(sa.RESPONSIBLE_UNIT, state.responsible_unit or state.holding_unit),
        SearchAttributePair(sa.CHANNEL, state.channel.value),
        SearchAttributePair(sa.CATEGORY, state.category.value),
        SearchAttributePair(sa.OVERDUE, any(c.overdue(now) for c in state.clocks.values())),
        SearchAttributePair(sa.ESCALATION_LEVEL, 0),
        SearchAttributePair(sa.LAW_RELATED, state.law_related),
    ]
    dues = [c.due_at for c in state.clocks.values() if c.paused_at is None]
    if dues:
        pairs.append(SearchAttributePair(sa.NEXT_DEADLINE, min(dues)))
    return TypedSearchAttributes(pairs)


async def _start_workflows(client: Client, task_queue: str, cases: list[_OpenCase],
                           ids: dict[int, int], directory: _Directory, result: ImportResult,
                           now: datetime, advance: Any) -> None:
    from workflows.petition import PetitionWorkflow

    gate = asyncio.Semaphore(WORKFLOW_STARTS_IN_FLIGHT)

    async def start(case: _OpenCase) -> None:
        async with gate:
            state = carried_state(case, ids[case.line], directory, now)
            intake = intake_of(case.record, case.profile)
            try:
                handle = await client.start_workflow(
                    PetitionWorkflow.run,
                    PetitionStart(intake=intake, registration_no=state.registration_no,
                                  carried=state),
                    id=state.workflow_id, task_queue=task_queue,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                    search_attributes=_search_attributes(state),
                    static_summary=static_summary(intake, state.registration_no),
                    static_details=f"Imported from a legacy record ({state.stage}); deadlines "
                                   f"under profile `{case.profile}` from the original times.",
                )
                del handle  # started now, or already running from an earlier run
                result.workflows_started += 1
            except WorkflowAlreadyStartedError:
                result.workflows_existing += 1  # closed already: it has moved on since
            except Exception as err:  # noqa: BLE001 - reported, and a re-run finishes the job
                result.workflow_failures.append(f"line {case.line}: {err}")
            advance()

    await asyncio.gather(*(start(c) for c in cases))


def describe_columns() -> str:
    return ", ".join(f"{c}{'*' if c in REQUIRED_COLUMNS else ''}" for c in COLUMNS)



# ------------------------------------------------------------------ the command


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="validate every row, import nothing")
@click.option("--no-progress", is_flag=True, help="no progress bar (logs, CI)")
@click.option("--offline", is_flag=True,
              help="first migration before go-live: rebuild secondary indexes at the end "
                   "(faster; the tables are locked until the import commits)")
def import_command(file: Path, dry_run: bool, no_progress: bool, offline: bool) -> None:
    """Import historical petitions from a CSV FILE, all or nothing; open cases resume their
    deadlines. Columns (* required): see `starter/legacy_import.py`."""
    from starter.runtime import runtime

    async def go() -> ImportResult:
        async with runtime() as rt:
            # Connect first: an unreachable server must stop the import before it writes.
            client = None if dry_run else await rt.client()
            return await import_file(file, rt.engine, client=client,
                                     task_queue=rt.settings.task_queue,
                                     progress=not no_progress, dry_run=dry_run,
                                     offline=offline)

    try:
        result = asyncio.run(go())
    except ImportFileError as err:
        click.echo(f"error: {err}; nothing was imported", err=True)
        sys.exit(2)
    if result.error_count:
        for e in result.errors:
            click.echo(f"{file}: {e}", err=True)
        hidden = result.error_count - len(result.errors)
        if hidden:
            click.echo(f"... and {hidden} more", err=True)
        click.echo(f"error: {result.error_count} bad row(s) of {result.rows}; "
                   "nothing was imported", err=True)
        sys.exit(2)
    summary = {"rows": result.rows, "imported": result.imported,
               "already_imported": result.already_imported, "open_cases": result.open_cases,
               "workflows_started": result.workflows_started,
               "workflows_already_closed": result.workflows_existing, "dry_run": dry_run,
               "seconds": {k: round(v, 2) for k, v in result.timings.items()}}
    click.echo(json.dumps(summary, indent=2))
    if result.workflow_failures:
        for failure in result.workflow_failures[:50]:
            click.echo(f"workflow not started: {failure}", err=True)
        click.echo(f"error: records imported, but {len(result.workflow_failures)} open case(s) "
                   "have no workflow yet: run the same import again to start them", err=True)
        sys.exit(3)
