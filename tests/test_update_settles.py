"""An action taken by Update is in the workflow's history before its audit row is written.

The audit row is written by a local activity inside a workflow task; an Update's input
enters the history only when the task that runs its handler completes. Without a task
boundary between the two, PostgreSQL holds the row before Temporal holds the action, and
a restore from one backup taken in between (drills/backup_restore.py found one in 77
petitions under load) has the row of an action its workflow never took."""

from __future__ import annotations

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

from domain.models import Action
from tests.conftest import make_intake
from tests.lifecycle_helpers import COMPETENT_UNIT, Case

ACCEPTED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
SCHEDULED = EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
MARKER = EventType.EVENT_TYPE_MARKER_RECORDED
LOCAL_ACTIVITY = "core_local_activity"  # the SDK's marker name (a patch has its own)


def update_name(event: HistoryEvent) -> str:
    return event.workflow_execution_update_accepted_event_attributes.accepted_request \
        .input.name


def writes_records(event: HistoryEvent) -> bool:
    """A local activity's marker (written with the task it ran in) or an ordinary
    activity recording the audit rows (started only after the task that scheduled it)."""
    return (event.event_type == MARKER
            and event.marker_recorded_event_attributes.marker_name == LOCAL_ACTIVITY) or (
        event.event_type == SCHEDULED
        and event.activity_task_scheduled_event_attributes.activity_type.name
        == "record_transitions")


async def test_an_accepted_update_is_durable_before_its_record_is_written(
        ts_env, running_worker, petitions) -> None:
    async with running_worker(ts_env.client):
        case = await Case.start(ts_env, petitions, intake=make_intake(unit=COMPETENT_UNIT))
        await case.act(Action.ACCEPT)
        events = [e async for e in case.handle.fetch_history_events()]
    accepted = next(i for i, e in enumerate(events)
                    if e.event_type == ACCEPTED and update_name(e) == "accept")
    record = next(e for e in events[accepted:] if writes_records(e))
    assert record.event_type == SCHEDULED, (
        "the accept's audit row was written by a local activity inside the workflow task "
        "that accepted the Update, before Temporal stored the Update")
