"""Issue 5: the saved supervisor views are accepted by the real dev server's visibility and
find exactly the petitions built to match them."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta

import pytest
from temporalio.client import Client

from adapters.petition_client import PetitionClient
from domain.models import (
    Accept,
    Actor,
    Divert,
    DivertTrack,
    Reply,
    RequestReReview,
    RequestReview,
    ReReviewOpinion,
    ReviewOpinion,
    Role,
)
from reports.periods import BEIJING
from reports.views import SavedView, saved_views, ui_link
from tests.cli import petition
from tests.conftest import make_intake

HRSS = Actor(id="QS-HRSS.h1", role=Role.HANDLER, unit="QS-HRSS")
BUREAU = Actor(id="QS-XFJ.h1", role=Role.HANDLER, unit="QS-XFJ")
PETITIONER = Actor(id="petitioner", role=Role.PETITIONER, unit="QS-HRSS")


async def _found(client: Client, view: SavedView, ours: set[str], want: set[str],
                 within: float = 20.0) -> set[str]:
    """Poll (visibility is eventually consistent) until our matches are exactly `want`."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        hits = {w.id async for w in client.list_workflows(view.query)} & ours
        if hits == want or asyncio.get_running_loop().time() > deadline:
            return hits
        await asyncio.sleep(0.5)


def _view(views: list[SavedView], key: str) -> SavedView:
    return next(v for v in views if v.key == key)


async def test_each_saved_view_finds_the_petition_built_for_it(
        dev_env, running_worker, petitions):
    client = dev_env.client
    acting = PetitionClient(client, task_queue="")
    async with running_worker(client):
        # Neglected under the demo profile: overdue after 20 s, level 2 after 30 s.
        neglected = await petitions.start(dev_env, make_intake(unit="QS-HRSS", profile="demo"))
        started = asyncio.get_running_loop().time()
        # National profile: its acceptance deadline falls in some coming week.
        waiting = await petitions.start(dev_env, make_intake(unit="QS-HRSS"))
        diverted = await petitions.start(dev_env, make_intake(
            unit="QS-XFJ", category="law_and_litigation", law_related=True))
        await acting.act(diverted.id, Divert(
            actor=BUREAU, track=DivertTrack.LITIGATION, organ="QS-COURT",
            explanation="a judgment is being appealed"))
        concluded = await petitions.start(dev_env, make_intake(unit="QS-HRSS"))
        for command in (
                Accept(actor=HRSS),
                Reply(actor=HRSS, opinion="wages paid"),
                RequestReview(actor=PETITIONER, review_organ="YZ-XFJ", reason="not satisfied"),
                ReviewOpinion(actor=Actor(id="YZ-XFJ.h1", role=Role.HANDLER, unit="YZ-XFJ"),
                              opinion="upheld"),
                RequestReReview(actor=PETITIONER, re_review_organ="PROV-XFJ",
                                reason="still not"),
                ReReviewOpinion(actor=Actor(id="PROV-XFJ.h1", role=Role.HANDLER, unit="PROV-XFJ"),
                                opinion="upheld; concluded")):
            await acting.act(concluded.id, command)
        ours = {h.id for h in (neglected, waiting, diverted, concluded)}

        # A case closes once the notices of its last action are sent.
        await concluded.result()
        await diverted.result()
        closed_at = (await concluded.describe()).close_time
        assert closed_at is not None
        due = (await acting.status(waiting.id)).next_deadline
        assert due is not None
        this_month = saved_views(now=closed_at)
        week_of_due = saved_views(now=due - timedelta(minutes=1))
        diverted_at = (await diverted.describe()).close_time
        assert diverted_at is not None
        same_month = diverted_at.astimezone(BEIJING).month == closed_at.astimezone(BEIJING).month

        expected = {
            "diverted_law_related": {diverted.id},
            "concluded_this_month": {concluded.id},
            "closed_this_month": {concluded.id} | ({diverted.id} if same_month else set()),
        }
        for key, want in expected.items():
            assert await _found(client, _view(this_month, key), ours, want) == want, key
        due_view = _view(week_of_due, "due_this_week")
        assert await _found(client, due_view, ours, {waiting.id}) == {waiting.id}
        next_week = _view(saved_views(now=due + timedelta(days=7)), "due_this_week")
        assert await _found(client, next_week, ours, set(), within=2) == set()

        # By now the neglected case has had time to escalate twice.
        await asyncio.sleep(max(0.0, 32 - (asyncio.get_running_loop().time() - started)))
        for key in ("overdue", "escalated_level2"):
            view = _view(this_month, key)
            assert await _found(client, view, ours, {neglected.id}) == {neglected.id}, key
        at_unit = _view(saved_views(["QS-HRSS"], now=closed_at), "overdue")
        assert "ResponsibleUnit = 'QS-HRSS'" in at_unit.query
        assert await _found(client, at_unit, ours, {neglected.id}) == {neglected.id}
        elsewhere = _view(saved_views(["BS-HRSS", "LJ-HRSS"], now=closed_at), "overdue")
        assert "ResponsibleUnit IN ('BS-HRSS', 'LJ-HRSS')" in elsewhere.query
        assert await _found(client, elsewhere, ours, set(), within=2) == set()


def test_due_this_week_takes_a_sunday_24_00_deadline_into_that_week():
    # Wednesday 22 October 2026: the ISO week runs Monday 19 to Sunday 25 October.
    view = _view(saved_views(now=datetime(2026, 10, 22, 12, tzinfo=BEIJING)), "due_this_week")
    # Monday 00:00 Beijing is 16:00 UTC on Sunday; a Sunday-24:00 deadline is that instant.
    assert "NextDeadline > '2026-10-18T16:00:00Z'" in view.query
    assert "NextDeadline <= '2026-10-25T16:00:00Z'" in view.query
    month = _view(saved_views(now=datetime(2026, 10, 31, 23, 30, tzinfo=BEIJING)),
                  "concluded_this_month")
    assert "CloseTime >= '2026-09-30T16:00:00Z'" in month.query
    assert "CloseTime < '2026-10-31T16:00:00Z'" in month.query


def test_a_malformed_unit_is_refused_not_pasted_into_a_query():
    with pytest.raises(ValueError, match="not a unit code"):
        saved_views(["QS-HRSS' OR Overdue = false OR Channel = '"])


@pytest.mark.cli
async def test_views_command_prints_the_same_filters_and_links(db_url, sessions):
    common = {"db_url": db_url, "address": "127.0.0.1:1", "task_queue": "unused"}
    result = await petition("views", "--unit", "QS-HRSS", "--today", "2026-10-22",
                            "--format", "json", **common)
    assert result.code == 0, result.err
    printed = json.loads(result.out)
    expected = saved_views(["QS-HRSS"], now=datetime(2026, 10, 22, 12, tzinfo=BEIJING))
    assert [v["query"] for v in printed] == [v.query for v in expected]
    assert printed[0]["link"] == ui_link(expected[0])
    assert printed[0]["link"].startswith("http://localhost:8233/namespaces/default/workflows?")

    text = await petition("views", **common)
    assert text.code == 0 and "Overdue = true" in text.out and "(all units)" in text.out

    subtree = await petition("views", "--unit", "YZ-XFJ", "--subtree", "--format", "json",
                             **common)
    assert subtree.code == 0, subtree.err
    overdue = json.loads(subtree.out)[0]["query"]
    assert all(f"'{u}'" in overdue for u in ("YZ-XFJ", "QS-XFJ", "BS-XFJ", "QS-T1"))

    bad = await petition("views", "--unit", "NO-SUCH", "--subtree", **common)
    assert bad.code == 2 and "unknown unit 'NO-SUCH'" in bad.err
    bad_day = await petition("views", "--today", "22/10/2026", **common)
    assert bad_day.code == 2 and "--today" in bad_day.err
