"""Issue 6: personal data (name, ID number, phone, address, letter text) never leaves the
encrypted payloads: not in workflow ids, search attributes, the visibility store or the
logs of a whole petition's run -- and what Temporal stores on disk holds none of it in
clear (a control petition written without the codec shows the scan would see it)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from activities.notices import notice_where
from adapters.data_keys import vault_from_settings
from adapters.petition_client import PetitionClient
from adapters.settings import get_settings
from adapters.tables import Notice, Petition
from devstack.temporal_server import start_dev_server
from domain.case import PetitionStart
from domain.models import (
    Accept,
    Action,
    Actor,
    DecideAssistance,
    Rate,
    Reply,
    RequestAssistance,
    RequestReReview,
    RequestReview,
    ReReviewOpinion,
    ReviewOpinion,
    Role,
    Stage,
)
from security.inspect import clear_payloads
from starter.actions import ActionError, take_action
from starter.intake import submit
from tests.conftest import fictional_personal_data, make_intake
from worker import data_converter
from workflows.petition import PetitionWorkflow

UNIT = "QS-HRSS"
HANDLER = Actor(id="QS-HRSS.h1", role=Role.HANDLER, unit=UNIT)
HEAD = Actor(id="QS-HRSS.head", role=Role.UNIT_HEAD, unit=UNIT)
PETITIONER = Actor(id="petitioner-pd", role=Role.PETITIONER, unit="public")
REVIEWER = Actor(id="YZ-HRSS.h1", role=Role.HANDLER, unit="YZ-HRSS")
RE_REVIEWER = Actor(id="PROV-XFJ.h1", role=Role.HANDLER, unit="PROV-XFJ")


def _personal() -> dict[str, str]:
    return fictional_personal_data("opinion", "答复意见")


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        extra = {k: v for k, v in record.__dict__.items() if k not in _PLAIN_RECORD}
        self.lines.append(f"{record.name} {record.getMessage()} {extra} "
                          f"{record.exc_text or ''}")


_PLAIN_RECORD = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None)))


@contextmanager
def _all_logs() -> Iterator[_Capture]:
    root = logging.getLogger()
    handler, level = _Capture(), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _leaks(where: str, blob: str | bytes, secrets: dict[str, str]) -> list[str]:
    data = blob if isinstance(blob, bytes) else blob.encode()
    return [f"{field} in {where}" for field, value in secrets.items()
            if value.encode() in data]


async def _whole_life(client: Client, sessions: Any, task_queue: str,
                      secrets: dict[str, str]) -> str:
    intake = make_intake(unit=UNIT, content=secrets["content"], petitioner={
        "name": secrets["name"], "id_number": secrets["id_number"], "phone": secrets["phone"],
        "address": secrets["address"]})
    status = await submit(client, sessions, intake, task_queue=task_queue)
    wf = status.workflow_id

    async def act(action: Action, command: Any) -> None:
        await take_action(client, sessions, wf, action, command)

    # A refusal and its failure message belong to the run.
    with pytest.raises(ActionError, match=r"^refused \[stage\]: "):
        await act(Action.REPLY, Reply(actor=HANDLER, opinion=secrets["opinion"]))
    await act(Action.ACCEPT, Accept(actor=HANDLER))
    await act(Action.REQUEST_ASSISTANCE, RequestAssistance(
        actor=HANDLER, kind="hardship", amount_yuan=Decimal("2000"), reason="生活困难"))
    await act(Action.DECIDE_ASSISTANCE, DecideAssistance(
        actor=HEAD, application_no=1, approved=True, reason="同意"))
    await act(Action.REPLY, Reply(actor=HANDLER, opinion=secrets["opinion"]))
    await act(Action.RATE, Rate(actor=PETITIONER, satisfaction="unsatisfied"))
    await act(Action.REQUEST_REVIEW, RequestReview(actor=PETITIONER, review_organ="YZ-HRSS",
                                                   reason="不服"))
    await act(Action.REVIEW_OPINION, ReviewOpinion(actor=REVIEWER, opinion="维持"))
    await act(Action.REQUEST_RE_REVIEW, RequestReReview(actor=PETITIONER,
                                                        re_review_organ="PROV-XFJ",
                                                        reason="仍不服"))
    await act(Action.RE_REVIEW_OPINION, ReReviewOpinion(actor=RE_REVIEWER, opinion="终结"))
    final = await PetitionClient(client, task_queue).handle(wf).result()
    assert final.stage is Stage.CLOSED and final.assistance[0].status == "paid"
    return wf


async def test_no_personal_field_outside_the_encrypted_payloads(
        running_worker, sessions, task_queue, tmp_path: Path) -> None:
    secrets = _personal()
    db_file = tmp_path / "temporal.db"
    env = await start_dev_server(db_filename=str(db_file), ui=False,
                                 data_converter=data_converter())
    async with env:
        client = env.client
        with _all_logs() as logs:
            async with running_worker(client):
                wf = await _whole_life(client, sessions, task_queue, secrets)
        # A control petition started without the codec (raw, not submitted: no worker
        # serves it): its canary must be found below, or the scans prove nothing.
        canary = f"CANARY-{uuid.uuid4().hex}"
        plain = Client(client.service_client, namespace=client.namespace,
                       data_converter=pydantic_data_converter)
        control = await plain.start_workflow(
            PetitionWorkflow.run, PetitionStart(intake=make_intake(content=canary)),
            id=f"control-{uuid.uuid4().hex[:8]}", task_queue=f"nobody-{task_queue}")

        leaks: list[str] = []
        raw = Client(client.service_client, namespace=client.namespace)  # no codec at all
        handle = raw.get_workflow_handle(wf)
        leaks += _leaks("the workflow id", wf, secrets)
        description = await handle.describe()
        leaks += _leaks("search attributes", repr(description.search_attributes), secrets)
        leaks += _leaks("describe", description.raw_description.SerializeToString(), secrets)
        assert description.search_attributes["PetitionStage"] == ["closed"]

        async def listed() -> list[Any]:
            for _ in range(60):
                found = [w async for w in raw.list_workflows(f'WorkflowId = "{wf}"')]
                if found and found[0].status is not None and found[0].close_time:
                    return found
                await asyncio.sleep(0.5)
            return found

        [execution] = await listed()
        leaks += _leaks("visibility", execution.raw_info.SerializeToString(), secrets)
        leaks += _leaks("memo", repr(await execution.memo()), secrets)

        history = await handle.fetch_history()
        leaks += _leaks("the history", b"".join(e.SerializeToString() for e in history.events),
                        secrets)
        assert clear_payloads(history.events) == []
        control_history = await raw.get_workflow_handle(control.id).fetch_history()
        assert canary.encode() in b"".join(e.SerializeToString() for e in control_history.events)
        await control.terminate(reason="control")

        await asyncio.sleep(1.0)  # let SQLite's write-ahead log take the last writes
        on_disk = await asyncio.to_thread(
            lambda: b"".join(p.read_bytes() for p in tmp_path.glob("temporal.db*")))
        assert canary.encode() in on_disk, "the disk scan cannot see clear text"
        leaks += _leaks("the Temporal server's database file", on_disk, secrets)

    log_text = "\n".join(logs.lines)
    assert len(logs.lines) > 50 and wf in log_text  # the logs were captured, with the case
    leaks += _leaks("the worker and activity logs", log_text, secrets)
    async with sessions() as session:  # notices go out by SMS and letter: no personal data
        notices = (await session.scalars(select(Notice).join(
            Petition, Petition.id == Notice.petition_id).where(Petition.workflow_id == wf))).all()
    assert len(notices) >= 5
    vault = vault_from_settings(get_settings(), sessions)
    for notice in notices:
        body = (await vault.open(notice.body_sealed, notice_where(notice.idempotency_key)))
        leaks += _leaks("a notice", f"{notice.recipient_ref} {body.decode()}", secrets)
    assert leaks == []
