"""Issue 11, item 5: the importer's replay against the live workflow, stage by stage.

For every statutory profile one live petition walks the ordinary path on the
time-skipping server through the real worker: registered at the county petition bureau
(its routing clock), transferred to the competent unit (acceptance clock, objection
window), accepted (and its handling period extended, where the profile has one),
replied, reviewed, re-reviewed. At each stop the equivalent legacy record -- the same
times, units and organs -- is replayed by the importer (`starter.legacy.replay`), and
the replayed case must equal the live one: stage, units, clocks with their due,
reminder and level-2 times, extension, outcome, timeline; so must every projection
(status, read model, search attributes) and what the import would write (the read-model
row and the audit trail with its keys) compared with what the live workflow wrote.

The live state is read through a query of a test-only subclass of the workflow
(`_Observed`, registered under the workflow's own name).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities import build_desks
    from domain import clocks, projections
    from domain.case import CaseState, PetitionStart, PetitionStatus
    from domain.lifecycle import TABLE
    from domain.models import OPEN_STAGES, Action, Stage
    from domain.policy import available_profiles, load_profile
    from starter.legacy import load
    from starter.legacy.importer import load_directory, worker_calendar
    from starter.legacy.read import LegacyRecord
    from starter.legacy.replay import Replayed, Replayer
    from tests.conftest import make_intake
    from tests.lifecycle_helpers import BUREAU, COMPETENT_UNIT, Case
    from worker import build_worker
    from workflows.petition import PetitionWorkflow


@workflow.defn(name="PetitionWorkflow")
class _Observed(PetitionWorkflow):
    """The workflow, with its whole state readable (test only)."""

    @workflow.run
    async def run(self, start: PetitionStart) -> PetitionStatus:
        return await super().run(start)

    @workflow.query
    def case_state(self) -> CaseState | None:
        return self._state


pytestmark = pytest.mark.slow  # five live petitions, 36 comparisons: 10 to 30 s on two cores

# The statutory profiles: every profile counted in days (the others, `bench` and `demo`,
# run in minutes and seconds for benchmarks and demonstrations).
STATUTORY = [p for p in available_profiles() if load_profile(p).counts_on_calendar]
# The stops of the walk: (name, stage). Both registered stops, before and after the
# transfer; every open stage is one of them.
STOPS = (("registered", Stage.REGISTERED), ("registered_transferred", Stage.REGISTERED),
         ("in_handling", Stage.IN_HANDLING), ("replied", Stage.REPLIED),
         ("under_review", Stage.UNDER_REVIEW), ("review_replied", Stage.REVIEW_REPLIED),
         ("under_re_review", Stage.UNDER_RE_REVIEW))
EXTENSION_DAYS = 20
# What a legacy record does not say: when an extension was asked for and granted. The
# replay takes it at the acceptance; its clocks do not depend on when.
UNTIMED = frozenset({Action.REQUEST_EXTENSION, Action.DECIDE_EXTENSION})


def test_the_walk_covers_every_statutory_profile_and_open_stage() -> None:
    assert set(STATUTORY) == {"national", "procuratorate", "zhejiang", "shandong", "sichuan"}
    assert {stage for _, stage in STOPS} == set(OPEN_STAGES)


def extends(profile: str) -> bool:
    """Whether a case under `profile` can have its handling period extended: the
    procuratorate's profile has no handling period (a 3-month settlement instead), so
    that walk skips the extension (its in_handling stop is still compared)."""
    p = load_profile(profile)
    return p.extension.max_times > 0 and all(
        p.clock(name) is not None for name in TABLE[Action.DECIDE_EXTENSION].extends)


@dataclass
class Stop:
    """The live case at one stop of the walk."""

    state: CaseState
    status: PetitionStatus
    now: datetime
    petition: dict[str, Any]  # its read-model row in PostgreSQL
    events: list[dict[str, Any]]  # its audit trail


@dataclass
class Walk:
    intake: Any
    stops: dict[str, Stop]


_WALKS: dict[str, Walk] = {}  # one live petition per profile serves all its stops


@asynccontextmanager
async def observed_worker(client: Any, sessions: Any, task_queue: str,
                          petitions: Any) -> AsyncIterator[None]:
    worker = build_worker(client, build_desks(sessions), task_queue=task_queue,
                          workflows=[_Observed])
    async with worker:
        yield
        await petitions.settle(client)


async def _stop(case: Case, sessions: Any) -> Stop:
    state = await case.handle.query("case_state", result_type=CaseState)
    assert isinstance(state, CaseState)
    status = await case.refresh()
    async with sessions() as session:
        petition = (await session.execute(text(
            "SELECT * FROM petitions WHERE workflow_id = :w"), {"w": case.handle.id})
        ).mappings().one()
        events = (await session.execute(text(
            "SELECT * FROM petition_events WHERE workflow_id = :w ORDER BY seq"),
            {"w": case.handle.id})).mappings().all()
    return Stop(state, status, await case.env.get_current_time(), dict(petition),
                [dict(e) for e in events])


async def walk(profile: str, env: Any, sessions: Any, task_queue: str,
               petitions: Any) -> Walk:
    if profile in _WALKS:
        return _WALKS[profile]
    received = await env.get_current_time() - timedelta(hours=1)
    intake = make_intake(unit=BUREAU, profile=profile, received_at=received.isoformat())
    stops: dict[str, Stop] = {}
    async with observed_worker(env.client, sessions, task_queue, petitions):
        case = await Case.start(env, petitions, intake=intake)
        stops["registered"] = await _stop(case, sessions)
        await case.act(Action.TRANSFER, to_unit=COMPETENT_UNIT)
        stops["registered_transferred"] = await _stop(case, sessions)
        await case.act(Action.ACCEPT)
        if extends(profile):
            await case.act(Action.REQUEST_EXTENSION, days=EXTENSION_DAYS)
            await case.act(Action.DECIDE_EXTENSION)
        stops["in_handling"] = await _stop(case, sessions)
        for name, stage in STOPS[3:]:
            await case.walk_to(stage)
            stops[name] = await _stop(case, sessions)
    _WALKS[profile] = Walk(intake, stops)
    return _WALKS[profile]


def legacy_row(intake: Any, stop: Stop) -> dict[str, Any]:
    """The legacy record of the live case at `stop`: the same times, units and organs."""
    live = stop.state
    at = {e.action: e.at for e in live.timeline}
    row: dict[str, Any] = {
        "registration_no": live.registration_no, "intake_id": intake.intake_id,
        "unit": intake.unit, "channel": intake.channel, "category": intake.category,
        "received_at": intake.received_at, "registered_at": at[Action.REGISTER],
        "stage": live.stage, "profile": live.profile.name,
        "petitioner_name": intake.petitioner.name,
        "petitioner_id_number": intake.petitioner.id_number,
        "petitioner_phone": intake.petitioner.phone, "subject": intake.subject,
        "content": intake.content,
    }
    if Action.TRANSFER in at:
        row.update(holding_unit=live.holding_unit, transferred_at=at[Action.TRANSFER])
    milestones = {Action.ACCEPT: "accepted_at", Action.REPLY: "replied_at",
                  Action.REQUEST_REVIEW: "review_requested_at",
                  Action.REVIEW_OPINION: "review_replied_at",
                  Action.REQUEST_RE_REVIEW: "re_review_requested_at"}
    row.update({column: at[action] for action, column in milestones.items() if action in at})
    if live.responsible_unit:
        row["responsible_unit"] = live.responsible_unit
    row.update(extension_days=live.extension_days, review_organ=live.review_organ,
               re_review_organ=live.re_review_organ)
    return row


def essentials(case: CaseState) -> dict[str, Any]:
    """Everything but what only the live run has (its database id, its calendar snapshot,
    its request ids) and the timeline (compared on its own)."""
    return case.model_dump(exclude={"petition_id", "calendar", "timeline", "request_ids",
                                    "unrecorded"})


def timeline(case: CaseState) -> list[tuple[Any, ...]]:
    return [(e.seq, e.action, e.from_stage, e.to_stage, e.accepted,
             None if e.action in UNTIMED else e.at) for e in case.timeline]


async def _replay(row: dict[str, Any], stop: Stop, sessions: Any) -> Replayed:
    directory = await load_directory(sessions)
    context = {"units": frozenset(directory.units), "profiles": frozenset(STATUTORY)}
    record = LegacyRecord.model_validate(row, context=context)
    return Replayer(directory, worker_calendar(), stop.now).replay(2, record)


@pytest.mark.parametrize("stop_name", [name for name, _ in STOPS])
@pytest.mark.parametrize("profile", STATUTORY)
async def test_an_imported_case_is_the_live_case(profile: str, stop_name: str, ts_env,
                                                 sessions, task_queue, petitions) -> None:
    walked = await walk(profile, ts_env, sessions, task_queue, petitions)
    stop = walked.stops[stop_name]
    live = stop.state
    assert live.stage is dict(STOPS)[stop_name]
    replayed = await _replay(legacy_row(walked.intake, stop), stop, sessions)
    case = replayed.case

    # The case itself: stage, units, clocks (due, reminder, level 2), extension, outcome...
    assert essentials(case) == essentials(live)
    assert timeline(case) == timeline(live)
    if extends(profile) and stop_name not in ("registered", "registered_transferred"):
        assert case.extension_days == EXTENSION_DAYS and case.extension_used
    # The calendar it carries covers what the workflow counts in, as the live one does.
    if case.calendar is not None:
        assert live.calendar is not None
        first, last = clocks.calendar_years(case, stop.now)
        held = {y.year: y for y in case.calendar.years}
        assert set(range(first, last + 1)) <= set(held)
        for year in live.calendar.years:
            assert year.year not in held or held[year.year] == year

    # What supervisors and the status query see.
    assert not stop.status.overdue  # the walk takes minutes: nothing is overdue
    assert projections.status(case, stop.now) == stop.status
    assert {c.name: c.due_at for c in stop.status.clocks} == {
        name: c.due_at for name, c in case.clocks.items()}
    assert projections.search_attribute_values(case, stop.now) == \
        projections.search_attribute_values(live, stop.now)
    assert projections.read_model_row(case, stop.now) == \
        projections.read_model_row(live, stop.now)

    # What the import would write (sealed as it seals them), against what the live
    # workflow wrote: the blind index too. (Imported here: this module is also loaded in
    # the workflow sandbox, which refuses the settings' file lookups.)
    from adapters.data_keys import vault_from_settings
    from adapters.settings import get_settings
    from security.blind_index import index_from_settings

    petition, events = load.staging_rows(replayed, "differential.csv")
    [petition], events = await load.seal_rows(vault_from_settings(get_settings(), sessions),
                                              index_from_settings(get_settings()),
                                              [petition], events)
    staged = dict(zip(load.PETITION_COLUMNS, petition, strict=True))
    for column in (*load.READ_MODEL_COLUMNS, "registered_at", "last_seq", "matter_key",
                   "petitioner_id_index", "petitioner_phone_index",
                   "registered_unit", "profile", "workflow_id", "registration_no"):
        assert staged[column] == stop.petition[column], column
    trail = [dict(zip(load.EVENT_COLUMNS, e, strict=True)) for e in events]
    assert [(e["seq"], e["idempotency_key"], e["action"], e["from_stage"], e["to_stage"])
            for e in trail] == [
        (e["seq"], e["idempotency_key"], e["action"], e["from_stage"], e["to_stage"])
        for e in stop.events]
    assert [e["at"] for e in trail if e["action"] not in UNTIMED] == [
        e["at"] for e in stop.events if e["action"] not in UNTIMED]
