"""What a county's year asks of the workflows: a plan per petition, played in virtual time.

`plan_year` draws, for Qingshan County (QS-*), a year of arrivals (weekday and office
hour weighted) and for each petition what its people do and when: the bureau transfers
it to a department or the department takes it directly, some are declined, diverted or
withdrawn, acceptance after a few days (sometimes late), handling of a few weeks (some
long, some with an extension), a reply, a rating, now and then a request for review and
re-review. The behaviour does not depend on the deadline profile, so two profiles played
on the same plan show how the same work scores under different rules.

`CaseScript` plays one plan: it sleeps to the arrival, starts the PetitionWorkflow as a
child and sends each action as the product's own Signal at its time (a refused one is
recorded as refused, as in life); it ends when the petition closes. `YearClock` only
sleeps: awaiting it lets the time-skipping server run the whole year.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from temporalio import workflow
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from domain.case import PetitionStart
    from domain.lifecycle import TABLE
    from domain.models import Action, PetitionIntake
    from workflows.petition import PetitionWorkflow

COUNTY_BUREAU = "QS-XFJ"
DEPARTMENTS = ("QS-HRSS", "QS-NR", "QS-HURD", "QS-EE", "QS-PSB")
CATEGORY_OF = {"QS-HRSS": "wage_arrears", "QS-NR": "land_and_resources",
               "QS-HURD": "urban_construction", "QS-EE": "environment",
               "QS-PSB": "public_security"}
CHANNELS = ("visit", "letter", "hotline_12345", "online", "online", "hotline_12345")
DAY = 86_400


class Step(BaseModel):
    at: float  # seconds after the arrival
    action: Action
    command: dict[str, Any]


class CasePlan(BaseModel):
    arrives_at: datetime
    intake: PetitionIntake
    steps: list[Step]
    workflow_id: str = ""  # the system's id for the intake (set by the driver, not the script)

    @property
    def ends(self) -> datetime:
        """Latest time the case can still be open: last step plus a lapsing window."""
        last = self.steps[-1].at if self.steps else 0.0
        return self.arrives_at + timedelta(seconds=last + 32 * DAY)


def _actor(person: str, role: str, unit: str) -> dict[str, str]:
    return {"id": person, "role": role, "unit": unit}


def plan_year(count: int, start: datetime, profile: str, seed: int = 2027) -> list[CasePlan]:
    """`count` petitions arriving over the 365 days from `start` (Beijing midnight)."""
    from adapters.petition_client import workflow_id_for  # the driver's side: reads the key

    rng = random.Random(seed)
    plans = []
    for i in range(count):
        day = rng.randrange(365)
        when = start + timedelta(days=day)
        if when.astimezone(UTC).weekday() >= 5 and rng.random() < 0.75:
            day = max(0, day - rng.randint(1, 2))  # fewer at weekends
        arrival = day * DAY + rng.uniform(8.5, 17.5) * 3600
        plan = _plan_case(i, rng, arrival, start, profile)
        plan.workflow_id = workflow_id_for(plan.intake.intake_id)  # the driver's, not a script's
        plans.append(plan)
    return sorted(plans, key=lambda p: p.arrives_at)


def _plan_case(i: int, rng: random.Random, arrival: float, start: datetime,
               profile: str) -> CasePlan:
    dept = rng.choice(DEPARTMENTS)
    direct = rng.random() < 0.4
    unit = dept if direct else COUNTY_BUREAU
    received = start + timedelta(seconds=arrival)
    intake = PetitionIntake.model_validate({
        "intake_id": f"Y{start.year}-{profile}-{i:06d}", "channel": rng.choice(CHANNELS),
        "category": CATEGORY_OF[dept], "unit": unit, "received_at": received,
        "petitioner": {"name": "居民", "id_number": f"{330100000000000000 + i * 7919:017d}"[:17]
                       + "X"},
        "subject": f"county year case {i}", "content": "simulated petition",
        "profile": profile,
    })
    steps: list[Step] = []
    t = 0.0

    def step(delay_days: float, action: Action, **command: Any) -> None:
        nonlocal t
        t += delay_days * DAY
        steps.append(Step(at=t, action=action, command=command))

    roll = rng.random()
    holder = _actor(f"{unit}.h1", "handler", unit)
    if roll < 0.02:
        step(rng.uniform(1, 10), Action.WITHDRAW, actor=_actor("p", "petitioner", unit))
        return CasePlan(arrives_at=received, intake=intake, steps=steps)
    decide = rng.choice((1, 2, 3, 4, 6, 8, 10, 12, 13, 14, 16, 19))  # days; some late
    if roll < 0.10:
        step(decide, Action.DECLINE, actor=holder, reason="outside_petition_scope",
             explanation="not a petition matter")
        return CasePlan(arrives_at=received, intake=intake, steps=steps)
    if roll < 0.14:
        step(decide, Action.DIVERT, actor=holder, track="litigation", organ="QS-COURT",
             explanation="a matter for the court")
        return CasePlan(arrives_at=received, intake=intake, steps=steps)
    if not direct:
        step(rng.choice((1, 2, 3, 5)), Action.TRANSFER, actor=holder, to_unit=dept,
             assigned=True)
    staff = _actor(f"{dept}.h1", "handler", dept)
    step(decide if direct else max(1, decide - 3), Action.ACCEPT, actor=staff)
    handling = rng.choice((7, 12, 18, 22, 25, 28, 33, 38, 45, 52, 58, 66, 75))
    if handling > 50 and rng.random() < 0.6:
        step(handling - 12, Action.REQUEST_EXTENSION, actor=staff, days=30,
             reason="site survey needed")
        step(1, Action.DECIDE_EXTENSION, actor=_actor(f"{dept}.head", "unit_head", dept),
             approved=True, reason_to_petitioner="a site survey is needed")
        step(11, Action.REPLY, actor=staff, opinion="handled")
    else:
        step(handling, Action.REPLY, actor=staff, opinion="handled")
    petitioner = _actor("p", "petitioner", dept)
    late = handling > 60
    if rng.random() < 0.75:
        weights = (45, 25, 30) if late else (70, 20, 10)
        satisfaction = rng.choices(("satisfied", "basically_satisfied", "unsatisfied"),
                                   weights)[0]
        step(rng.uniform(1, 10), Action.RATE, actor=petitioner, satisfaction=satisfaction)
    if rng.random() < (0.25 if late else 0.05):
        reviewer = f"YZ-{dept.split('-')[1]}"
        step(rng.uniform(3, 15), Action.REQUEST_REVIEW, actor=petitioner,
             review_organ=reviewer, reason="disagree with the opinion")
        step(rng.uniform(10, 35), Action.REVIEW_OPINION,
             actor=_actor(f"{reviewer}.h1", "handler", reviewer), opinion="upheld")
        if rng.random() < 0.25:
            step(rng.uniform(3, 20), Action.REQUEST_RE_REVIEW, actor=petitioner,
                 re_review_organ="PROV-XFJ", reason="still disagree")
            step(rng.uniform(10, 30), Action.RE_REVIEW_OPINION,
                 actor=_actor("PROV-XFJ.h1", "handler", "PROV-XFJ"), opinion="concluded")
    return CasePlan(arrives_at=received, intake=intake, steps=steps)


def year_start(now: datetime) -> datetime:
    """Beijing midnight of the next 1 January: the simulated year is a calendar year."""
    from domain.calendar import SHANGHAI

    local = now.astimezone(SHANGHAI)
    return datetime.combine(date(local.year + 1, 1, 1), datetime.min.time(), SHANGHAI)


@workflow.defn
class CaseScript:
    @workflow.run
    async def run(self, plan: CasePlan) -> str:
        wait = plan.arrives_at - workflow.now()
        if wait > timedelta(0):
            await workflow.sleep(wait)
        petition = await workflow.start_child_workflow(
            PetitionWorkflow.run, PetitionStart(intake=plan.intake),
            id=plan.workflow_id,
            parent_close_policy=ParentClosePolicy.ABANDON)
        started = workflow.now()
        for step in plan.steps:
            due = started + timedelta(seconds=step.at)
            if due > workflow.now():
                await workflow.sleep(due - workflow.now())
            command = TABLE[step.action].command.model_validate(step.command)
            await petition.signal(getattr(PetitionWorkflow, f"{step.action.value}_signal"),
                                  command)
        status = await petition
        return str(status.outcome)


@workflow.defn
class YearClock:
    """Awaited by the driver: while it sleeps the time-skipping server runs the year."""

    @workflow.run
    async def run(self, seconds: float) -> None:
        await workflow.sleep(timedelta(seconds=seconds))
