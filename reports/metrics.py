"""The assessment figures, defined once. See DOMAIN.md, "What supervisors are judged on
(reports)": timely acceptance rate, on-schedule completion rate, 7-day reply rate and
3-month settlement rate (procuratorate profile), satisfaction rate, one-time resolution
rate, repeat-petition rate, overdue and escalated cases, assistance paid (cases, persons,
amount), hearings held and their outcomes.

Every figure is computed in PostgreSQL from the system of record (`petitions`,
`petition_events`, `escalations`, `hearings`, `assistance_payments`, `units`) by the
four aggregate queries below; Python only adds the per-unit rows up the directory.

Conventions shared by all figures
---------------------------------
* **Which unit.** A petition counts for its responsible unit once accepted, and before
  that for the unit holding it -- the unit the Web UI shows as `ResponsibleUnit`. An
  escalation counts for the unit whose clock expired (`escalations.unit_code`).
* **Which period.** Rates and the cohort counts are over the petitions *registered* in
  the period (`registered_at`, Beijing time): a unit is judged on the matters it received
  that day / week / month / year, whenever it dealt with them. Activity counts (overdue,
  level-2 supervision, assistance paid, hearings held) are over events *in* the period.
* **Pending is not failure.** A petition whose deadline has not yet come and which has
  not yet done the measured thing is left out of that rate's denominator; once the
  deadline has passed (at the report's `as_of` time) without it, it counts as a miss.
* **n/a.** A rate with an empty denominator is `None` ("n/a"), never 0 % and never a
  division error.
* **Roll-up.** A unit's figure includes its descendants (`units.parent_code`): every
  count, numerator and denominator is summed over the subtree, and each rate is then
  recomputed from the summed numerator and denominator (never averaged).

Indexes these queries rely on (a 1,000,000-petition table)
-----------------------------------------------------------
* `ix_petitions_registered_cohort` (migration 0003): the cohort, a range on
  `registered_at` with the columns read here included (an index-only scan);
* `ix_petition_events_workflow (workflow_id, at) INCLUDE (action, accepted)` (0003):
  first decision / reply / result per cohort petition;
* `ix_escalations_petition (petition_id)` (0002): missed acceptance deadlines;
* `ix_escalations_escalated_at`, `ix_assistance_payments_paid_at` (0003) and
  `ix_hearings_time` (0002): the activity figures of the period.
A column read by the cohort query but missing from the INCLUDE list of
`ix_petitions_registered_cohort` costs heap fetches, never a wrong answer.

Measured on 1,000,000 petitions (2.2 M events, 0.6 M escalations; 2 busy cores, embedded
PostgreSQL), province bureau subtree: a month 0.07 s, a year 1.0 s (0.2 s and 1.5 s
without the period indexes of 0003). A 12-month trend chart is twelve such reports.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    TIMESTAMP,
    ColumnElement,
    Date,
    Interval,
    and_,
    cast,
    distinct,
    func,
    literal_column,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession

from adapters.tables import (
    AssistancePayment,
    Escalation,
    Hearing,
    Petition,
    PetitionEvent,
    Unit,
)
from domain.models import Action, ClockName, HearingOutcome, Satisfaction, Stage
from reports.periods import ReportPeriod

__all__ = ["RATES", "Figures", "Rate", "UnitTree", "compute_figures", "load_unit_tree"]

P = Petition.__table__
E = PetitionEvent.__table__
X = Escalation.__table__
H = Hearing.__table__
PAY = AssistancePayment.__table__
U = Unit.__table__

TIME_ZONE = "Asia/Shanghai"
PROCURATORATE_PROFILE = "procuratorate"

# The first routing decision on a registered petition (DOMAIN.md, "registered").
DECISIONS = (Action.ACCEPT, Action.DECLINE, Action.DIVERT, Action.TRANSFER)
# "Every letter gets a reply": a procedural reply, a decision or the handling opinion.
FIRST_REPLIES = (*DECISIONS, Action.PROGRESS_REPLY, Action.REPLY)
# A result for the 3-month settlement: the handling opinion, or not accepted / diverted.
RESULTS = (Action.REPLY, Action.DECLINE, Action.DIVERT)
ACCEPTANCE_CLOCKS = (ClockName.ROUTING, ClockName.ACCEPTANCE)
AWAITING_REPLY = (Stage.REGISTERED, Stage.IN_HANDLING)
CONTENT = (Satisfaction.SATISFIED, Satisfaction.BASICALLY_SATISFIED)
HEARING_OUTCOMES = tuple(HearingOutcome)


def _values(items: Iterable[Any]) -> list[str]:
    return [str(i) for i in items]


# --------------------------------------------------------------------------- figures


@dataclass
class Figures:
    """Additive quantities for one unit (or a subtree) in one period.

    Everything here can be summed; rates are derived from pairs of these fields.
    """

    registered: int = 0
    accept_timely: int = 0
    accept_due: int = 0
    complete_on_time: int = 0
    complete_due: int = 0
    reply7_met: int = 0
    reply7_due: int = 0
    settle3_met: int = 0
    settle3_due: int = 0
    content: int = 0
    rated: int = 0
    closed_first_time: int = 0
    closed: int = 0
    repeats: int = 0
    open_cases: int = 0
    overdue: int = 0
    escalated_level2: int = 0
    assistance_cases: int = 0
    assistance_persons: int = 0
    assistance_yuan: Decimal = field(default_factory=lambda: Decimal("0.00"))
    hearings_held: int = 0
    hearing_outcomes: dict[str, int] = field(
        default_factory=lambda: {o.value: 0 for o in HEARING_OUTCOMES})

    def __add__(self, other: Figures) -> Figures:
        total = Figures()
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if isinstance(mine, dict):
                setattr(total, f.name, {k: mine.get(k, 0) + theirs.get(k, 0)
                                        for k in {**mine, **theirs}})
            else:
                setattr(total, f.name, mine + theirs)
        return total

    def rate(self, rate: Rate) -> float | None:
        denominator = getattr(self, rate.denominator)
        if not denominator:
            return None
        return getattr(self, rate.numerator) / denominator

    def counts(self) -> dict[str, Any]:
        """Every additive field, flat (hearing outcomes as `hearings_<outcome>`)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, dict):
                out.update({f"hearings_{k}": v for k, v in value.items()})
            else:
                out[f.name] = value
        return out


@dataclass(frozen=True)
class Rate:
    key: str
    title: str
    numerator: str
    denominator: str
    definition: str


RATES: tuple[Rate, ...] = (
    Rate("timely_acceptance", "Timely acceptance", "accept_timely", "accept_due",
         "First decision (accept, decline, divert or transfer) no later than the acceptance "
         "/ routing deadline (`acceptance_due`), and no acceptance or routing deadline "
         "missed before it. Denominator: decided petitions plus undecided ones still "
         "registered whose deadline has passed. DOMAIN.md: 'decided within the acceptance "
         "period'."),
    Rate("on_schedule_completion", "On-schedule completion", "complete_on_time", "complete_due",
         "Handling opinion (`replied_at`) no later than `handling_due`, which includes an "
         "approved extension (for the procuratorate profile: the 3-month settlement due). "
         "Denominator: replied petitions plus unreplied ones awaiting a reply whose deadline "
         "has passed. DOMAIN.md: 'replied within the handling period, extension included'."),
    Rate("seven_day_reply", "7-day reply (procuratorate)", "reply7_met", "reply7_due",
         "Procuratorate-profile petitions whose first reply -- procedural / progress reply, "
         "decision or handling opinion -- came by 24:00 Beijing time of the 7th day after "
         "receipt (the day of receipt not counted). DOMAIN.md, profile `procuratorate`."),
    Rate("three_month_settlement", "3-month settlement (procuratorate)", "settle3_met",
         "settle3_due",
         "Procuratorate-profile petitions with a result (handling opinion, not accepted, "
         "diverted) by 24:00 of the same day 3 months after receipt. DOMAIN.md, profile "
         "`procuratorate`."),
    Rate("satisfaction", "Satisfaction", "content", "rated",
         "(satisfied + basically satisfied) / rated. DOMAIN.md, 'satisfaction rate'."),
    Rate("one_time_resolution", "One-time resolution", "closed_first_time", "closed",
         "Closed petitions that never went to review / closed petitions. DOMAIN.md, "
         "'one-time resolution rate (closed without review)'."),
    Rate("repeat_petition", "Repeat petitions", "repeats", "registered",
         "Petitions repeating an earlier case (`repeat_of`) or with repeat visits attached "
         "/ registered. DOMAIN.md, 'repeat-petition rate'."),
)

RATE_BY_KEY = {r.key: r for r in RATES}


# --------------------------------------------------------------------------- the tree


@dataclass
class UnitTree:
    """The subtree of the directory under `root`: code -> parent, children in order."""

    root: str
    parent: dict[str, str | None]
    children: dict[str, list[str]]
    names: dict[str, str]

    def descendants(self, code: str) -> list[str]:
        out, stack = [], [code]
        while stack:
            current = stack.pop()
            out.append(current)
            stack.extend(reversed(self.children.get(current, [])))
        return out

    def rolled_up(self, own: dict[str, Figures]) -> dict[str, Figures]:
        """Each unit's own figures plus all its descendants' (post-order, no recursion)."""
        total: dict[str, Figures] = {}
        for code in reversed(self.descendants(self.root)):
            figures = own.get(code, Figures())
            for child in self.children.get(code, []):
                figures = figures + total[child]
            total[code] = figures
        return total


class UnknownUnitError(LookupError):
    pass


def _subtree_cte(root: str) -> Any:
    tree = select(U.c.code, U.c.parent_code).where(U.c.code == root).cte("tree", recursive=True)
    # UNION (not UNION ALL): a parent cycle in a bad directory ends instead of looping.
    return tree.union(select(U.c.code, U.c.parent_code).where(U.c.parent_code == tree.c.code))


async def load_unit_tree(session: AsyncSession, root: str) -> UnitTree:
    tree = _subtree_cte(root)
    rows = (await session.execute(
        select(tree.c.code, tree.c.parent_code, U.c.name)
        .join(U, U.c.code == tree.c.code).order_by(tree.c.code))).all()
    if not rows:
        raise UnknownUnitError(f"unknown unit {root!r}: not in the organisation directory")
    parent = {code: (None if code == root else up) for code, up, _ in rows}
    children: dict[str, list[str]] = {code: [] for code in parent}
    for code, up in parent.items():
        if up is not None and up in children:
            children[up].append(code)
    return UnitTree(root, parent, children, {code: name for code, _, name in rows})


# --------------------------------------------------------------------------- the SQL


def _petition_unit() -> ColumnElement[str]:
    return func.coalesce(P.c.responsible_unit, P.c.holding_unit)


def _own_cases() -> ColumnElement[bool]:
    """A repeat visit attached to an open case is counted on that case (`repeat_visits`),
    never as a petition of its own (migration 0002, `petitions.attached_to`)."""
    return P.c.attached_to.is_(None)


def _local_date(ts: Any) -> Any:
    return cast(func.timezone(TIME_ZONE, ts), Date)


def _end_of_local_day_after(ts: Any, interval: str) -> Any:
    """24:00 Beijing time of the day `interval` after `ts`'s local day (DOMAIN counting rule:
    the starting day is not counted and a period ends at 24:00 of its last day)."""
    day = cast(_local_date(ts), TIMESTAMP)
    # Months first, then the one day that turns "the last day" into "24:00 of it".
    shift = literal_column(f"interval '{interval}'", Interval)
    one_day = literal_column("interval '1 day'", Interval)
    return func.timezone(TIME_ZONE, day + shift + one_day)


def _cohort_query(tree: Any, period: ReportPeriod, as_of: datetime) -> Any:
    unit = _petition_unit().label("unit")
    in_tree = select(tree.c.code).scalar_subquery()
    # The earliest acceptance / routing deadline this case missed (escalated), if any: a
    # correlated lookup on ix_escalations_petition, so the cost follows the cohort, not the
    # escalations table.
    missed_due = (
        select(func.min(X.c.due_at))
        .where(X.c.petition_id == P.c.id, X.c.clock.in_(_values(ACCEPTANCE_CLOCKS)))
        .scalar_subquery().label("missed_due")
    )
    cohort = (
        select(P.c.id, P.c.workflow_id, unit, P.c.stage, P.c.profile, P.c.received_at,
               P.c.acceptance_due, P.c.handling_due, P.c.replied_at, P.c.satisfaction,
               P.c.reviewed, P.c.repeat_of, P.c.repeat_visits, missed_due)
        .where(P.c.registered_at >= period.start, P.c.registered_at < period.end,
               _petition_unit().in_(in_tree), _own_cases())
        .cte("cohort")
    )
    ev = (
        select(
            E.c.workflow_id,
            func.min(E.c.at).filter(E.c.action.in_(_values(DECISIONS))).label("decided_at"),
            func.min(E.c.at).label("first_reply_at"),
            func.min(E.c.at).filter(E.c.action.in_(_values(RESULTS))).label("result_at"),
        )
        .select_from(E.join(cohort, cohort.c.workflow_id == E.c.workflow_id))
        .where(E.c.accepted, E.c.action.in_(_values(FIRST_REPLIES)))
        .group_by(E.c.workflow_id)
        .cte("ev")
    )
    c = cohort.c
    procuratorate = c.profile == PROCURATORATE_PROFILE
    still_open = c.stage != Stage.CLOSED.value
    due7 = _end_of_local_day_after(c.received_at, "7 days")
    due3 = _end_of_local_day_after(c.received_at, "3 months")
    decided = ev.c.decided_at.is_not(None)

    def n(condition: Any) -> Any:
        return func.count().filter(condition)

    return (
        select(
            c.unit,
            func.count().label("registered"),
            n(and_(decided, ev.c.decided_at <= c.acceptance_due,
                   or_(c.missed_due.is_(None), c.missed_due >= ev.c.decided_at))
              ).label("accept_timely"),
            n(and_(c.acceptance_due.is_not(None),
                   or_(decided, and_(c.stage == Stage.REGISTERED.value,
                                     c.acceptance_due < as_of)))).label("accept_due"),
            n(c.replied_at <= c.handling_due).label("complete_on_time"),
            n(and_(c.handling_due.is_not(None),
                   or_(c.replied_at.is_not(None),
                       and_(c.stage.in_(_values(AWAITING_REPLY)), c.handling_due < as_of)))
              ).label("complete_due"),
            n(and_(procuratorate, ev.c.first_reply_at <= due7)).label("reply7_met"),
            n(and_(procuratorate, or_(ev.c.first_reply_at.is_not(None),
                                      and_(still_open, due7 < as_of)))).label("reply7_due"),
            n(and_(procuratorate, ev.c.result_at <= due3)).label("settle3_met"),
            n(and_(procuratorate, or_(ev.c.result_at.is_not(None),
                                      and_(still_open, due3 < as_of)))).label("settle3_due"),
            n(c.satisfaction.in_(_values(CONTENT))).label("content"),
            n(c.satisfaction.is_not(None)).label("rated"),
            n(and_(c.stage == Stage.CLOSED.value, c.reviewed.is_(False))).label(
                "closed_first_time"),
            n(c.stage == Stage.CLOSED.value).label("closed"),
            n(or_(c.repeat_of.is_not(None), c.repeat_visits > 0)).label("repeats"),
            n(still_open).label("open_cases"),
        )
        .select_from(cohort.outerjoin(ev, ev.c.workflow_id == c.workflow_id))
        .group_by(c.unit)
    )


def _escalations_query(tree: Any, period: ReportPeriod) -> Any:
    petition = distinct(X.c.petition_id)
    return (
        select(X.c.unit_code.label("unit"),
               func.count(petition).filter(X.c.level == 1).label("overdue"),
               func.count(petition).filter(X.c.level >= 2).label("escalated_level2"))
        .where(X.c.escalated_at >= period.start, X.c.escalated_at < period.end,
               X.c.unit_code.in_(select(tree.c.code).scalar_subquery()))
        .group_by(X.c.unit_code)
    )


def _assistance_query(tree: Any, period: ReportPeriod) -> Any:
    unit = _petition_unit().label("unit")
    return (
        select(unit,
               func.count(distinct(PAY.c.petition_id)).label("assistance_cases"),
               func.coalesce(func.sum(PAY.c.persons), 0).label("assistance_persons"),
               func.coalesce(func.sum(PAY.c.amount_yuan), 0).label("assistance_yuan"))
        .select_from(PAY.join(P, P.c.id == PAY.c.petition_id))
        .where(PAY.c.paid_at >= period.start, PAY.c.paid_at < period.end,
               _petition_unit().in_(select(tree.c.code).scalar_subquery()))
        .group_by(unit)
    )


def _hearings_query(tree: Any, period: ReportPeriod) -> Any:
    unit = _petition_unit().label("unit")
    by_outcome = [func.count().filter(H.c.outcome == o.value).label(f"outcome_{o.value}")
                  for o in HEARING_OUTCOMES]
    return (
        select(unit, func.count().label("hearings_held"), *by_outcome)
        .select_from(H.join(P, P.c.id == H.c.petition_id))
        .where(H.c.status == "held", H.c.starts_at >= period.start, H.c.starts_at < period.end,
               _petition_unit().in_(select(tree.c.code).scalar_subquery()))
        .group_by(unit)
    )


async def compute_figures(session: AsyncSession, tree: UnitTree, period: ReportPeriod,
                          as_of: datetime) -> dict[str, Figures]:
    """Each unit's OWN figures (its descendants not included) for `period`, as of `as_of`."""
    cte = _subtree_cte(tree.root)
    own: dict[str, Figures] = {code: Figures() for code in tree.parent}

    def figures(code: str) -> Figures:
        # A petition held by a unit outside the directory subtree cannot appear (the
        # queries filter on the subtree), so every code is one of ours.
        return own.setdefault(code, Figures())

    for row in (await session.execute(_cohort_query(cte, period, as_of))).mappings():
        target = figures(row["unit"])
        for key, value in row.items():
            if key != "unit":
                setattr(target, key, int(value))
    for row in (await session.execute(_escalations_query(cte, period))).mappings():
        target = figures(row["unit"])
        target.overdue, target.escalated_level2 = int(row["overdue"]), int(
            row["escalated_level2"])
    for row in (await session.execute(_assistance_query(cte, period))).mappings():
        target = figures(row["unit"])
        target.assistance_cases = int(row["assistance_cases"])
        target.assistance_persons = int(row["assistance_persons"])
        target.assistance_yuan = Decimal(row["assistance_yuan"]).quantize(Decimal("0.01"))
    for row in (await session.execute(_hearings_query(cte, period))).mappings():
        target = figures(row["unit"])
        target.hearings_held = int(row["hearings_held"])
        target.hearing_outcomes = {o.value: int(row[f"outcome_{o.value}"])
                                   for o in HEARING_OUTCOMES}
    return own

