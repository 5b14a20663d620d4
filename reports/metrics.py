"""The assessment figures, defined once. See DOMAIN.md, "What supervisors are judged on
(reports)": timely acceptance rate, timely routing rate, on-schedule completion rate,
7-day reply rate and 3-month settlement rate (procuratorate profile), satisfaction rate,
one-time resolution rate, repeat-petition rate, overdue and escalated cases, assistance
paid (cases, persons, amount), hearings held and their outcomes, transfers and
diversions.

Every figure is computed in PostgreSQL from the system of record (`petitions`,
`petition_events`, `escalations`, `hearings`, `assistance_payments`) by the queries
below, for the units of one report tree (`units`); Python only adds the per-unit rows up
the tree.

Conventions shared by all figures
---------------------------------
* **Which unit.** A petition counts for its responsible unit once accepted, and before
  that for the unit holding it -- the unit the Web UI shows as `ResponsibleUnit`: for a
  decided petition, the unit that decided on its acceptance. Two figures count for the
  unit that acted instead: a transfer (and a bureau's routing) for the unit that
  transferred the case, read from the audit trail; a diversion for the unit that
  diverted it. An escalation counts for the unit whose clock expired
  (`escalations.unit_code`).
* **Which period.** Rates and the cohort counts (registered, closed, transfers,
  diversions) are over the petitions *registered* in the period (`registered_at`,
  Beijing time): a unit is judged on the matters it received that day / week / month /
  year, whenever it dealt with them. Activity counts (overdue, level-2 supervision,
  assistance paid, hearings held) are over events *in* the period.
* **Pending is not failure.** A petition whose deadline has not yet come and which has
  not yet done the measured thing is left out of that rate's denominator; once the
  deadline has passed (at the report's `as_of` time) without it, it counts as a miss.
* **n/a.** A rate with an empty denominator is `None` ("n/a"), never 0 % and never a
  division error.
* **Roll-up**, two ways (`RollUp`): by territory, a territory's figures are those of
  every unit located in it (`units.territory`: a county's bureau, departments, court,
  procuratorate, public security, townships; a city's own units and its counties); by
  line, a unit's figures include the units below it in its line
  (`units.line_parent_code`: a city department and the county departments of the same
  line). Either way every count, numerator and denominator is summed over the tree, and
  each rate is then recomputed from the summed numerator and denominator (never
  averaged).

Indexes these queries rely on (a 1,000,000-petition table)
-----------------------------------------------------------
* `ix_petitions_registered_cohort` (migration 0003): the cohort, a range on
  `registered_at` with the columns read here included (an index-only scan);
* `ix_petition_events_workflow (workflow_id, at) INCLUDE (action, accepted)` (0003):
  first decision / reply / result per cohort petition, and the cohort's transfers;
* `ix_escalations_petition (petition_id)` (0002): missed routing deadlines;
* `ix_escalations_escalated_at`, `ix_assistance_payments_paid_at` (0003) and
  `ix_hearings_time` (0002): the activity figures of the period.
A column read by the cohort query but missing from the INCLUDE list of
`ix_petitions_registered_cohort` costs heap fetches, never a wrong answer.

Measured on 1,000,000 petitions (2.2 M events, 0.6 M escalations; 2 busy cores, embedded
PostgreSQL), the province bureau's parent subtree, before the routing and transfer
figures: a month 0.07 s, a year 1.0 s (0.2 s and 1.5 s without the period indexes of
0003). Since: 300,000 synthetic petitions of one year (1.08 M events, 60 % transferred),
the whole province by territory -- every petition, five times that subtree's share --
on a loaded 2-core machine: a month 0.3-0.7 s, a year 4-6 s, the routing query (every
transfer of the cohort, its unit read back from the audit trail) about as long as the
cohort query. Time grows with the cohort; a 12-month trend chart is twelve reports.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    TIMESTAMP,
    ColumnElement,
    Date,
    Integer,
    Interval,
    and_,
    case,
    cast,
    exists,
    func,
    literal_column,
    not_,
    or_,
    select,
    true,
    union_all,
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

__all__ = ["COUNT_KEYS", "FIGURE_KEYS", "RATES", "CountedItem", "Figures", "Rate", "ReportTree",
           "RollUp", "UnitTree", "UnknownUnitError", "compute_figures", "counted_items",
           "load_report_tree", "load_unit_tree"]

P = Petition.__table__
E = PetitionEvent.__table__
X = Escalation.__table__
H = Hearing.__table__
PAY = AssistancePayment.__table__
U = Unit.__table__

TIME_ZONE = "Asia/Shanghai"
PROCURATORATE_PROFILE = "procuratorate"
PETITION_BUREAU = "petition_bureau"

# A concluded matter declined automatically at registration (Action.DECLINE_CONCLUDED, a
# system action): a decline wherever declines are counted.
DECLINE_CONCLUDED = "decline_concluded_matter"
# The decision on acceptance (DOMAIN.md, "registered"): accepted, declined or diverted. A
# transfer is not one: the receiving unit's decision is.
DECISIONS = (Action.ACCEPT, Action.DECLINE, DECLINE_CONCLUDED, Action.DIVERT)
# "Every letter gets a reply": a procedural reply, a decision or the handling opinion.
FIRST_REPLIES = (*DECISIONS, Action.TRANSFER, Action.PROGRESS_REPLY, Action.REPLY)
# A result for the 3-month settlement: the handling opinion, or not accepted / diverted.
RESULTS = (Action.REPLY, Action.DECLINE, DECLINE_CONCLUDED, Action.DIVERT)
# What changes the unit holding a registered case: a transfer (转送 or 交办, to
# `detail.to_unit`) and an objection to it, which returns the case to the unit before.
MOVES = (Action.TRANSFER, Action.REJECT_TRANSFER)
AWAITING_REPLY = (Stage.REGISTERED, Stage.IN_HANDLING)
CONTENT = (Satisfaction.SATISFIED, Satisfaction.BASICALLY_SATISFIED)
HEARING_OUTCOMES = tuple(HearingOutcome)


def _values(items: Iterable[Any]) -> list[str]:
    return [str(i) for i in items]


# --------------------------------------------------------------------------- figures


@dataclass
class Figures:
    """Additive quantities for one unit (or a tree of units) in one period.

    Everything here can be summed; rates are derived from pairs of these fields.
    """

    registered: int = 0
    accept_timely: int = 0
    accept_due: int = 0
    route_timely: int = 0
    route_due: int = 0
    complete_on_time: int = 0
    complete_due: int = 0
    reply7_met: int = 0
    reply7_due: int = 0
    settle3_met: int = 0
    settle3_due: int = 0
    content: int = 0
    rated: int = 0
    resolved_first_time: int = 0
    opinions_settled: int = 0
    repeats: int = 0
    open_cases: int = 0
    closed: int = 0
    transfers: int = 0
    diversions: int = 0
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
         "Of petitions whose acceptance was decided (accepted, declined -- the automatic "
         "decline of a concluded matter included -- or diverted), the share decided no "
         "later than the acceptance deadline of the unit that decided it (`acceptance_due`: "
         "the receipt clock of the unit holding the case, counted from its receipt -- for a "
         "transferred petition the receiving unit's; at a petition bureau its routing "
         "clock). A transfer is not a decision: the bureau's transfer is judged by timely "
         "routing. Also in the denominator, as misses: petitions still undecided at a unit "
         "other than a petition bureau whose acceptance deadline has passed. Counted for "
         "the deciding unit. DOMAIN.md: 'timely acceptance rate'."),
    Rate("timely_routing", "Timely routing", "route_timely", "route_due",
         "Of the petitions each petition bureau transferred or assigned (转送 / 交办), the "
         "share routed within its routing period: no routing deadline of that bureau on "
         "that petition expired (`escalations`, clock `routing`) before its first transfer "
         "of it. Also in the denominator, as misses: petitions still held unrouted and "
         "undecided by a bureau whose routing deadline has passed. Counted for the "
         "transferring bureau; a petition routed by a city bureau and then by a county "
         "bureau counts once for each. DOMAIN.md: 'timely routing rate'."),
    Rate("on_schedule_completion", "On-schedule completion", "complete_on_time", "complete_due",
         "Handling opinion (`replied_at`) no later than `handling_due`, which includes an "
         "approved extension (for the procuratorate profile: the 3-month settlement due). "
         "Denominator: replied petitions plus unreplied ones awaiting a reply whose deadline "
         "has passed. DOMAIN.md: 'replied within the handling period, extension included'."),
    Rate("seven_day_reply", "7-day reply (procuratorate)", "reply7_met", "reply7_due",
         "Procuratorate-profile petitions whose first reply -- procedural / progress reply, "
         "decision, transfer or handling opinion -- came by 24:00 Beijing time of the 7th "
         "day after receipt (the day of receipt not counted). DOMAIN.md, profile "
         "`procuratorate`."),
    Rate("three_month_settlement", "3-month settlement (procuratorate)", "settle3_met",
         "settle3_due",
         "Procuratorate-profile petitions with a result (handling opinion, not accepted, "
         "diverted) by 24:00 of the same day 3 months after receipt. DOMAIN.md, profile "
         "`procuratorate`."),
    Rate("satisfaction", "Satisfaction", "content", "rated",
         "(satisfied + basically satisfied) / rated. DOMAIN.md, 'satisfaction rate'."),
    Rate("one_time_resolution", "One-time resolution", "resolved_first_time",
         "opinions_settled",
         "Of petitions that received a handling opinion (`replied_at`), the share closed "
         "without a request for review. Declined and diverted petitions, which get no "
         "handling opinion, are not in it; an opinion whose review window is still open is "
         "pending. DOMAIN.md, 'one-time resolution rate'."),
    Rate("repeat_petition", "Repeat petitions", "repeats", "registered",
         "Petitions repeating an earlier case (`repeat_of`) or with repeat visits attached "
         "/ registered. DOMAIN.md, 'repeat-petition rate'."),
)

RATE_BY_KEY = {r.key: r for r in RATES}


# --------------------------------------------------------------------------- the trees


class RollUp(StrEnum):
    """How a report adds units up (DOMAIN.md: 'rolled up ... two ways')."""

    TERRITORY = "territory"  # a territory: every unit located in it
    LINE = "line"  # a unit and the units below it in its line


@dataclass
class ReportTree:
    """The nodes a report covers: `parent` / `children` from `root` down.

    By line every node is a unit. By territory the inner nodes are territories (a
    province, city or county) and the leaves the units located in them; a report asked
    for a unit that is not a petition bureau is that unit alone.
    """

    root: str
    parent: dict[str, str | None]
    children: dict[str, list[str]]
    names: dict[str, str]
    units: frozenset[str] | None = None  # the nodes that are units; None: every node
    bureaus: frozenset[str] = frozenset()  # the petition bureaus among them
    by: RollUp | None = None

    def __post_init__(self) -> None:
        if self.units is None:
            self.units = frozenset(self.parent)

    @property
    def unit_codes(self) -> frozenset[str]:
        return self.units if self.units is not None else frozenset(self.parent)

    def is_territory(self, code: str) -> bool:
        return code not in self.unit_codes

    def descendants(self, code: str) -> list[str]:
        out, stack = [], [code]
        while stack:
            current = stack.pop()
            out.append(current)
            stack.extend(reversed(self.children.get(current, [])))
        return out

    def rolled_up(self, own: dict[str, Figures]) -> dict[str, Figures]:
        """Each node's own figures plus all its descendants' (post-order, no recursion)."""
        total: dict[str, Figures] = {}
        for code in reversed(self.descendants(self.root)):
            figures = own.get(code, Figures())
            for child in self.children.get(code, []):
                figures = figures + total[child]
            total[code] = figures
        return total


UnitTree = ReportTree  # the name `petition views --subtree` knows it by


class UnknownUnitError(LookupError):
    pass


def _subtree_cte(root: str) -> Any:
    tree = select(U.c.code, U.c.parent_code).where(U.c.code == root).cte("tree", recursive=True)
    # UNION (not UNION ALL): a parent cycle in a bad directory ends instead of looping.
    return tree.union(select(U.c.code, U.c.parent_code).where(U.c.parent_code == tree.c.code))


async def load_unit_tree(session: AsyncSession, root: str) -> ReportTree:
    """`root` and every unit under it along `parent` (the escalation chain)."""
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
    return ReportTree(root, parent, children, {code: name for code, _, name in rows})


# Units located in one territory, in the order a report lists them.
KIND_ORDER = ("petition_bureau", "party_committee", "discipline_inspection",
              "government_department", "public_security", "court", "procuratorate",
              "township")


@dataclass(frozen=True)
class _DirectoryUnit:
    code: str
    name: str
    kind: str
    line_parent: str | None
    territory: tuple[tuple[str, str], ...]  # (code, name), outermost first


async def load_report_tree(session: AsyncSession, root: str,
                           by: RollUp = RollUp.TERRITORY) -> ReportTree:
    """The tree a report of `root` covers, rolled up `by` territory or by line.

    By territory, `root` is a territory code (`QS`), or a petition bureau standing for
    the territory it is located in (`QS-XFJ` -> `QS`); any other unit is reported alone
    (no unit is located in a unit). By line, `root` is a unit.
    """
    rows = (await session.execute(
        select(U.c.code, U.c.name, U.c.kind, U.c.line_parent_code, U.c.territory)
        .order_by(U.c.code))).all()
    units = {
        code: _DirectoryUnit(code, name, kind, line_parent, tuple(
            (str(t["code"]), str(t.get("name") or t["code"])) for t in (territory or [])
            if isinstance(t, dict) and t.get("code")))
        for code, name, kind, line_parent, territory in rows
    }
    places: dict[str, tuple[str, str | None]] = {}  # territory -> (name, enclosing one)
    located: dict[str, list[str]] = defaultdict(list)
    for unit in units.values():
        for i, (code, name) in enumerate(unit.territory):
            places.setdefault(code, (name, unit.territory[i - 1][0] if i else None))
        if unit.territory:
            located[unit.territory[-1][0]].append(unit.code)
    bureaus = frozenset(u.code for u in units.values() if u.kind == PETITION_BUREAU)

    if by is RollUp.LINE:
        if root not in units:
            if root in places:
                raise UnknownUnitError(
                    f"{root!r} is a territory, not a unit: by line, name a unit (for "
                    f"example a department); by territory, {root} covers every unit "
                    "located in it")
            raise UnknownUnitError(f"unknown unit {root!r}: not in the organisation directory")
        below: dict[str, list[str]] = defaultdict(list)
        for unit in units.values():
            if unit.line_parent is not None:
                below[unit.line_parent].append(unit.code)
        return _tree(root, below, {c: u.name for c, u in units.items()}, units, bureaus, by)

    if root in units:
        unit = units[root]
        if unit.kind != PETITION_BUREAU:
            return _tree(root, {}, {root: unit.name}, units, bureaus, by)
        if not unit.territory:
            raise UnknownUnitError(
                f"unit {root!r} has no territory in the organisation directory: load a "
                "directory file that gives each unit its territory, or report by line")
        root = unit.territory[-1][0]
    elif root not in places:
        raise UnknownUnitError(f"unknown unit {root!r}: neither a unit nor a territory in "
                               "the organisation directory")
    inside: dict[str, list[str]] = defaultdict(list)
    for place in sorted(places):
        outer = places[place][1]
        if outer is not None:
            inside[outer].append(place)
    children = {
        place: sorted(located[place], key=lambda c: (_kind_rank(units[c].kind), c))
        + inside[place] for place in places}
    names = {c: u.name for c, u in units.items()} | {c: n for c, (n, _) in places.items()}
    return _tree(root, children, names, units, bureaus, by)


def _kind_rank(kind: str) -> int:
    return KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)


def _tree(root: str, children_of: dict[str, list[str]], names: dict[str, str],
          units: dict[str, _DirectoryUnit], bureaus: frozenset[str], by: RollUp) -> ReportTree:
    """The part of `children_of` under `root`; a node met twice (a cycle in a bad
    directory) is kept where it was met first."""
    parent: dict[str, str | None] = {root: None}
    children: dict[str, list[str]] = {}
    stack = [root]
    while stack:
        node = stack.pop()
        kept = [c for c in children_of.get(node, []) if c not in parent]
        for child in kept:
            parent[child] = node
        children[node] = kept
        stack.extend(reversed(kept))
    in_tree = frozenset(c for c in parent if c in units)
    return ReportTree(root, parent, children, {c: names.get(c, c) for c in parent},
                      in_tree, bureaus & in_tree, by)


# --------------------------------------------------------------------------- the SQL


def _petition_unit() -> ColumnElement[str]:
    return func.coalesce(P.c.responsible_unit, P.c.holding_unit)


def _own_cases() -> ColumnElement[bool]:
    """A repeat visit attached to an open case is counted on that case (`repeat_visits`),
    never as a petition of its own (migration 0002, `petitions.attached_to`)."""
    return P.c.attached_to.is_(None)


def _registered_in(period: ReportPeriod) -> ColumnElement[bool]:
    return and_(P.c.registered_at >= period.start, P.c.registered_at < period.end)


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


def _n(condition: Any) -> Any:
    return func.count().filter(condition)


@dataclass(frozen=True)
class _Items:
    """The rows a group of figures counts: one per counted item (a cohort petition, a
    transfer, a bureau's routing of a petition, an escalated petition, a petition paid
    assistance, a hearing held), each with the unit it counts for, its petition and, per
    figure, the condition under which it counts in that figure (`flags`; `sums`: amounts
    added up instead). A figure is the number of its rows (`totals`); the cases behind it
    are those very rows (`listed`): one definition, so the two cannot drift apart."""

    source: Any  # the FROM clause
    unit: Any
    petition: Any
    flags: dict[str, Any]
    sums: dict[str, Any] = field(default_factory=dict)

    def totals(self) -> Any:
        return (select(self.unit.label("unit"),
                       *(_n(flag).label(key) for key, flag in self.flags.items()),
                       *(func.coalesce(func.sum(value), 0).label(key)
                         for key, value in self.sums.items()))
                .select_from(self.source).group_by(self.unit))

    def listed(self, counted: Any, met: Any, units: Sequence[str]) -> Any:
        return (select(self.petition.label("petition_id"), self.unit.label("unit"),
                       case((met, True), else_=False).label("met"),
                       *(value.label(key) for key, value in self.sums.items()))
                .select_from(self.source).where(counted, self.unit.in_(units))
                .order_by(self.petition, self.unit))


def _cohort_items(units: Sequence[str], bureaus: Sequence[str], period: ReportPeriod,
                  as_of: datetime) -> _Items:
    unit = _petition_unit().label("unit")
    cohort = (
        select(P.c.id, P.c.workflow_id, unit, P.c.holding_unit, P.c.stage, P.c.profile,
               P.c.received_at, P.c.acceptance_due, P.c.handling_due, P.c.replied_at,
               P.c.satisfaction, P.c.reviewed, P.c.repeat_of, P.c.repeat_visits)
        .where(_registered_in(period), _petition_unit().in_(units), _own_cases())
        .cte("cohort")
    )
    decision = E.c.action.in_(_values(DECISIONS))
    ev = (
        select(
            E.c.workflow_id,
            func.min(E.c.at).filter(decision).label("decided_at"),
            func.bool_or(E.c.action == DECLINE_CONCLUDED).label("declined_at_registration"),
            func.bool_or(E.c.action == Action.DIVERT.value).label("diverted"),
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
    closed = c.stage == Stage.CLOSED.value
    due7 = _end_of_local_day_after(c.received_at, "7 days")
    due3 = _end_of_local_day_after(c.received_at, "3 months")
    decided = ev.c.decided_at.is_not(None)
    # The deciding unit's acceptance deadline is the read model's `acceptance_due`: each
    # transfer (or return) starts the holder's clock anew and the decision stops it, so
    # the last one written is that of the unit that decided. A concluded matter declined
    # at registration was decided at once, whatever its profile wrote.
    at_once = ev.c.declined_at_registration.is_(True)
    measured = and_(decided, or_(c.acceptance_due.is_not(None),
                                 and_(at_once, not_(procuratorate))))
    undecided_late = and_(c.stage == Stage.REGISTERED.value, c.acceptance_due < as_of,
                          c.holding_unit.not_in(bureaus))
    replied = c.replied_at.is_not(None)

    flags = {
        "registered": true(),
        "accept_timely": and_(measured, or_(ev.c.decided_at <= c.acceptance_due,
                                            c.acceptance_due.is_(None))),
        "accept_due": or_(measured, undecided_late),
        "complete_on_time": c.replied_at <= c.handling_due,
        "complete_due": and_(c.handling_due.is_not(None),
                             or_(replied, and_(c.stage.in_(_values(AWAITING_REPLY)),
                                               c.handling_due < as_of))),
        "reply7_met": and_(procuratorate, ev.c.first_reply_at <= due7),
        "reply7_due": and_(procuratorate, or_(ev.c.first_reply_at.is_not(None),
                                              and_(still_open, due7 < as_of))),
        "settle3_met": and_(procuratorate, ev.c.result_at <= due3),
        "settle3_due": and_(procuratorate, or_(ev.c.result_at.is_not(None),
                                               and_(still_open, due3 < as_of))),
        "content": c.satisfaction.in_(_values(CONTENT)),
        "rated": c.satisfaction.is_not(None),
        "resolved_first_time": and_(replied, closed, c.reviewed.is_(False)),
        "opinions_settled": and_(replied, or_(closed, c.reviewed.is_(True))),
        "repeats": or_(c.repeat_of.is_not(None), c.repeat_visits > 0),
        "open_cases": still_open,
        "closed": closed,
        "diversions": ev.c.diverted.is_(True),
    }
    return _Items(cohort.outerjoin(ev, ev.c.workflow_id == c.workflow_id), c.unit, c.id, flags)


def _one(value: int) -> Any:
    return literal_column(str(value), Integer)


def _routing_items(units: Sequence[str], bureaus: Sequence[str], period: ReportPeriod,
                   as_of: datetime) -> _Items:
    """Each transfer of a cohort petition, by the unit that made it; each bureau's routing
    of a petition (its first transfer of it), late when a routing deadline of that bureau
    on that petition had expired before it; each petition a bureau holds unrouted and
    undecided past its routing deadline (a miss).

    The unit that made a transfer is the unit holding the case then, read from the
    audit trail: the unit of registration, moved by each transfer to `detail.to_unit`
    and back by each objection (`reject_transfer`) -- a stack, whose depth after each
    move is the running sum of +1 per transfer and -1 per objection. The holder before
    a transfer at depth d is the target of the latest transfer before it at depth d-1
    (the unit of registration at depth 0). Not the actor's unit: a supervising leader
    may act for the holding unit from another.
    """
    cohort = (select(P.c.id, P.c.workflow_id, P.c.registered_unit,
                     P.c.acceptance_due.is_not(None).label("has_clock"))
              .where(_registered_in(period), _own_cases())
              .cte("routing_cohort"))
    step = case((E.c.action == Action.TRANSFER.value, 1), else_=-1)
    moves = (
        select(E.c.workflow_id, E.c.id, E.c.seq, E.c.at, E.c.action,
               E.c.detail["to_unit"].astext.label("to_unit"),
               cohort.c.id.label("petition_id"), cohort.c.registered_unit, cohort.c.has_clock,
               func.sum(step).over(partition_by=E.c.workflow_id,
                                   order_by=(E.c.seq, E.c.id)).label("depth"))
        .select_from(E.join(cohort, cohort.c.workflow_id == E.c.workflow_id))
        .where(E.c.accepted, E.c.action.in_(_values(MOVES)))
        .cte("moves")
    )
    m, before = moves.alias("m"), moves.alias("before")
    holder_before = (
        select(before.c.to_unit)
        .where(before.c.workflow_id == m.c.workflow_id,
               before.c.action == Action.TRANSFER.value, before.c.depth == m.c.depth - 1,
               or_(before.c.seq < m.c.seq, and_(before.c.seq == m.c.seq,
                                                before.c.id < m.c.id)))
        .order_by(before.c.seq.desc(), before.c.id.desc()).limit(1)
        .scalar_subquery()
    )
    from_unit = case((m.c.depth <= 1, m.c.registered_unit), else_=holder_before)
    transfers = (
        select(m.c.petition_id, m.c.workflow_id, m.c.at, from_unit.label("from_unit"),
               m.c.has_clock)
        .where(m.c.action == Action.TRANSFER.value)
        .cte("transfers")
    )
    t = transfers.c
    routed = (
        select(t.petition_id, t.workflow_id, t.from_unit, func.min(t.at).label("routed_at"))
        .where(t.from_unit.in_(bureaus), t.has_clock)
        .group_by(t.petition_id, t.workflow_id, t.from_unit)
        .cte("routed")
    )
    r = routed.c
    late = (select(X.c.id).where(X.c.petition_id == r.petition_id,
                                 X.c.clock == ClockName.ROUTING.value,
                                 X.c.unit_code == r.from_unit, X.c.due_at < r.routed_at)
            .exists())
    made = select(t.from_unit.label("unit"), t.petition_id.label("petition_id"),
                  _one(1).label("transfers"), _one(0).label("route_due"),
                  _one(0).label("route_timely")).where(t.from_unit.in_(units))
    by_routing = select(r.from_unit.label("unit"), r.petition_id.label("petition_id"),
                        _one(0).label("transfers"), _one(1).label("route_due"),
                        cast(not_(late), Integer).label("route_timely"))
    # Held by a bureau, neither routed by it nor decided, its routing deadline passed.
    unrouted = (
        select(P.c.holding_unit.label("unit"), P.c.id.label("petition_id"),
               _one(0).label("transfers"), _one(1).label("route_due"),
               _one(0).label("route_timely"))
        .where(_registered_in(period), _own_cases(), P.c.stage == Stage.REGISTERED.value,
               P.c.holding_unit.in_(bureaus), P.c.acceptance_due < as_of,
               not_(exists().where(r.workflow_id == P.c.workflow_id,
                                   r.from_unit == P.c.holding_unit)))
    )
    rows = union_all(made, by_routing, unrouted).subquery("routing_items")
    flags = {key: rows.c[key] == 1 for key in ("transfers", "route_due", "route_timely")}
    return _Items(rows, rows.c.unit, rows.c.petition_id, flags)


def _escalation_items(units: Sequence[str], period: ReportPeriod) -> _Items:
    """Each petition escalated in the period, once per unit whose clock expired."""
    rows = (
        select(X.c.unit_code.label("unit"), X.c.petition_id.label("petition_id"),
               func.bool_or(X.c.level == 1).label("overdue"),
               func.bool_or(X.c.level >= 2).label("escalated_level2"))
        .where(X.c.escalated_at >= period.start, X.c.escalated_at < period.end,
               X.c.unit_code.in_(units))
        .group_by(X.c.unit_code, X.c.petition_id)
        .subquery("escalation_items")
    )
    return _Items(rows, rows.c.unit, rows.c.petition_id,
                  {"overdue": rows.c.overdue, "escalated_level2": rows.c.escalated_level2})


def _assistance_items(units: Sequence[str], period: ReportPeriod) -> _Items:
    """Each petition paid assistance in the period: persons and yuan paid."""
    unit = _petition_unit().label("unit")
    rows = (
        select(unit, P.c.id.label("petition_id"),
               func.sum(PAY.c.persons).label("persons"),
               func.sum(PAY.c.amount_yuan).label("yuan"))
        .select_from(PAY.join(P, P.c.id == PAY.c.petition_id))
        .where(PAY.c.paid_at >= period.start, PAY.c.paid_at < period.end,
               _petition_unit().in_(units))
        .group_by(_petition_unit(), P.c.id)
        .subquery("assistance_items")
    )
    return _Items(rows, rows.c.unit, rows.c.petition_id, {"assistance_cases": true()},
                  {"assistance_persons": rows.c.persons, "assistance_yuan": rows.c.yuan})


def _hearing_items(units: Sequence[str], period: ReportPeriod) -> _Items:
    """Each hearing held in the period, with its outcome."""
    unit = _petition_unit().label("unit")
    rows = (
        select(unit, P.c.id.label("petition_id"), H.c.outcome)
        .select_from(H.join(P, P.c.id == H.c.petition_id))
        .where(H.c.status == "held", H.c.starts_at >= period.start, H.c.starts_at < period.end,
               _petition_unit().in_(units))
        .subquery("hearing_items")
    )
    flags = {"hearings_held": true(),
             **{f"hearings_{o.value}": rows.c.outcome == o.value for o in HEARING_OUTCOMES}}
    return _Items(rows, rows.c.unit, rows.c.petition_id, flags)


def _all_items(tree: ReportTree, period: ReportPeriod, as_of: datetime) -> list[_Items]:
    units, bureaus = sorted(tree.unit_codes), sorted(tree.bureaus)
    return [_cohort_items(units, bureaus, period, as_of),
            _routing_items(units, bureaus, period, as_of),
            _escalation_items(units, period), _assistance_items(units, period),
            _hearing_items(units, period)]


async def compute_figures(session: AsyncSession, tree: ReportTree, period: ReportPeriod,
                          as_of: datetime) -> dict[str, Figures]:
    """Each unit's OWN figures (nothing below it included) for `period`, as of `as_of`."""
    own: dict[str, Figures] = {code: Figures() for code in sorted(tree.unit_codes)}
    for items in _all_items(tree, period, as_of):
        for row in (await session.execute(items.totals())).mappings():
            # Every query keeps to the tree's units, so every code is one of ours.
            target = own.setdefault(row["unit"], Figures())
            for key, value in row.items():
                if key == "unit":
                    continue
                if key == "assistance_yuan":
                    target.assistance_yuan = Decimal(value).quantize(Decimal("0.01"))
                elif key.startswith("hearings_") and key != "hearings_held":
                    target.hearing_outcomes[key.removeprefix("hearings_")] = int(value)
                else:
                    setattr(target, key, int(value))
    return own


# --------------------------------------------------------------------------- drill-down


@dataclass(frozen=True)
class CountedItem:
    """One item a figure counts: a petition, for `unit`. For a rate, the items are its
    denominator's and `met` says which are in its numerator; for assistance, `persons`
    and `yuan` are what the petition was paid in the period."""

    petition_id: int
    unit: str
    met: bool
    persons: int | None = None
    yuan: Decimal | None = None


# Every figure that can be drilled into: each rate, and each count of `Figures.counts()`.
COUNT_KEYS: tuple[str, ...] = tuple(Figures().counts())
FIGURE_KEYS: tuple[str, ...] = (*RATE_BY_KEY, *COUNT_KEYS)


async def counted_items(session: AsyncSession, tree: ReportTree, period: ReportPeriod,
                        as_of: datetime, figure: str, units: Iterable[str]) -> list[CountedItem]:
    """The items behind `figure` for the tree's `units` (a row of the report: a node and
    the units under it, or a unit alone), from the very rows the figure counts. Their
    number is the figure (a rate: its denominator, `met` its numerator); for the
    assistance persons and yuan, the sum of `persons` / `yuan`."""
    rate = RATE_BY_KEY.get(figure)
    key = rate.denominator if rate else figure
    if key not in COUNT_KEYS:
        raise KeyError(f"no figure {figure!r}")
    items = next(i for i in _all_items(tree, period, as_of) if key in i.flags or key in i.sums)
    counted = items.flags.get(key, true())
    met = items.flags[rate.numerator] if rate else counted
    chosen = sorted(set(units) & tree.unit_codes)
    rows = (await session.execute(items.listed(counted, met, chosen))).mappings()
    return [CountedItem(int(row["petition_id"]), str(row["unit"]), bool(row["met"]),
                        int(row["assistance_persons"]) if "assistance_persons" in row else None,
                        Decimal(row["assistance_yuan"]).quantize(Decimal("0.01"))
                        if "assistance_yuan" in row else None)
            for row in rows]
