"""What the drills' intake clients and handlers do, and how they ride out faults: every
call is retried with the same request id until it goes through, as a real client would;
only a business refusal stops it (and fails the drill)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from domain.case import PetitionStatus
from domain.models import (
    Accept,
    Action,
    Actor,
    Command,
    DecideAssistance,
    PetitionIntake,
    Reply,
    RequestAssistance,
    Role,
    Transfer,
    reference,
)
from starter.actions import ActionError, take_action
from starter.intake import IntakeError, submit

T = TypeVar("T")
log = logging.getLogger("petitionflow.drills")

BUREAU_HANDLER = Actor(id="QS-XFJ.h1", role=Role.HANDLER, unit="QS-XFJ")
HANDLER = Actor(id="QS-HRSS.h1", role=Role.HANDLER, unit="QS-HRSS")
HEAD = Actor(id="QS-HRSS.head", role=Role.UNIT_HEAD, unit="QS-HRSS")


@dataclass
class Stack:
    """What a drill runs against."""

    client: Client
    sessions: async_sessionmaker[AsyncSession]
    database_url: str
    address: str
    task_queue: str
    work_dir: Path


@dataclass
class PatientClient:
    """A patient client: counts the faults it rode out."""

    stack: Stack
    retries: Counter[str] = field(default_factory=Counter)
    patience: float = 300.0

    async def call(self, op: Callable[[], Awaitable[T]]) -> T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.patience
        delay = 0.2
        while True:
            try:
                return await op()
            except (ActionError, IntakeError):
                raise
            except ApplicationError as err:
                if err.non_retryable:
                    raise
                self._note(err)
            except Exception as err:  # the server, the database or the network is down
                self._note(err)
            if loop.time() > deadline:
                raise TimeoutError(f"gave up after {self.patience} s: {self.retries}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _note(self, err: BaseException) -> None:
        self.retries[type(err).__name__] += 1
        log.debug("client retry after %s: %s", type(err).__name__, err)

    async def submit(self, intake: PetitionIntake) -> str:
        stack = self.stack
        status = await self.call(lambda: submit(stack.client, stack.sessions, intake,
                                                task_queue=stack.task_queue))
        return status.workflow_id

    async def act(self, workflow_id: str, action: Action, command: Command) -> PetitionStatus:
        stack = self.stack
        result = await self.call(lambda: take_action(stack.client, stack.sessions,
                                                     workflow_id, action, command))
        assert result is not None
        return result


def drill_intake(unit: str, *, profile: str = "national", received_at: datetime | None = None,
                 tag: str = "DRILL") -> PetitionIntake:
    unique = uuid.uuid4().hex
    digits = str(int(unique[:14], 16))[:17].rjust(17, "3")
    return PetitionIntake.model_validate({
        "intake_id": reference(tag, 16), "channel": "visit", "category": "wage_arrears",
        "unit": unit, "profile": profile,
        "received_at": (received_at or datetime.now().astimezone()).isoformat(),
        "petitioner": {"name": "演练人", "id_number": digits + "X"},
        "subject": f"演练 drill {unique[:6]}", "content": "故障演练 fault drill",
    })


def rid(workflow_id: str, what: str) -> str:
    return f"{workflow_id.removeprefix('petition-')}-{what}"[:64]


async def transfer_and_pay(client: PatientClient, payments: int = 2) -> str:
    """Registered at the county petition bureau, transferred to the labour department,
    accepted there, and `payments` hardship assistance applications approved and paid."""
    wf = await client.submit(drill_intake("QS-XFJ"))
    await client.act(wf, Action.TRANSFER, Transfer(
        actor=BUREAU_HANDLER, to_unit="QS-HRSS", instructions="请依法处理",
        request_id=rid(wf, "transfer")))
    await client.act(wf, Action.ACCEPT, Accept(actor=HANDLER, request_id=rid(wf, "accept")))
    for n in range(1, payments + 1):
        await client.act(wf, Action.REQUEST_ASSISTANCE, RequestAssistance(
            actor=HANDLER, kind="hardship", amount_yuan=Decimal(1000 + n), reason="生活困难",
            request_id=rid(wf, f"apply-{n}")))
    for n in range(1, payments + 1):
        await client.act(wf, Action.DECIDE_ASSISTANCE, DecideAssistance(
            actor=HEAD, application_no=n, approved=True, reason="同意救助",
            request_id=rid(wf, f"decide-{n}")))
    return wf


async def pay_and_reply(client: PatientClient, workflow_id: str) -> None:
    """The head approves application no. 1 (paid at once), the handler replies."""
    wf = workflow_id
    await client.act(wf, Action.DECIDE_ASSISTANCE, DecideAssistance(
        actor=HEAD, application_no=1, approved=True, reason="同意", request_id=rid(wf, "decide")))
    await client.act(wf, Action.REPLY, Reply(actor=HANDLER, opinion="已处理并发放救助金",
                                             request_id=rid(wf, "reply")))


async def terminate_all(client: Client, workflow_ids: list[str]) -> None:
    for wf in workflow_ids:
        with contextlib.suppress(Exception):  # closed already
            await client.get_workflow_handle(wf).terminate(reason="drill finished")


def report_line(name: str, values: dict[str, Any]) -> str:
    return f"{name}: " + ", ".join(f"{k}={v}" for k, v in values.items())
