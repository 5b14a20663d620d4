"""A legacy record replayed through the domain core: the case the workflow would hold.

The case is opened with `domain.case.open_case` (the one constructor of a registered
case) and registered with `domain.transition.register` at the record's registration
time; then each thing the record says happened is taken as a row of the lifecycle table
(`domain.transition.take`) at its original time, by a legacy actor the row permits: the
transfer to the holding unit, the handler's assignment, acceptance, an approved
extension, the reply and its rating, review and re-review, and the row that closed the
case. The table's guard checks each step (`domain.transition.refusal`): a record whose
history the lifecycle refuses is a bad row.

Between two steps the clocks do what they would have done in the workflow: a reminder
passes, an overdue deadline escalates (so `was_overdue` is the core's), a transfer's
objection window closes. A window whose lapse closes the case (the review windows) is
left to the record, which says how the case went on. After the last step of an open case
only the reminders already past are marked (the legacy system's business); a deadline
already past escalates when its workflow starts, as for any overdue case.

So clocks, audit records (with their read-model rows), the timeline and every projection
of an imported case are the core's, exactly as for a live case.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import PrivateAttr, ValidationError

from adapters.petition_client import workflow_id_for
from domain import clocks, transition
from domain.calendar import EXACT_UNITS, SHANGHAI, WorkingCalendar
from domain.case import (
    CalendarSnapshot,
    CaseState,
    Clock,
    EffectResults,
    UnitFacts,
    matter_digest,
    open_case,
)
from domain.deadlines import snapshot_of
from domain.lifecycle import LAPSE_ACTIONS, TABLE, TRANSITIONS, Effect, Transition, UnitRule
from domain.models import (
    Action,
    Actor,
    ClockName,
    Command,
    DeclineReason,
    DivertTrack,
    Outcome,
    Petitioner,
    PetitionIntake,
    Role,
    Stage,
)
from domain.policy import DeadlineProfile, Period, load_profile
from starter.legacy.read import LegacyRecord
from starter.legacy.validate import MILESTONES

LEGACY_ACTOR_ID = "legacy-import"
LEGACY_NOTE = "imported from the legacy record"
# What a legacy export rarely says, and a command requires: the record's explanation
# says it was not recorded.
DEFAULT_DECLINE_REASON = DeclineReason.OUTSIDE_PETITION_SCOPE
DEFAULT_DIVERT_TRACK = DivertTrack.OTHER_STATUTORY_PROCEDURE
UNRECORDED_ORGAN = "unrecorded"

# The role a legacy actor takes for a row: the first of these the row permits.
_ROLE_PREFERENCE = (Role.SYSTEM, Role.HANDLER, Role.UNIT_HEAD, Role.LEADER, Role.PETITIONER,
                    Role.INTAKE_CLERK)


class ReplayRefused(ValueError):
    """The lifecycle refuses the record's history: a bad row."""


@dataclass(frozen=True)
class Directory:
    """The unit directory, as the workflow's activities would look units up."""

    units: dict[str, UnitFacts]
    profiles_by_unit: dict[str, str]

    def profile_for(self, r: LegacyRecord) -> str:
        return r.profile or self.profiles_by_unit.get(r.unit, "national")


@dataclass
class Replayed:
    line: int
    record: LegacyRecord
    intake: PetitionIntake
    case: CaseState  # its audit records still queued (`unrecorded`)

    @property
    def is_open(self) -> bool:
        return self.case.stage is not Stage.CLOSED

    @property
    def matter_digest(self) -> str:
        """Unkeyed: the importing process keys it (load.seal_rows), never stored as is."""
        return matter_digest(self.intake)


def intake_of(r: LegacyRecord, profile: str, *, checked: bool = True) -> PetitionIntake:
    """The intake the record was registered from. `checked=False` skips validation (the
    record's own fields are validated already): for a closed case, which never becomes
    a workflow input, and a million rows."""
    petitioner: dict[str, Any] = {
        "name": r.petitioner_name, "id_number": r.petitioner_id_number,
        "phone": r.petitioner_phone, "address": r.petitioner_address}
    fields: dict[str, Any] = {
        "intake_id": r.intake_id, "channel": r.channel, "category": r.category,
        "unit": r.unit, "received_at": r.received_at, "persons": r.persons,
        "subject": r.subject, "content": r.content or r.subject, "respondent": r.respondent,
        "law_related": r.law_related, "profile": profile,
    }
    if checked:
        try:
            return PetitionIntake.model_validate({**fields, "petitioner": petitioner})
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'intake'}: "
                                 f"{e['msg'].removeprefix('Value error, ')}"
                                 for e in err.errors(include_url=False))
            raise ReplayRefused(f"not a valid intake for its workflow: {problems}") from None
    return PetitionIntake.model_construct(
        **fields, petitioner=Petitioner.model_construct(**petitioner), attachments=[])


def legacy_actor(row: Transition, case: CaseState) -> tuple[Role, str]:
    """Who takes `row` for the legacy system (`LEGACY_ACTOR_ID`): a role the row permits,
    of the unit it binds."""
    role = next(r for r in _ROLE_PREFERENCE if r in row.roles)
    unit: str | None = case.holding_unit
    if row.unit_rule is UnitRule.RESPONSIBLE:
        unit = case.responsible_unit
    elif row.unit_rule is UnitRule.REVIEW_ORGAN:
        unit = case.review_organ
    elif row.unit_rule is UnitRule.RE_REVIEW_ORGAN:
        unit = case.re_review_organ
    return role, unit or case.holding_unit


def closing_row(case: CaseState, outcome: Outcome) -> Transition:
    """The row of the table that closes `case`, in its stage, with `outcome`."""
    for row in TRANSITIONS:
        if (row.outcome is outcome and case.stage in row.from_stages
                and (row.precondition is None or row.precondition(case) is None)):
            return row
    raise ReplayRefused(f"no row of the lifecycle closes a case in stage {case.stage} "
                        f"as {outcome}")


def _payload(action: Action, r: LegacyRecord) -> dict[str, Any]:
    """What the command of `action` carries, from the record (or the legacy note)."""
    if action in (Action.REPLY, Action.REVIEW_OPINION, Action.RE_REVIEW_OPINION):
        return {"opinion": LEGACY_NOTE}
    if action is Action.REQUEST_REVIEW:
        return {"review_organ": r.review_organ, "reason": LEGACY_NOTE}
    if action is Action.REQUEST_RE_REVIEW:
        return {"re_review_organ": r.re_review_organ, "reason": LEGACY_NOTE}
    if action is Action.TRANSFER:
        return {"to_unit": r.holding}
    if action is Action.ASSIGN:
        return {"handler_id": r.handler_id}
    if action is Action.REQUEST_EXTENSION:
        return {"days": r.extension_days, "reason": LEGACY_NOTE}
    if action is Action.DECIDE_EXTENSION:
        return {"approved": True, "reason_to_petitioner": LEGACY_NOTE}
    if action is Action.RATE:
        return {"satisfaction": r.satisfaction}
    if action is Action.DECLINE:
        return {"reason": r.decline_reason or DEFAULT_DECLINE_REASON,
                "explanation": LEGACY_NOTE if r.decline_reason
                else f"{LEGACY_NOTE}, which records no reason"}
    if action is Action.DIVERT:
        return {"track": r.divert_track or DEFAULT_DIVERT_TRACK,
                "organ": r.divert_organ or UNRECORDED_ORGAN, "explanation": LEGACY_NOTE}
    return {}


class _CountedOnce(DeadlineProfile):
    """A profile whose deadline arithmetic is memoised for one import (one calendar).

    The same answers as the profile's own (it calls them), but a million records start
    their clocks on a few thousand distinct days: a period counted in days depends only
    on the Beijing date it starts on, a reminder, an escalation or an extension only on
    the due time it counts from. Used while replaying only: a replayed case gets its
    profile back before anyone sees it.
    """

    _answers: dict[tuple[Any, ...], Any] = PrivateAttr(default_factory=dict)

    def deadline(self, clock: ClockName, start: datetime,
                 calendar: WorkingCalendar) -> datetime | None:
        policy = self.clocks.get(clock)
        if policy is None:
            return None
        day: Any = start if policy.period.unit in EXACT_UNITS else (
            start.astimezone(SHANGHAI).date())
        return self._memo(("deadline", clock, day),
                          lambda: DeadlineProfile.deadline(self, clock, start, calendar))

    def reminder_at(self, clock: ClockName, due: datetime,
                    calendar: WorkingCalendar) -> datetime | None:
        return self._memo(("reminder", clock, due),
                          lambda: DeadlineProfile.reminder_at(self, clock, due, calendar))

    def level2_at(self, clock: ClockName, due: datetime,
                  calendar: WorkingCalendar) -> datetime | None:
        return self._memo(("level2", clock, due),
                          lambda: DeadlineProfile.level2_at(self, clock, due, calendar))

    def next_repeat(self, clock: ClockName, previous_due: datetime,
                    calendar: WorkingCalendar) -> datetime | None:
        return self._memo(("repeat", clock, previous_due),
                          lambda: DeadlineProfile.next_repeat(self, clock, previous_due,
                                                              calendar))

    def extended_deadline(self, clock: ClockName, due: datetime, requested: Period,
                          calendar: WorkingCalendar) -> datetime:
        # Not memoised: once per extended case, and it may refuse (ValueError).
        return DeadlineProfile.extended_deadline(self, clock, due, requested, calendar)

    def _memo(self, key: tuple[Any, ...], compute: Any) -> Any:
        # Not `self._answers`: pydantic's __getattr__ for private attributes is slow.
        memo = self.__pydantic_private__["_answers"]  # type: ignore[index]
        if key not in memo:
            memo[key] = compute()
        return memo[key]


# A change reads the answers of its row's activities; most rows have none.
_NO_RESULTS = EffectResults()


def _quiet_until(clock: Clock, until: datetime) -> bool:
    """Nothing happens on `clock` before `until` (every time it can wait for is later)."""
    return clock.due_at >= until and (clock.reminder_at is None or clock.reminder_at >= until)


class Replayer:
    """Replays records on one calendar (the worker's: the holidays library and the loaded
    official notices), as of `now`. Not thread-safe; one per import."""

    def __init__(self, directory: Directory, calendar: WorkingCalendar, now: datetime):
        self._directory = directory
        self._calendar = calendar
        self._now = now
        self._snapshots: dict[tuple[int, int], CalendarSnapshot] = {}
        self._counted: dict[str, DeadlineProfile] = {}
        self._actors: dict[tuple[Role, str], Actor] = {}

    def _counting(self, profile: DeadlineProfile) -> DeadlineProfile:
        counted = self._counted.get(profile.name)
        if counted is None:
            counted = self._counted[profile.name] = _CountedOnce.model_construct(
                **dict(profile))
        return counted

    def replay(self, line: int, r: LegacyRecord) -> Replayed:
        """The record as a case. ReplayRefused: the lifecycle refuses its history."""
        profile = load_profile(self._directory.profile_for(r))
        intake = intake_of(r, profile.name, checked=r.stage is not Stage.CLOSED)
        case = open_case(workflow_id=workflow_id_for(r.intake_id), petition_id=0,
                         registration_no=r.registration_no, profile=self._counting(profile),
                         intake=intake, unit=self._directory.units[r.unit])
        try:
            self._replay(case, r)
        finally:
            case.profile = profile
        if case.stage is not r.stage:  # the row checks make this impossible
            raise ReplayRefused(f"the record's history leads to stage {case.stage}, "
                                f"not {r.stage}")
        return Replayed(line, r, intake, case)

    def _replay(self, case: CaseState, r: LegacyRecord) -> None:
        transition.register(case, self._actor(Role.INTAKE_CLERK, r.unit), r.registered,
                            self._calendar)
        if r.holding != r.unit:
            self._take(case, r, TABLE[Action.TRANSFER], r.transferred_at or r.registered)
        if r.handler_id is not None:
            self._take(case, r, TABLE[Action.ASSIGN], case.timeline[-1].at)
        for column, action in MILESTONES:
            at = getattr(r, column)
            if at is None:
                break
            self._take(case, r, TABLE[action], at)
            if action is Action.ACCEPT and r.extension_days:
                self._take(case, r, TABLE[Action.REQUEST_EXTENSION], at)
                self._take(case, r, TABLE[Action.DECIDE_EXTENSION], at)
            if action is Action.REPLY and r.satisfaction is not None:
                self._take(case, r, TABLE[Action.RATE], at)
        if r.outcome is not None:
            assert r.closed_at is not None
            self._take(case, r, closing_row(case, r.outcome), r.closed_at)
        else:
            self._pass_time(case, self._now, escalate=False)
            case.calendar = self._snapshot(case)

    def _take(self, case: CaseState, r: LegacyRecord, row: Transition, at: datetime) -> None:
        self._pass_time(case, at, escalate=True)
        role, unit = legacy_actor(row, case)
        command = row.command.model_validate(
            {**_payload(row.action, r), "actor": self._actor(role, unit)})
        refusal = transition.refusal(case, row, command)
        if refusal is not None:
            raise ReplayRefused(f"{row.action} at {at.isoformat()}: {refusal}")
        transition.take(case, row, command, at, self._results(row, command), self._calendar)

    def _actor(self, role: Role, unit: str) -> Actor:
        actor = self._actors.get((role, unit))
        if actor is None:
            actor = self._actors[(role, unit)] = Actor(id=LEGACY_ACTOR_ID, role=role, unit=unit)
        return actor

    def _results(self, row: Transition, command: Command) -> EffectResults:
        """What the row's lookups would have answered: the directory facts of the unit a
        transfer goes to, of the organ a review is asked of."""
        if Effect.TRANSFER_ORDER not in row.effects and Effect.LOOKUP_ORGAN not in row.effects:
            return _NO_RESULTS
        code = (getattr(command, "to_unit", None) or getattr(command, "review_organ", None)
                or getattr(command, "re_review_organ", None))
        facts = self._directory.units.get(code or "")
        return EffectResults(units=[facts] if facts is not None else [])

    def _pass_time(self, case: CaseState, until: datetime, *, escalate: bool) -> None:
        """The clock events before `until`, as the workflow would have fired them."""
        if all(_quiet_until(c, until) for c in case.clocks.values()):
            return  # the common case, without sorting every clock's next event
        left_alone: set[Any] = set()
        while True:
            event = next((e for e in clocks.events(case)
                          if e.at < until and e.clock not in left_alone), None)
            if event is None:
                return
            clock = case.clocks[event.clock]
            if event.what == clocks.LAPSE:
                if event.clock in LAPSE_ACTIONS:
                    left_alone.add(event.clock)  # the record says how the case went on
                else:
                    clocks.stop(case, (event.clock,))  # e.g. the transfer now stands
            elif event.what == clocks.REMINDER:
                clock.reminded = True
            elif not escalate:
                left_alone.add(event.clock)  # the workflow escalates it when it starts
            elif not clocks.hand_over(case, clock, self._calendar):
                clocks.escalate(case, clock)

    def _snapshot(self, case: CaseState) -> CalendarSnapshot | None:
        """The working days the case's workflow counts on, frozen as the workflow would
        freeze them now (None for a profile counted on the clock alone)."""
        if not case.profile.counts_on_calendar:
            return None
        years = clocks.calendar_years(case, self._now)
        snapshot = self._snapshots.get(years)
        if snapshot is None:
            snapshot = self._snapshots[years] = snapshot_of(
                self._calendar, years[0], years[1], self._calendar.source)
        return snapshot
