"""Issue 15, part 2: bulk reassignment (批量转办) as one Temporal batch signal.

Against the dev server, a real worker and the petition service: 50 open cases held by
handler A of one unit move to handler B when the unit head confirms the bulk
reassignment on /approvals/reassign: the batch completes, every case has handler B (the
workflow's status and the read model), each has exactly one audit record of the job, and
the same batch signal delivered a second time moves and audits nothing more. Cases of
another handler or unit are untouched. Forged orders -- a bad signature, a valid order
sent to a case of another unit, an order altered after signing -- change nothing and are
recorded as refused.

The pure pieces (the order's checks, the batch assertion, the codec's batch binding) are
tested without servers below.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from temporalio.api.common.v1 import Payload, Payloads, WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import SignalWorkflowExecutionRequest
from temporalio.client import Client

from adapters.batch_reassign import BatchReassigner, visibility_query
from adapters.petition_client import PetitionClient
from adapters.settings import get_settings
from adapters.tables import Petition, PetitionEvent
from devstack.temporal_server import settled
from domain.case import CaseState
from domain.models import Actor, Assign, Role, Stage
from domain.reassignment import SIGNAL, BatchReassign, audit_detail, digest, refusal
from security.assertion import (
    AssertionRefused,
    BatchAssertion,
    assertion_ring,
    sign,
    verify,
    verify_batch,
)
from security.codec import Binding, CodecKeyError, EncryptionCodec, KeyRing, generate_key
from service.accounts_cmd import set_password
from tests.conftest import make_intake
from tests.service_helpers import PASSWORD, running_service

UNIT, OTHER_UNIT, FAR_UNIT = "QS-XFJ", "QS-HRSS", "BS-XFJ"
A, B, HEAD = f"{UNIT}.h1", f"{UNIT}.h2", f"{UNIT}.head"
CASES = 50
PATIENCE = 180.0


def head_of(unit: str) -> Actor:
    return Actor(id=f"{unit}.head", role=Role.UNIT_HEAD, unit=unit)


async def _eventually(check: Any, what: str, patience: float = PATIENCE) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    while True:
        found = await check()
        if found:
            return found
        if loop.time() > deadline:
            raise AssertionError(f"never {what}")
        await asyncio.sleep(0.5)


async def _open_case(petitions: PetitionClient, tracker: Any, unit: str,
                     handler: str | None) -> str:
    """A registered case of `unit`, assigned to `handler` by the unit's head."""
    status = await petitions.submit(make_intake(unit=unit))
    tracker.track(petitions.handle(status.workflow_id))
    if handler is not None:
        await petitions.act(status.workflow_id, Assign(
            actor=head_of(unit), handler_id=handler, request_id=f"t-{uuid.uuid4().hex}"))
    return status.workflow_id


async def _sign_in(http: httpx.AsyncClient, sessions: Any, person: str) -> None:
    await set_password(sessions, person, PASSWORD)
    form = await http.get("/signin")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token, form.text
    answer = await http.post("/signin", data={"username": person, "password": PASSWORD,
                                               "csrf_token": token[1], "next": ""})
    assert answer.status_code == 303, answer.text


def _field(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no {name} in the page"
    return found[1]


async def _events(sessions: Any, workflow_ids: list[str]) -> list[PetitionEvent]:
    async with sessions() as session:
        return list((await session.scalars(select(PetitionEvent).where(
            PetitionEvent.workflow_id.in_(workflow_ids),
            PetitionEvent.action == "assign"))).all())


async def _batch_input(client: Client, workflow_id: str) -> Payloads:
    """The batch signal's input exactly as the case received it (still encrypted)."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            signaled = event.workflow_execution_signaled_event_attributes
            if signaled.signal_name == SIGNAL:
                return signaled.input
    raise AssertionError(f"{workflow_id} received no batch signal")


async def _deliver(client: Client, workflow_id: str, payloads: Payloads) -> None:
    """Send a batch's input to one case as the batcher does: the input, no header."""
    await client.workflow_service.signal_workflow_execution(SignalWorkflowExecutionRequest(
        namespace=client.namespace, workflow_execution=WorkflowExecution(workflow_id=workflow_id),
        signal_name=SIGNAL, input=payloads, identity="test-redelivery",
        request_id=uuid.uuid4().hex))
    assert await settled(client, workflow_id, within=30.0)


@pytest.mark.servers
async def test_bulk_reassignment_moves_every_open_case_once(
        sessions, dev_env, running_worker, task_queue, petitions) -> None:
    client = dev_env.client
    cases = PetitionClient(client, task_queue)
    reassigner = BatchReassigner(client)
    async with running_worker(client), running_service(sessions, client, task_queue) as url, \
            httpx.AsyncClient(base_url=url, timeout=120, follow_redirects=False) as http:
        limit = asyncio.Semaphore(10)

        async def case(unit: str, handler: str | None) -> str:
            async with limit:
                return await _open_case(cases, petitions, unit, handler)

        moving = await asyncio.gather(*(case(UNIT, A) for _ in range(CASES)))
        heads_own = await asyncio.gather(*(case(UNIT, HEAD) for _ in range(2)))
        cross_unit = await case(OTHER_UNIT, A)  # another unit's case, its handler id A's
        far = await case(FAR_UNIT, f"{FAR_UNIT}.h1")
        # Visibility is eventually consistent: the batch sees what it counts.
        await _eventually(lambda: _counted(reassigner, CASES), f"counted {CASES} in visibility")

        await _sign_in(http, sessions, HEAD)
        check = await http.get("/approvals/reassign",
                               params={"from_handler": A, "to_handler": B})
        assert check.status_code == 200, check.text
        assert f"共有{CASES}件在办案件" in check.text
        started = await http.post("/approvals/reassign", data={
            "csrf_token": _field(check.text, "csrf_token"),
            "request_id": _field(check.text, "request_id"),
            "from_handler": A, "to_handler": B})
        assert started.status_code == 303, started.text
        job_id = started.headers["location"].rsplit("/", 1)[1]
        # The same confirmation posted again (a double click) starts nothing new.
        again = await http.post("/approvals/reassign", data={
            "csrf_token": _field(check.text, "csrf_token"),
            "request_id": _field(check.text, "request_id"),
            "from_handler": A, "to_handler": B})
        assert again.headers.get("location") == started.headers["location"]

        progress = await _eventually(lambda: _finished(reassigner, job_id), "finished")
        assert (progress.state, progress.total, progress.failed) == ("completed", CASES, 0)
        assert (progress.unit, progress.from_handler, progress.to_handler,
                progress.ordered_by) == (UNIT, A, B, HEAD)

        async def all_moved() -> bool:
            statuses = await asyncio.gather(*(cases.status(w) for w in moving))
            return all(s.handler_id == B for s in statuses)

        await _eventually(all_moved, "moved every case to B")
        await _eventually(lambda: _read_model_has(sessions, moving, B), "read model says B")
        page = await http.get(f"/approvals/reassign/{job_id}")
        assert f"转办完成：{CASES}件案件已由" in page.text, page.text

        def job_records(events: list[PetitionEvent]) -> dict[str, int]:
            counts: dict[str, int] = {}
            for e in events:
                if e.detail.get("batch_job") == job_id or e.detail.get("request_id") == job_id:
                    counts[e.workflow_id] = counts.get(e.workflow_id, 0) + 1
            return counts

        events = await _events(sessions, moving)
        assert job_records(events) == {w: 1 for w in moving}
        for e in events:
            if e.detail.get("batch_job") == job_id:
                assert e.accepted and e.actor_id == HEAD
                assert e.detail == {"batch_job": job_id, "reassigned_from": A, "handler_id": B}

        # The same batch signal delivered a second time: nothing moves, nothing is audited.
        order_input = await _batch_input(client, moving[0])
        await asyncio.gather(*(_deliver(client, w, order_input) for w in moving))
        assert job_records(await _events(sessions, moving)) == {w: 1 for w in moving}
        statuses = await asyncio.gather(*(cases.status(w) for w in moving))
        assert {(s.handler_id, s.refused_actions) for s in statuses} == {(B, 0)}

        # Cases of another handler, and of other units, are untouched.
        for workflow_id, handler in [*((w, HEAD) for w in heads_own), (cross_unit, A),
                                     (far, f"{FAR_UNIT}.h1")]:
            status = await cases.status(workflow_id)
            assert (status.handler_id, status.refused_actions) == (handler, 0), workflow_id
            assert not [e for e in await _events(sessions, [workflow_id])
                        if e.detail.get("batch_job")]

        # Forged orders change nothing and are recorded as refused.
        ring = assertion_ring(get_settings())
        wrong_key = KeyRing(keys={ring.active: generate_key()}, active=ring.active)
        forger = BatchReassigner(client, ring=wrong_key)
        badly_signed = await forger.order(_job(), UNIT, HEAD, B, head_of(UNIT))
        await _deliver(client, heads_own[0], await reassigner.encoded(badly_signed))
        # A valid order of this unit, sent to a case of another unit its handler holds.
        valid = await reassigner.order(_job(), UNIT, A, B, head_of(UNIT))
        await _deliver(client, cross_unit, await reassigner.encoded(valid))
        # A valid order altered after signing (another taker).
        altered = (await reassigner.order(_job(), UNIT, HEAD, B, head_of(UNIT))).model_copy(
            update={"to_handler": f"{UNIT}.h9"})
        await _deliver(client, heads_own[1], await reassigner.encoded(altered))
        for workflow_id, order, handler, rule in [
                (heads_own[0], badly_signed, HEAD, "assertion:signature"),
                (cross_unit, valid, A, "batch:unit"),
                (heads_own[1], altered, HEAD, "assertion:payload")]:
            status = await cases.status(workflow_id)
            assert (status.handler_id, status.refused_actions) == (handler, 1), workflow_id
            [refused] = [e for e in await _events(sessions, [workflow_id])
                         if e.detail.get("request_id") == order.job_id]
            assert not refused.accepted and f"[{rule}]" in (refused.refusal or ""), \
                refused.refusal


def _job() -> str:
    return f"reassign-{uuid.uuid4().hex}"


async def _counted(reassigner: BatchReassigner, expected: int) -> bool:
    return await reassigner.count(UNIT, A) == expected


async def _finished(reassigner: BatchReassigner, job_id: str) -> Any:
    found = await reassigner.describe(job_id)
    return found if found is not None and found.state != "running" else None


async def _read_model_has(sessions: Any, workflow_ids: list[str], handler: str) -> bool:
    async with sessions() as session:
        held = (await session.scalars(select(Petition.handler_id).where(
            Petition.workflow_id.in_(workflow_ids)))).all()
    return len(held) == len(workflow_ids) and set(held) == {handler}


# ------------------------------------------------------------- without servers


def _case(**overrides: Any) -> CaseState:
    from domain.case import open_case
    from domain.policy import load_profile

    intake = make_intake(unit=UNIT)
    from domain.case import UnitFacts
    case = open_case(workflow_id="petition-x", petition_id=1, registration_no="QS-1",
                     profile=load_profile("national"), intake=intake,
                     unit=UnitFacts(code=UNIT, name="青山县信访局", kind="petition_bureau",
                                    level="county"))
    return case.model_copy(update={"handler_id": A, "stage": Stage.IN_HANDLING,
                                   "responsible_unit": UNIT, **overrides})


def _order(**overrides: Any) -> BatchReassign:
    base: dict[str, Any] = {"job_id": _job(), "unit": UNIT, "from_handler": A, "to_handler": B,
                            "actor": head_of(UNIT), "assertion": "-"}
    return BatchReassign(**{**base, **overrides})


@pytest.mark.parametrize(("case", "order", "rule"), [
    ({}, {}, None),
    ({"handler_id": HEAD}, {}, "batch:handler"),
    ({"responsible_unit": OTHER_UNIT}, {}, "batch:unit"),
    ({}, {"actor": Actor(id=A, role=Role.HANDLER, unit=UNIT)}, "batch:actor"),
    ({}, {"actor": head_of(OTHER_UNIT)}, "batch:actor"),
    ({}, {"to_handler": A}, "batch:handler"),
], ids=["moves", "other-handler", "other-unit", "not-a-head", "another-units-head",
        "same-handler"])
def test_a_case_follows_an_order_only_if_it_is_the_units_and_the_handlers(
        case: dict[str, Any], order: dict[str, Any], rule: str | None) -> None:
    found = refusal(_case(**case), _order(**order))
    assert (found.rule if found else None) == rule
    assert audit_detail(_order()) .keys() == {"batch_job", "reassigned_from"}


NOW = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
RING = KeyRing(keys={"k1": b"k" * 32}, active="k1")


def _claims(order: BatchReassign, **overrides: Any) -> BatchAssertion:
    base: dict[str, Any] = dict(
        action=SIGNAL, namespace="default", job_id=order.job_id, unit=order.unit,
        from_handler=order.from_handler, to_handler=order.to_handler, actor=order.actor,
        digest=digest(order), expires_at=NOW + timedelta(minutes=30))
    return BatchAssertion(**{**base, **overrides})


def test_a_batch_assertion_is_scoped_to_its_namespace_order_and_time() -> None:
    order = _order()
    token = sign(RING, _claims(order))
    claims = verify_batch(RING, token, action=SIGNAL, namespace="default",
                          digest=digest(order), now=NOW)
    assert claims.job_id == order.job_id
    # The assertion itself is not covered by the digest: the signed order is the same one.
    assert digest(order.model_copy(update={"assertion": token})) == digest(order)
    for kwargs, rule in [
            ({"namespace": "other"}, "assertion:scope"),
            ({"action": "assign"}, "assertion:scope"),
            ({"digest": digest(_order(to_handler=f"{UNIT}.h9"))}, "assertion:payload"),
            ({"now": NOW + timedelta(minutes=31)}, "assertion:expired")]:
        args: dict[str, Any] = {"action": SIGNAL, "namespace": "default",
                                "digest": digest(order), "now": NOW, **kwargs}
        with pytest.raises(AssertionRefused) as refused:
            verify_batch(RING, token, **args)
        assert refused.value.rule == rule
    with pytest.raises(AssertionRefused, match="signature"):
        verify_batch(KeyRing(keys={"k1": b"x" * 32}, active="k1"), token, action=SIGNAL,
                     namespace="default", digest=digest(order), now=NOW)


def test_a_batch_token_never_passes_as_an_actions_assertion() -> None:
    """Domain separation: the batch MAC covers a prefix an action's MAC does not."""
    order = _order()
    token = sign(RING, _claims(order))
    with pytest.raises(AssertionRefused) as refused:
        verify(RING, token, action=SIGNAL, workflow_id="petition-x", digest=digest(order),
               now=NOW)
    assert refused.value.rule == "assertion:signature"


def _clear(order: BatchReassign) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=order.model_dump_json().encode())


def test_a_batch_payload_is_bound_to_its_namespace_and_job_and_carries_only_its_order(
        ) -> None:
    codec = EncryptionCodec(KeyRing(keys={"c1": os.urandom(32)}, active="c1"))
    order = _order()
    batch = codec.bound(Binding.batch("default", order.job_id))
    sealed = batch.encrypt(_clear(order))
    # Any petition of the namespace opens it (the batch goes to many), as the order.
    for workflow_id in ("petition-a", "petition-b"):
        opened = codec.bound(Binding("default", workflow_id)).decrypt(sealed)
        assert json.loads(opened.data)["job_id"] == order.job_id
    with pytest.raises(CodecKeyError, match="namespace"):
        codec.bound(Binding("other", "petition-a")).decrypt(sealed)
    with pytest.raises(CodecKeyError, match="batch job"):
        codec.bound(Binding.batch("default", _job())).decrypt(sealed)
    # The job named in the metadata is authenticated: moved to another job, it fails.
    moved = Payload()
    moved.CopyFrom(sealed)
    moved.metadata["encryption-batch-job"] = _job().encode()
    with pytest.raises(CodecKeyError, match="tampered"):
        codec.bound(Binding("default", "petition-a")).decrypt(moved)
    # A batch binding carries nothing but its own job's order.
    for other in (Payload(metadata={"encoding": b"json/plain"},
                          data=b'{"actor": {}, "handler_id": "x"}'),
                  _clear(_order())):
        with pytest.raises(CodecKeyError, match="only that batch's order"):
            batch.encrypt(other)
    # And a workflow-bound payload is never read as a batch's.
    bound = codec.bound(Binding("default", "petition-a")).encrypt(_clear(order))
    with pytest.raises(CodecKeyError):
        codec.bound(Binding("default", "petition-b")).decrypt(bound)


def test_the_batch_query_selects_the_units_open_cases_of_the_handler() -> None:
    query = visibility_query(UNIT, A)
    assert f"Handler = '{A}'" in query and f"ResponsibleUnit = '{UNIT}'" in query
    assert "PetitionStage IN ('registered', 'in_handling')" in query
    assert "WorkflowType = 'PetitionWorkflow'" in query
    with pytest.raises(ValueError):
        visibility_query(UNIT, "x' OR 1=1 OR Handler='y")
