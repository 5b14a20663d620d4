"""Issue 12: no action without a verified identity, checked by the workflow itself.

Whatever reaches a petition without an assertion the petition service signed — the raw
`temporal` CLI, the Web UI's Signal button, a start that skips registration, a captured
assertion replayed for another payload, an expired one — is refused, audited, and changes
nothing."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.client import Client, WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from adapters.petition_client import (
    CURRENT_ASSERTION,
    ActionRefused,
    AssertionHeader,
    PetitionClient,
    workflow_id_for,
)
from adapters.tables import Petition, PetitionEvent
from domain.case import PetitionStart
from domain.models import (
    Accept,
    Actor,
    DecideAssistance,
    RequestAssistance,
    Role,
    Stage,
    Withdraw,
)
from security.assertion import (
    LIFETIME,
    ActionAssertion,
    AssertionRefused,
    sign,
    verify,
)
from security.codec import KeyRing
from tests.conftest import make_intake
from tests.lifecycle_helpers import eventually
from workflows.interceptor import digest, digests

RING = KeyRing.parse("k1:" + "A" * 43 + "=")
NEW_RING = KeyRing.parse("k1:" + "A" * 43 + "=,k2:" + "B" * 43 + "=", active="k2")
NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)
UNIT = "QS-HRSS"
HANDLER = Actor(id="QS-HRSS.h1", role=Role.HANDLER, unit=UNIT)
STRANGER = Actor(id="nobody", role=Role.UNIT_HEAD, unit=UNIT)
SELF_MADE_LEADER = Actor(id="QS-HRSS.h1", role=Role.LEADER, unit=UNIT)
PETITIONER = Actor(id="petitioner-x", role=Role.PETITIONER, unit="public")


def claims(**changes: Any) -> ActionAssertion:
    base: dict[str, Any] = {"actor": HANDLER, "action": "accept", "workflow_id": "petition-a",
                            "request_id": "r1", "digest": digest(Accept(actor=HANDLER)),
                            "expires_at": NOW + LIFETIME}
    return ActionAssertion(**{**base, **changes})


def check(token: str | None, ring: KeyRing = RING, **changes: Any) -> ActionAssertion:
    expected: dict[str, Any] = {"action": "accept", "workflow_id": "petition-a",
                                "digest": digest(Accept(actor=HANDLER)), "now": NOW}
    return verify(ring, token, **{**expected, **changes})


# ------------------------------------------------------------------ the token


def test_a_signed_assertion_verifies_for_its_action_case_and_payload() -> None:
    assert check(sign(RING, claims())).actor == HANDLER


@pytest.mark.parametrize(("changes", "rule"), [
    ({"workflow_id": "petition-b"}, "assertion:scope"),
    ({"action": "decline"}, "assertion:scope"),
    ({"digest": digest(Accept(actor=HANDLER, note="其他"))}, "assertion:payload"),
    ({"now": NOW + LIFETIME}, "assertion:expired"),
])
def test_an_assertion_for_anything_else_is_refused(changes: dict[str, Any], rule: str) -> None:
    with pytest.raises(AssertionRefused) as refused:
        check(sign(RING, claims()), **changes)
    assert refused.value.rule == rule


def test_a_missing_forged_or_tampered_assertion_is_refused() -> None:
    token = sign(RING, claims())
    key_id, body, mac = token.split(".")
    forged = sign(KeyRing.parse("k1:" + "C" * 43 + "="), claims())
    other = sign(RING, claims(actor=SELF_MADE_LEADER))
    for bad, rule in ((None, "assertion:missing"), ("", "assertion:missing"),
                      (f"k9.{body}.{mac}", "assertion:key"), (forged, "assertion:signature"),
                      (f"{key_id}.{other.split('.')[1]}.{mac}", "assertion:signature"),
                      ("k1.!!.x", "assertion:signature"), ("garbage", "assertion:key")):
        with pytest.raises(AssertionRefused) as refused:
            check(bad)
        assert refused.value.rule == rule, bad


def test_keys_rotate_the_new_key_signs_and_the_old_still_verifies() -> None:
    old = sign(RING, claims())
    new = sign(NEW_RING, claims())
    assert new.startswith("k2.") and check(new, NEW_RING).action == "accept"
    assert check(old, NEW_RING).action == "accept"
    with pytest.raises(AssertionRefused):
        check(new, RING)  # a worker without the new key refuses it


# ------------------------------------------------------- through raw Temporal


def raw(client: Client) -> Client:
    """A client like the `temporal` CLI: it can set a header, but holds no key."""
    config = client.config()
    config["interceptors"] = [*config["interceptors"], AssertionHeader()]
    return Client(**config)


async def refusals(sessions: Any, workflow_id: str) -> list[PetitionEvent]:
    async with sessions() as session:
        return list(await session.scalars(select(PetitionEvent).where(
            PetitionEvent.workflow_id == workflow_id, ~PetitionEvent.accepted)
            .order_by(PetitionEvent.id)))


async def refused_rules(sessions: Any, workflow_id: str, count: int) -> list[str]:
    async def enough() -> list[str] | None:
        rows = await refusals(sessions, workflow_id)
        return [r.refusal or "" for r in rows] if len(rows) >= count else None

    found = await eventually(enough)
    assert found is not None
    return found


async def test_a_raw_update_or_signal_is_refused_audited_and_changes_nothing(
        dev_env, running_worker, petitions, sessions) -> None:
    async with running_worker(dev_env.client):
        handle = await petitions.start(dev_env, make_intake(unit=UNIT))
        before = await PetitionClient(dev_env.client, "").status(handle.id)
        cli = raw(dev_env.client).get_workflow_handle(handle.id)
        # The stranger claiming to head the unit: no assertion at all.
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await cli.execute_update("accept", Accept(actor=STRANGER))
        assert isinstance(refused.value.cause, ApplicationError)
        assert refused.value.cause.details[0]["rule"] == "assertion:missing"
        # The Web UI's Signal button: a withdrawal in the petitioner's name.
        await cli.signal("withdraw", Withdraw(actor=PETITIONER, reason="被冒名"))
        rules = await refused_rules(sessions, handle.id, 2)
        after = await PetitionClient(dev_env.client, "").status(handle.id)
    assert all(r.startswith("refused [assertion:missing]") for r in rules), rules
    assert after.stage is Stage.REGISTERED
    assert after.model_dump(exclude={"refused_actions"}) == before.model_dump(
        exclude={"refused_actions"})


async def test_the_self_made_leader_cannot_pay_above_the_cap_by_raw_temporal(
        dev_env, running_worker, petitions, sessions) -> None:
    async with running_worker(dev_env.client):
        handle = await petitions.start(dev_env, make_intake(unit=UNIT))
        signed = PetitionClient(dev_env.client, "")
        await signed.act(handle.id, Accept(actor=HANDLER))
        await signed.act(handle.id, RequestAssistance(
            actor=HANDLER, kind="judicial", amount_yuan=Decimal("500000"), reason="困难"))
        cli = raw(dev_env.client).get_workflow_handle(handle.id)
        with pytest.raises(WorkflowUpdateFailedError):
            await cli.execute_update("decide_assistance", DecideAssistance(
                actor=SELF_MADE_LEADER, application_no=1, approved=True,
                exception_approved=True, reason="我说了算"))
        status = await signed.status(handle.id)
    assert [a.status for a in status.assistance] == ["requested"]  # nothing paid
    [row] = await refusals(sessions, handle.id)
    assert row.action == "decide_assistance" and row.actor_role == "leader"
    assert (row.refusal or "").startswith("refused [assertion:missing]")


async def test_a_captured_assertion_replayed_for_another_payload_or_case_is_refused(
        dev_env, running_worker, petitions, sessions) -> None:
    async with running_worker(dev_env.client):
        first = await petitions.start(dev_env, make_intake(unit=UNIT))
        second = await petitions.start(dev_env, make_intake(unit=UNIT))
        # What a wire-tapper saw: the service's assertion for accepting `first`.
        captured = sign(PetitionClient(dev_env.client, "")._ring, ActionAssertion(
            actor=HANDLER, action="accept", workflow_id=first.id, request_id="",
            digest=digest(Accept(actor=HANDLER)), expires_at=datetime.now(UTC) + LIFETIME))
        tapper = raw(dev_env.client)
        presented = CURRENT_ASSERTION.set(captured)
        for target, command, rule in (
                (first.id, Accept(actor=HANDLER, note="另一个内容"), "assertion:payload"),
                (second.id, Accept(actor=HANDLER), "assertion:scope")):
            with pytest.raises(WorkflowUpdateFailedError) as refused:
                await tapper.get_workflow_handle(target).execute_update("accept", command)
            assert isinstance(refused.value.cause, ApplicationError)
            assert refused.value.cause.details[0]["rule"] == rule
        CURRENT_ASSERTION.reset(presented)
        statuses = [await PetitionClient(dev_env.client, "").status(w.id)
                    for w in (first, second)]
    assert [s.stage for s in statuses] == [Stage.REGISTERED, Stage.REGISTERED]


async def test_an_expired_assertion_is_refused(dev_env, running_worker, petitions) -> None:
    async def an_hour_ago() -> datetime:
        return datetime.now(UTC) - timedelta(hours=1)

    async with running_worker(dev_env.client):
        handle = await petitions.start(dev_env, make_intake(unit=UNIT))
        late = PetitionClient(dev_env.client, "", clock=an_hour_ago)
        with pytest.raises(ActionRefused) as refused:
            await late.act(handle.id, Accept(actor=HANDLER))
    assert refused.value.refusal.rule == "assertion:expired"


async def test_a_start_that_skips_the_service_registers_nothing_and_is_audited(
        dev_env, running_worker, task_queue, sessions) -> None:
    intake = make_intake(unit=UNIT)
    workflow_id = workflow_id_for(intake.intake_id)
    async with running_worker(dev_env.client):
        handle = await raw(dev_env.client).start_workflow(
            "PetitionWorkflow", PetitionStart(intake=intake), id=workflow_id,
            task_queue=task_queue)
        with pytest.raises(WorkflowFailureError):
            await asyncio.wait_for(handle.result(), timeout=30)
    [row] = await refused_rules(sessions, workflow_id, 1)
    assert row.startswith("refused [assertion:missing]")
    async with sessions() as session:
        registered = await session.scalar(select(Petition.id).where(
            Petition.intake_id == intake.intake_id))
    assert registered is None


def test_an_assertion_signed_before_a_field_was_added_still_verifies() -> None:
    """A start signed when the petitioner had no `email` bound a JSON without it: the
    same start, email unset, verifies; with an email it is another payload."""
    start = PetitionStart(intake=make_intake())
    legacy = hashlib.sha256(start.model_dump_json(
        exclude={"intake": {"petitioner": {"email"}}}).encode()).hexdigest()
    assert legacy != digest(start) and legacy in digests(start)
    with_email = PetitionStart(intake=make_intake())
    with_email.intake.petitioner.email = "someone@example.cn"
    assert digests(with_email) == {digest(with_email)}
