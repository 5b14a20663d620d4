"""The floor: what the same Temporal server, worker and harness do with no business in it.

`FloorWorkflow` runs one no-op activity and completes (one "transition" of the floor);
with `fire_at` it first waits on a durable timer to that instant (the deadline floor);
with `hold=True` it then stays open and answers a no-op Update, the floor for the
handler-action Update round trip. Registered on the bench worker beside
PetitionWorkflow, so both go through the same worker, converter (the product's
encrypting pydantic converter) and server.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel
from temporalio import activity, workflow


class FloorInput(BaseModel):
    hold: bool = False
    fire_at: datetime | None = None  # a durable timer to this instant first (deadline floor)


class FloorNote(BaseModel):
    n: int = 0


@activity.defn
async def floor_noop(note: FloorNote) -> FloorNote:
    return note


@workflow.defn
class FloorWorkflow:
    def __init__(self) -> None:
        self._finished = False

    @workflow.run
    async def run(self, start: FloorInput) -> int:
        """Returns how late, in milliseconds, the timer to `fire_at` fired (0 without one)."""
        late_ms = 0
        if start.fire_at is not None:
            wait = start.fire_at - workflow.now()
            if wait > timedelta(0):
                await workflow.sleep(wait)
            late_ms = int((workflow.now() - start.fire_at).total_seconds() * 1000)
        await workflow.execute_activity(floor_noop, FloorNote(n=late_ms),
                                        start_to_close_timeout=timedelta(seconds=30))
        if start.hold:
            await workflow.wait_condition(lambda: self._finished)
            await workflow.wait_condition(workflow.all_handlers_finished)
        return late_ms

    @workflow.update
    async def noop(self, note: FloorNote) -> FloorNote:
        return note

    @workflow.update
    async def finish(self) -> None:
        self._finished = True
