"""Issue 4: every activity desk, run twice with the same input, writes once and answers the
same; integrity violations are clear refusals, never endless retries (real PostgreSQL)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select
from temporalio.api.enums.v1 import EventType
from temporalio.exceptions import ApplicationError

from activities import build_desks
from activities.contracts import (
    AssistanceApplicationInput,
    AssistanceDecisionInput,
    DisbursementInput,
    EscalationInput,
    HearingBooking,
    HearingRecordInput,
    NoticeInput,
    RegisterPetitionInput,
    TerminationInput,
    TransferOrderInput,
    TransitionBatch,
    UnitLookup,
)
from activities.registry import reserve_registration_no
from activities.transfers import order_number
from adapters.petition_client import workflow_id_for
from adapters.tables import (
    AssistanceApplication,
    AssistancePayment,
    Escalation,
    Hearing,
    Notice,
    Petition,
    PetitionEvent,
    RegistrationNumber,
    TerminationEntry,
    TransferOrder,
)
from domain.case import (
    TransitionRecord,
)
from domain.models import Action, Actor, ClockName, Role, Stage
from tests.conftest import make_intake
from tests.desk_helpers import beijing, count, hearing_day, register, run
from workflows.petition import PetitionWorkflow

HANDLER = Actor(id="qs-xfj-h1", role=Role.HANDLER, unit="QS-XFJ")
LEADER = Actor(id="QS-LDR1", role=Role.LEADER, unit="QS-XFJ")
NOW = datetime(2026, 11, 2, 1, 30, tzinfo=UTC)


@pytest.fixture
def desks(sessions):
    return build_desks(sessions)


async def twice(fn, arg):
    """The same input twice in a row, then twice at once (a retry racing the original)."""
    first = await run(fn, arg)
    second = await run(fn, arg)
    third, fourth = await asyncio.gather(run(fn, arg), run(fn, arg))
    assert first == second == third == fourth
    return first


# ------------------------------------------------------------------- registry desk


async def test_register_petition_twice_and_concurrently_registers_once(desks, sessions):
    intake = make_intake()
    command = RegisterPetitionInput(workflow_id=workflow_id_for(intake.intake_id), intake=intake,
                                    registration_no=None, registered_at=NOW)
    registration = await twice(desks.registry.register_petition, command)
    assert registration.registration_no.startswith(f"QS-XFJ-{NOW.year}-")
    assert await count(sessions, Petition, Petition.intake_id == intake.intake_id) == 1
    assert await count(sessions, RegistrationNumber,
                       RegistrationNumber.intake_id == intake.intake_id) == 1


async def test_register_keeps_the_reserved_number_and_refuses_a_made_up_one(desks, sessions):
    intake = make_intake()
    reserved = await reserve_registration_no(sessions, intake)
    assert await reserve_registration_no(sessions, intake) == reserved
    made_up = RegisterPetitionInput(workflow_id=workflow_id_for(intake.intake_id), intake=intake,
                                    registration_no="QS-XFJ-1999-000001", registered_at=NOW)
    with pytest.raises(ApplicationError) as refused:
        await run(desks.registry.register_petition, made_up)
    assert refused.value.non_retryable and "was not reserved" in refused.value.message
    assert await count(sessions, Petition, Petition.intake_id == intake.intake_id) == 0
    good = made_up.model_copy(update={"registration_no": reserved})
    assert (await run(desks.registry.register_petition, good)).registration_no == reserved


async def test_registration_numbers_run_per_unit_and_beijing_year_without_gaps(sessions):
    # A year no other test registers in, so the counters start at 1.
    year = 2090 + uuid.uuid4().int % 9
    new_year_eve_utc = datetime(year - 1, 12, 31, 16, 30, tzinfo=UTC)  # 00:30 Beijing, Jan 1
    intakes = [make_intake(unit="QS-XFJ", received_at=new_year_eve_utc.isoformat())
               for _ in range(12)]
    intakes += [make_intake(unit="QS-HRSS", received_at=new_year_eve_utc.isoformat())
                for _ in range(5)]
    numbers = await asyncio.gather(*(reserve_registration_no(sessions, i) for i in intakes))
    xfj = sorted(n for n in numbers if n.startswith("QS-XFJ-"))
    hrss = sorted(n for n in numbers if n.startswith("QS-HRSS-"))
    assert xfj == [f"QS-XFJ-{year}-{seq:06d}" for seq in range(1, 13)]
    assert hrss == [f"QS-HRSS-{year}-{seq:06d}" for seq in range(1, 6)]
    # The same intake reserved again, even concurrently, keeps its one number.
    again = await asyncio.gather(*(reserve_registration_no(sessions, intakes[0])
                                   for _ in range(4)))
    assert set(again) == {numbers[0]}


async def test_two_intakes_on_one_matter_at_once_open_one_case(desks, sessions):
    first = make_intake()
    second = make_intake(petitioner=first.petitioner.model_dump(), subject=first.subject)
    a, b = await asyncio.gather(register(desks, first), register(desks, second))
    attached = [r for r in (a, b) if r.attached_to_workflow is not None]
    opened = [r for r in (a, b) if r.attached_to_workflow is None]
    assert len(attached) == 1 and len(opened) == 1
    async with sessions() as session:
        rows = {r.id: r for r in await session.scalars(
            select(Petition).where(Petition.id.in_([a.petition_id, b.petition_id])))}
    repeat = rows[attached[0].petition_id]
    assert repeat.stage == Stage.CLOSED and repeat.attached_to == attached[0].attached_to_workflow
    assert rows[opened[0].petition_id].stage == Stage.REGISTERED


async def test_a_record_written_twice_is_one_audit_row_and_never_rolls_back(desks, sessions):
    reg = await register(desks)
    wf = f"petition-{uuid.uuid4().hex[:8]}"
    record = TransitionRecord(workflow_id=wf, petition_id=reg.petition_id, seq=2,
                              action=Action.ACCEPT, actor=HANDLER, at=NOW,
                              from_stage=Stage.REGISTERED, to_stage=Stage.IN_HANDLING,
                              read_model={"stage": "in_handling", "responsible_unit": "QS-XFJ"})
    await twice(desks.records.record_transitions, TransitionBatch(records=[record]))
    assert await count(sessions, PetitionEvent, PetitionEvent.workflow_id == wf) == 1
    async with sessions() as session:
        row = await session.get(Petition, reg.petition_id)
        assert row is not None and row.stage == "in_handling" and row.last_seq == 2
        event = await session.scalar(select(PetitionEvent).where(PetitionEvent.workflow_id == wf))
        assert event is not None and event.action == "accept"
    # An older record arriving late never rolls the read model back.
    older = record.model_copy(update={"seq": 1, "action": Action.ASSIGN,
                                      "read_model": {"stage": "registered"}})
    await run(desks.records.record_transitions, TransitionBatch(records=[older]))
    async with sessions() as session:
        assert (await session.get(Petition, reg.petition_id)).stage == "in_handling"


async def test_audit_row_for_a_missing_petition_is_a_refusal_not_a_retry(desks, sessions):
    record = TransitionRecord(workflow_id="petition-nowhere", petition_id=2**40, seq=1,
                              action=Action.ACCEPT, actor=HANDLER, at=NOW,
                              from_stage=Stage.REGISTERED, to_stage=Stage.IN_HANDLING)
    with pytest.raises(ApplicationError) as refused:
        await run(desks.records.record_transitions, TransitionBatch(records=[record]))
    assert refused.value.non_retryable
    assert "does not exist" in refused.value.message and "petition_id" in refused.value.message


async def test_record_transitions_batch_twice_writes_each_row_once(desks, sessions):
    reg = await register(desks)
    wf = f"petition-{uuid.uuid4().hex[:8]}"
    records = [
        TransitionRecord(workflow_id=wf, petition_id=reg.petition_id, seq=2,
                         action=Action.ACCEPT, actor=HANDLER, at=NOW,
                         from_stage=Stage.REGISTERED, to_stage=Stage.IN_HANDLING,
                         read_model={"stage": "in_handling"}),
        TransitionRecord(workflow_id=wf, petition_id=reg.petition_id, seq=2,
                         action=Action.REPLY, actor=HANDLER, at=NOW, from_stage=Stage.IN_HANDLING,
                         to_stage=Stage.IN_HANDLING, accepted=False, refusal="refused [x]: y",
                         detail={"refusal_no": 1}),
        TransitionRecord(workflow_id=wf, petition_id=reg.petition_id, seq=3,
                         action=Action.ASSIGN, actor=HANDLER, at=NOW,
                         from_stage=Stage.IN_HANDLING, to_stage=Stage.IN_HANDLING,
                         read_model={"stage": "in_handling", "handler_id": HANDLER.id}),
    ]
    assert await twice(desks.records.record_transitions, TransitionBatch(records=records)) == 3
    assert await count(sessions, PetitionEvent, PetitionEvent.workflow_id == wf) == 3
    async with sessions() as session:
        row = await session.get(Petition, reg.petition_id)
        assert row is not None and row.handler_id == HANDLER.id and row.last_seq == 3
    missing = records[0].model_copy(update={"petition_id": 2**40, "workflow_id": "petition-0"})
    with pytest.raises(ApplicationError, match="does not exist") as refused:
        await run(desks.records.record_transitions, TransitionBatch(records=[missing]))
    assert refused.value.non_retryable


async def test_termination_registry_twice_enters_once(desks, sessions):
    reg = await register(desks)
    entry = TerminationInput(petition_id=reg.petition_id, registration_no=reg.registration_no,
                             concluded_at=NOW, unit="YZ-XFJ")
    assert await twice(desks.registry.enter_termination_registry, entry) == reg.registration_no
    assert await count(sessions, TerminationEntry,
                       TerminationEntry.petition_id == reg.petition_id) == 1


async def test_resolve_unit_answers_the_same_twice(desks):
    facts = await twice(desks.registry.resolve_unit, UnitLookup(code="QS-T1"))
    assert facts.parent == "QS-XFJ"


# --------------------------------------------------------------- transfers, notices


@pytest.mark.parametrize(("kind", "to_unit", "notices"), [
    ("transfer", "QS-HRSS", 0), ("assignment", "QS-T1", 0), ("diversion", "QS-COURT", 1)])
async def test_work_order_twice_is_issued_once(desks, sessions, kind, to_unit, notices):
    reg = await register(desks)
    wf = workflow_id_for(f"W-{uuid.uuid4().hex[:10]}")
    order = TransferOrderInput(workflow_id=wf, petition_id=reg.petition_id, seq=3, kind=kind,
                               from_unit="QS-XFJ", to_unit=to_unit, instructions="请依法处理",
                               issued_at=NOW)
    result = await twice(desks.transfers.issue_transfer_order, order)
    assert result.order_no.endswith(f"{reg.registration_no}-3")
    assert result.to_unit.code == to_unit
    assert await count(sessions, TransferOrder, TransferOrder.petition_id == reg.petition_id) == 1
    assert await count(sessions, Notice, Notice.petition_id == reg.petition_id,
                       Notice.template == "diversion_order") == notices


async def test_work_orders_of_petitions_with_similar_ids_never_collide(desks):
    # Intake ids ending alike once produced the same order number: an endless retry.
    suffix = uuid.uuid4().hex[:6]
    results = []
    for prefix in ("A", "B"):
        intake = make_intake(intake_id=f"{prefix}-{suffix}")
        reg = await register(desks, intake)
        results.append(await run(desks.transfers.issue_transfer_order, TransferOrderInput(
            workflow_id=workflow_id_for(intake.intake_id), petition_id=reg.petition_id, seq=2,
            kind="transfer", from_unit="QS-XFJ", to_unit="QS-HRSS", instructions=None,
            issued_at=NOW)))
    assert results[0].order_no != results[1].order_no


async def test_diversion_to_a_petition_bureau_is_refused(desks):
    reg = await register(desks)
    with pytest.raises(ApplicationError, match="not a competent organ") as refused:
        await run(desks.transfers.issue_transfer_order, TransferOrderInput(
            workflow_id="petition-x", petition_id=reg.petition_id, seq=2, kind="diversion",
            from_unit="QS-XFJ", to_unit="YZ-XFJ", instructions=None, issued_at=NOW))
    assert refused.value.non_retryable


async def test_send_notice_twice_queues_once(desks, sessions):
    reg = await register(desks)
    key = f"test:{uuid.uuid4().hex}:notice"
    notice = NoticeInput(idempotency_key=key, petition_id=reg.petition_id,
                         recipient_kind="petitioner", recipient_ref=reg.registration_no,
                         template="accept", body="受理告知 acceptance notice", at=NOW)
    await twice(desks.notices.send_notice, notice)
    assert await count(sessions, Notice, Notice.idempotency_key == key) == 1


async def test_notice_for_a_missing_petition_is_a_refusal(desks):
    notice = NoticeInput(idempotency_key=f"test:{uuid.uuid4().hex}", petition_id=2**40,
                         recipient_kind="unit", recipient_ref="QS-XFJ", template="x", body="x",
                         at=NOW)
    with pytest.raises(ApplicationError, match="does not exist") as refused:
        await run(desks.notices.send_notice, notice)
    assert refused.value.non_retryable


async def test_a_value_too_long_for_its_column_is_a_refusal_not_a_retry(desks, sessions):
    key = f"test:{uuid.uuid4().hex}"
    notice = NoticeInput(idempotency_key=key, petition_id=None, recipient_kind="unit",
                         recipient_ref="X" * 300, template="x", body="x", at=NOW)
    with pytest.raises(ApplicationError, match=r"refused \[data\]") as refused:
        await run(desks.notices.send_notice, notice)
    assert refused.value.non_retryable
    assert await count(sessions, Notice, Notice.idempotency_key == key) == 0


def test_work_order_numbers_fit_their_column_whatever_the_unit_code():
    assert order_number("transfer", "QS-XFJ-2026-000012", 42, 3) == "ZS-QS-XFJ-2026-000012-3"
    long_unit = f"{'U' * 60}-2026-000012"
    assert order_number("diversion", long_unit, 42, 3) == "FL-P42-3"


# ------------------------------------------------------- hearings, assistance, escalation


async def test_schedule_and_record_hearing_twice_books_once(desks, sessions):
    reg = await register(desks)
    booking = HearingBooking(workflow_id=f"petition-{uuid.uuid4().hex[:8]}",
                             petition_id=reg.petition_id, seq=4, hearing_no=1,
                             venue=f"Hearing room {uuid.uuid4().hex[:6]}",
                             starts_at=beijing(hearing_day(), 9), duration_minutes=90,
                             officers=["HO-01", "HO-02"])
    assert await twice(desks.hearings.schedule_hearing, booking) == 1
    assert await count(sessions, Hearing, Hearing.petition_id == reg.petition_id) == 1
    # Notices to the petitioner and to each officer, in the booking's transaction, once.
    assert await count(sessions, Notice, Notice.petition_id == reg.petition_id,
                       Notice.template == "hearing_scheduled") == 3
    record = HearingRecordInput(workflow_id=booking.workflow_id, petition_id=reg.petition_id,
                                seq=5, hearing_no=1, outcome="supported", summary="听证支持")
    assert await twice(desks.hearings.record_hearing_outcome, record) == 1


async def test_assistance_file_decide_disburse_twice_pays_once(desks, sessions):
    reg = await register(desks)
    wf = f"petition-{uuid.uuid4().hex[:8]}"
    application = AssistanceApplicationInput(
        workflow_id=wf, petition_id=reg.petition_id, seq=5, application_no=1, kind="hardship",
        amount_yuan=Decimal("12000.00"), persons=2, reason="生活困难", requested_by=HANDLER.id,
        requested_at=NOW)
    assert await twice(desks.assistance.file_assistance_application, application) == 1
    policy = reg.profile.assistance
    decision = AssistanceDecisionInput(
        workflow_id=wf, petition_id=reg.petition_id, seq=6, application_no=1, approved=True,
        amount_yuan=Decimal("10000.00"), exception_approved=False, decided_by=LEADER,
        decided_at=NOW, cap_yuan=policy.cap_yuan,
        leader_threshold_yuan=policy.leader_threshold_yuan)
    decided = await twice(desks.assistance.decide_assistance, decision)
    assert decided.status == "approved" and decided.approved_amount_yuan == Decimal("10000.00")
    paid = await twice(desks.assistance.disburse_assistance, DisbursementInput(
        workflow_id=wf, petition_id=reg.petition_id, application_no=1))
    assert paid.amount_yuan == Decimal("10000.00")
    assert await count(sessions, AssistancePayment,
                       AssistancePayment.petition_id == reg.petition_id) == 1
    assert await count(sessions, AssistanceApplication,
                       AssistanceApplication.petition_id == reg.petition_id) == 1
    # The decision retried after the payment still answers as it did.
    assert (await run(desks.assistance.decide_assistance, decision)).application_no == 1


async def test_a_second_application_under_a_taken_number_is_refused(desks):
    reg = await register(desks)
    first = AssistanceApplicationInput(
        workflow_id="petition-a", petition_id=reg.petition_id, seq=5, application_no=1,
        kind="judicial", amount_yuan=Decimal("100"), persons=1, reason="x",
        requested_by=HANDLER.id, requested_at=NOW)
    await run(desks.assistance.file_assistance_application, first)
    clash = first.model_copy(update={"seq": 9})  # another key, the same application number
    with pytest.raises(ApplicationError, match="conflicts with an existing record") as refused:
        await run(desks.assistance.file_assistance_application, clash)
    assert refused.value.non_retryable


async def test_escalate_twice_records_and_notifies_once(desks, sessions):
    reg = await register(desks, unit="QS-T1")
    escalation = EscalationInput(workflow_id=f"petition-{uuid.uuid4().hex[:8]}",
                                 petition_id=reg.petition_id,
                                 registration_no=reg.registration_no, clock=ClockName.ACCEPTANCE,
                                 level=1, unit="QS-T1", due_at=NOW, at=NOW + timedelta(minutes=1))
    result = await twice(desks.escalation.escalate, escalation)
    assert result.escalated_to_person == "QS-LDR1"
    assert await count(sessions, Escalation, Escalation.petition_id == reg.petition_id) == 1
    assert await count(sessions, Notice, Notice.petition_id == reg.petition_id,
                       Notice.template == "escalation") == 1
    async with sessions() as session:
        row = await session.get(Petition, reg.petition_id)
        assert row is not None and row.overdue and row.escalation_level == 1


# ---------------------------------------------------------- infrastructure errors retry


class DatabaseDownTwice:
    """A session maker whose first two sessions fail as if PostgreSQL were unreachable."""

    def __init__(self, sessions) -> None:
        self._sessions = sessions
        self.failures = 0

    def __call__(self):
        if self.failures < 2:
            self.failures += 1
            raise ConnectionRefusedError("could not connect to PostgreSQL")
        return self._sessions()


async def test_an_infrastructure_error_is_retried_by_temporal_and_registers_once(
        dev_env, running_worker, petitions, sessions):
    flaky = DatabaseDownTwice(sessions)
    intake = make_intake()
    async with running_worker(dev_env.client, build_desks(flaky)):
        handle = await petitions.start(dev_env, intake)
        status = await handle.query(PetitionWorkflow.status)
    assert flaky.failures == 2 and status.stage is Stage.REGISTERED
    assert await count(sessions, Petition, Petition.intake_id == intake.intake_id) == 1
    attempts = [e.activity_task_started_event_attributes.attempt
                async for e in handle.fetch_history_events()
                if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED]
    assert attempts[0] == 3  # register_petition: two failures, then the write
