"""Open cases resume as running workflows, carrying the replayed case.

Each starts with `PetitionStart(carried=state)`: the workflow takes the case as it
stands (clocks, timeline, calendar snapshot) and goes on from there. Its search
attributes are set at start from `domain.projections.search_attribute_values`, so
supervisors see an imported case at once. A workflow that already exists (an earlier
run of the same import) is left alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from temporalio.client import Client
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from adapters import search_attributes as sa
from domain import projections
from domain.case import CaseState, PetitionStart
from starter.intake import static_summary
from starter.legacy.replay import Replayed

WORKFLOW_STARTS_IN_FLIGHT = 64


def search_attributes(case: CaseState, now: datetime) -> TypedSearchAttributes:
    """The case's search attributes (an unset one, e.g. no next deadline, is left out)."""
    values = projections.search_attribute_values(case, now)
    return TypedSearchAttributes([SearchAttributePair(sa.BY_NAME[name], value)
                                  for name, value in values.items() if value is not None])


def carried(replayed: Replayed, petition_id: int) -> CaseState:
    """The state the workflow starts from: its audit records are written already."""
    case = replayed.case
    case.petition_id = petition_id
    case.unrecorded = []
    return case


async def start_workflows(client: Client, task_queue: str, cases: list[Replayed],
                          ids: dict[int, int], now: datetime,
                          advance: Callable[[], None]) -> tuple[int, int, list[str]]:
    """Start the workflows of `cases` (petition ids by line in `ids`). Returns how many
    started, how many existed already, and the failures (a re-run finishes the job)."""
    from adapters.petition_client import PetitionClient

    petitions = PetitionClient(client, task_queue)  # the starts are signed (issue 12)
    gate = asyncio.Semaphore(WORKFLOW_STARTS_IN_FLIGHT)
    started, existing, failures = 0, 0, []

    async def start(replayed: Replayed) -> None:
        nonlocal started, existing
        async with gate:
            state = carried(replayed, ids[replayed.line])
            intake = replayed.intake
            try:
                await petitions.start_petition(
                    PetitionStart(intake=intake, registration_no=state.registration_no,
                                  carried=state),
                    reuse_closed=False,
                    search_attributes=search_attributes(state, now),
                    static_summary=static_summary(intake, state.registration_no),
                    static_details=f"Imported from a legacy record ({state.stage}); its "
                                   f"history replayed under profile `{state.profile.name}` "
                                   "at the original times.")
                started += 1  # started now, or already running from an earlier run
            except WorkflowAlreadyStartedError:
                existing += 1  # closed already: it has moved on since
            except Exception as err:  # noqa: BLE001 - reported, and a re-run finishes the job
                failures.append(f"line {replayed.line}: {err}")
            advance()

    await asyncio.gather(*(start(c) for c in cases))
    return started, existing, failures
