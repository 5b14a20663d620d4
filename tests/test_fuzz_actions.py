"""Issue 6: hostile action payloads. Property-based fuzzing (hypothesis) of every action's
payload through `build_command`, of `--actor` through `parse_actor`, and of action names:
each input is a command or one clear line, never a crash. Then a sample of fuzzed but
well-formed commands is thrown at a live petition: each is taken or refused, none hangs
the workflow, and the audit trail ends with no gap and no duplicate."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from adapters.tables import Petition, PetitionEvent
from domain.lifecycle import TABLE
from domain.models import Action, Actor, AddNote, Command, Role, Stage, Withdraw
from starter.actions import PERSON_ACTIONS, ActionError, build_command, parse_actor, take_action
from tests.conftest import make_intake
from workflows.petition import PetitionWorkflow

FUZZ = settings(deadline=None, derandomize=True, database=None)
UNIT = "QS-HRSS"
HANDLER = Actor(id="QS-HRSS.h1", role=Role.HANDLER, unit=UNIT)
HEAD = Actor(id="QS-HRSS.head", role=Role.UNIT_HEAD, unit=UNIT)
PETITIONER = Actor(id="petitioner-fuzz", role=Role.PETITIONER, unit="public")

# A well-formed payload per action: the starting point every mutation departs from.
TEMPLATES: dict[Action, dict[str, Any]] = {
    Action.ACCEPT: {"note": "受理 accepted"},
    Action.DECLINE: {"reason": "outside_petition_scope", "explanation": "不属于信访事项"},
    Action.DIVERT: {"track": "litigation", "organ": "QS-COURT", "explanation": "应诉讼"},
    Action.TRANSFER: {"to_unit": "QS-NR", "instructions": "请办理"},
    Action.REJECT_TRANSFER: {"reason": "不属本单位职责"},
    Action.ASSIGN: {"handler_id": "QS-HRSS.h1"},
    Action.CONTRACT_TO_LEADER: {"leader_id": "YZ-LDR1"},
    Action.REQUEST_EXTENSION: {"days": 10, "reason": "需调查"},
    Action.DECIDE_EXTENSION: {"approved": True, "reason_to_petitioner": "案情复杂"},
    Action.SCHEDULE_HEARING: {"venue": "县信访局听证室", "starts_at": "2030-03-05T09:00:00+08:00",
                              "officers": ["HO-01", "HO-02"]},
    Action.RECORD_HEARING: {"hearing_no": 1, "outcome": "supported", "summary": "支持"},
    Action.REQUEST_ASSISTANCE: {"kind": "hardship", "amount_yuan": "3000.00", "reason": "困难"},
    Action.DECIDE_ASSISTANCE: {"application_no": 1, "approved": True, "reason": "同意"},
    Action.PROGRESS_REPLY: {"text": "正在办理"},
    Action.REPLY: {"opinion": "处理意见"},
    Action.RATE: {"satisfaction": "satisfied"},
    Action.REQUEST_REVIEW: {"review_organ": "YZ-HRSS", "reason": "不服"},
    Action.REVIEW_OPINION: {"opinion": "维持"},
    Action.REQUEST_RE_REVIEW: {"re_review_organ": "PROV-XFJ", "reason": "仍不服"},
    Action.RE_REVIEW_OPINION: {"opinion": "终结"},
    Action.WITHDRAW: {"reason": "已解决"},
    Action.ADD_NOTE: {"text": "补充材料"},
    Action.REPEAT_VISIT: {"channel": "visit", "summary": "再次来访"},
}
CLOSING = {Action.DECLINE, Action.DIVERT, Action.WITHDRAW, Action.RE_REVIEW_OPINION}

json_scalars = (st.none() | st.booleans() | st.integers() | st.floats()
                | st.decimals(allow_nan=True) .map(str) | st.text(max_size=30)
                | st.sampled_from(["\x00", "\x1b[2J", "9" * 5000, "", " ", "\n", "QS-NR",
                                   "HO-03", "1e400", "-1", "2999-01-01T00:00:00+00:00",
                                   "字" * 20_001, "NaN", "Infinity"]))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=6)


def _mutated(action: Action, field: str | None, value: Any, drop: bool) -> str | None:
    payload = dict(TEMPLATES[action])
    if field is not None:
        if drop:
            payload.pop(field, None)
        else:
            payload[field] = value
    try:
        return json.dumps(payload, ensure_ascii=False)
    except ValueError:
        return None


def payloads(action: Action) -> st.SearchStrategy[str | None]:
    fields = sorted({*TEMPLATES[action], *TABLE[action].command.model_fields} - {"actor"})
    return st.builds(_mutated, st.just(action), st.none() | st.sampled_from(fields),
                     json_values, st.booleans())


def _outcome(action: Action, data: str | None, actor: Actor = HANDLER
             ) -> tuple[Action, Command] | ActionError:
    try:
        return build_command(action.value, actor, data)
    except ActionError as err:
        message = str(err)
        assert message and "\n" not in message and len(message) < 600, repr(message)[:300]
        return err


def test_every_action_has_a_fuzz_template() -> None:
    assert set(TEMPLATES) == set(PERSON_ACTIONS)
    for action, payload in TEMPLATES.items():
        assert not isinstance(_outcome(action, json.dumps(payload)), ActionError), action


@pytest.mark.parametrize("action", sorted(PERSON_ACTIONS, key=str))
def test_fuzzed_payloads_are_commands_or_one_clear_line(action: Action) -> None:
    count = 0

    @settings(FUZZ, max_examples=120)
    @given(payloads(action) | st.text(max_size=60) | json_values.map(json.dumps))
    def run(data: str | None) -> None:
        nonlocal count
        count += 1
        result = _outcome(action, data)
        if isinstance(result, ActionError):
            return
        chosen, command = result
        assert chosen is action and isinstance(command, TABLE[action].command)
        assert command.actor == HANDLER  # --data can never override --actor
        dumped = command.model_dump_json()
        assert "\\u0000" not in dumped and len(dumped.encode()) < 100_000
        dumped.encode("utf-8")

    run()
    assert count >= 60, count  # hypothesis ran the examples, not a handful


def test_fuzzed_actors_and_action_names_are_refused_in_one_line() -> None:
    count = 0

    @settings(FUZZ, max_examples=300)
    @given(st.text(max_size=80) | st.builds(":".join, st.lists(st.text(max_size=20),
                                                                min_size=3, max_size=3)),
           st.text(max_size=30))
    def run(actor_text: str, name: str) -> None:
        nonlocal count
        count += 1
        try:
            parse_actor(actor_text)
        except ActionError as err:
            assert "\n" not in str(err)
        if name not in {a.value for a in Action}:
            with pytest.raises(ActionError, match="unknown action") as unknown:
                build_command(name, HANDLER, None)
            assert "\n" not in str(unknown.value)

    run()
    for clocked in (Action.REGISTER, Action.REVIEW_WINDOW_LAPSED, Action.RE_REVIEW_WINDOW_LAPSED):
        with pytest.raises(ActionError, match="taken by the workflow's clocks"):
            build_command(clocked.value, HANDLER, None)
    assert count >= 150, count


def _actor_for(action: Action) -> Actor:
    roles = TABLE[action].roles
    if Role.HANDLER in roles:
        return HANDLER
    if Role.UNIT_HEAD in roles:
        return HEAD
    return PETITIONER


def _live_sample(size: int) -> list[tuple[Action, Command]]:
    sample: list[tuple[Action, Command]] = []

    @settings(FUZZ, max_examples=size * 6)
    @given(st.sampled_from(sorted(PERSON_ACTIONS, key=str)).flatmap(
        lambda a: st.tuples(st.just(a), payloads(a))))
    def collect(case: tuple[Action, str | None]) -> None:
        action, data = case
        result = _outcome(action, data, _actor_for(action))
        if not isinstance(result, ActionError) and len(sample) < size:
            sample.append(result)

    collect()
    # Closing actions last, so the fuzzed commands meet an open case as long as possible.
    return sorted(sample, key=lambda c: c[0] in CLOSING)


async def _trail(sessions: Any, workflow_id: str) -> list[PetitionEvent]:
    async with sessions() as session:
        return list(await session.scalars(
            select(PetitionEvent).where(PetitionEvent.workflow_id == workflow_id,
                                        PetitionEvent.accepted.is_(True))
            .order_by(PetitionEvent.seq)))


async def test_fuzzed_commands_on_a_live_petition_are_taken_or_refused_never_stuck(
        dev_env, running_worker, petitions, sessions) -> None:
    sample = _live_sample(60)
    taken, refused = 0, 0
    client = dev_env.client
    async with running_worker(client):
        handle = await petitions.start(dev_env, make_intake(unit=UNIT))
        for action, command in sample:
            try:
                await asyncio.wait_for(take_action(client, sessions, handle.id, action,
                                                   command), timeout=30)
                taken += 1
            except ActionError as err:
                assert "\n" not in str(err) and str(err).startswith("refused ["), str(err)
                refused += 1
        status = await handle.query(PetitionWorkflow.status)
        if status.stage is not Stage.CLOSED:
            await take_action(client, sessions, handle.id, Action.WITHDRAW,
                              Withdraw(actor=PETITIONER, reason="撤回"))
            taken += 1
        await handle.result()
        status = await handle.query(PetitionWorkflow.status)
        # A closed petition refuses every action in one clear line, audited.
        with pytest.raises(ActionError, match=r"^refused \[closed\]: petition-.* is closed"):
            await take_action(client, sessions, handle.id, Action.ADD_NOTE,
                              AddNote(actor=PETITIONER, text="还有材料"))

        async def converged() -> list[PetitionEvent]:
            for _ in range(100):
                trail = await _trail(sessions, handle.id)
                if len(trail) >= taken + 1:
                    return trail
                await asyncio.sleep(0.2)
            return trail

        trail = await converged()
    assert taken and refused, (taken, refused)  # the sample exercised both outcomes
    # register + one row per action taken: no gap, no duplicate.
    assert [e.seq for e in trail] == list(range(1, taken + 2))
    async with sessions() as session:
        row = await session.scalar(select(Petition).where(Petition.workflow_id == handle.id))
    assert row is not None and row.stage == status.stage and row.last_seq == taken + 1
    print(f"\n[fuzz] live petition: {taken} taken, {refused} refused")

