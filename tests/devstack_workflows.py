"""Workflows that exist only to exercise the local Temporal servers in tests/test_devstack.py.

Workflow modules import only stdlib and temporalio at top level (sandbox-friendly), so the
search attribute key is declared here rather than imported from adapters.search_attributes;
test_devstack checks that the two agree.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import SearchAttributeKey

PETITION_STAGE = SearchAttributeKey.for_keyword("PetitionStage")


@workflow.defn
class StageMarkerWorkflow:
    """Marks itself with a PetitionStage, then stays open until told to finish,
    like a petition waiting for a handler across a server restart."""

    def __init__(self) -> None:
        self._finish = False

    @workflow.run
    async def run(self, stage: str) -> str:
        workflow.upsert_search_attributes([PETITION_STAGE.value_set(stage)])
        await workflow.wait_condition(lambda: self._finish)
        return stage

    @workflow.signal
    def finish(self) -> None:
        self._finish = True


@workflow.defn
class LongSleepWorkflow:
    """Sleeps for `days` of workflow time and reports how much workflow time passed."""

    @workflow.run
    async def run(self, days: int) -> float:
        started = workflow.now()
        await workflow.sleep(timedelta(days=days))
        return (workflow.now() - started).total_seconds()
