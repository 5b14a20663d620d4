"""Every row of the lifecycle table, allowed and refused, on the real time-skipping server.

For each row a petition is driven with real actions to the row's from-stage(s), the action
is taken by a permitted actor (stage, outcome and clocks checked against DOMAIN.md, written
out below by hand rather than read back from the table), and refused for a wrong stage, a
wrong role and a wrong unit: each refusal names its rule and leaves no history event.
The window lapses (system rows) are driven by letting the window pass in virtual time.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.case import PetitionStatus
from domain.lifecycle import LAPSE_ACTIONS, TABLE, TRANSITIONS, Transition, UnitRule
from domain.models import Action, ClockName, Outcome, Stage
from domain.policy import Period, PeriodUnit, load_profile
from starter.actions import ActionError, build_command
from tests.lifecycle_helpers import (
    BUREAU,
    CALENDAR,
    COMPETENT_UNIT,
    PATH,
    PETITIONER,
    PREREQUISITE,
    REVIEW_ORGAN,
    STRANGER_UNIT,
    Case,
    clock,
    clock_names,
    eventually,
    finished,
    handler,
    head,
    leader,
    pg_fetch,
    sleep_until,
    wrong_role,
)
from workflows.petition import PetitionWorkflow

NATIONAL = load_profile("national")
SAME = object()  # the action leaves the stage as it was

# DOMAIN.md, "The lifecycle": where each action leads.
EXPECTED_MOVE: dict[Action, tuple[object, Outcome | None]] = {
    Action.ACCEPT: (Stage.IN_HANDLING, None),
    Action.DECLINE: (Stage.CLOSED, Outcome.NOT_ACCEPTED),
    Action.DIVERT: (Stage.CLOSED, Outcome.DIVERTED),
    Action.TRANSFER: (Stage.REGISTERED, None),
    Action.REJECT_TRANSFER: (Stage.REGISTERED, None),
    Action.ASSIGN: (SAME, None),
    Action.CONTRACT_TO_LEADER: (SAME, None),
    Action.REQUEST_EXTENSION: (SAME, None),
    Action.DECIDE_EXTENSION: (SAME, None),
    Action.SCHEDULE_HEARING: (SAME, None),
    Action.RECORD_HEARING: (SAME, None),
    Action.REQUEST_ASSISTANCE: (SAME, None),
    Action.DECIDE_ASSISTANCE: (SAME, None),
    Action.PROGRESS_REPLY: (SAME, None),
    Action.REPLY: (Stage.REPLIED, None),
    Action.RATE: (SAME, None),
    Action.REQUEST_REVIEW: (Stage.UNDER_REVIEW, None),
    Action.REVIEW_OPINION: (Stage.REVIEW_REPLIED, None),
    Action.REQUEST_RE_REVIEW: (Stage.UNDER_RE_REVIEW, None),
    Action.RE_REVIEW_OPINION: (Stage.CLOSED, Outcome.CONCLUDED),
    Action.WITHDRAW: (Stage.CLOSED, Outcome.WITHDRAWN),
    Action.ADD_NOTE: (SAME, None),
    Action.REPEAT_VISIT: (SAME, None),
    Action.REVIEW_WINDOW_LAPSED: (Stage.CLOSED, Outcome.RESOLVED),
    Action.RE_REVIEW_WINDOW_LAPSED: (Stage.CLOSED, Outcome.RESOLVED),
    Action.DECLINE_CONCLUDED: (Stage.CLOSED, Outcome.NOT_ACCEPTED),
}

# DOMAIN.md, "Deadlines" (national profile): the clocks running in each stage of the
# ordinary path, and those running after each action that changes them.
RUNNING_IN = {
    Stage.REGISTERED: {ClockName.ACCEPTANCE},  # at a competent unit; a bureau routes
    Stage.IN_HANDLING: {ClockName.HANDLING},
    Stage.REPLIED: {ClockName.REVIEW_REQUEST},
    Stage.UNDER_REVIEW: {ClockName.REVIEW},
    Stage.REVIEW_REPLIED: {ClockName.RE_REVIEW_REQUEST},
    Stage.UNDER_RE_REVIEW: {ClockName.RE_REVIEW},
    Stage.CLOSED: set(),
}
RUNNING_AFTER = {
    # A bureau transfers: the receiving unit's acceptance clock and its objection window.
    Action.TRANSFER: {ClockName.ACCEPTANCE, ClockName.TRANSFER_OBJECTION},
    # Returned to the bureau: its routing clock starts anew.
    Action.REJECT_TRANSFER: {ClockName.ROUTING},
}
# The action that started each clock, whose time the clock's period runs from.
STARTED_BY = {
    ClockName.ROUTING: Action.REJECT_TRANSFER,
    ClockName.ACCEPTANCE: Action.TRANSFER,
    ClockName.TRANSFER_OBJECTION: Action.TRANSFER,
    ClockName.HANDLING: Action.ACCEPT,
    ClockName.REVIEW_REQUEST: Action.REPLY,
    ClockName.REVIEW: Action.REQUEST_REVIEW,
    ClockName.RE_REVIEW_REQUEST: Action.REVIEW_OPINION,
    ClockName.RE_REVIEW: Action.REQUEST_RE_REVIEW,
}

PERSON_ROWS = [t for t in TRANSITIONS if not t.system]
LAPSE_ROWS = [TABLE[a] for a in LAPSE_ACTIONS.values()]


def _start_unit(row: Transition) -> str:
    return BUREAU if row.action in (Action.TRANSFER, Action.REJECT_TRANSFER) else COMPETENT_UNIT


def _allowed_stages(row: Transition) -> list[Stage]:
    stages = [s for s in PATH if s in row.from_stages]
    if row.to_stage is None or row.action is Action.WITHDRAW:
        return stages  # every from-stage: on the way (in place) or one petition each
    return stages[:1]


def _wrong_stage(row: Transition) -> Stage | None:
    return next((s for s in PATH if s not in row.from_stages), None)


async def _refusals(case: Case, row: Transition) -> None:
    """Wrong role and wrong unit, at a stage the row allows."""
    unit = case.actor_for(row.action).unit
    await case.expect_refused(row.action, wrong_role(row, unit), "role")
    if row.unit_rule is not UnitRule.NONE:
        stranger = case.actor_for(row.action).model_copy(update={"unit": STRANGER_UNIT})
        message = await case.expect_refused(row.action, stranger, f"unit:{row.unit_rule}")
        assert STRANGER_UNIT in message


async def _take_and_check(case: Case, row: Transition) -> None:
    """Take the action as permitted; check stage, outcome, timeline and clocks."""
    before = await case.refresh()
    held = {c.name: c for c in before.clocks}
    after = await case.act(row.action)
    entry = (await case.timeline())[-1]
    assert (entry.action, entry.accepted, entry.from_stage, entry.to_stage) == (
        row.action, True, before.stage, after.stage)
    expected_stage, outcome = EXPECTED_MOVE[row.action]
    assert after.stage is (before.stage if expected_stage is SAME else expected_stage)
    assert after.outcome is outcome

    expected = RUNNING_AFTER.get(row.action, RUNNING_IN[after.stage])  # type: ignore[index]
    assert clock_names(after) == expected, row.action
    for c in after.clocks:
        if row.action is Action.DECIDE_EXTENSION:
            days = Period(amount=20, unit=PeriodUnit.DAYS)
            assert c.due_at == NATIONAL.extended_deadline(c.name, held[c.name].due_at, days,
                                                          CALENDAR)
            assert after.extension_days == 20
        elif row.action is Action.SCHEDULE_HEARING and c.name is ClockName.RE_REVIEW:
            assert c.paused and c.due_at == held[c.name].due_at
            assert after.next_deadline is None and not after.overdue
        elif c.name in held and STARTED_BY.get(c.name) is not row.action:
            assert c.due_at == held[c.name].due_at and not c.paused  # untouched
        else:  # started by this action: its period runs from the action's time
            assert c.started_at == entry.at
            assert c.due_at == NATIONAL.deadline(c.name, entry.at, CALENDAR)


async def _record_hearing_after_a_pause(case: Case) -> None:
    """In re-review, the time between scheduling and recording the hearing is not counted."""
    paused_due = clock(case.last, ClockName.RE_REVIEW).due_at
    scheduled_at = (await case.last_entry(Action.SCHEDULE_HEARING)).at
    await case.env.sleep(timedelta(days=3, hours=5))
    after = await case.act(Action.RECORD_HEARING)
    recorded_at = (await case.last_entry(Action.RECORD_HEARING)).at
    assert recorded_at - scheduled_at >= timedelta(days=3, hours=5)
    resumed = clock(after, ClockName.RE_REVIEW)
    assert not resumed.paused
    assert resumed.due_at == paused_due + (recorded_at - scheduled_at)


@pytest.mark.parametrize("row", PERSON_ROWS, ids=lambda t: t.action.value)
async def test_row_allowed_and_refused(row: Transition, ts_env, running_worker, petitions):
    async with running_worker(ts_env.client):
        wrong = _wrong_stage(row)
        stages = _allowed_stages(row)
        # Rows that close the case or leave their stage: one petition per allowed stage.
        fresh_each = row.to_stage is not None
        case: Case | None = None
        for n, stage in enumerate(stages):
            if case is None or fresh_each:
                case = await Case.start(ts_env, petitions, unit=_start_unit(row))
                if n == 0 and wrong is Stage.REGISTERED:
                    message = await case.expect_refused(row.action, case.actor_for(row.action),
                                                        "stage")
                    assert f"not allowed in stage {Stage.REGISTERED}" in message
            await case.walk_to(stage)
            if row.action in PREREQUISITE:
                await case.act(PREREQUISITE[row.action])
            if n == 0:
                await _refusals(case, row)
            if row.action is Action.RECORD_HEARING and stage is Stage.UNDER_RE_REVIEW:
                await _record_hearing_after_a_pause(case)
            else:
                await _take_and_check(case, row)
        if wrong is not None and wrong is not Stage.REGISTERED:
            # The first stage of the ordinary path that the row does not allow.
            assert case is not None
            if case.stage is Stage.CLOSED or PATH.index(case.stage) > PATH.index(wrong):
                case = await Case.start(ts_env, petitions, unit=_start_unit(row))
            await case.walk_to(wrong)
            message = await case.expect_refused(row.action, case.actor_for(row.action),
                                                "stage")
            assert f"not allowed in stage {wrong}" in message


@pytest.mark.parametrize("row", LAPSE_ROWS, ids=lambda t: t.action.value)
async def test_window_lapse_row(row: Transition, ts_env, running_worker, petitions):
    """No person may take a lapse; it happens when the window passes, not a second before."""
    assert not hasattr(PetitionWorkflow, row.action.value)
    with pytest.raises(ActionError, match="taken by the workflow's clocks"):
        build_command(row.action.value, PETITIONER, None)
    [from_stage] = row.from_stages
    async with running_worker(ts_env.client):
        case = await Case.start(ts_env, petitions, unit=COMPETENT_UNIT)
        await case.walk_to(from_stage)
        [window] = case.last.clocks
        opened = (await case.timeline())[-1].at
        assert window.due_at == NATIONAL.deadline(window.name, opened, CALENDAR)
        await sleep_until(ts_env, window.due_at - timedelta(seconds=1))
        assert (await case.refresh()).stage is from_stage
        await ts_env.sleep(timedelta(seconds=2))
        status = await finished(case.handle)
        expected_stage, outcome = EXPECTED_MOVE[row.action]
        assert (status.stage, status.outcome, status.clocks) == (expected_stage, outcome, [])
        entry = (await case.handle.query(PetitionWorkflow.timeline))[-1]
        assert (entry.action, entry.from_stage) == (row.action, from_stage)
        assert timedelta(0) <= entry.at - window.due_at < timedelta(seconds=1)


def test_every_action_has_exactly_one_row_and_an_expectation():
    assert set(TABLE) == set(EXPECTED_MOVE)
    assert len(TABLE) == len(TRANSITIONS)


# --------------------------------------------------------------------- authorization
# On the real dev server, where a validator's refusal leaves no history event at all.


async def test_only_the_responsible_unit_replies_and_a_refused_signal_is_recorded(
        dev_env, running_worker, petitions, db_url):
    async with running_worker(dev_env.client):
        case = await Case.start(dev_env, petitions, unit=BUREAU)
        await case.act(Action.TRANSFER, to_unit=COMPETENT_UNIT)
        await case.act(Action.ACCEPT)
        events = await case.history_length()
        message = await case.expect_refused(Action.REPLY, handler(BUREAU), "unit:responsible")
        assert f"{BUREAU}.h1 is from {BUREAU}" in message
        assert await case.history_length() == events  # not a single event

        # The same action as a Signal: nothing changes, and the refusal is on record.
        before = await case.refresh()
        await case.petitions.act(case.handle.id, case.command(Action.REPLY, handler(BUREAU)),
                                 as_signal=True)

        async def refused() -> PetitionStatus | None:
            status = await case.refresh()
            return status if status.refused_actions == 1 else None

        after = await eventually(refused)
        assert after is not None
        assert after.model_dump(exclude={"refused_actions"}) == before.model_dump(
            exclude={"refused_actions"})
        entry = (await case.timeline())[-1]
        assert (entry.action, entry.accepted, entry.actor.unit) == (Action.REPLY, False, BUREAU)
        assert entry.refusal and entry.refusal.startswith("refused [unit:responsible]")
        rows = await eventually(lambda: pg_fetch(
            db_url, "SELECT action, accepted, refusal, actor_unit, to_stage FROM petition_events"
            " WHERE workflow_id = $1 AND NOT accepted", case.handle.id))
        assert [(r["action"], r["accepted"], r["actor_unit"], r["to_stage"]) for r in rows] == [
            ("reply", False, BUREAU, "in_handling")]
        assert rows[0]["refusal"] == entry.refusal

        status = await case.act(Action.REPLY, handler(COMPETENT_UNIT))
        assert status.stage is Stage.REPLIED


async def test_only_the_responsible_units_head_decides_an_extension(
        dev_env, running_worker, petitions):
    async with running_worker(dev_env.client):
        case = await Case.start(dev_env, petitions, unit=COMPETENT_UNIT)
        await case.act(Action.ACCEPT)
        # National: once, at most 30 days, decided by the unit head (Art. 34).
        await case.expect_refused(Action.REQUEST_EXTENSION, handler(COMPETENT_UNIT),
                                  "extension:max", days=31)
        await case.act(Action.REQUEST_EXTENSION, days=30)
        await case.expect_refused(Action.DECIDE_EXTENSION, handler(COMPETENT_UNIT), "role")
        await case.expect_refused(Action.DECIDE_EXTENSION, leader(), "role")
        message = await case.expect_refused(Action.DECIDE_EXTENSION, head(REVIEW_ORGAN),
                                            "unit:responsible")
        assert "belongs to the responsible unit" in message
        status = await case.act(Action.DECIDE_EXTENSION, head(COMPETENT_UNIT))
        assert status.extension_days == 30
        await case.expect_refused(Action.REQUEST_EXTENSION, handler(COMPETENT_UNIT),
                                  "extension:once")


async def test_assistance_above_the_threshold_needs_a_leader_of_the_case(
        dev_env, running_worker, petitions):
    profile = NATIONAL.assistance
    amount = profile.leader_threshold_yuan + 10_000
    assert amount < profile.cap_yuan
    async with running_worker(dev_env.client):
        case = await Case.start(dev_env, petitions, unit=COMPETENT_UNIT)
        await case.act(Action.ACCEPT)
        await case.act(Action.REQUEST_ASSISTANCE, amount_yuan=str(amount))
        message = await case.expect_refused(Action.DECIDE_ASSISTANCE, head(COMPETENT_UNIT),
                                            "assistance:leader")
        assert f"{profile.leader_threshold_yuan} yuan threshold" in message
        # A leader who has not taken the case on sits in another unit: refused.
        await case.expect_refused(Action.DECIDE_ASSISTANCE, leader(), "unit:responsible")
        await case.act(Action.CONTRACT_TO_LEADER, head(COMPETENT_UNIT))
        status = await case.act(Action.DECIDE_ASSISTANCE, leader())
        [paid] = status.assistance
        assert (paid.status, paid.amount_yuan) == ("paid", amount)
