"""A case's clocks as pure functions: start, stop, pause, resume, renew, extend, hand over.

Deadlines are counted on the calendar handed in (in the workflow, the case's frozen
snapshot; elsewhere the live `WorkingCalendar`), computed once when a clock starts and
kept as absolute times. Which unit a clock binds is a rule here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from domain.calendar import SHANGHAI, WorkingCalendar
from domain.case import CaseState, Clock, ClockRequest, ComputedClock
from domain.deadlines import SNAPSHOT_YEARS_AHEAD, compute_clock
from domain.lifecycle import SUCCESSOR_CLOCKS, Transition, clocks_to_start
from domain.models import ClockName
from domain.policy import ClockKind, Period

# What the workflow waits for on each clock, in the order a clock goes through them.
LAPSE, REMINDER, LEVEL_1, LEVEL_2 = "lapse", "reminder", "level 1 escalation", \
    "level 2 escalation"


@dataclass(frozen=True, order=True)
class ClockEvent:
    at: datetime
    clock: ClockName
    what: str


def clock_unit(case: CaseState, name: ClockName) -> str:
    """The unit a clock binds: reviewing organs their own periods, the holding unit its
    receipt, the responsible unit (once there is one) everything else."""
    if name is ClockName.REVIEW:
        return case.review_organ or case.holding_unit
    if name is ClockName.RE_REVIEW:
        return case.re_review_organ or case.holding_unit
    if name in (ClockName.ROUTING, ClockName.ACCEPTANCE, ClockName.TRANSFER_OBJECTION):
        return case.holding_unit
    return case.responsible_unit or case.holding_unit


def _install(case: CaseState, computed: list[ComputedClock], keep_started: bool = False) -> None:
    for c in computed:
        old = case.clocks.get(c.name)
        started = old.started_at if keep_started and old else c.started_at
        case.clocks[c.name] = Clock(
            name=c.name, kind=c.kind, article=c.article, period=c.period, started_at=started,
            due_at=c.due_at, reminder_at=c.reminder_at, level2_at=c.level2_at, unit=c.unit)


def _count(case: CaseState, requests: list[ClockRequest],
           calendar: WorkingCalendar) -> list[ComputedClock]:
    counted = (compute_clock(case.profile, r, calendar) for r in requests)
    return [c for c in counted if c is not None]


def start(case: CaseState, names: list[ClockName], at: datetime, calendar: WorkingCalendar,
          runs_on: bool = False) -> None:
    """Start `names` at `at`; `runs_on`: `at` is a previous clock's due time, and the new
    period is chained to it (counted from that clock's last day)."""
    wanted = [n for n in names if n in case.profile.clocks]
    requests = [ClockRequest(name=n, start=at, unit=clock_unit(case, n), renew=runs_on)
                for n in wanted]
    _install(case, _count(case, requests, calendar))


def start_for(case: CaseState, row: Transition, at: datetime,
              calendar: WorkingCalendar) -> None:
    """The clocks a row starts, the receiving unit's made concrete (routing at a bureau)."""
    holder = case.units.get(case.holding_unit)
    names = clocks_to_start(row, holder is not None and holder.is_petition_bureau)
    start(case, names, at, calendar)


def stop(case: CaseState, names: tuple[ClockName, ...]) -> None:
    for name in names:
        case.clocks.pop(name, None)


def pause(case: CaseState, names: tuple[ClockName, ...], at: datetime) -> None:
    for name in names:
        clock = case.clocks.get(name)
        if clock is not None and clock.paused_at is None:
            clock.paused_at = at


def resume(case: CaseState, names: tuple[ClockName, ...], at: datetime) -> None:
    """Time spent paused (a re-review hearing) is not counted: the clock moves on."""
    for name in names:
        clock = case.clocks.get(name)
        if clock is None or clock.paused_at is None:
            continue
        paused = at - clock.paused_at
        clock.due_at += paused
        clock.reminder_at = clock.reminder_at + paused if clock.reminder_at else None
        clock.level2_at = clock.level2_at + paused if clock.level2_at else None
        clock.paused_at = None


def renew(case: CaseState, names: tuple[ClockName, ...], at: datetime,
          calendar: WorkingCalendar) -> None:
    """A progress reply meets a recurring clock for one more period.

    Inside the clock's last period (or once it is overdue) the next period runs on from
    its due time. A deadline that hands over to such a clock (the procuratorate's 3
    months) and is already overdue is met by the reply too: the recurring clock starts
    at the reply instead.
    """
    renewals = []
    for name in names:
        overdue = [before for before, after in SUCCESSOR_CLOCKS.items()
                   if after == name and before in case.clocks and case.clocks[before].level > 0]
        if overdue:
            stop(case, tuple(overdue))
            start(case, [name], at, calendar)
            continue  # its first period has only just begun
        clock = case.clocks.get(name)
        policy = case.profile.clock(name)
        if clock is None or policy is None or policy.repeat_every is None:
            continue
        window = timedelta(hours=policy.repeat_every.nominal_hours())
        if clock.level > 0 or at >= clock.due_at - window:
            renewals.append(ClockRequest(name=name, start=clock.due_at, unit=clock.unit,
                                         renew=True))
    _install(case, _count(case, renewals, calendar))


def extend(case: CaseState, names: tuple[ClockName, ...], days: int | None,
           calendar: WorkingCalendar) -> None:
    """An approved extension runs on from the clock's current due time."""
    if not names or not days:
        return
    unit = case.profile.extension.max_period.unit
    requests = [ClockRequest(name=n, start=case.clocks[n].due_at, unit=case.clocks[n].unit,
                             extend_by=Period(amount=days, unit=unit))
                for n in names if n in case.clocks]
    if requests:
        _install(case, _count(case, requests, calendar), keep_started=True)
        case.extension_used, case.extension_days = True, case.extension_days + days


def hand_over(case: CaseState, clock: Clock, calendar: WorkingCalendar) -> bool:
    """At its expiry, a clock met by a recent progress reply passes to its successor."""
    successor = SUCCESSOR_CLOCKS.get(clock.name)
    policy = case.profile.clock(successor) if successor else None
    if successor is None or policy is None or clock.level > 0:
        return False
    last = case.last_progress_reply_at
    window = timedelta(hours=policy.period.nominal_hours())
    if last is None or last < clock.due_at - window:
        return False
    case.clocks.pop(clock.name)
    start(case, [successor], clock.due_at, calendar, runs_on=True)
    return True


def escalate(case: CaseState, clock: Clock) -> None:
    """An overdue clock goes one level up: the supervising leader, then the superior
    bureau (督办)."""
    clock.level += 1
    case.was_overdue = True
    case.max_escalation_level = max(case.max_escalation_level, clock.level)


def events(case: CaseState) -> list[ClockEvent]:
    """What each running clock waits for next, soonest first."""
    found = []
    for c in case.clocks.values():
        if c.paused_at is not None:
            continue
        if c.kind is ClockKind.WINDOW:
            found.append(ClockEvent(c.due_at, c.name, LAPSE))
        elif not c.reminded and c.reminder_at and c.level == 0:
            found.append(ClockEvent(c.reminder_at, c.name, REMINDER))
        elif c.level == 0:
            found.append(ClockEvent(c.due_at, c.name, LEVEL_1))
        elif c.level == 1 and c.level2_at:
            found.append(ClockEvent(c.level2_at, c.name, LEVEL_2))
    return sorted(found)


def signature(case: CaseState) -> tuple[tuple[object, ...], ...]:
    """Changes whenever what the clocks wait for changes (and only then: a note must not
    restart the workflow's timer)."""
    return tuple((c.name, c.due_at, c.reminder_at, c.level2_at, c.paused_at, c.level,
                  c.reminded) for c in case.clocks.values())


def next_deadline(case: CaseState) -> datetime | None:
    return min((c.due_at for c in case.clocks.values() if c.paused_at is None), default=None)


def overdue(case: CaseState, now: datetime) -> bool:
    return any(c.overdue(now) for c in case.clocks.values())


def escalation_level(case: CaseState) -> int:
    return max((c.level for c in case.clocks.values()), default=0)


def calendar_years(case: CaseState, at: datetime) -> tuple[int, int]:
    """The Beijing-time years a transition at `at` may count in: its own, the years its
    running clocks end in, and `SNAPSHOT_YEARS_AHEAD` more."""
    years = [at.astimezone(SHANGHAI).year]
    years += [c.due_at.astimezone(SHANGHAI).year for c in case.clocks.values()]
    return min(years), max(years) + SNAPSHOT_YEARS_AHEAD
