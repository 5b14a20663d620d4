"""The full path of one petition, then a new petition on the same facts.

registered (county petition bureau) -> transfer -> accept -> extension (requested by the
handler, decided by the unit head) -> hearing (scheduled, recorded) -> reply -> review ->
re-review -> concluded (终结, in the termination registry); then a new petition by the same
petitioner, in the same category, about the same respondent is declined, citing the
concluded case. Along the way: what a supervisor sees in the Temporal UI.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.sdk.v1 import WorkflowMetadata

from domain.lifecycle import CLOCK_TITLES
from domain.models import Action, ClockName, DeclineReason, Outcome, Stage
from domain.policy import Period, PeriodUnit, load_profile
from tests.conftest import make_intake
from tests.lifecycle_helpers import (
    BUREAU,
    CALENDAR,
    COMPETENT_UNIT,
    RE_REVIEW_ORGAN,
    REVIEW_ORGAN,
    Case,
    clock,
    clock_names,
    eventually,
    finished,
    head,
    opened_notices,
    pg_fetch,
)
from workflows.petition import PetitionWorkflow

NATIONAL = load_profile("national")
PATH_ACTIONS = [
    "register", "transfer", "accept", "request_extension", "decide_extension",
    "schedule_hearing", "record_hearing", "reply", "request_review", "review_opinion",
    "request_re_review", "re_review_opinion",
]


async def current_details(case: Case) -> str:
    metadata = await case.handle.query("__temporal_workflow_metadata",
                                       result_type=WorkflowMetadata)
    return metadata.current_details


async def summaries(case: Case, event_type: EventType.ValueType) -> list[str]:
    """The summaries the UI shows on timers or activities (decoded: payloads are encrypted)."""
    converter = case.env.client.data_converter
    found = []
    async for event in case.handle.fetch_history_events():
        if event.event_type == event_type and event.user_metadata.HasField("summary"):
            [text] = await converter.decode([event.user_metadata.summary])
            found.append(text)
    return found


async def test_registered_to_concluded_then_the_same_matter_is_declined(
        ts_env, running_worker, petitions, db_url):
    intake = make_intake(unit=BUREAU, category="labour_and_social_security",
                         respondent="某建筑公司 Some Construction Co.")
    async with running_worker(ts_env.client):
        case = await Case.start(ts_env, petitions, intake=intake)
        status = case.last
        assert (status.stage, status.holding_unit, clock_names(status)) == (
            Stage.REGISTERED, BUREAU, {ClockName.ROUTING})

        status = await case.act(Action.TRANSFER, to_unit=COMPETENT_UNIT)
        assert status.holding_unit == COMPETENT_UNIT and status.responsible_unit is None
        assert clock_names(status) == {ClockName.ACCEPTANCE, ClockName.TRANSFER_OBJECTION}

        status = await case.act(Action.ACCEPT)
        assert (status.stage, status.responsible_unit) == (Stage.IN_HANDLING, COMPETENT_UNIT)
        handling_due = clock(status, ClockName.HANDLING).due_at

        await ts_env.sleep(timedelta(days=40))
        await case.act(Action.REQUEST_EXTENSION, days=25, reason="需要听证 a hearing is needed")
        assert clock(case.last, ClockName.HANDLING).due_at == handling_due  # only requested
        status = await case.act(Action.DECIDE_EXTENSION, head(COMPETENT_UNIT),
                                reason_to_petitioner="需组织听证 a public hearing is required")
        extended = NATIONAL.extended_deadline(
            ClockName.HANDLING, handling_due, Period(amount=25, unit=PeriodUnit.DAYS), CALENDAR)
        assert clock(status, ClockName.HANDLING).due_at == extended > handling_due
        assert status.extension_days == 25

        details = await current_details(case)
        assert "in handling" in details and CLOCK_TITLES[ClockName.HANDLING] in details
        assert f"{(extended + timedelta(hours=8) - timedelta(days=1)):%Y-%m-%d} 24:00" \
            in details, details

        status = await case.act(Action.SCHEDULE_HEARING)
        [hearing] = status.hearings
        status = await case.act(Action.RECORD_HEARING, hearing_no=hearing.hearing_no)
        assert status.hearings[0].outcome == "supported"
        assert clock(status, ClockName.HANDLING).due_at == extended  # no pause in handling

        status = await case.act(Action.REPLY)
        assert status.stage is Stage.REPLIED and not status.overdue
        status = await case.act(Action.REQUEST_REVIEW)
        assert (status.stage, clock(status, ClockName.REVIEW).unit) == (
            Stage.UNDER_REVIEW, REVIEW_ORGAN)
        status = await case.act(Action.REVIEW_OPINION)
        assert status.stage is Stage.REVIEW_REPLIED
        status = await case.act(Action.REQUEST_RE_REVIEW)
        assert (status.stage, clock(status, ClockName.RE_REVIEW).unit) == (
            Stage.UNDER_RE_REVIEW, RE_REVIEW_ORGAN)
        status = await case.act(Action.RE_REVIEW_OPINION)
        assert (status.stage, status.outcome, status.clocks) == (
            Stage.CLOSED, Outcome.CONCLUDED, [])
        first = await finished(case.handle)
        assert first.outcome is Outcome.CONCLUDED
        assert "closed (concluded)" in await current_details(case)
        await _ui_summaries(case)

        # The same petitioner, category and respondent: the same matter.
        again = make_intake(unit=COMPETENT_UNIT, category=intake.category,
                            respondent=intake.respondent, petitioner=intake.petitioner,
                            subject="又来反映 the same complaint again", channel="letter")
        second = await petitions.start(ts_env, again)
        # Not `second.result()`: the Java test server misses the completion of a workflow
        # that completes in the same task as the Update answering the intake client.
        declined = await finished(second)
        decline = (await second.query(PetitionWorkflow.timeline))[-1]
    assert (declined.stage, declined.outcome) == (Stage.CLOSED, Outcome.NOT_ACCEPTED)
    assert declined.concluded_case == first.registration_no
    assert decline.action is Action.DECLINE_CONCLUDED and decline.actor.role == "system"
    assert DeclineReason.CONCLUDED_AFTER_RE_REVIEW.value in decline.summary

    await _system_of_record(db_url, case.handle.id, first.registration_no, second.id)


async def _ui_summaries(case: Case) -> None:
    timers = await summaries(case, EventType.EVENT_TYPE_TIMER_STARTED)
    assert any(t.startswith(CLOCK_TITLES[ClockName.HANDLING]) and "Art. 34" in t
               and "24:00 Beijing time" in t for t in timers), timers
    activities = await summaries(case, EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)
    for action in ("transfer", "schedule_hearing", "record_hearing", "decide_extension",
                   "re_review_opinion"):
        assert any(a.startswith(action) or f"record {action}" in a for a in activities), \
            (action, activities)
    assert "re_review_opinion: enter the termination registry" in activities


async def _system_of_record(db_url: str, workflow_id: str, registration_no: str,
                            second_id: str) -> None:
    events = await pg_fetch(db_url, "SELECT action, accepted FROM petition_events "
                            "WHERE workflow_id = $1 ORDER BY seq", workflow_id)
    assert [e["action"] for e in events] == PATH_ACTIONS and all(e["accepted"] for e in events)
    [entry] = await pg_fetch(db_url, "SELECT t.registration_no, concluded_by_unit FROM "
                             "termination_registry t JOIN petitions p ON p.id = t.petition_id "
                             "WHERE p.workflow_id = $1", workflow_id)
    assert dict(entry) == {"registration_no": registration_no,
                           "concluded_by_unit": RE_REVIEW_ORGAN}
    [row] = await pg_fetch(db_url, "SELECT stage, outcome, extension_days FROM petitions "
                           "WHERE workflow_id = $1", workflow_id)
    assert dict(row) == {"stage": "closed", "outcome": "concluded", "extension_days": 25}
    notices = await opened_notices(
        db_url, "SELECT n.template, n.idempotency_key, n.body_sealed FROM notices n JOIN "
        "petitions p ON p.id = n.petition_id WHERE p.workflow_id = $1 AND "
        "n.recipient_kind = 'petitioner'", workflow_id)
    bodies: dict[str, Any] = {n["template"]: n["body"] for n in notices}
    assert "a public hearing is required" in bodies["decide_extension"]
    assert "extended by 25 days" in bodies["decide_extension"]
    [declined] = await opened_notices(
        db_url, "SELECT p.stage, p.outcome, n.idempotency_key, n.body_sealed FROM petitions p "
        "JOIN notices n ON n.petition_id = p.id WHERE p.workflow_id = $1 "
        "AND n.template = 'decline'", second_id)
    assert (declined["stage"], declined["outcome"]) == ("closed", "not_accepted")
    assert registration_no in declined["body"]


# On the dev server: the time-skipping server (1.38, 1.39) drops the headers of signals,
# so the repeat visit the second intake signals could not carry its assertion there.
async def test_a_repeat_visit_on_an_open_matter_is_counted_on_that_case(
        dev_env, running_worker, petitions, db_url):
    intake = make_intake(unit=COMPETENT_UNIT, respondent="某物业公司 Some Property Co.")
    async with running_worker(dev_env.client):
        case = await Case.start(dev_env, petitions, intake=intake)
        await case.act(Action.ACCEPT)
        again = make_intake(unit=BUREAU, category=intake.category, channel="hotline_12345",
                            respondent=intake.respondent, petitioner=intake.petitioner)
        visit = await petitions.start(dev_env, again)
        receipt = await finished(visit)
        assert receipt.attached_to == case.handle.id and receipt.stage is None

        async def counted() -> bool:
            return (await case.refresh()).repeat_visits == 1

        assert await eventually(counted)
        entry = (await case.timeline())[-1]
        assert (entry.action, entry.actor.role, entry.from_stage) == (
            Action.REPEAT_VISIT, "intake_clerk", Stage.IN_HANDLING)
        assert case.last.stage is Stage.IN_HANDLING
        # The visit's record is written with the next batch: poll the read model.
        rows = await eventually(lambda: pg_fetch(
            db_url, "SELECT 1 FROM petitions WHERE workflow_id = $1 AND repeat_visits = 1",
            case.handle.id))
        assert rows
