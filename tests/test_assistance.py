"""Issue 4: assistance is capped at 36 x the average monthly wage unless a leader approves an
exception, and is paid exactly once, even when the worker dies between the payment's commit
and the activity's answer (real PostgreSQL, real Temporal worker)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import select, update
from temporalio.api.enums.v1 import EventType
from temporalio.exceptions import ApplicationError

from activities import build_desks
from activities.assistance import payment_key
from activities.contracts import (
    AssistanceApplicationInput,
    AssistanceDecisionInput,
    DisbursementInput,
    Registration,
)
from adapters.petition_client import ActionRefused, PetitionClient
from adapters.tables import AssistanceApplication, AssistancePayment
from domain.models import Accept, Actor, DecideAssistance, RequestAssistance, Role
from domain.policy import load_profile
from tests.desk_helpers import count, register, run

HANDLER = Actor(id="qs-xfj-h1", role=Role.HANDLER, unit="QS-XFJ")
HEAD = Actor(id="QS-XFJ.head", role=Role.UNIT_HEAD, unit="QS-XFJ")
LEADER = Actor(id="QS-LDR1", role=Role.LEADER, unit="QS-XFJ")
NOW = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)
POLICY = load_profile("national").assistance
CAP = POLICY.cap_yuan  # 36 x the configured average monthly wage


class CrashOnce:
    """The fault drill: the worker 'dies' once, right after the payment is committed."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, key: str) -> None:
        self.calls.append(key)
        if len(self.calls) == 1:
            raise RuntimeError("worker lost between the payment's commit and its answer")


def test_the_cap_is_36_times_the_configured_average_monthly_wage():
    assert POLICY.cap_multiplier == 36
    assert POLICY.cap_yuan == POLICY.average_monthly_wage_yuan * 36


async def _applied(desks, amount: Decimal) -> tuple[Registration, str]:
    reg = await register(desks)
    wf = f"petition-{uuid.uuid4().hex[:10]}"
    await run(desks.assistance.file_assistance_application, AssistanceApplicationInput(
        workflow_id=wf, petition_id=reg.petition_id, seq=3, application_no=1, kind="judicial",
        amount_yuan=amount, persons=1, reason="司法救助 judicial assistance",
        requested_by=HANDLER.id, requested_at=NOW))
    return reg, wf


def _decision(reg: Registration, wf: str, *, by: Actor, exception: bool = False,
              amount: Decimal | None = None) -> AssistanceDecisionInput:
    return AssistanceDecisionInput(
        workflow_id=wf, petition_id=reg.petition_id, seq=4, application_no=1, approved=True,
        amount_yuan=amount, exception_approved=exception, decided_by=by, decided_at=NOW,
        cap_yuan=CAP, leader_threshold_yuan=POLICY.leader_threshold_yuan)


async def _application(sessions, petition_id: int) -> AssistanceApplication:
    async with sessions() as session:
        app = await session.scalar(select(AssistanceApplication).where(
            AssistanceApplication.petition_id == petition_id))
        assert app is not None
        return app


async def test_above_the_cap_without_an_exception_is_refused_and_nothing_changes(sessions):
    desks = build_desks(sessions)
    reg, wf = await _applied(desks, CAP + Decimal("0.01"))
    with pytest.raises(ApplicationError) as refused:
        await run(desks.assistance.decide_assistance, _decision(reg, wf, by=LEADER))
    assert refused.value.non_retryable
    assert f"exceeds the cap of {CAP} yuan" in refused.value.message
    assert "without an approved exception" in refused.value.message
    app = await _application(sessions, reg.petition_id)
    assert app.status == "requested" and app.approved_amount_yuan is None
    with pytest.raises(ApplicationError, match="not approved for payment"):
        await run(desks.assistance.disburse_assistance, DisbursementInput(
            workflow_id=wf, petition_id=reg.petition_id, application_no=1))
    assert await count(sessions, AssistancePayment,
                       AssistancePayment.petition_id == reg.petition_id) == 0


async def test_only_a_leader_may_approve_an_exception(sessions):
    desks = build_desks(sessions)
    reg, wf = await _applied(desks, CAP * 2)
    with pytest.raises(ApplicationError, match="only a leader may approve an exception"):
        await run(desks.assistance.decide_assistance,
                  _decision(reg, wf, by=HEAD, exception=True))


async def test_with_a_leaders_exception_it_is_paid_once_even_when_paid_at_once_thrice(sessions):
    desks = build_desks(sessions)
    amount = CAP + Decimal("50000.00")
    reg, wf = await _applied(desks, amount)
    decided = await run(desks.assistance.decide_assistance,
                        _decision(reg, wf, by=LEADER, exception=True))
    assert decided.status == "approved" and decided.approved_amount_yuan == amount
    payment = DisbursementInput(workflow_id=wf, petition_id=reg.petition_id, application_no=1)
    results = await asyncio.gather(*(run(desks.assistance.disburse_assistance, payment)
                                     for _ in range(3)))
    assert len({r.payment_ref for r in results}) == 1 and results[0].amount_yuan == amount
    assert await count(sessions, AssistancePayment,
                       AssistancePayment.petition_id == reg.petition_id) == 1
    assert (await _application(sessions, reg.petition_id)).status == "paid"


async def test_the_payment_checks_the_cap_again(sessions):
    desks = build_desks(sessions)
    reg, wf = await _applied(desks, Decimal("1000.00"))
    await run(desks.assistance.decide_assistance, _decision(reg, wf, by=HEAD))
    # A decision row tampered with after the fact (or written by an older release).
    async with sessions() as session:
        await session.execute(update(AssistanceApplication)
                              .where(AssistanceApplication.petition_id == reg.petition_id)
                              .values(approved_amount_yuan=CAP + 1))
        await session.commit()
    with pytest.raises(ApplicationError, match="exceeds the cap .* not paid") as refused:
        await run(desks.assistance.disburse_assistance, DisbursementInput(
            workflow_id=wf, petition_id=reg.petition_id, application_no=1))
    assert refused.value.non_retryable
    assert await count(sessions, AssistancePayment,
                       AssistancePayment.petition_id == reg.petition_id) == 0


async def test_interrupted_after_the_payment_then_retried_pays_once(sessions):
    crash = CrashOnce()
    desks = build_desks(sessions, after_payment_written=crash)
    reg, wf = await _applied(desks, Decimal("8000.00"))
    await run(desks.assistance.decide_assistance, _decision(reg, wf, by=HEAD))
    payment = DisbursementInput(workflow_id=wf, petition_id=reg.petition_id, application_no=1)
    with pytest.raises(RuntimeError, match="worker lost"):
        await run(desks.assistance.disburse_assistance, payment)
    retried = await run(desks.assistance.disburse_assistance, payment)
    async with sessions() as session:
        rows = (await session.scalars(select(AssistancePayment).where(
            AssistancePayment.petition_id == reg.petition_id))).all()
    assert len(rows) == 1
    assert retried.payment_ref == rows[0].payment_ref and retried.amount_yuan == Decimal("8000")
    # The retry found the payment: the hook ran only for the write that made it.
    assert crash.calls == [payment_key(wf, 1)]


async def test_a_worker_crash_after_paying_is_retried_by_temporal_and_pays_once(
        dev_env, running_worker, petitions, sessions):
    crash = CrashOnce()
    desks = build_desks(sessions, after_payment_written=crash)
    async with running_worker(dev_env.client, desks):
        handle = await petitions.start(dev_env)
        client = PetitionClient(dev_env.client, task_queue="")
        await client.act(handle.id, Accept(actor=HANDLER))
        await client.act(handle.id, RequestAssistance(
            actor=HANDLER, kind="hardship", amount_yuan=Decimal("20000.00"), persons=3,
            reason="因病致困 hardship after illness"))
        status = await client.act(handle.id, DecideAssistance(
            actor=HEAD, application_no=1, approved=True, reason="符合条件"))
    assert status is not None
    [paid] = status.assistance
    assert paid.status == "paid" and paid.payment_ref
    async with sessions() as session:
        rows = (await session.scalars(select(AssistancePayment).where(
            AssistancePayment.idempotency_key == payment_key(handle.id, 1)))).all()
    assert [r.payment_ref for r in rows] == [paid.payment_ref]
    assert rows[0].amount_yuan == Decimal("20000.00")
    assert len(crash.calls) == 1  # the retry found the payment and did not write again
    # Temporal retried the activity: its completed attempt was the second.
    attempts = [e.activity_task_started_event_attributes.attempt
                async for e in handle.fetch_history_events()
                if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED]
    assert 2 in attempts


async def test_above_the_cap_through_the_workflow_is_refused_then_paid_with_an_exception(
        dev_env, running_worker, petitions, sessions):
    amount = CAP + Decimal("1000.00")
    async with running_worker(dev_env.client):
        handle = await petitions.start(dev_env)
        client = PetitionClient(dev_env.client, task_queue="")
        await client.act(handle.id, Accept(actor=HANDLER))
        await client.act(handle.id, RequestAssistance(
            actor=HANDLER, kind="judicial", amount_yuan=amount, reason="重大伤残 grave injury"))
        with pytest.raises(ActionRefused) as refused:
            await client.act(handle.id, DecideAssistance(
                actor=LEADER, application_no=1, approved=True, reason="超限"))
        refusal = refused.value.refusal
        assert (refusal.rule, refusal.field) == ("assistance:cap", "amount_yuan")
        assert refusal.details["cap_yuan"] == str(CAP)
        assert f"exceeds the cap of {CAP} yuan" in str(refusal)
        assert (await client.status(handle.id)).assistance[0].status == "requested"
        status = await client.act(handle.id, DecideAssistance(
            actor=LEADER, application_no=1, approved=True, exception_approved=True,
            reason="特殊困难，报经批准 exception approved"))
    assert status is not None and status.assistance[0].status == "paid"
    assert await count(sessions, AssistancePayment,
                       AssistancePayment.idempotency_key == payment_key(handle.id, 1)) == 1
