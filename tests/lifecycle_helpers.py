"""Driving petitions through the lifecycle with real actions, for the lifecycle tests.

A `Case` wraps a started workflow: `act(action)` takes an action with a permitted actor
and a valid payload (built from the case's current units), `walk_to(stage)` takes the
ordinary path there. Units of the sample directory: registered at QS-HRSS (a competent
unit: its acceptance clock) or at QS-XFJ (the county petition bureau: its routing clock);
review by YZ-HRSS (the superior department), re-review by PROV-XFJ.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from activities.notices import notice_where
from adapters.data_keys import vault_from_settings
from adapters.engine import create_engine, session_maker
from adapters.petition_client import ActionRefused, PetitionClient
from adapters.settings import get_settings
from devstack.temporal_server import settled
from domain.calendar import WorkingCalendar
from domain.case import ClockView, PetitionStatus, TimelineEntry
from domain.lifecycle import TABLE, Transition, UnitRule
from domain.models import Action, Actor, ClockName, Command, Role, Stage
from workflows.petition import PetitionWorkflow

CALENDAR = WorkingCalendar()
BEIJING = ZoneInfo("Asia/Shanghai")

COMPETENT_UNIT = "QS-HRSS"
BUREAU = "QS-XFJ"
REVIEW_ORGAN = "YZ-HRSS"  # parent of QS-HRSS
RE_REVIEW_ORGAN = "PROV-XFJ"  # superior bureau of YZ-HRSS
STRANGER_UNIT = "LJ-EE"  # a unit with nothing to do with these cases
CASE_LEADER = "QS-LDR1"  # sits in QS-XFJ

PETITIONER = Actor(id="petitioner", role=Role.PETITIONER, unit="public")
SUPERVISOR = Actor(id="YZ-XFJ.sup", role=Role.SUPERVISOR, unit="YZ-XFJ")

# The ordinary path and the action that leaves each stage along it.
PATH = (Stage.REGISTERED, Stage.IN_HANDLING, Stage.REPLIED, Stage.UNDER_REVIEW,
        Stage.REVIEW_REPLIED, Stage.UNDER_RE_REVIEW)
ADVANCE = {
    Stage.REGISTERED: Action.ACCEPT,
    Stage.IN_HANDLING: Action.REPLY,
    Stage.REPLIED: Action.REQUEST_REVIEW,
    Stage.UNDER_REVIEW: Action.REVIEW_OPINION,
    Stage.REVIEW_REPLIED: Action.REQUEST_RE_REVIEW,
}


def handler(unit: str) -> Actor:
    return Actor(id=f"{unit}.h1", role=Role.HANDLER, unit=unit)


def head(unit: str) -> Actor:
    return Actor(id=f"{unit}.head", role=Role.UNIT_HEAD, unit=unit)


def leader(person: str = CASE_LEADER, unit: str = BUREAU) -> Actor:
    return Actor(id=person, role=Role.LEADER, unit=unit)


def hearing_slot() -> datetime:
    """A sitting time (a working day, within 08:30-17:30 Beijing) no other test will use:
    hearing officers and venues are shared by every test of the session."""
    rng = random.Random(uuid.uuid4().int)
    day = CALENDAR.next_working_day_on_or_after(date(2031, 1, 1)
                                                + timedelta(days=rng.randrange(3650)))
    start = time(9 + rng.randrange(7), rng.choice((0, 30)))
    return datetime.combine(day, start, BEIJING)


def unit_for(rule: UnitRule, status: PetitionStatus, review: str | None = None,
             re_review: str | None = None) -> str:
    return {
        UnitRule.HOLDING: status.holding_unit,
        UnitRule.RESPONSIBLE: status.responsible_unit,
        UnitRule.REVIEW_ORGAN: review,
        UnitRule.RE_REVIEW_ORGAN: re_review,
        UnitRule.CASE_UNIT: status.holding_unit,
        UnitRule.NONE: None,
    }[rule] or status.holding_unit or COMPETENT_UNIT


def permitted_actor(row: Transition, unit: str) -> Actor:
    """Someone the row allows: a handler where handlers may act, else a head, else the
    petitioner."""
    if Role.HANDLER in row.roles:
        return handler(unit)
    if Role.UNIT_HEAD in row.roles:
        return head(unit)
    if Role.LEADER in row.roles:
        return leader()
    return PETITIONER


def wrong_role(row: Transition, unit: str) -> Actor:
    """A plausible actor whose role the row does not allow."""
    for candidate in (handler(unit), PETITIONER, SUPERVISOR):
        if candidate.role not in row.roles:
            return candidate
    raise AssertionError(f"every role may take {row.action}")


def payload(action: Action, case: Case) -> dict[str, Any]:
    """A valid payload for `action` on this case as it stands."""
    status = case.last
    payloads: dict[Action, dict[str, Any]] = {
        Action.ACCEPT: {"note": "受理 accepted"},
        Action.DECLINE: {"reason": "outside_petition_scope", "explanation": "不属于信访事项"},
        Action.DIVERT: {"track": "litigation", "organ": "QS-COURT",
                        "explanation": "属于诉讼程序 belongs to litigation"},
        Action.TRANSFER: {"to_unit": COMPETENT_UNIT if status.holding_unit != COMPETENT_UNIT
                          else "QS-NR", "instructions": "请依法处理"},
        Action.REJECT_TRANSFER: {"reason": "不属于本单位职责 not our competence"},
        Action.ASSIGN: {"handler_id": f"{status.holding_unit}.h2"},
        Action.CONTRACT_TO_LEADER: {"leader_id": CASE_LEADER},
        Action.REQUEST_EXTENSION: {"days": 20, "reason": "情况复杂 complex facts"},
        Action.DECIDE_EXTENSION: {"approved": True,
                                  "reason_to_petitioner": "需调查取证 evidence to gather"},
        Action.SCHEDULE_HEARING: {"venue": f"Hearing room {uuid.uuid4().hex[:8]}",
                                  "starts_at": hearing_slot().isoformat(),
                                  "duration_minutes": 60,
                                  "officers": [f"HO-0{random.randrange(1, 9)}"]},
        Action.RECORD_HEARING: {"hearing_no": max(1, len(status.hearings)), "outcome": "supported",
                                "summary": "听证意见 hearing held"},
        Action.REQUEST_ASSISTANCE: {"kind": "hardship", "amount_yuan": "5000.00",
                                    "persons": 1, "reason": "生活困难 hardship"},
        Action.DECIDE_ASSISTANCE: {"application_no": max(1, len(status.assistance)),
                                   "approved": True, "reason": "符合条件 eligible"},
        Action.PROGRESS_REPLY: {"text": "正在办理 in progress"},
        Action.REPLY: {"opinion": "处理意见 the handling opinion", "supported": True},
        Action.RATE: {"satisfaction": "basically_satisfied"},
        Action.REQUEST_REVIEW: {"review_organ": REVIEW_ORGAN, "reason": "不服 disagree"},
        Action.REVIEW_OPINION: {"opinion": "复查意见 review opinion", "upheld": True},
        Action.REQUEST_RE_REVIEW: {"re_review_organ": RE_REVIEW_ORGAN, "reason": "仍不服"},
        Action.RE_REVIEW_OPINION: {"opinion": "复核意见 re-review opinion", "upheld": True},
        Action.WITHDRAW: {"reason": "撤回 withdrawn"},
        Action.ADD_NOTE: {"text": "补充材料 supplementary material"},
        Action.REPEAT_VISIT: {"channel": "visit", "summary": "再次来访 came again"},
    }
    return payloads[action]


WORKFLOW_TASK_EVENTS = frozenset({
    EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED})

# Actions that need another action first, in the same stage.
PREREQUISITE = {
    Action.DECIDE_EXTENSION: Action.REQUEST_EXTENSION,
    Action.RECORD_HEARING: Action.SCHEDULE_HEARING,
    Action.DECIDE_ASSISTANCE: Action.REQUEST_ASSISTANCE,
    Action.REJECT_TRANSFER: Action.TRANSFER,
}


class Case:
    """One petition under test, with the status after its latest action."""

    def __init__(self, env: WorkflowEnvironment,
                 handle: WorkflowHandle[PetitionWorkflow, PetitionStatus],
                 status: PetitionStatus):
        self.env = env
        self.handle = handle
        self.petitions = PetitionClient(env.client, task_queue="", clock=env.get_current_time)
        self.last = status
        self.review_organ: str | None = None
        self.re_review_organ: str | None = None

    @classmethod
    async def start(cls, env: WorkflowEnvironment, petitions: Any, **intake: Any) -> Case:
        handle = await petitions.start(env, **intake)
        return cls(env, handle, await handle.query(PetitionWorkflow.status))

    @property
    def stage(self) -> Stage | None:
        return self.last.stage

    def actor_for(self, action: Action) -> Actor:
        row = TABLE[action]
        return permitted_actor(row, unit_for(row.unit_rule, self.last, self.review_organ,
                                             self.re_review_organ))

    def command(self, action: Action, actor: Actor | None = None, **changes: Any) -> Command:
        data = {**payload(action, self), **changes,
                "actor": actor or self.actor_for(action)}
        return TABLE[action].command.model_validate(data)

    async def act(self, action: Action, actor: Actor | None = None,
                  **changes: Any) -> PetitionStatus:
        command = self.command(action, actor, **changes)
        status = await self.petitions.act(self.handle.id, command)
        assert status is not None
        self.last = status
        if action is Action.REQUEST_REVIEW:
            self.review_organ = command.review_organ  # type: ignore[attr-defined]
        if action is Action.REQUEST_RE_REVIEW:
            self.re_review_organ = command.re_review_organ  # type: ignore[attr-defined]
        return self.last

    async def refresh(self) -> PetitionStatus:
        self.last = await self.handle.query(PetitionWorkflow.status)
        return self.last

    async def timeline(self) -> list[TimelineEntry]:
        return await self.handle.query(PetitionWorkflow.timeline)

    async def last_entry(self, action: Action) -> TimelineEntry:
        entries = [e for e in await self.timeline() if e.action is action and e.accepted]
        assert entries, f"no {action} in the timeline"
        return entries[-1]

    async def walk_to(self, stage: Stage,
                      on_the_way: Callable[[Stage], Awaitable[None]] | None = None) -> None:
        """Take the ordinary path to `stage`; `on_the_way(s)` runs in each stage passed."""
        while self.stage is not stage:
            assert self.stage in ADVANCE, f"cannot walk from {self.stage} to {stage}"
            if on_the_way is not None:
                await on_the_way(self.stage)
            await self.act(ADVANCE[self.stage])

    async def history_length(self) -> int:
        """Once the case is quiet: the notices of the last action follow its answer."""
        assert await settled(self.env.client, self.handle.id)
        return len([e async for e in self.handle.fetch_history_events()])

    async def history_of_the_case(self) -> list[int]:
        """Event types besides workflow tasks. The dev server runs an Update's validator in
        a speculative workflow task that leaves no event at all when it refuses; the Java
        time-skipping server records that task (scheduled, started, completed) but nothing
        of the Update itself. Read once the case is quiet (notices follow an answer)."""
        assert await settled(self.env.client, self.handle.id)
        return [e.event_type async for e in self.handle.fetch_history_events()
                if e.event_type not in WORKFLOW_TASK_EVENTS]

    async def expect_refused(self, action: Action, actor: Actor, rule: str,
                             **changes: Any) -> str:
        """The Update is refused naming `rule`; the history and the case are unchanged."""
        before_events = await self.history_of_the_case()
        before = await self.refresh()
        with pytest.raises(ActionRefused) as refused:
            await self.petitions.act(self.handle.id, self.command(action, actor, **changes))
        refusal = refused.value.refusal
        assert refusal.rule.startswith(rule), refusal
        assert await self.history_of_the_case() == before_events, "a refused Update left history"
        after = await self.refresh()
        assert after == before
        return str(refusal)


def clock(status: PetitionStatus, name: ClockName) -> ClockView:
    found = [c for c in status.clocks if c.name is name]
    assert found, f"no {name} clock in {[c.name.value for c in status.clocks]}"
    return found[0]


def clock_names(status: PetitionStatus) -> set[ClockName]:
    return {c.name for c in status.clocks}


async def sleep_until(env: WorkflowEnvironment, at: datetime) -> None:
    """Move virtual time on to `at` (never backwards)."""
    delta = at - await env.get_current_time()
    if delta > timedelta(0):
        await env.sleep(delta)


async def eventually(check: Callable[[], Awaitable[Any]], within: float = 15.0) -> Any:
    """Poll `check` until it returns something truthy (for effects written after a timer)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = await check()
        if result or loop.time() > deadline:
            return result
        await asyncio.sleep(0.05)


async def finished(handle: WorkflowHandle[Any, Any], within: float = 15.0) -> PetitionStatus:
    """The status of a workflow that has completed (its queries still answer).

    Read from the history, not `describe()`: the Java test server keeps an unset Datetime
    search attribute (NextDeadline of a closed case) as a null the client cannot decode."""
    async def done() -> bool:
        events = [e.event_type async for e in handle.fetch_history_events()]
        return events[-1] == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED

    assert await eventually(done, within), f"{handle.id} is still running"
    return await handle.query(PetitionWorkflow.status)


async def raw_pg(db_url: str) -> asyncpg.Connection:
    url = make_url(db_url)
    return await asyncpg.connect(database=url.database, user=url.username or "postgres",
                                 host=url.query.get("host") or url.host, port=url.port)


async def pg_fetch(db_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await raw_pg(db_url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def yuan(text: str) -> Decimal:
    return Decimal(text)


async def opened_notices(db_url: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    """`sql`'s rows (which must select `n.idempotency_key` and `n.body_sealed`), each with
    its notice's opened `body`: the outbox holds bodies sealed (security/sealing.py)."""
    rows = [dict(r) for r in await pg_fetch(db_url, sql, *args)]
    engine = create_engine(make_url(db_url).set(drivername="postgresql+asyncpg")
                           .render_as_string(hide_password=False), pool_size=1)
    try:
        vault = vault_from_settings(get_settings(), session_maker(engine))
        for row in rows:
            row["body"] = (await vault.open(row.pop("body_sealed"),
                                            notice_where(row.pop("idempotency_key")))).decode()
    finally:
        await engine.dispose()
    return rows
