"""The domain core without a server: every rule of the lifecycle table, the state changes,
the clocks and the projections, on a `CaseState` built in memory.

What may this person do to this case now, and what happens if they do: answered here by
`allowed_actions`, `transition.refusal` and `transition.take` alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from domain import clocks, projections, transition
from domain.calendar import WorkingCalendar
from domain.case import CaseState, EffectResults, UnitFacts, open_case
from domain.lifecycle import LAPSE_ACTIONS, TABLE, TRANSITIONS, Effect, allowed_actions
from domain.models import (
    SYSTEM_ACTOR,
    Action,
    Actor,
    ClockName,
    Command,
    DeclineConcluded,
    Outcome,
    PetitionIntake,
    Role,
    Stage,
    SystemCommand,
)
from domain.policy import load_profile

CALENDAR = WorkingCalendar()
T0 = datetime(2026, 3, 2, 1, 30, tzinfo=UTC)  # Monday 09:30 Beijing time
HOUR = timedelta(hours=1)
UNITS = {
    "QS-XFJ": UnitFacts(code="QS-XFJ", name="青山县信访局", kind="petition_bureau",
                        level="county", parent="YZ-XFJ", superior_bureau="YZ-XFJ",
                        supervising_leader="QS-LDR1", head="QS-XFJ.head"),
    "QS-HRSS": UnitFacts(code="QS-HRSS", name="青山县人社局", kind="government_department",
                         level="county", parent="YZ-HRSS", superior_bureau="QS-XFJ",
                         supervising_leader="QS-LDR1", head="QS-HRSS.head"),
    "QS-NR": UnitFacts(code="QS-NR", name="青山县自然资源局", kind="government_department",
                       level="county", superior_bureau="QS-XFJ", head="QS-NR.head"),
    "YZ-HRSS": UnitFacts(code="YZ-HRSS", name="云州市人社局", kind="government_department",
                         level="city", superior_bureau="PROV-XFJ", head="YZ-HRSS.head"),
    "PROV-HRSS": UnitFacts(code="PROV-HRSS", name="省人社厅", kind="government_department",
                           level="province", head="PROV-HRSS.head"),
}
UNITS["YZ-HRSS"] = UNITS["YZ-HRSS"].model_copy(update={"parent": "PROV-HRSS"})


def staff(unit: str, role: Role = Role.HANDLER, who: str = "h1") -> Actor:
    return Actor(id=f"{unit}.{who}", role=role, unit=unit)


HANDLER, HEAD = staff("QS-HRSS"), staff("QS-HRSS", Role.UNIT_HEAD, "head")
LEADER = Actor(id="QS-LDR1", role=Role.LEADER, unit="QS-XFJ")
PETITIONER = Actor(id="petitioner", role=Role.PETITIONER, unit="public")


def new_case(unit: str = "QS-HRSS", profile: str = "national", **extra: Any) -> CaseState:
    intake = PetitionIntake.model_validate({
        "intake_id": "T-core-0001", "channel": "visit", "category": "wage_arrears",
        "unit": unit, "received_at": T0.isoformat(), "subject": "拖欠工资",
        "content": "拖欠工资三个月", "profile": profile,
        "petitioner": {"name": "测试人", "id_number": "11010519491231002X"}})
    case = open_case(workflow_id="petition-T-core-0001", petition_id=1,
                     registration_no="QS-2026-000001", profile=load_profile(profile),
                     intake=intake, unit=UNITS[unit], **extra)
    case.units.update(UNITS)
    transition.register(case, Actor(id="intake-visit", role=Role.INTAKE_CLERK, unit=unit),
                        T0, CALENDAR)
    return case


def command(action: Action, actor: Actor, **payload: Any) -> Command:
    return TABLE[action].command.model_validate({**payload, "actor": actor})


def act(case: CaseState, action: Action, actor: Actor, at: datetime = T0,
        results: EffectResults | None = None, **payload: Any) -> CaseState:
    cmd = command(action, actor, **payload)
    refusal = transition.refusal(case, TABLE[action], cmd)
    assert refusal is None, refusal
    transition.take(case, TABLE[action], cmd, at, results or EffectResults(), CALENDAR)
    return case


def refused(case: CaseState, action: Action, actor: Actor, **payload: Any) -> str:
    refusal = transition.refusal(case, TABLE[action], command(action, actor, **payload))
    assert refusal is not None, f"{action} was allowed"
    return refusal.rule


def in_handling(**extra: Any) -> CaseState:
    return act(new_case(**extra), Action.ACCEPT, HANDLER)


def replied(**extra: Any) -> CaseState:
    return act(in_handling(**extra), Action.REPLY, HANDLER, opinion="处理意见")


def review_replied() -> CaseState:
    case = act(replied(), Action.REQUEST_REVIEW, PETITIONER, review_organ="YZ-HRSS",
               reason="不服")
    return act(case, Action.REVIEW_OPINION, staff("YZ-HRSS"), opinion="维持")


# ------------------------------------------------------------ stage, role, unit


def test_registration_starts_the_receiving_units_clock() -> None:
    assert set(new_case().clocks) == {ClockName.ACCEPTANCE}
    assert set(new_case("QS-XFJ").clocks) == {ClockName.ROUTING}  # a bureau routes
    assert new_case().timeline[-1].action is Action.REGISTER


def test_the_stage_the_role_and_the_unit_are_checked() -> None:
    assert refused(new_case(), Action.REPLY, HANDLER, opinion="x") == "stage"
    assert refused(new_case(), Action.ACCEPT, PETITIONER) == "role"
    assert refused(new_case(), Action.ACCEPT, staff("QS-NR")) == "unit:holding"
    # The supervising leader of the holding unit acts for it from the petition bureau.
    assert transition.refusal(new_case(), TABLE[Action.ACCEPT],
                              command(Action.ACCEPT, LEADER)) is None
    assert refused(new_case(), Action.ACCEPT, staff("QS-XFJ", Role.LEADER, "other")) \
        == "unit:holding"


def test_a_request_already_taken_is_never_refused_again() -> None:
    case = in_handling()
    case.request_ids.append("r-1")
    again = command(Action.ACCEPT, HANDLER, request_id="r-1")
    assert transition.refusal(case, TABLE[Action.ACCEPT], again) is None
    assert transition.already_taken(case, again)


# ---------------------------------------------------------------- each rule


def test_decline_for_a_concluded_matter_cites_the_case() -> None:
    case = new_case()
    assert refused(case, Action.DECLINE, HANDLER, reason="concluded_after_re_review",
                   explanation="已终结") == "decline:concluded"
    act(case, Action.DECLINE, HANDLER, reason="concluded_after_re_review",
        explanation="已终结", concluded_case="QS-2025-000009")
    assert (case.stage, case.outcome, case.clocks) == (Stage.CLOSED, Outcome.NOT_ACCEPTED, {})


def test_a_concluded_matter_is_declined_by_the_system_row_only_when_there_is_one() -> None:
    row = TABLE[Action.DECLINE_CONCLUDED]
    decline = DeclineConcluded(actor=SYSTEM_ACTOR, concluded_case="QS-2025-000009")
    assert transition.refusal(new_case(), row, decline).rule == "decline:concluded"
    case = new_case(concluded_case="QS-2025-000009")
    assert transition.refusal(case, row, command(Action.DECLINE_CONCLUDED, HANDLER,
                                                 concluded_case="x")).rule == "role"
    transition.take(case, row, decline, T0, EffectResults(), CALENDAR)
    assert (case.stage, case.outcome) == (Stage.CLOSED, Outcome.NOT_ACCEPTED)
    [notice] = projections.notices_of(row, decline, case)
    assert notice.template == "decline" and "QS-2025-000009" in notice.body


def test_transfer_goes_elsewhere_and_can_be_objected_to_within_the_window() -> None:
    case = new_case("QS-XFJ")
    bureau = staff("QS-XFJ")
    assert refused(case, Action.TRANSFER, bureau, to_unit="QS-XFJ") == "transfer"
    assert refused(case, Action.REJECT_TRANSFER, bureau, reason="x") == "transfer_objection"
    act(case, Action.TRANSFER, bureau, results=EffectResults(order_no="T-1"),
        to_unit="QS-HRSS")
    assert case.holding_unit == "QS-HRSS"
    assert set(case.clocks) == {ClockName.ACCEPTANCE, ClockName.TRANSFER_OBJECTION}
    assert case.clocks[ClockName.ACCEPTANCE].unit == "QS-HRSS"
    assert case.timeline[-1].summary == "transfer: to_unit=QS-HRSS, order_no=T-1"
    act(case, Action.REJECT_TRANSFER, HANDLER, T0 + HOUR, reason="不属本单位职责")
    assert case.holding_unit == "QS-XFJ" and set(case.clocks) == {ClockName.ROUTING}


def test_an_extension_once_at_most_the_limit_as_requested_by_the_unit_head() -> None:
    case = in_handling()
    due = case.clocks[ClockName.HANDLING].due_at
    assert refused(case, Action.DECIDE_EXTENSION, HEAD, approved=True,
                   reason_to_petitioner="x") == "extension"
    assert refused(case, Action.REQUEST_EXTENSION, HANDLER, days=31,
                   reason="x") == "extension:max"
    act(case, Action.REQUEST_EXTENSION, HANDLER, days=20, reason="需调查")
    assert refused(case, Action.REQUEST_EXTENSION, HANDLER, days=5,
                   reason="x") == "extension:pending"
    assert refused(case, Action.DECIDE_EXTENSION, HANDLER, approved=True,
                   reason_to_petitioner="x") == "role"
    assert refused(case, Action.DECIDE_EXTENSION, HEAD, approved=True, days=25,
                   reason_to_petitioner="x") == "extension"
    act(case, Action.DECIDE_EXTENSION, HEAD, approved=True, reason_to_petitioner="案情复杂")
    extended = case.clocks[ClockName.HANDLING].due_at
    assert extended == case.profile.extended_deadline(
        ClockName.HANDLING, due, load_profile("national").extension.max_period.model_copy(
            update={"amount": 20}), CALENDAR)
    assert (case.extension_days, case.extension_used) == (20, True)
    assert refused(case, Action.REQUEST_EXTENSION, HANDLER, days=5,
                   reason="x") == "extension:once"


def test_a_hearing_is_recorded_once_and_pauses_the_re_review_clock() -> None:
    case = act(review_replied(), Action.REQUEST_RE_REVIEW, PETITIONER,
               re_review_organ="PROV-HRSS", reason="仍不服")
    organ = staff("PROV-HRSS")
    assert refused(case, Action.RECORD_HEARING, organ, hearing_no=1, outcome="supported",
                   summary="x") == "hearing"
    due = case.clocks[ClockName.RE_REVIEW].due_at
    act(case, Action.SCHEDULE_HEARING, organ, results=EffectResults(hearing_no=1),
        venue="听证室", starts_at="2026-04-01T09:30:00+08:00", officers=["HO-1"])
    assert case.clocks[ClockName.RE_REVIEW].paused_at == T0
    assert refused(case, Action.RECORD_HEARING, organ, hearing_no=2, outcome="supported",
                   summary="x") == "hearing"
    act(case, Action.RECORD_HEARING, organ, T0 + 48 * HOUR, hearing_no=1,
        outcome="supported", summary="支持")
    assert case.clocks[ClockName.RE_REVIEW].due_at == due + 48 * HOUR  # not counted
    assert refused(case, Action.RECORD_HEARING, organ, hearing_no=1, outcome="supported",
                   summary="x") == "hearing"


@pytest.mark.parametrize(("requested", "payload", "rule"), [
    ("8000", {"amount_yuan": "9000"}, "assistance:amount"),  # more than applied for
    ("8000", {"exception_approved": True}, "assistance:exception"),  # a leader's to grant
    ("60000", {}, "assistance:leader"),  # above the 50,000 threshold: a leader decides
    ("3000", {}, None),
])
def test_assistance_is_decided_within_the_cap_and_the_threshold(
        requested: str, payload: dict[str, Any], rule: str | None) -> None:
    case = act(in_handling(), Action.REQUEST_ASSISTANCE, HANDLER,
               results=EffectResults(application_no=1), kind="hardship",
               amount_yuan=requested, reason="困难")
    payload = {"application_no": 1, "approved": True, "reason": "同意", **payload}
    if rule is not None:
        assert refused(case, Action.DECIDE_ASSISTANCE, HEAD, **payload) == rule
        return
    act(case, Action.DECIDE_ASSISTANCE, HEAD, **payload)
    assert case.assistance[0].status == "approved"
    assert Effect.PAY_ASSISTANCE in TABLE[Action.DECIDE_ASSISTANCE].effects
    assert refused(case, Action.DECIDE_ASSISTANCE, HEAD, **payload) == "assistance"


def test_the_cap_binds_a_leader_unless_an_exception_is_approved() -> None:
    case = in_handling()
    cap = case.profile.assistance.cap_yuan
    act(case, Action.REQUEST_ASSISTANCE, HANDLER, results=EffectResults(application_no=1),
        kind="judicial", amount_yuan=str(cap + 1), reason="困难")
    assert refused(case, Action.DECIDE_ASSISTANCE, LEADER, application_no=1, approved=True,
                   reason="x") == "assistance:cap"
    act(case, Action.DECIDE_ASSISTANCE, LEADER, application_no=1, approved=True,
        exception_approved=True, reason="特批")
    assert case.assistance[0].amount_yuan == cap + Decimal(1)


def test_review_lies_with_the_superior_organ_and_re_review_above_the_reviewer() -> None:
    case = replied()
    assert refused(case, Action.REQUEST_REVIEW, PETITIONER, review_organ="QS-NR",
                   reason="x") == "review:organ"
    case = review_replied()
    assert case.clocks[ClockName.RE_REVIEW_REQUEST].kind == "window"
    for organ in ("YZ-HRSS", "QS-HRSS", "QS-NR"):
        assert refused(case, Action.REQUEST_RE_REVIEW, PETITIONER, re_review_organ=organ,
                       reason="x") == "re_review:organ"


def test_only_the_reviewing_organ_gives_the_review_opinion() -> None:
    case = act(replied(), Action.REQUEST_REVIEW, PETITIONER, review_organ="YZ-HRSS",
               reason="不服")
    assert refused(case, Action.REVIEW_OPINION, HANDLER, opinion="x") == "unit:review_organ"
    assert refused(case, Action.REVIEW_OPINION, LEADER, opinion="x") == "unit:review_organ"
    assert case.clocks[ClockName.REVIEW].unit == "YZ-HRSS"


# ----------------------------------------------------------- allowed actions


def test_allowed_actions_lists_what_this_actor_may_do_now() -> None:
    case = new_case()
    names = {a.action for a in allowed_actions(case, HANDLER)}
    assert {Action.ACCEPT, Action.DECLINE, Action.TRANSFER, Action.ADD_NOTE} <= names
    assert Action.REJECT_TRANSFER not in names  # no transfer to object to
    assert Action.REPLY not in names and Action.DECLINE_CONCLUDED not in names
    assert {a.action for a in allowed_actions(case, PETITIONER)} == {
        Action.WITHDRAW, Action.ADD_NOTE, Action.REPEAT_VISIT}
    assert allowed_actions(case, staff("QS-NR")) == []  # not this unit's case
    handling = {a.action for a in allowed_actions(in_handling(), HEAD)}
    assert Action.DECIDE_EXTENSION not in handling  # nothing requested yet
    accept = next(a for a in allowed_actions(case, HANDLER) if a.action is Action.ACCEPT)
    assert "actor" not in accept.payload_schema["properties"]
    assert "note" in accept.payload_schema["properties"]


def test_every_person_row_is_offered_to_someone_somewhere() -> None:
    cases = [new_case(), new_case("QS-XFJ"), in_handling(), replied(), review_replied()]
    actors = [HANDLER, HEAD, LEADER, PETITIONER, staff("YZ-HRSS"), staff("QS-XFJ")]
    offered = {a.action for c in cases for who in actors for a in allowed_actions(c, who)}
    # Rows that need an earlier step (a request, a booking) are offered after it.
    later = {Action.DECIDE_EXTENSION, Action.RECORD_HEARING, Action.DECIDE_ASSISTANCE,
             Action.REJECT_TRANSFER, Action.REVIEW_OPINION, Action.RE_REVIEW_OPINION}
    assert {t.action for t in TRANSITIONS if not t.system} - later <= offered


# ------------------------------------------------------------------ clocks


def test_accepting_starts_handling_at_the_profiles_period() -> None:
    case = in_handling()
    handling = case.clocks[ClockName.HANDLING]
    assert handling.due_at == case.profile.deadline(ClockName.HANDLING, T0, CALENDAR)
    assert handling.unit == "QS-HRSS" and case.responsible_unit == "QS-HRSS"
    assert set(case.clocks) == {ClockName.HANDLING}


def test_a_window_lapses_into_resolved_by_the_system_row() -> None:
    case = replied()
    window = case.clocks[ClockName.REVIEW_REQUEST]
    [event] = clocks.events(case)
    assert (event.at, event.what) == (window.due_at, clocks.LAPSE)
    row = TABLE[LAPSE_ACTIONS[ClockName.REVIEW_REQUEST]]
    assert refused(case, row.action, PETITIONER) == "role"
    transition.take(case, row, SystemCommand(actor=SYSTEM_ACTOR), window.due_at,
                    EffectResults(), CALENDAR)
    assert (case.stage, case.outcome) == (Stage.CLOSED, Outcome.RESOLVED)


def test_overdue_escalates_one_level_at_a_time() -> None:
    case = new_case()
    acceptance = case.clocks[ClockName.ACCEPTANCE]
    assert [e.what for e in clocks.events(case)] == [clocks.REMINDER]
    acceptance.reminded = True
    assert clocks.events(case)[0] == clocks.ClockEvent(acceptance.due_at, acceptance.name,
                                                       clocks.LEVEL_1)
    clocks.escalate(case, acceptance)
    assert clocks.events(case)[0].what == clocks.LEVEL_2
    assert (case.was_overdue, clocks.escalation_level(case)) == (True, 1)
    assert clocks.overdue(case, acceptance.due_at) and not clocks.overdue(case, T0)


def test_the_procuratorate_settlement_hands_over_to_monthly_progress_replies() -> None:
    case = act(new_case("QS-HRSS", "procuratorate"), Action.ACCEPT, HANDLER)
    settlement = case.clocks[ClockName.SETTLEMENT]
    late = settlement.due_at - timedelta(days=10)
    act(case, Action.PROGRESS_REPLY, HANDLER, late, text="仍在办理")
    assert clocks.hand_over(case, settlement, CALENDAR)
    assert set(case.clocks) == {ClockName.PROGRESS_REPLY}
    # Without a reply in the last period the clock escalates instead.
    fresh = act(new_case("QS-HRSS", "procuratorate"), Action.ACCEPT, HANDLER)
    assert not clocks.hand_over(fresh, fresh.clocks[ClockName.SETTLEMENT], CALENDAR)


def test_a_note_leaves_the_clocks_signature_alone() -> None:
    case = in_handling()
    before = clocks.signature(case)
    act(case, Action.ADD_NOTE, PETITIONER, text="补充材料")
    assert clocks.signature(case) == before and case.notes == 1
    act(case, Action.REQUEST_EXTENSION, HANDLER, days=10, reason="x")
    act(case, Action.DECIDE_EXTENSION, HEAD, approved=True, reason_to_petitioner="x")
    assert clocks.signature(case) != before


# -------------------------------------------------------------- projections


def test_the_search_attributes_carry_no_personal_data() -> None:
    case = in_handling()
    values = projections.search_attribute_values(case, T0)
    assert values["PetitionStage"] == "in_handling" and values["ResponsibleUnit"] == "QS-HRSS"
    assert values["NextDeadline"] == case.clocks[ClockName.HANDLING].due_at
    assert "Status" not in values
    text = repr(values) + projections.current_details(case, T0)
    assert "测试人" not in text and "11010519491231002X" not in text


def test_the_read_model_row_follows_the_transition() -> None:
    case = in_handling()
    row = case.unrecorded[-1].read_model
    assert (row["stage"], row["accepted_at"], row["handling_due"]) == (
        "in_handling", T0.isoformat(), case.clocks[ClockName.HANDLING].due_at.isoformat())
    assert [r.seq for r in case.unrecorded] == [1, 2]


def test_each_transition_names_its_notices() -> None:
    case = new_case("QS-XFJ")
    cmd = command(Action.TRANSFER, staff("QS-XFJ"), to_unit="QS-HRSS")
    transition.take(case, TABLE[Action.TRANSFER], cmd, T0, EffectResults(), CALENDAR)
    notices = projections.notices_of(TABLE[Action.TRANSFER], cmd, case)
    assert [(n.recipient_kind, n.recipient_ref) for n in notices] == [
        ("unit", "QS-HRSS"), ("petitioner", "QS-2026-000001")]
    assert len({n.key for n in notices}) == 2
    assert "transferred to QS-HRSS" in notices[1].body


def test_the_timeline_keeps_transitions_and_only_the_latest_notes() -> None:
    case = in_handling()
    for n in range(30):
        act(case, Action.ADD_NOTE, PETITIONER, text=f"note {n}")
    actions = [e.action for e in case.timeline]
    assert actions[:2] == [Action.REGISTER, Action.ACCEPT]
    assert actions.count(Action.ADD_NOTE) == 20 and case.notes == 30


def test_a_refused_action_changes_nothing_but_is_recorded() -> None:
    case = new_case()
    before = case.model_copy(deep=True)
    cmd = command(Action.REPLY, HANDLER, opinion="x")
    entry = transition.refused(case, Action.REPLY, cmd, T0, "refused [stage]: ...")
    assert (case.stage, case.clocks, case.seq) == (before.stage, before.clocks, before.seq)
    assert (entry.accepted, case.refused_actions) == (False, 1)
