"""Record the histories of representative petitions for the determinism gate.

    .venv/bin/python scripts/record_histories.py            # all scenarios
    .venv/bin/python scripts/record_histories.py --only national-full-path

Each scenario drives real petitions through the real worker on the Java time-skipping
server (statutory months in seconds) against a fresh PostgreSQL database, then writes each
workflow run's history as `tests/histories/<name>.json` (`WorkflowHistory.to_json()`) and
describes it in `tests/histories/index.json`. `tests/test_replay.py` replays them all with
the current workflow code: a change that would break a running petition fails it.

Payloads are encrypted with the TEST-ONLY key in `tests/histories/TEST_ONLY_codec_key.txt`
(committed, hence public: the petitions are fictional). Re-record only when the change to
the workflow is meant to apply to new petitions alone AND is guarded by `workflow.patched`
(see docs/safe-changes.md); re-recording to silence a failing replay hides the very break
the gate exists to catch.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import os
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from temporalio.api.common.v1 import WorkflowExecution  # noqa: E402
from temporalio.api.enums.v1 import EventType  # noqa: E402
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest  # noqa: E402
from temporalio.client import Client, WorkflowHandle  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402

from activities import build_desks  # noqa: E402
from adapters.engine import create_engine, session_maker  # noqa: E402
from adapters.petition_client import PetitionClient, workflow_id_for  # noqa: E402
from devstack.postgres import database_url, drop_database, ensure_database  # noqa: E402
from devstack.temporal_server import (  # noqa: E402
    settled,
    start_dev_server,
    start_time_skipping,
)
from domain.calendar import WorkingCalendar  # noqa: E402
from domain.case import PetitionStatus  # noqa: E402
from domain.lifecycle import TABLE  # noqa: E402
from domain.models import Action, Actor, PetitionIntake, Role, Stage  # noqa: E402
from security.codec import KeyRing  # noqa: E402
from starter.runtime import SAMPLE_DIRECTORY, load_directory_file, migrate_async  # noqa: E402
from worker import build_worker, data_converter  # noqa: E402
from workflows.petition import PetitionWorkflow  # noqa: E402

HISTORIES = ROOT / "tests" / "histories"
TEST_ONLY_KEY = HISTORIES / "TEST_ONLY_codec_key.txt"
TEST_ONLY_ASSERTION_KEY = HISTORIES / "TEST_ONLY_assertion_key.txt"
# Scenarios that send signals run on the dev server: the time-skipping server (1.38, 1.39)
# drops the headers of signals, so their signed assertions would not arrive.
ON_DEV_SERVER = {"national-withdraw", "repeat-visit-attached", "continue-as-new",
                 "batch-reassignment"}
GZIP_ABOVE_CHARS = 1_000_000
BEIJING = ZoneInfo("Asia/Shanghai")
CALENDAR = WorkingCalendar()

BUREAU, COMPETENT, REVIEW, RE_REVIEW = "QS-XFJ", "QS-HRSS", "YZ-HRSS", "PROV-XFJ"
PETITIONER = Actor(id="petitioner", role=Role.PETITIONER, unit="public")


def test_only_keyring() -> KeyRing:
    return KeyRing.parse(TEST_ONLY_KEY.read_text(encoding="ascii"))


def test_only_assertion_keys() -> KeyRing:
    """The histories' assertion key: committed beside the codec key, public, TEST-ONLY."""
    return KeyRing.parse(TEST_ONLY_ASSERTION_KEY.read_text(encoding="ascii"))


def h(unit: str) -> Actor:
    return Actor(id=f"{unit}.h1", role=Role.HANDLER, unit=unit)


def head(unit: str) -> Actor:
    return Actor(id=f"{unit}.head", role=Role.UNIT_HEAD, unit=unit)


def intake(unit: str, profile: str = "national", **overrides: Any) -> PetitionIntake:
    unique = uuid.uuid4().hex
    digits = str(int(unique[:14], 16))[:17].rjust(17, "5")
    data: dict[str, Any] = {
        "intake_id": f"HIST-{unique[:16]}", "channel": "letter", "category": "wage_arrears",
        "unit": unit, "profile": profile, "received_at": datetime.now(BEIJING).isoformat(),
        "petitioner": {"name": "虚构人 Fictional Person", "id_number": digits + "X",
                       "phone": "13900000000", "address": "虚构路1号 1 Fictional Road"},
        "subject": f"拖欠工资 unpaid wages {unique[:6]}",
        "content": "虚构的信访内容，仅用于记录历史。Fictional letter, for recorded histories only.",
        "respondent": f"虚构公司 Fictional Co. {unique[:6]}",
    }
    data.update(overrides)
    return PetitionIntake.model_validate(data)


def hearing_slot(now: datetime) -> str:
    """A sitting slot on a working day, 09:30 Beijing, some weeks after `now`."""
    day = CALENDAR.next_working_day_on_or_after(now.astimezone(BEIJING).date()
                                                + timedelta(days=20))
    return datetime.combine(day, time(9, 30), BEIJING).isoformat()


@dataclass
class Case:
    rec: Recorder
    handle: WorkflowHandle[PetitionWorkflow, PetitionStatus]
    last: PetitionStatus
    profile: str

    async def act(self, action: Action, actor: Actor, **payload: Any) -> PetitionStatus:
        command = TABLE[action].command.model_validate({**payload, "actor": actor})
        status = await self.rec.petitions.act(self.handle.id, command)
        assert status is not None
        self.last = status
        return self.last

    async def signal(self, action: Action, actor: Actor, **payload: Any) -> None:
        command = TABLE[action].command.model_validate({**payload, "actor": actor})
        await self.rec.petitions.act(self.handle.id, command, as_signal=True)

    async def status(self) -> PetitionStatus:
        self.last = await self.rec.petitions.status(self.handle.id)
        return self.last

    async def run_id(self) -> str:
        """The current run's id. Read raw: nothing of the case needs decoding."""
        client = self.rec.env.client
        found = await client.workflow_service.describe_workflow_execution(
            DescribeWorkflowExecutionRequest(
                namespace=client.namespace,
                execution=WorkflowExecution(workflow_id=self.handle.id)))
        return found.workflow_execution_info.execution.run_id

    async def until(self, check: Callable[[PetitionStatus], bool], what: str,
                    patience: float = 30.0) -> PetitionStatus:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + patience
        while not check(await self.status()):
            if loop.time() > deadline:
                raise AssertionError(f"{self.handle.id}: never {what}: {self.last}")
            await asyncio.sleep(0.2)
        return self.last

    async def sleep(self, days: float) -> None:
        await self.rec.env.sleep(timedelta(days=days))

    async def sleep_past(self, clock: str) -> None:
        """Until just after `clock` is due (its due day depends on the day recorded)."""
        due = next(c.due_at for c in (await self.status()).clocks if c.name == clock)
        await self.rec.env.sleep(due - await self.rec.env.get_current_time()
                                 + timedelta(minutes=1))

    async def hearing(self, actor: Actor, officers: list[str]) -> None:
        now = await self.rec.env.get_current_time()
        await self.act(Action.SCHEDULE_HEARING, actor, venue=f"听证室 room {uuid.uuid4().hex[:6]}",
                       starts_at=hearing_slot(now), duration_minutes=90, officers=officers)
        await self.act(Action.RECORD_HEARING, actor, hearing_no=len(self.last.hearings),
                       outcome="partly_supported", summary="听证 hearing held")


@dataclass
class Recorder:
    env: WorkflowEnvironment
    task_queue: str
    entries: list[dict[str, Any]] = field(default_factory=list)
    open: list[WorkflowHandle[Any, Any]] = field(default_factory=list)
    suffix: str = ""  # e.g. "-v2": recorded beside, not over, the histories of older code

    @property
    def petitions(self) -> PetitionClient:
        return PetitionClient(self.env.client, self.task_queue, ring=test_only_assertion_keys(),
                              clock=self.env.get_current_time)

    async def start(self, petition: PetitionIntake) -> Case:
        handle = self.petitions.handle(workflow_id_for(petition.intake_id))
        self.open.append(handle)
        status = await self.petitions.submit(petition)
        return Case(self, handle, status, petition.profile)

    async def record(self, case: Case, name: str, description: str, covers: list[str],
                     run_id: str | None = None) -> None:
        name += self.suffix
        handle = self.env.client.get_workflow_handle(case.handle.id, run_id=run_id)
        if run_id is None:
            await _settle(handle)
        history = await handle.fetch_history()
        timeline = await self.petitions.timeline(case.handle.id)
        status = await case.status()
        text = history.to_json()
        for stale in HISTORIES.glob(f"{name}.json*"):
            stale.unlink()
        if len(text) > GZIP_ABOVE_CHARS:  # the continue-as-new run: thousands of events
            file = f"{name}.json.gz"
            (HISTORIES / file).write_bytes(gzip.compress(text.encode(), mtime=0))
        else:
            file = f"{name}.json"
            (HISTORIES / file).write_text(text, encoding="utf-8")
        self.entries.append({
            "name": name, "file": file, "workflow_id": history.workflow_id,
            "description": description, "profile": case.profile,
            "covers": sorted(covers),
            "stages": sorted({s.value for e in timeline for s in (e.from_stage, e.to_stage)
                              if s is not None}),
            "actions": sorted({e.action.value for e in timeline}),
            "events": len(history.events), "final_stage": status.stage,
            "patches": _patches(history),
        })


async def _settle(handle: WorkflowHandle[Any, Any]) -> None:
    """Let a closing workflow finish its last task, so its history ends where it ends."""
    status = await handle.query(PetitionWorkflow.status)
    if status.stage is not Stage.CLOSED:
        return
    for _ in range(100):
        history = await handle.fetch_history()
        if history.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
            return
        await asyncio.sleep(0.1)


# ------------------------------------------------------------------ scenarios

Scenario = Callable[[Recorder], Awaitable[None]]
SCENARIOS: dict[str, Scenario] = {}


def scenario(fn: Scenario) -> Scenario:
    SCENARIOS[fn.__name__.replace("_", "-")] = fn
    return fn


@scenario
async def national_full_path(rec: Recorder) -> None:
    petition = intake(BUREAU, category="labour_and_social_security")
    case = await rec.start(petition)
    await case.act(Action.TRANSFER, h(BUREAU), to_unit=COMPETENT, instructions="请依法办理")
    await case.act(Action.ACCEPT, h(COMPETENT), note="受理")
    await case.act(Action.ASSIGN, head(COMPETENT), handler_id=f"{COMPETENT}.h1")
    await case.act(Action.CONTRACT_TO_LEADER, head(COMPETENT), leader_id="QS-LDR1")
    await case.act(Action.ADD_NOTE, PETITIONER, text="补充工资条 payslips added")
    await case.sleep(30)
    await case.act(Action.REQUEST_EXTENSION, h(COMPETENT), days=20, reason="需听证 hearing")
    await case.act(Action.DECIDE_EXTENSION, head(COMPETENT), approved=True,
                   reason_to_petitioner="需组织听证 a hearing is needed")
    await case.hearing(h(COMPETENT), ["HO-01", "HO-02"])
    await case.act(Action.REQUEST_ASSISTANCE, h(COMPETENT), kind="hardship",
                   amount_yuan=Decimal("6000.00"), persons=2, reason="生活困难 hardship")
    await case.act(Action.DECIDE_ASSISTANCE, head(COMPETENT), application_no=1, approved=True,
                   reason="符合条件 eligible")
    await case.act(Action.PROGRESS_REPLY, h(COMPETENT), text="正在办理 in progress")
    await case.act(Action.REPLY, h(COMPETENT), opinion="处理意见 handling opinion")
    await case.act(Action.RATE, PETITIONER, satisfaction="unsatisfied")
    await case.act(Action.REQUEST_REVIEW, PETITIONER, review_organ=REVIEW, reason="不服")
    await case.act(Action.REVIEW_OPINION, h(REVIEW), opinion="复查维持 upheld")
    await case.act(Action.RATE, PETITIONER, satisfaction="unsatisfied")
    await case.act(Action.REQUEST_RE_REVIEW, PETITIONER, re_review_organ=RE_REVIEW,
                   reason="仍不服")
    await case.hearing(h(RE_REVIEW), ["HO-03"])
    await case.act(Action.RE_REVIEW_OPINION, h(RE_REVIEW), opinion="复核维持，终结 concluded")
    await rec.record(case, "national-full-path",
                     "registered at the county bureau, transferred, accepted, assigned, "
                     "contracted to a leader, note, extension, hearing, assistance paid, "
                     "progress reply, reply, review, re-review with a hearing (re-review "
                     "clock paused), concluded into the termination registry",
                     ["transfer", "extension", "hearing", "hearing_pauses_re_review",
                      "assistance_paid", "review", "re_review", "concluded",
                      "termination_registry"])
    again = intake(COMPETENT, category=petition.category, respondent=petition.respondent,
                   petitioner=petition.petitioner.model_dump(), channel="visit")
    second = await rec.start(again)
    await second.until(lambda s: s.stage is Stage.CLOSED, "declined")
    await rec.record(second, "national-concluded-matter-declined",
                     "a new petition on the matter concluded above: declined by the "
                     "workflow itself, citing the concluded case", ["decline_concluded"])


@scenario
async def national_reject_transfer(rec: Recorder) -> None:
    case = await rec.start(intake(BUREAU, category="land_and_resources"))
    await case.act(Action.TRANSFER, h(BUREAU), to_unit="QS-NR", assigned=True)
    await case.act(Action.REJECT_TRANSFER, h("QS-NR"), reason="不属本单位职责 not ours")
    await case.act(Action.DECLINE, h(BUREAU), reason="outside_petition_scope",
                   explanation="不属于信访事项 not a petition matter")
    await rec.record(case, "national-reject-transfer-decline",
                     "assigned (交办) to the wrong department, which objects within its "
                     "window; back at the bureau, declined", ["reject_transfer", "decline"])


@scenario
async def national_divert(rec: Recorder) -> None:
    case = await rec.start(intake(COMPETENT, category="law_and_litigation", law_related=True))
    await case.act(Action.DIVERT, h(COMPETENT), track="litigation", organ="QS-COURT",
                   explanation="属于诉讼 a matter for the courts")
    await rec.record(case, "national-divert", "diverted to the court (诉访分离)", ["divert"])


@scenario
async def national_withdraw(rec: Recorder) -> None:
    case = await rec.start(intake(COMPETENT, channel="hotline_12345"))
    await case.act(Action.ACCEPT, h(COMPETENT))
    await case.signal(Action.REPLY, h("QS-NR"), opinion="别的单位 another unit")  # refused
    await case.until(lambda s: s.refused_actions == 1, "recorded the refused signal")
    await case.act(Action.REQUEST_ASSISTANCE, h(COMPETENT), kind="judicial",
                   amount_yuan=Decimal("3000.00"), reason="司法救助")
    await case.act(Action.DECIDE_ASSISTANCE, head(COMPETENT), application_no=1,
                   approved=False, reason="不符合条件 not eligible")
    await case.act(Action.REPEAT_VISIT, PETITIONER, channel="visit", summary="再次来访")
    await case.act(Action.WITHDRAW, PETITIONER, reason="已协商解决 settled")
    await rec.record(case, "national-withdraw",
                     "accepted, a refused signal recorded, assistance refused, a repeat "
                     "visit, withdrawn", ["refused_signal", "assistance_refused",
                                          "repeat_visit", "withdraw"])


@scenario
async def national_review_window_lapses(rec: Recorder) -> None:
    case = await rec.start(intake(COMPETENT))
    await case.act(Action.ACCEPT, h(COMPETENT))
    await case.act(Action.REPLY, h(COMPETENT), opinion="已支付 paid")
    await case.act(Action.RATE, PETITIONER, satisfaction="satisfied")
    await case.sleep(40)
    await case.until(lambda s: s.stage is Stage.CLOSED, "closed by the lapse")
    await rec.record(case, "national-review-window-lapses",
                     "replied, rated, no review within the window: closed as resolved",
                     ["review_window_lapsed"])


@scenario
async def national_re_review_window_lapses(rec: Recorder) -> None:
    case = await rec.start(intake(COMPETENT))
    await case.act(Action.ACCEPT, h(COMPETENT))
    await case.act(Action.REPLY, h(COMPETENT), opinion="处理意见")
    await case.act(Action.REQUEST_REVIEW, PETITIONER, review_organ=REVIEW, reason="不服")
    await case.act(Action.REVIEW_OPINION, h(REVIEW), opinion="撤销重办 revised", upheld=False)
    await case.sleep(40)
    await case.until(lambda s: s.stage is Stage.CLOSED, "closed by the lapse")
    await rec.record(case, "national-re-review-window-lapses",
                     "reviewed, no re-review within the window: closed as resolved",
                     ["re_review_window_lapsed"])


@scenario
async def national_escalations(rec: Recorder) -> None:
    case = await rec.start(intake(COMPETENT))
    await case.sleep(30)  # acceptance: reminder, overdue (level 1), listed supervision (2)
    await case.until(lambda s: s.escalation_level == 2, "escalated to level 2")
    await case.act(Action.ACCEPT, h(COMPETENT))
    await case.sleep(75)  # handling: overdue again
    await case.until(lambda s: s.escalation_level >= 1, "escalated the handling clock")
    await case.act(Action.REPLY, h(COMPETENT), opinion="逾期答复 late reply")
    await rec.record(case, "national-escalations",
                     "acceptance reminder, level-1 and level-2 escalation, then handling "
                     "overdue and escalated", ["reminder", "escalation_level_1",
                                               "escalation_level_2"])


@scenario
async def procuratorate_progress(rec: Recorder) -> None:
    case = await rec.start(intake("QS-PROC", profile="procuratorate", category="law_and_litigation",
                                  law_related=True, channel="hotline_12309"))
    await case.act(Action.PROGRESS_REPLY, h("QS-PROC"), text="已收到 received (7-day reply)")
    await case.act(Action.ACCEPT, h("QS-PROC"))
    await case.sleep(80)
    await case.act(Action.PROGRESS_REPLY, h("QS-PROC"), text="仍在办理 still in progress")
    await case.sleep_past("settlement")  # 3 months: the monthly progress clock takes over
    await case.until(lambda s: any(c.name == "progress_reply" for c in s.clocks),
                     "handed the settlement clock over to monthly progress replies")
    await case.act(Action.PROGRESS_REPLY, h("QS-PROC"), text="月度进展 monthly progress")
    await case.act(Action.REPLY, h("QS-PROC"), opinion="办理结果 the result")
    await case.act(Action.REQUEST_REVIEW, PETITIONER, review_organ="YZ-PROC", reason="不服")
    await case.act(Action.REVIEW_OPINION, h("YZ-PROC"), opinion="维持")
    await case.act(Action.REQUEST_RE_REVIEW, PETITIONER, re_review_organ="PROV-PROC",
                   reason="仍不服")
    await case.act(Action.RE_REVIEW_OPINION, h("PROV-PROC"), opinion="终结")
    await rec.record(case, "procuratorate-progress-replies",
                     "procuratorate profile: 7-day procedural reply, 3-month settlement "
                     "handed over to monthly progress replies, reply, review, re-review",
                     ["procedural_reply", "settlement_handover", "progress_reply"])


@scenario
async def zhejiang_extension(rec: Recorder) -> None:
    case = await rec.start(intake(BUREAU, profile="zhejiang"))
    await case.act(Action.TRANSFER, h(BUREAU), to_unit=COMPETENT)
    await case.act(Action.ACCEPT, h(COMPETENT))
    await case.act(Action.REQUEST_EXTENSION, h(COMPETENT), days=45, reason="跨部门协调")
    status = await case.act(Action.DECIDE_EXTENSION, head(COMPETENT), approved=True, days=40,
                            reason_to_petitioner="需协调 coordination needed")
    assert status.extension_days == 40, status
    await case.act(Action.REPLY, h(COMPETENT), opinion="答复")
    await case.sleep(40)
    await case.until(lambda s: s.stage is Stage.CLOSED, "closed by the lapse")
    await rec.record(case, "zhejiang-extension",
                     "Zhejiang profile: routing in working days, transfer, a 40-day "
                     "extension (up to 60 there), reply, window lapses",
                     ["transfer", "extension", "review_window_lapsed"])


@scenario
async def shandong_review(rec: Recorder) -> None:
    case = await rec.start(intake(COMPETENT, profile="shandong", category="urban_construction"))
    await case.act(Action.ACCEPT, h(COMPETENT))
    await case.act(Action.REPLY, h(COMPETENT), opinion="答复")
    await case.act(Action.REQUEST_REVIEW, PETITIONER, review_organ=REVIEW, reason="不服")
    await case.sleep(10)  # the review opinion is late: reminder and escalation
    await case.act(Action.REVIEW_OPINION, h(REVIEW), opinion="维持")
    await case.act(Action.REQUEST_RE_REVIEW, PETITIONER, re_review_organ=RE_REVIEW,
                   reason="仍不服")
    await case.act(Action.RE_REVIEW_OPINION, h(RE_REVIEW), opinion="终结")
    await rec.record(case, "shandong-review",
                     "Shandong profile: review (decided on in working days), late review "
                     "opinion, re-review, concluded", ["review", "re_review", "concluded"])


@scenario
async def sichuan_overdue_reply(rec: Recorder) -> None:
    case = await rec.start(intake(COMPETENT, profile="sichuan", category="rural_affairs"))
    await case.act(Action.ACCEPT, h(COMPETENT))
    await case.sleep(35)  # Sichuan handles in 30 days: overdue
    await case.until(lambda s: s.escalation_level >= 1, "escalated")
    await case.act(Action.REPLY, h(COMPETENT), opinion="答复")
    await case.sleep(40)
    await case.until(lambda s: s.stage is Stage.CLOSED, "closed by the lapse")
    await rec.record(case, "sichuan-overdue-reply",
                     "Sichuan profile: 30-day handling overdue and escalated, replied late, "
                     "window lapses", ["escalation_level_1", "review_window_lapsed"])


@scenario
async def repeat_visit_attached(rec: Recorder) -> None:
    petition = intake(COMPETENT, category="environment")
    case = await rec.start(petition)
    await case.act(Action.ACCEPT, h(COMPETENT))
    again = intake(BUREAU, category=petition.category, respondent=petition.respondent,
                   petitioner=petition.petitioner.model_dump(), channel="visit")
    visit = await rec.start(again)
    await visit.until(lambda s: s.attached_to is not None, "attached")
    await case.until(lambda s: s.repeat_visits == 1, "counted the visit")
    await rec.record(visit, "repeat-visit-attached",
                     "a second intake on an open matter attaches to the open case",
                     ["repeat_visit_attached"])
    await rec.record(case, "repeat-visit-counted",
                     "the open case that counted the attached visit", ["repeat_visit"])


@scenario
async def continue_as_new(rec: Recorder) -> None:
    case = await rec.start(intake(COMPETENT))
    first_run = await case.run_id()
    await case.act(Action.ACCEPT, h(COMPETENT))
    sent = 0
    while (await case.status()).runs == 1 and sent < 6000:
        await asyncio.gather(*(case.signal(Action.ADD_NOTE, PETITIONER,
                                           text=f"补充材料 note {sent + i}") for i in range(50)))
        sent += 50
    status = await case.until(lambda s: s.runs == 2, "continued as new")
    await case.act(Action.REPLY, h(COMPETENT), opinion="答复")
    await rec.record(case, "continue-as-new-run-1",
                     f"a flood of {sent} notes: the run continues as new carrying the case",
                     ["continue_as_new"], run_id=first_run)
    await rec.record(case, "continue-as-new-run-2",
                     "the run after continue-as-new: the carried case, then a reply",
                     ["continued_run"])
    assert status.runs == 2


@scenario
async def batch_reassignment(rec: Recorder) -> None:
    """A real batch signal (the dev server's batcher), delivered again, and a forged one."""
    from temporalio.api.common.v1 import WorkflowExecution as Execution
    from temporalio.api.workflowservice.v1 import SignalWorkflowExecutionRequest

    from adapters.batch_reassign import BatchReassigner
    from domain.reassignment import SIGNAL
    from security.codec import generate_key

    case = await rec.start(intake(BUREAU))
    await case.act(Action.ASSIGN, head(BUREAU), handler_id=f"{BUREAU}.h1")
    await case.act(Action.ACCEPT, h(BUREAU))
    client = rec.env.client
    batch = BatchReassigner(client, ring=test_only_assertion_keys(),
                            clock=rec.env.get_current_time)
    for _ in range(200):  # visibility catches up
        if await batch.count(BUREAU, f"{BUREAU}.h1") == 1:
            break
        await asyncio.sleep(0.1)
    order = await batch.order(f"reassign-{uuid.uuid4().hex}", BUREAU, f"{BUREAU}.h1",
                              f"{BUREAU}.h2", head(BUREAU))
    await batch.start(order)
    await case.until(lambda s: s.handler_id == f"{BUREAU}.h2", "reassigned by the batch")

    async def deliver(payloads: Any) -> None:
        await client.workflow_service.signal_workflow_execution(SignalWorkflowExecutionRequest(
            namespace=client.namespace, workflow_execution=Execution(workflow_id=case.handle.id),
            signal_name=SIGNAL, input=payloads, identity="recorder"))

    await deliver(await batch.encoded(order))  # the same order again: nothing more
    keys = test_only_assertion_keys()
    forger = BatchReassigner(client, ring=KeyRing(keys={keys.active: generate_key()},
                                                  active=keys.active),
                             clock=rec.env.get_current_time)
    forged = await forger.order(f"reassign-{uuid.uuid4().hex}", BUREAU, f"{BUREAU}.h2",
                                f"{BUREAU}.h1", head(BUREAU))
    await deliver(await batch.encoded(forged))
    await case.until(lambda s: s.refused_actions == 1, "recorded the forged order")
    await case.act(Action.WITHDRAW, PETITIONER, reason="已协商解决 settled")
    await rec.record(case, "batch-reassignment",
                     "assigned, then moved to another handler by a bulk reassignment (a "
                     "batch signal), the same order delivered again (nothing more), a "
                     "forged order refused, withdrawn", ["batch_reassignment",
                                                         "refused_batch_signal"])


# ------------------------------------------------------------------ the recording


def _patches(history: Any) -> list[str]:
    """The `workflow.patched` ids the run took (its patch markers)."""
    found = set()
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            details = event.marker_recorded_event_attributes.details
            if "patch-data" in details:
                for payload in details["patch-data"].payloads:
                    found.add(json.loads(payload.data)["id"])
    return sorted(found)


async def record(names: list[str], suffix: str = "") -> list[dict[str, Any]]:
    base = database_url(os.environ.get("DATABASE_URL"))
    db = f"petitionflow_histories_{os.getpid()}"
    url = await ensure_database(base, db, recreate=True)
    await migrate_async(url)
    engine = create_engine(url, pool_size=10)
    sessions = session_maker(engine)
    await load_directory_file(sessions, SAMPLE_DIRECTORY)
    task_queue = f"histories-{uuid.uuid4().hex[:8]}"
    entries: list[dict[str, Any]] = []
    try:
        converter = data_converter(keyring=test_only_keyring())
        for on_dev in (False, True):
            wanted = [n for n in names if (n in ON_DEV_SERVER) is on_dev]
            if not wanted:
                continue
            env = await (start_dev_server(db_filename=None, ui=False, data_converter=converter)
                         if on_dev else start_time_skipping(data_converter=converter))
            async with env:
                entries += await _record_on(env, wanted, sessions, task_queue, suffix)
    finally:
        await engine.dispose()
        await drop_database(base, db)
    return entries


async def _record_on(env: WorkflowEnvironment, names: list[str], sessions: Any,
                     task_queue: str, suffix: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    client: Client = env.client
    async with build_worker(client, build_desks(sessions), task_queue=task_queue,
                            assertion_keys=test_only_assertion_keys()):
        for name in names:
            rec = Recorder(env, task_queue, suffix=suffix)
            print(f"recording {name} ...", flush=True)
            try:
                await SCENARIOS[name](rec)
            finally:
                for handle in rec.open:
                    # Terminated mid-task, a case would stall the server's clock.
                    await settled(client, handle.id, within=10.0)
                    with contextlib.suppress(Exception):  # closed already
                        await handle.terminate(reason="recorded")
            entries += rec.entries
    return entries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=sorted(SCENARIOS))
    parser.add_argument("--suffix", default="",
                        help="added to each history's name, so that histories of the code "
                             "before a patch stay beside those after it (e.g. -v2)")
    args = parser.parse_args()
    names = args.only or list(SCENARIOS)
    entries = asyncio.run(record(names, args.suffix))
    index_path = HISTORIES / "index.json"
    keep = index_path.exists() and (args.only or args.suffix)
    index = json.loads(index_path.read_text()) if keep else {}
    recorded = index.get("histories", {})
    for entry in entries:
        recorded[entry.pop("name")] = entry
    index = {
        "recorded_at": date.today().isoformat(),
        "note": "Generated by scripts/record_histories.py; replayed by tests/test_replay.py.",
        "histories": dict(sorted(recorded.items())),
    }
    index_path.write_text(json.dumps(index, indent=2, ensure_ascii=False) + "\n",
                          encoding="utf-8")
    for name, entry in index["histories"].items():
        print(f"  {name}: {entry['events']} events, final stage {entry['final_stage']}")


if __name__ == "__main__":
    main()
