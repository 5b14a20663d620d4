"""`petition demo`: a realistic mixed load, so the Web UI and the reports show something real.

How the demo stays honest
-------------------------
Nothing is faked: every petition is registered through the ordinary intake path
(`starter.intake.submit`), every step is a real, validated Update taken by a real
member of staff from the organisation directory, and overdue cases become overdue
because their durable timers really expire. What is compressed is time, and only in
the open:

* petitions of the petition-bureau / department track are registered under the
  deadline profile `demo` (domain/profiles/demo.toml, labelled DEMONSTRATION ONLY):
  the national clocks with every period played in seconds, so a neglected case is
  overdue 20 seconds after registration and under listed supervision (level 2) 10
  seconds later, while the Web UI is being watched;
* procuratorate letters (hotline 12309) use the real `procuratorate` profile, so the
  7-day reply and 3-month settlement rates are measured against the real periods;
* simulated staff act after a short "think time"; hearings are booked in real sitting
  hours on coming working days but recorded at once (the demo compresses time);
* intake ids start with `demo-<run>-`, petitioners are fictional.

A share of the cases is deliberately left alone (neglected, or accepted and then not
answered), so they go overdue and escalate; others are declined, diverted, withdrawn,
resolved, extended, heard, given assistance, reviewed, or concluded after re-review.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import distinct, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError

from adapters.petition_client import ACTION_OF, ActionRefused, PetitionClient, PetitionNotFound
from adapters.tables import Escalation, Person, Petition, Unit
from domain.calendar import WorkingCalendar
from domain.models import (
    Accept,
    Actor,
    Assign,
    AssistanceKind,
    Category,
    Channel,
    Command,
    ContractToLeader,
    DecideAssistance,
    DecideExtension,
    Decline,
    DeclineReason,
    Divert,
    DivertTrack,
    HearingOutcome,
    PetitionIntake,
    ProgressReply,
    Rate,
    RecordHearing,
    Reply,
    RequestAssistance,
    RequestExtension,
    RequestReReview,
    RequestReview,
    ReReviewOpinion,
    ReviewOpinion,
    Role,
    Satisfaction,
    ScheduleHearing,
    Transfer,
    Withdraw,
)
from starter.intake import submit

__all__ = ["DemoSummary", "Fate", "plan_demo", "run_demo", "run_demo_command"]

DEMO_PROFILE = "demo"
PROCURATORATE_PROFILE = "procuratorate"
BEIJING = ZoneInfo("Asia/Shanghai")
# How long the demo profile gives a unit to decide (domain/profiles/demo.toml), plus a
# margin: a "slow" unit acts after its deadline has really passed.
SLOW_DECISION_AFTER = timedelta(seconds=25)
# Cases the simulated offices work on at once. New petitions wait for a free desk, so the
# intake stream adapts to what the machine can serve and the staff still meet the demo
# profile's short deadlines (only the planned cases go overdue), even on a busy laptop.
DESKS = 20
ACTION_CONCURRENCY = 16


class Fate(StrEnum):
    """What the simulated staff (and petitioner) do with one case."""

    NEGLECTED = "neglected"  # nobody decides: overdue, level 1, then level 2
    SLOW = "slow"  # decided only after the acceptance deadline, then answered
    DECLINED = "declined"
    DIVERTED = "diverted"  # law-related, to the court (诉访分离)
    RESOLVED = "resolved"  # accepted, answered, rated; the review window lapses
    HANDLING_OVERDUE = "handling_overdue"  # accepted, then no answer: overdue
    EXTENDED = "extended"  # one extension approved by the unit head, then answered
    HEARING = "hearing"  # public hearing booked and recorded, then answered
    ASSISTANCE = "assistance"  # judicial assistance approved and paid, then answered
    REVIEWED = "reviewed"  # review opinion; the re-review window lapses
    CONCLUDED = "concluded"  # review and re-review: concluded (终结)
    WITHDRAWN = "withdrawn"
    PROCURATORATE = "procuratorate"  # 12309 letter: procedural reply in days, then result
    REPEAT = "repeat"  # the same petitioner on the same open matter: attached, counted


# Small runs still show every kind of case: the first cases go through this list.
COVERAGE = (Fate.NEGLECTED, Fate.CONCLUDED, Fate.RESOLVED, Fate.DIVERTED,
            Fate.HANDLING_OVERDUE, Fate.DECLINED, Fate.ASSISTANCE, Fate.HEARING,
            Fate.PROCURATORATE, Fate.REPEAT, Fate.EXTENDED, Fate.REVIEWED, Fate.SLOW,
            Fate.WITHDRAWN)
WEIGHTS = {Fate.NEGLECTED: 8, Fate.SLOW: 4, Fate.DECLINED: 6, Fate.DIVERTED: 6,
           Fate.RESOLVED: 24, Fate.HANDLING_OVERDUE: 6, Fate.EXTENDED: 4, Fate.HEARING: 4,
           Fate.ASSISTANCE: 4, Fate.REVIEWED: 4, Fate.CONCLUDED: 6, Fate.WITHDRAWN: 3,
           Fate.PROCURATORATE: 10, Fate.REPEAT: 3}
# Fates whose case stays open long enough for a repeat visit to attach to it.
STAYS_OPEN = (Fate.NEGLECTED, Fate.HANDLING_OVERDUE)

AREAS = ("QS", "BS", "YZ", "LJ")  # two counties of Yunzhou, and the two cities
AREA_WEIGHTS = (35, 30, 20, 15)
COUNTY_AREAS = ("QS", "BS")  # review and re-review need two bureaus above the unit

# The department competent for a category (suffix of the unit code), if any.
COMPETENT = {
    Category.WAGE_ARREARS: "HRSS", Category.LABOUR_AND_SOCIAL_SECURITY: "HRSS",
    Category.LAND_AND_RESOURCES: "NR", Category.URBAN_CONSTRUCTION: "HURD",
    Category.ENVIRONMENT: "EE", Category.PUBLIC_SECURITY: "PSB",
}
ORDINARY_CATEGORIES = (
    Category.WAGE_ARREARS, Category.LABOUR_AND_SOCIAL_SECURITY, Category.LAND_AND_RESOURCES,
    Category.URBAN_CONSTRUCTION, Category.ENVIRONMENT, Category.PUBLIC_SECURITY,
    Category.HEALTH, Category.EDUCATION, Category.RURAL_AFFAIRS, Category.OTHER)
CATEGORY_WEIGHTS = (16, 8, 12, 14, 10, 5, 6, 6, 8, 5)

SUBJECTS: dict[Category, tuple[str, ...]] = {
    Category.WAGE_ARREARS: ("拖欠农民工工资 unpaid wages of migrant workers",
                            "工程款拖欠导致工资未发 wages unpaid because the contractor was not"),
    Category.LABOUR_AND_SOCIAL_SECURITY: ("社保断缴 social insurance contributions stopped",
                                          "工伤认定 work injury recognition"),
    Category.LAND_AND_RESOURCES: ("征地补偿标准 land requisition compensation",
                                  "宅基地纠纷 homestead boundary dispute"),
    Category.URBAN_CONSTRUCTION: ("房屋拆迁安置 demolition and resettlement",
                                  "小区违建 illegal construction in the estate",
                                  "物业维修基金 property maintenance fund"),
    Category.ENVIRONMENT: ("工厂夜间噪音 factory noise at night", "河道污染 river pollution",
                           "养殖场异味 odour from a pig farm"),
    Category.PUBLIC_SECURITY: ("报警后未立案 police report not filed",
                               "户籍迁移 household registration transfer"),
    Category.HEALTH: ("医疗费用报销 medical expense reimbursement",),
    Category.EDUCATION: ("入学划片 school catchment area", "校车安全 school bus safety"),
    Category.RURAL_AFFAIRS: ("土地承包经营权 land contract rights",
                             "村务公开 village affairs not disclosed"),
    Category.OTHER: ("公交线路调整 bus route change",),
    Category.LAW_AND_LITIGATION: ("不服一审判决 disagrees with the first-instance judgment",
                                  "执行难 judgment not enforced",
                                  "不立案监督 asks the procuratorate to review non-filing"),
}
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
GIVEN = ("伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "洋", "艳", "勇", "军", "杰", "娟",
         "涛", "明", "超", "秀英", "华", "建国", "桂兰", "志强", "海燕", "春梅")


# --------------------------------------------------------------------------- directory


@dataclass(frozen=True)
class DemoUnit:
    code: str
    kind: str
    parent: str | None
    superior: str | None
    head: str | None
    leader: str | None


@dataclass
class DemoDirectory:
    """The staff the demo acts as, read from the organisation directory in the database."""

    units: dict[str, DemoUnit]
    handlers: dict[str, list[str]]
    officers: list[str]

    def has(self, code: str) -> bool:
        return code in self.units

    def handler(self, unit: str, rng: random.Random) -> Actor:
        staff = self.handlers.get(unit) or [f"{unit}.h1"]
        return Actor(id=rng.choice(staff), role=Role.HANDLER, unit=unit)

    def head(self, unit: str) -> Actor:
        return Actor(id=self.units[unit].head or f"{unit}.head", role=Role.UNIT_HEAD, unit=unit)

    def leader_for(self, unit: str) -> str | None:
        """The supervising leader of the unit, or of the first unit up that names one."""
        seen: set[str] = set()
        code: str | None = unit
        while code and code in self.units and code not in seen:
            seen.add(code)
            if self.units[code].leader:
                return self.units[code].leader
            code = self.units[code].parent
        return None

    def review_chain(self, unit: str) -> tuple[str, str] | None:
        """(review organ, re-review organ): the superior bureau, then the one above it."""
        first = self.units[unit].superior if unit in self.units else None
        second = self.units[first].superior if first and first in self.units else None
        if first and second and second not in (first, unit):
            return first, second
        return None


async def load_demo_directory(sessions: async_sessionmaker[AsyncSession]) -> DemoDirectory:
    async with sessions() as session:
        units = (await session.execute(select(
            Unit.code, Unit.kind, Unit.parent_code, Unit.superior_bureau_code, Unit.head_id,
            Unit.supervising_leader_id))).all()
        people = (await session.execute(select(
            Person.id, Person.unit_code, Person.role, Person.is_hearing_officer))).all()
    directory = DemoDirectory(
        units={u[0]: DemoUnit(*u) for u in units}, handlers={},
        officers=sorted(p.id for p in people if p.is_hearing_officer))
    for person in people:
        if person.role == Role.HANDLER.value:
            directory.handlers.setdefault(person.unit_code, []).append(person.id)
    for staff in directory.handlers.values():
        staff.sort()
    return directory


# --------------------------------------------------------------------------- the plan


@dataclass
class DemoCase:
    n: int
    fate: Fate
    intake: PetitionIntake
    transfer_to: str | None = None  # the competent unit a bureau forwards to
    organ: str | None = None  # the court a law-related matter is diverted to
    repeats: int | None = None  # the case (n) this repeat visit is about
    workflow_id: str | None = None
    registered: asyncio.Event = field(default_factory=asyncio.Event)


def _petitioner(rng: random.Random) -> dict[str, Any]:
    name = rng.choice(SURNAMES) + rng.choice(GIVEN)
    digits = "".join(rng.choice("0123456789") for _ in range(17))
    return {"name": name, "id_number": digits + rng.choice("0123456789X"),
            "phone": "13" + "".join(rng.choice("0123456789") for _ in range(9))}


def _entry(fate: Fate, rng: random.Random, d: DemoDirectory) -> tuple[str, Category, Channel]:
    """Where the petition is registered, about what, through which channel."""
    areas = COUNTY_AREAS if fate in (Fate.CONCLUDED, Fate.REVIEWED) else AREAS
    weights = AREA_WEIGHTS[:len(areas)]
    area = rng.choices(areas, weights=weights)[0]
    if fate is Fate.PROCURATORATE:
        return f"{area}-PROC", Category.LAW_AND_LITIGATION, rng.choice(
            (Channel.HOTLINE_12309, Channel.HOTLINE_12309, Channel.LETTER, Channel.VISIT))
    if fate is Fate.DIVERTED:
        return f"{area}-XFJ", Category.LAW_AND_LITIGATION, rng.choice(
            (Channel.VISIT, Channel.LETTER, Channel.HOTLINE_12368))
    category = rng.choices(ORDINARY_CATEGORIES, weights=CATEGORY_WEIGHTS)[0]
    department = f"{area}-{COMPETENT[category]}" if category in COMPETENT else None
    township = [c for c in (f"{area}-T1", f"{area}-T2") if d.has(c)]
    roll = rng.random()
    if category is Category.RURAL_AFFAIRS and township and roll < 0.6:
        return rng.choice(township), category, Channel.VISIT
    if department and d.has(department) and roll < 0.35:
        return department, category, rng.choice(
            (Channel.HOTLINE_12345, Channel.ONLINE, Channel.LETTER))
    return f"{area}-XFJ", category, rng.choice(
        (Channel.VISIT, Channel.VISIT, Channel.LETTER, Channel.ONLINE, Channel.HOTLINE_12345,
         Channel.VIDEO))


def plan_demo(directory: DemoDirectory, count: int, rng: random.Random, run: str,
              now: datetime) -> list[DemoCase]:
    """`count` cases: first one of each fate (so small runs show everything), then a mix."""
    cases: list[DemoCase] = []
    fates = list(WEIGHTS)
    weights = [WEIGHTS[f] for f in fates]
    for n in range(count):
        fate = COVERAGE[n] if n < len(COVERAGE) else rng.choices(fates, weights=weights)[0]
        earlier = [c for c in cases if c.fate in STAYS_OPEN]
        if fate is Fate.REPEAT and not earlier:
            fate = Fate.RESOLVED
        if fate is Fate.REPEAT:
            original = rng.choice(earlier)
            intake = original.intake.model_copy(update={
                "intake_id": f"demo-{run}-{n:04d}", "channel": rng.choice(
                    (Channel.VISIT, Channel.HOTLINE_12345, Channel.ONLINE)),
                "received_at": now})
            cases.append(DemoCase(n, fate, intake, repeats=original.n))
            continue
        unit, category, channel = _entry(fate, rng, directory)
        if not directory.has(unit):
            unit, category = f"{AREAS[0]}-XFJ", Category.OTHER
        profile = PROCURATORATE_PROFILE if fate is Fate.PROCURATORATE else DEMO_PROFILE
        law_related = category is Category.LAW_AND_LITIGATION
        subject = rng.choice(SUBJECTS[category])
        joint = rng.random() < 0.05
        intake = PetitionIntake.model_validate({
            "intake_id": f"demo-{run}-{n:04d}", "channel": channel, "category": category,
            "unit": unit, "received_at": now - timedelta(minutes=rng.randint(0, 180)),
            "petitioner": _petitioner(rng), "persons": rng.randint(5, 30) if joint else 1,
            "subject": f"{subject} ({n:04d})",
            "content": f"[DEMO] {subject}. 请求依法处理 Please handle this according to law.",
            "law_related": law_related, "profile": profile,
        })
        case = DemoCase(n, fate, intake)
        department = unit.split("-", 1)[0] + "-" + COMPETENT.get(category, "")
        if (unit.endswith("-XFJ") and category in COMPETENT and directory.has(department)
                and fate not in (Fate.NEGLECTED, Fate.SLOW, Fate.DECLINED, Fate.WITHDRAWN)
                and rng.random() < 0.7):
            case.transfer_to = department
        if fate is Fate.DIVERTED:
            court = unit.split("-", 1)[0] + "-COURT"
            case.organ = court if directory.has(court) else None
            if case.organ is None:
                case.fate = Fate.DECLINED
        if fate in (Fate.CONCLUDED, Fate.REVIEWED) and directory.review_chain(
                case.transfer_to or unit) is None:
            case.fate = Fate.RESOLVED
        cases.append(case)
    return cases


# --------------------------------------------------------------------------- the staff


@dataclass
class DemoSummary:
    run: str
    seed: int
    submitted: int
    fates: Counter[str]
    by_stage: dict[str, int]
    by_outcome: dict[str, int]
    attached: int
    overdue: int
    escalated_level2: int
    actions: int
    refused: list[str]
    seconds: float
    workflow_ids: list[str]

    def render(self) -> str:
        lines = [
            f"demo run {self.run} (seed {self.seed}): {self.submitted} petitions registered, "
            f"{self.actions} staff actions, {self.seconds:.0f} s",
            "  by stage:   " + ", ".join(f"{k} {v}" for k, v in sorted(self.by_stage.items())),
            "  closed as:  " + (", ".join(f"{k} {v}" for k, v in sorted(
                self.by_outcome.items())) or "—"),
            f"  repeat visits attached to open cases: {self.attached}",
            f"  overdue (escalated to level 1): {self.overdue}; "
            f"listed supervision (level 2): {self.escalated_level2}",
            "  planned:    " + ", ".join(f"{k} {v}" for k, v in sorted(self.fates.items())),
        ]
        if self.refused:
            lines.append(f"  refused actions: {len(self.refused)} (first: {self.refused[0]})")
        lines.append("  neglected cases keep escalating for a minute under the demo profile; "
                     "see `petition views` and `petition report --unit YZ-XFJ`.")
        return "\n".join(lines)


class Staff:
    """Takes each case's actions as the directory's people, one validated Update at a time."""

    def __init__(self, client: Client, directory: DemoDirectory, rng: random.Random,
                 think: tuple[float, float], log: Callable[[str], None]):
        self.petitions = PetitionClient(client, task_queue="")  # acting needs no task queue
        self.d = directory
        self.rng = rng
        self.think = think
        self.log = log
        self.actions = 0
        self.refused: list[str] = []
        self._gate = asyncio.Semaphore(ACTION_CONCURRENCY)
        self._hearings = 0
        self._calendar = WorkingCalendar()
        # Runs start their hearings on different coming working days, so repeated demos on
        # the same database rarely compete for a slot.
        self._first_hearing_day = rng.randint(1, 40)

    async def pause(self) -> None:
        await asyncio.sleep(self.rng.uniform(*self.think))

    async def act(self, workflow_id: str, command: Command) -> bool:
        """Take the command's action as an Update; False if it was refused."""
        await self.pause()
        action = ACTION_OF[type(command)]
        async with self._gate:
            try:
                await self.petitions.act(workflow_id, command)
            except ActionRefused as refused:
                # E.g. the case closed meanwhile (a window lapsed while the machine was busy).
                self.refused.append(f"{workflow_id} {action}: {refused.refusal}")
                return False
            except (PetitionNotFound, RPCError, WorkflowUpdateRPCTimeoutOrCancelledError) as err:
                self.refused.append(f"{workflow_id} {action}: {err}")
                return False
        self.actions += 1
        return True

    def petitioner(self, case: DemoCase) -> Actor:
        return Actor(id=f"petitioner-{case.n:04d}", role=Role.PETITIONER, unit=case.intake.unit)

    async def run_case(self, case: DemoCase) -> None:
        assert case.workflow_id is not None
        wf = case.workflow_id
        fate, unit = case.fate, case.intake.unit
        if fate in (Fate.NEGLECTED, Fate.REPEAT):
            return
        if fate is Fate.WITHDRAWN:
            await self.act(wf, Withdraw(actor=self.petitioner(case),
                                                   reason="问题已自行解决 settled privately"))
            return
        if fate is Fate.DECLINED:
            await self.act(wf, Decline(
                actor=self.d.handler(unit, self.rng), reason=DeclineReason.OUTSIDE_PETITION_SCOPE,
                explanation="属于民事纠纷，请通过诉讼解决 a civil dispute for the courts"))
            return
        if fate is Fate.DIVERTED and case.organ:
            await self.act(wf, Divert(
                actor=self.d.handler(unit, self.rng), track=DivertTrack.LITIGATION,
                organ=case.organ, explanation="涉诉事项导入诉讼程序 litigation-related"))
            return
        if fate is Fate.PROCURATORATE:
            await self.act(wf, ProgressReply(
                actor=self.d.handler(unit, self.rng),
                text="来信已收到，已转控告申诉检察部办理 received; with the complaints office"))
        if case.transfer_to:
            if not await self.act(wf, Transfer(
                    actor=self.d.handler(unit, self.rng), to_unit=case.transfer_to,
                    instructions="请依法受理并按期答复 please accept and answer on time")):
                return
            unit = case.transfer_to
        if not await self.act(wf, Accept(actor=self.d.handler(unit, self.rng))):
            return
        handler = self.d.handler(unit, self.rng)
        if self.rng.random() < 0.3:  # the head names a handler; otherwise whoever accepted
            await self.act(wf, Assign(actor=self.d.head(unit), handler_id=handler.id))
        await self._handle(case, wf, unit, handler)

    async def _handle(self, case: DemoCase, wf: str, unit: str, handler: Actor) -> None:
        fate = case.fate
        if fate is Fate.HANDLING_OVERDUE:
            leader = self.d.leader_for(unit)
            if leader and self.rng.random() < 0.5:
                await self.act(wf, ContractToLeader(
                    actor=self.d.head(unit), leader_id=leader))
            return
        if fate is Fate.PROCURATORATE and self.rng.random() < 0.3:
            return  # still investigating: the 3-month settlement clock keeps running
        if fate is Fate.EXTENDED:
            await self.act(wf, RequestExtension(
                actor=handler, days=20, reason="需现场核查 an on-site inspection is needed"))
            await self.act(wf, DecideExtension(
                actor=self.d.head(unit), approved=True,
                reason_to_petitioner="需现场核查，延期答复 extended for an inspection"))
        if fate is Fate.HEARING:
            await self._hearing(wf, unit, handler)
        if fate is Fate.ASSISTANCE:
            amount = Decimal(self.rng.randrange(3_000, 45_000, 500))
            if await self.act(wf, RequestAssistance(
                    actor=handler, kind=AssistanceKind.JUDICIAL, amount_yuan=amount,
                    persons=self.rng.randint(1, 3),
                    reason="因案致贫，生活困难 hardship caused by the case")):
                await self.act(wf, DecideAssistance(
                    actor=self.d.head(unit), application_no=1, approved=True,
                    reason="符合救助条件 meets the conditions"))
        await self.act(wf, Reply(
            actor=handler, opinion="经调查核实，已督促相关方依法处理。After investigation the "
                                   "party concerned has been required to remedy the matter."))
        if fate in (Fate.REVIEWED, Fate.CONCLUDED):
            await self._review(case, wf, unit)
        elif self.rng.random() < 0.8:
            satisfaction = self.rng.choices(
                (Satisfaction.SATISFIED, Satisfaction.BASICALLY_SATISFIED,
                 Satisfaction.UNSATISFIED), weights=(60, 25, 15))[0]
            await self.act(wf, Rate(actor=self.petitioner(case),
                                           satisfaction=satisfaction))

    async def _hearing(self, wf: str, unit: str, handler: Actor) -> None:
        """Book a real sitting slot on a coming working day; on a clash take the suggested one."""
        k = self._hearings
        self._hearings += 1
        officers = self.d.officers
        if len(officers) < 3:
            return
        chosen = [officers[(k + i) % len(officers)] for i in range(3)]
        # Eight one-hour sittings a working day, each with the next three officers: no two
        # of this run's hearings overlap. Earlier runs' hearings may: the refusal then
        # names the earliest free slot, which is taken instead.
        day = self._calendar.add_working_days(datetime.now(BEIJING).date(),
                                              self._first_hearing_day + k // 8)
        starts = datetime.combine(day, datetime.min.time(), BEIJING).replace(hour=9 + k % 8)
        for _ in range(3):
            command = ScheduleHearing(actor=handler, venue=f"{unit} 听证室 hearing room",
                                      starts_at=starts, duration_minutes=60, officers=chosen)
            await self.pause()
            try:
                async with self._gate:
                    status = await self.petitions.act(wf, command)
            except (PetitionNotFound, RPCError, WorkflowUpdateRPCTimeoutOrCancelledError) as err:
                self.refused.append(f"{wf} schedule_hearing: {err}")
                return
            except ActionRefused as refused:
                suggested = refused.refusal.details.get("earliest_free_slot")
                if refused.refusal.rule != "hearing" or not suggested:
                    self.refused.append(f"{wf} schedule_hearing: {refused.refusal}")
                    return
                starts = datetime.fromisoformat(suggested)
                continue
            assert status is not None
            self.actions += 1
            hearing_no = status.hearings[-1].hearing_no
            await self.act(wf, RecordHearing(
                actor=handler, hearing_no=hearing_no,
                outcome=self.rng.choice((HearingOutcome.SUPPORTED,
                                         HearingOutcome.PARTLY_SUPPORTED,
                                         HearingOutcome.NOT_SUPPORTED)),
                summary="听证员评议后形成意见 the hearing officers gave their view"))
            return

    async def _review(self, case: DemoCase, wf: str, unit: str) -> None:
        chain = self.d.review_chain(unit)
        if chain is None:
            return
        review, re_review = chain
        await self.act(wf, Rate(actor=self.petitioner(case),
                                       satisfaction=Satisfaction.UNSATISFIED))
        if not await self.act(wf, RequestReview(
                actor=self.petitioner(case), review_organ=review,
                reason="对处理意见不服 disagrees with the handling opinion")):
            return
        await self.act(wf, ReviewOpinion(
            actor=self.d.handler(review, self.rng), opinion="经复查，维持原处理意见。Upheld."))
        if case.fate is not Fate.CONCLUDED:
            return
        if not await self.act(wf, RequestReReview(
                actor=self.petitioner(case), re_review_organ=re_review,
                reason="对复查意见不服 disagrees with the review opinion")):
            return
        await self.act(wf, ReReviewOpinion(
            actor=self.d.handler(re_review, self.rng),
            opinion="经复核，维持复查意见，该信访事项终结。Upheld; the matter is concluded."))


# --------------------------------------------------------------------------- the run


async def run_demo(client: Client, sessions: async_sessionmaker[AsyncSession],
                   task_queue: str, count: int, *, seed: int | None = None,
                   think: tuple[float, float] = (0.3, 1.5),
                   log: Callable[[str], None] = print) -> DemoSummary:
    """Register `count` petitions on `task_queue` and play their staff; returns a summary.

    A worker must be polling `task_queue` (as in `petition dev`). Returns once every
    case is registered and its staff are done; neglected cases go on escalating.
    """
    started = time.monotonic()
    seed = seed if seed is not None else random.SystemRandom().randrange(1, 1_000_000)
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:8]
    directory = await load_demo_directory(sessions)
    if not directory.units:
        raise RuntimeError("the organisation directory is empty: run `petition load-directory`")
    cases = plan_demo(directory, count, rng, run, datetime.now(UTC))
    staff = Staff(client, directory, rng, think, log)
    by_n = {c.n: c for c in cases}
    desks = asyncio.Semaphore(DESKS)
    done = 0

    async def register(case: DemoCase) -> None:
        nonlocal done
        status = await submit(client, sessions, case.intake, task_queue=task_queue)
        case.workflow_id = status.workflow_id
        case.registered.set()
        done += 1
        if done % 50 == 0 or done == count:
            log(f"  {done}/{count} petitions registered ({time.monotonic() - started:.0f} s)")

    async def one(case: DemoCase) -> None:
        if case.repeats is not None:  # a repeat visit comes after the first registration
            await by_n[case.repeats].registered.wait()
        if case.fate is Fate.SLOW:  # registered, then left lying past its deadline
            async with desks:
                await register(case)
            await asyncio.sleep(SLOW_DECISION_AFTER.total_seconds())
            async with desks:
                await staff.run_case(case)
            return
        async with desks:
            await register(case)
            await staff.run_case(case)

    log(f"demo run {run}: registering {count} petitions (seed {seed}) ...")
    await _all(one(c) for c in cases)
    summary = await _summarise(sessions, run)
    return DemoSummary(
        run=run, seed=seed, submitted=sum(1 for c in cases if c.workflow_id),
        fates=Counter(c.fate.value for c in cases), actions=staff.actions,
        refused=staff.refused, seconds=time.monotonic() - started,
        workflow_ids=[c.workflow_id for c in cases if c.workflow_id], **summary)


async def _all(coroutines: Any) -> None:
    tasks = [asyncio.create_task(c) for c in coroutines]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)


async def _summarise(sessions: async_sessionmaker[AsyncSession], run: str) -> dict[str, Any]:
    """Counts from the system of record for this run's petitions."""
    prefix = f"demo-{run}-%"
    attached = Petition.attached_to.is_not(None)
    async with sessions() as session:
        rows = (await session.execute(
            select(Petition.stage, Petition.outcome, attached, func.count())
            .where(Petition.intake_id.like(prefix))
            .group_by(Petition.stage, Petition.outcome, attached))).all()
        escalated = dict((await session.execute(
            select(Escalation.level, func.count(distinct(Escalation.petition_id)))
            .join(Petition, Petition.id == Escalation.petition_id)
            .where(Petition.intake_id.like(prefix)).group_by(Escalation.level))).all())
    by_stage: Counter[str] = Counter()
    by_outcome: Counter[str] = Counter()
    repeat_visits = 0
    for stage, outcome, is_attached, n in rows:
        if is_attached:  # a repeat visit, counted on the open case it attached to
            repeat_visits += n
            continue
        by_stage[stage] += n
        if outcome:
            by_outcome[outcome] += n
    return {"by_stage": dict(by_stage), "by_outcome": dict(by_outcome),
            "attached": repeat_visits,
            "overdue": int(escalated.get(1, 0)), "escalated_level2": int(escalated.get(2, 0))}


async def run_demo_command(*, count: int, seed: int | None, with_worker: bool) -> None:
    """`petition demo`: against the configured Temporal server and database."""
    from activities import build_desks
    from adapters.engine import create_engine, require_current_schema, session_maker
    from adapters.settings import get_settings
    from starter.runtime import runtime
    from worker import build_worker

    settings = get_settings()
    # Refusals the demo provokes on purpose (a hearing slot taken) are not the reader's
    # concern: the worker's warnings about them stay out of the demo's output.
    logging.getLogger("temporalio").setLevel(logging.ERROR)
    async with runtime(settings) as rt:
        await require_current_schema(rt.engine)
        client = await rt.client()
        if not with_worker:
            summary = await run_demo(client, rt.sessions, settings.task_queue, count, seed=seed)
        else:
            engine = create_engine(rt.engine.url.render_as_string(hide_password=False),
                                   pool_size=settings.db_pool_size)
            try:
                worker = build_worker(client, build_desks(session_maker(engine)),
                                      task_queue=settings.task_queue, settings=settings)
                async with worker:
                    summary = await run_demo(client, rt.sessions, settings.task_queue, count,
                                             seed=seed)
            finally:
                await engine.dispose()
    print(summary.render())
