"""Issue 4: the audit trail of a whole lifecycle, driven through a real workflow, lists every
transition in order with its actor and time, and the refused actions too: a refused Update
(recorded by the client, `starter.actions.take_action`) and a refused Signal (recorded by
the workflow). Real Temporal dev server, real PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest
from sqlalchemy import select

from adapters.petition_client import PetitionClient
from adapters.tables import Petition, TerminationEntry
from domain.models import (
    Accept,
    Action,
    Actor,
    Assign,
    DecideExtension,
    Reply,
    RequestExtension,
    RequestReReview,
    RequestReview,
    ReReviewOpinion,
    ReviewOpinion,
    Role,
)
from starter.actions import ActionError, take_action
from starter.queries import audit_trail
from tests.conftest import make_intake

UNIT = "QS-HRSS"  # a county department: reviewed by the city department above it
HANDLER = Actor(id="QS-HRSS.h1", role=Role.HANDLER, unit=UNIT)
HEAD = Actor(id="QS-HRSS.head", role=Role.UNIT_HEAD, unit=UNIT)
PETITIONER = Actor(id="petitioner", role=Role.PETITIONER, unit="public")
REVIEWER = Actor(id="YZ-HRSS.h1", role=Role.HANDLER, unit="YZ-HRSS")
RE_REVIEWER = Actor(id="PROV-XFJ.h1", role=Role.HANDLER, unit="PROV-XFJ")


async def trail_with(sessions, workflow_id: str, rows: int, patience: float = 15.0) -> list:
    """The audit trail once it has `rows` rows (the workflow writes it in batches)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    while True:
        trail = await audit_trail(sessions, workflow_id)
        if len(trail) >= rows or loop.time() > deadline:
            return trail
        await asyncio.sleep(0.2)


async def test_a_whole_lifecycle_is_in_the_audit_trail_in_order_refusals_included(
        dev_env, running_worker, petitions, sessions):
    from domain.models import Rate

    client = dev_env.client
    async with running_worker(client):
        handle = await petitions.start(dev_env, make_intake(unit=UNIT))
        wf = handle.id

        async def act(action: Action, command) -> None:
            await take_action(client, sessions, wf, action, command)

        # A refused Update: the validator refuses, the client records it.
        with pytest.raises(ActionError,
                           match=r"refused \[stage\]: reply is not allowed in stage registered"):
            await act(Action.REPLY, Reply(actor=HANDLER, opinion="过早 too early",
                                          request_id="early-reply"))
        await act(Action.ACCEPT, Accept(actor=HANDLER))
        await act(Action.ASSIGN, Assign(actor=HEAD, handler_id=HANDLER.id))
        await act(Action.REQUEST_EXTENSION, RequestExtension(
            actor=HANDLER, days=15, reason="需现场调查 site inspection needed"))
        await act(Action.DECIDE_EXTENSION, DecideExtension(
            actor=HEAD, approved=True, reason_to_petitioner="案情复杂 complex case"))
        await act(Action.REPLY, Reply(actor=HANDLER, opinion="已督促支付 payment ordered"))
        await act(Action.RATE, Rate(actor=PETITIONER, satisfaction="unsatisfied"))
        await act(Action.REQUEST_REVIEW, RequestReview(
            actor=PETITIONER, review_organ="YZ-HRSS", reason="金额不足 amount too low"))
        # A refused Signal: the county department may not give its own review opinion.
        petition_client = PetitionClient(client, task_queue="")
        await petition_client.act(wf, ReviewOpinion(
            actor=HANDLER, opinion="自行复查 reviewing ourselves"), as_signal=True)
        refused_signal = await trail_with(sessions, wf, 10)
        assert refused_signal[-1]["action"] == "review_opinion"
        assert refused_signal[-1]["accepted"] is False
        await act(Action.REVIEW_OPINION, ReviewOpinion(actor=REVIEWER, opinion="维持 upheld"))
        await act(Action.REQUEST_RE_REVIEW, RequestReReview(
            actor=PETITIONER, re_review_organ="PROV-XFJ", reason="仍不服 still disagree"))
        await act(Action.RE_REVIEW_OPINION, ReReviewOpinion(
            actor=RE_REVIEWER, opinion="复核维持，终结 concluded"))
        timeline = await petition_client.timeline(wf)
        trail = await trail_with(sessions, wf, 13)

    expected = [
        # action, accepted, from, to, actor
        ("register", True, None, "registered", f"intake-visit:intake_clerk:{UNIT}"),
        ("reply", False, None, None, "QS-HRSS.h1:handler:QS-HRSS"),
        ("accept", True, "registered", "in_handling", "QS-HRSS.h1:handler:QS-HRSS"),
        ("assign", True, "in_handling", "in_handling", "QS-HRSS.head:unit_head:QS-HRSS"),
        ("request_extension", True, "in_handling", "in_handling", "QS-HRSS.h1:handler:QS-HRSS"),
        ("decide_extension", True, "in_handling", "in_handling",
         "QS-HRSS.head:unit_head:QS-HRSS"),
        ("reply", True, "in_handling", "replied", "QS-HRSS.h1:handler:QS-HRSS"),
        ("rate", True, "replied", "replied", "petitioner:petitioner:public"),
        ("request_review", True, "replied", "under_review", "petitioner:petitioner:public"),
        ("review_opinion", False, "under_review", "under_review", "QS-HRSS.h1:handler:QS-HRSS"),
        ("review_opinion", True, "under_review", "review_replied", "YZ-HRSS.h1:handler:YZ-HRSS"),
        ("request_re_review", True, "review_replied", "under_re_review",
         "petitioner:petitioner:public"),
        ("re_review_opinion", True, "under_re_review", "closed",
         "PROV-XFJ.h1:handler:PROV-XFJ"),
    ]
    assert [(e["action"], e["accepted"], e["from"], e["to"], e["actor"]) for e in trail] \
        == expected, trail
    # Every row has its time, in order; accepted transitions carry consecutive numbers.
    times = [datetime.fromisoformat(e["at"]) for e in trail]
    assert times == sorted(times)
    assert [e["seq"] for e in trail if e["accepted"]] == list(range(1, 12))
    # Refusals say why.
    assert "reply is not allowed in stage registered" in trail[1]["refusal"]
    assert "review_organ" in trail[9]["refusal"] and "QS-HRSS" in trail[9]["refusal"]
    # The workflow's own timeline tells the same story.
    accepted = [(t.seq, t.action.value, t.actor.id) for t in timeline if t.accepted]
    assert accepted == [(e["seq"], e["action"], e["actor"].split(":")[0])
                        for e in trail if e["accepted"]]
    async with sessions() as session:
        row = await session.scalar(select(Petition).where(Petition.workflow_id == wf))
        assert row is not None and (row.stage, row.outcome) == ("closed", "concluded")
        assert await session.scalar(select(TerminationEntry.registration_no).where(
            TerminationEntry.petition_id == row.id)) == row.registration_no
