"""Issue 7, item 4: `petition import FILE.csv` — COPY into the system of record, all or
nothing, and open cases resuming their ORIGINAL deadlines as running workflows.
Issue 11, item 5: each record's history is replayed through the domain core (see also
tests/test_import_differential.py)."""

from __future__ import annotations

import csv
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from adapters.data_keys import vault_from_settings
from adapters.petition_client import PetitionClient, workflow_id_for
from adapters.search_attributes import PETITION_STAGE
from adapters.settings import get_settings
from adapters.tables import (
    Petition,
    PetitionEvent,
    RegistrationCounter,
    RegistrationNumber,
    TerminationEntry,
)
from domain.calendar import WorkingCalendar
from domain.case import matter_digest
from domain.models import Actor, ClockName, PetitionIntake, Reply, Role, Stage
from domain.policy import load_profile
from security.blind_index import index_from_settings
from starter.legacy import COLUMNS, LegacyRecord, import_file
from starter.legacy.replay import intake_of
from tests.cli import petition
from workflows.petition import PetitionWorkflow

HANDLER = Actor(id="qs-hrss-h1", role=Role.HANDLER, unit="QS-HRSS")


def _row(**overrides: Any) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:10]
    received = datetime(2023, 3, 6, 9, 30, tzinfo=UTC)
    base = {
        "registration_no": f"LEG-{tag}", "intake_id": f"L-{tag}", "unit": "QS-XFJ",
        "channel": "letter", "category": "wage_arrears", "received_at": received.isoformat(),
        "stage": "closed", "outcome": "resolved", "responsible_unit": "QS-HRSS",
        "holding_unit": "QS-HRSS", "accepted_at": (received + timedelta(days=5)).isoformat(),
        "replied_at": (received + timedelta(days=40)).isoformat(),
        "closed_at": (received + timedelta(days=72)).isoformat(), "satisfaction": "satisfied",
        "petitioner_name": "王某", "petitioner_id_number": str(10**16 + int(tag[:8], 16))[:17]
        + "X", "subject": f"拖欠工资 {tag}", "content": "多行\n内容, with a comma",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def _write(tmp_path: Path, rows: list[dict[str, Any]]) -> Path:
    path = tmp_path / f"legacy-{uuid.uuid4().hex[:6]}.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(COLUMNS))
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
    return path


async def _count(sessions, model, column, values) -> int:
    async with sessions() as session:
        return int(await session.scalar(
            select(func.count()).select_from(model).where(column.in_(values))) or 0)


async def test_small_csv_imports_closed_history_into_the_system_of_record(
        engine, sessions, tmp_path):
    year = 2023
    concluded = _row(outcome="concluded", review_organ="YZ-XFJ",
                     review_requested_at="2023-04-20T08:00:00+08:00",
                     review_replied_at="2023-05-10T08:00:00+08:00",
                     re_review_organ="PROV-XFJ",
                     re_review_requested_at="2023-05-20T08:00:00+08:00",
                     closed_at="2023-06-15T08:00:00+08:00")
    own_format = _row(registration_no=f"QS-XFJ-{year}-900001", stage="closed",
                      outcome="not_accepted", accepted_at=None, replied_at=None,
                      satisfaction=None, responsible_unit=None, holding_unit=None,
                      closed_at="2023-03-10T08:00:00+08:00")
    rows = [_row(), concluded, own_format]
    result = await import_file(_write(tmp_path, rows), engine, client=None,
                               task_queue="unused", progress=False)
    assert result.error_count == 0, result.errors
    assert (result.rows, result.imported, result.open_cases) == (3, 3, 0)

    intake_ids = [r["intake_id"] for r in rows]
    async with sessions() as session:
        stored = {p.intake_id: p for p in await session.scalars(
            select(Petition).where(Petition.intake_id.in_(intake_ids)))}
        counter = await session.get(RegistrationCounter, ("QS-XFJ", year))
        events = (await session.scalars(select(PetitionEvent).where(
            PetitionEvent.workflow_id.in_([workflow_id_for(i) for i in intake_ids])))).all()
    first = stored[rows[0]["intake_id"]]
    assert first.stage == "closed" and first.outcome == "resolved"
    assert first.satisfaction == "satisfied" and first.responsible_unit == "QS-HRSS"
    vault = vault_from_settings(get_settings(), sessions)
    where = f"petitions.{{}}:{first.intake_id}"
    petitioner = await vault.open_json(first.petitioner_sealed, where.format("petitioner"))
    content = await vault.open(first.content_sealed, where.format("content"))
    assert petitioner["name"] == "王某" and content.decode() == "多行\n内容, with a comma"
    assert first.petitioner_id_index == index_from_settings(get_settings()).id_number(
        rows[0]["petitioner_id_number"])
    assert b"\xe7\x8e\x8b\xe6\x9f\x90" not in first.petitioner_sealed  # 王某 in UTF-8
    assert first.workflow_id == workflow_id_for(rows[0]['intake_id'])
    # The historical acceptance deadline is the profile's, from the original registration.
    assert first.acceptance_due == load_profile("national").deadline(
        ClockName.ROUTING, datetime.fromisoformat(rows[0]["received_at"]), WorkingCalendar())
    assert stored[concluded["intake_id"]].reviewed is True
    # The history is in the audit trail at its original times, keyed as the workflow keys
    # it: registered by the bureau, transferred to the unit holding it (when, the record
    # does not say: at registration), accepted, replied and rated, closed by the window.
    trail = sorted((e.seq, e.action, e.at, e.idempotency_key) for e in events
                   if e.workflow_id == first.workflow_id)
    assert [(seq, action) for seq, action, _, _ in trail] == [
        (1, "register"), (2, "transfer"), (3, "accept"), (4, "reply"), (5, "rate"),
        (6, "review_window_lapsed")]
    assert [at for _, _, at, _ in trail] == [datetime.fromisoformat(rows[0][k]) for k in (
        "received_at", "received_at", "accepted_at", "replied_at", "replied_at", "closed_at")]
    assert trail[2][3] == f"{first.workflow_id}:3:accept" and first.last_seq == 6
    assert first.matter_key == index_from_settings(get_settings()).matter_key(
        intake_of(LegacyRecord.model_validate(rows[0]), "national"))
    concluded_trail = [e.action for e in sorted(events, key=lambda e: e.seq or 0)
                       if e.workflow_id == workflow_id_for(concluded['intake_id'])]
    assert concluded_trail == ["register", "transfer", "accept", "reply", "rate",
                               "request_review", "review_opinion", "request_re_review",
                               "re_review_opinion"]
    declined = [e.action for e in sorted(events, key=lambda e: e.seq or 0)
                if e.workflow_id == workflow_id_for(own_format['intake_id'])]
    assert declined == ["register", "decline"]
    assert await _count(sessions, TerminationEntry, TerminationEntry.registration_no,
                        [concluded["registration_no"]]) == 1
    assert await _count(sessions, RegistrationNumber, RegistrationNumber.intake_id,
                        intake_ids) == 3
    # A live registration can never draw a number an imported case already holds.
    assert counter is not None and counter.last_seq >= 900001

    again = await import_file(_write(tmp_path, rows), engine, client=None,
                              task_queue="unused", progress=False)
    assert (again.error_count, again.imported, again.already_imported) == (0, 0, 3)
    assert await _count(sessions, Petition, Petition.intake_id, intake_ids) == 3


async def test_bad_rows_are_reported_by_line_and_nothing_is_imported(
        db_url, sessions, dev_env, task_queue, tmp_path):
    good = _row()
    clash = _row()
    rows = [
        good,                                                   # line 2 (content spans 2 lines)
        _row(received_at="2023-03-06T09:30:00"),                # line 4: no time zone
        _row(unit="NO-SUCH-UNIT"),                              # line 6: not in the directory
        _row(outcome=None),                                     # line 8: closed, no outcome
        _row(intake_id=good["intake_id"]),                      # line 10: repeats line 2
        _row(stage="replied", outcome=None, closed_at=None,
             replied_at="2023-03-01T00:00:00+08:00"),           # line 12: reply before intake
        clash,                                                  # line 14: fine
        _row(channel="pigeon", petitioner_id_number="123"),     # line 16: two problems
        _row(intake_id="hotline-139-1234-5678"),                # line 18: a phone in clear
    ]
    path = _write(tmp_path, rows)
    result = await petition("import", str(path), "--no-progress", db_url=db_url,
                            address=dev_env.client.service_client.config.target_host,
                            task_queue=task_queue)
    assert result.code == 2, result.err
    bad_lines = sorted({int(line.split(": line ")[1].split(":")[0])
                        for line in result.err.splitlines() if ": line " in line})
    assert bad_lines == [4, 6, 8, 10, 12, 16, 18]
    assert "intake_id must not contain a phone number" in result.err
    assert "139-1234-5678" not in result.err  # the error names the problem, not the value
    assert "repeats line 2" in result.err and "unknown unit 'NO-SUCH-UNIT'" in result.err
    assert "received_at" in result.err and "channel" in result.err
    assert "nothing was imported" in result.err
    assert await _count(sessions, Petition, Petition.intake_id,
                        [good["intake_id"], clash["intake_id"]]) == 0
    assert await _count(sessions, RegistrationNumber, RegistrationNumber.intake_id,
                        [good["intake_id"], clash["intake_id"]]) == 0


async def test_clash_with_an_existing_petition_imports_nothing(engine, sessions, tmp_path):
    existing = _row()
    assert (await import_file(_write(tmp_path, [existing]), engine, client=None,
                              task_queue="unused", progress=False)).error_count == 0
    fresh = _row()
    stolen = _row(registration_no=existing["registration_no"])
    result = await import_file(_write(tmp_path, [fresh, stolen]), engine, client=None,
                               task_queue="unused", progress=False)
    assert [(e.line, existing["intake_id"] in e.message) for e in result.errors] == [(4, True)]
    assert await _count(sessions, Petition, Petition.intake_id,
                        [fresh["intake_id"], stolen["intake_id"]]) == 0


async def test_open_cases_start_workflows_with_their_original_deadlines(
        engine, sessions, dev_env, running_worker, petitions, task_queue, tmp_path):
    now = datetime.now(UTC)
    accepted = now - timedelta(days=10)
    registered = now - timedelta(days=3)
    in_handling = _row(stage="in_handling", outcome=None, closed_at=None, replied_at=None,
                       satisfaction=None, received_at=(accepted - timedelta(days=2)).isoformat(),
                       accepted_at=accepted.isoformat(), extension_days="20")
    fresh = _row(stage="registered", outcome=None, closed_at=None, replied_at=None,
                 satisfaction=None, accepted_at=None, responsible_unit=None,
                 holding_unit=None, received_at=registered.isoformat())
    result = await import_file(_write(tmp_path, [in_handling, fresh]), engine,
                               client=dev_env.client, task_queue=task_queue, progress=False)
    assert result.error_count == 0, result.errors
    assert (result.open_cases, result.workflows_started) == (2, 2)

    profile, calendar = load_profile("national"), WorkingCalendar()
    handling_due = profile.deadline(ClockName.HANDLING, accepted, calendar)
    assert handling_due is not None
    from domain.policy import Period, PeriodUnit

    extended = profile.extended_deadline(ClockName.HANDLING, handling_due,
                                         Period(amount=20, unit=PeriodUnit.DAYS), calendar)
    routing_due = profile.deadline(ClockName.ROUTING, registered, calendar)
    async with running_worker(dev_env.client):
        handling = dev_env.client.get_workflow_handle_for(
            PetitionWorkflow.run, workflow_id_for(in_handling['intake_id']))
        routing = dev_env.client.get_workflow_handle_for(
            PetitionWorkflow.run, workflow_id_for(fresh['intake_id']))
        petitions.track(handling)
        petitions.track(routing)
        status = await handling.query(PetitionWorkflow.status)
        assert status.stage is Stage.IN_HANDLING and status.extension_days == 20
        assert {c.name: c.due_at for c in status.clocks} == {ClockName.HANDLING: extended}
        fresh_status = await routing.query(PetitionWorkflow.status)
        assert {c.name: c.due_at for c in fresh_status.clocks} == {ClockName.ROUTING: routing_due}
        described = await routing.describe()
        assert described.typed_search_attributes.get(PETITION_STAGE) == "registered"

        # The resumed case is live: the responsible unit replies, the review window starts.
        replied = await PetitionClient(dev_env.client, "").act(
            handling.id, Reply(actor=HANDLER, opinion="工资已支付 wages paid"))
        assert replied is not None and replied.stage is Stage.REPLIED
        assert [c.name for c in replied.clocks] == [ClockName.REVIEW_REQUEST]
    async with sessions() as session:
        row = await session.scalar(select(Petition).where(
            Petition.intake_id == in_handling["intake_id"]))
    assert row is not None and row.stage == "replied" and row.replied_at is not None


async def _indexes(engine) -> set[tuple[str, str]]:
    """Every index and every constraint (foreign keys included), with its definition."""
    async with engine.connect() as conn:
        rows = await conn.execute(text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
            "UNION ALL SELECT conname, conrelid::regclass::text || ' ' || "
            "pg_get_constraintdef(oid) || ' ' || convalidated FROM pg_constraint "
            "WHERE connamespace = current_schema()::regnamespace"))
        return {(r[0], r[1]) for r in rows}


async def test_offline_import_rebuilds_every_index_it_dropped(engine, sessions, tmp_path):
    before = await _indexes(engine)
    assert ("ix_petitions_registered_cohort" in {name for name, _ in before})
    assert any("FOREIGN KEY (petition_id)" in d and d.startswith("petition_events")
               for _, d in before)
    bad = await import_file(_write(tmp_path, [_row(), _row(unit="NOPE")]), engine, client=None,
                            task_queue="unused", progress=False, offline=True)
    assert bad.error_count == 1 and await _indexes(engine) == before  # rolled back whole
    rows = [_row(), _row(stage="closed", outcome="withdrawn", accepted_at=None,
                         replied_at=None, satisfaction=None, responsible_unit=None,
                         holding_unit=None)]
    result = await import_file(_write(tmp_path, rows), engine, client=None,
                               task_queue="unused", progress=False, offline=True)
    assert (result.error_count, result.imported) == (0, 2)
    assert result.timings["reindex_s"] > 0
    assert await _indexes(engine) == before
    assert await _count(sessions, Petition, Petition.intake_id,
                        [r["intake_id"] for r in rows]) == 2


def test_matter_key_matches_live_registrations():
    row = LegacyRecord.model_validate(_row(respondent="某建筑公司"))
    intake = PetitionIntake.model_validate({
        "intake_id": row.intake_id, "channel": row.channel, "category": row.category,
        "unit": row.unit, "received_at": row.received_at, "subject": row.subject,
        "content": "x", "respondent": row.respondent,
        "petitioner": {"name": row.petitioner_name, "id_number": row.petitioner_id_number}})
    assert matter_digest(intake_of(row, "national")) == matter_digest(intake)
    assert matter_digest(intake_of(row, "national", checked=False)) == matter_digest(intake)


async def test_a_history_the_lifecycle_refuses_is_a_bad_row(engine, tmp_path):
    """Each record is replayed through the lifecycle table: what a live case would have
    been refused is reported on its line, and nothing is imported."""
    rows = [
        _row(content="x", review_organ="QS-XFJ", outcome="concluded",   # line 2: not above
             review_requested_at="2023-04-20T08:00:00+08:00",
             review_replied_at="2023-05-10T08:00:00+08:00", re_review_organ="PROV-XFJ",
             re_review_requested_at="2023-05-20T08:00:00+08:00",
             closed_at="2023-06-15T08:00:00+08:00"),
        _row(content="x", extension_days="40"),                          # line 3: > 30 days
        _row(content="x", stage="in_handling", outcome=None, closed_at=None,
             satisfaction=None),                                          # line 4: replied
        _row(content="x", outcome="not_accepted", replied_at=None,
             satisfaction=None),                                          # line 5: accepted
        _row(content="x", outcome="withdrawn", responsible_unit=None,
             accepted_at=None, replied_at=None, satisfaction=None),      # line 6: fine
    ]
    result = await import_file(_write(tmp_path, rows), engine, client=None,
                               task_queue="unused", progress=False)
    found = {e.line: e.message for e in result.errors}
    assert sorted(found) == [2, 3, 4, 5], found
    assert "request_review at 2023-04-20T08:00:00+08:00: refused [review:organ]" in found[2]
    assert "refused [extension:max]" in found[3]
    assert "replied_at must be empty in stage in_handling" in found[4]
    assert "accepted_at must be empty in stage closed (not_accepted)" in found[5]
    assert result.imported == 0


@pytest.mark.processes
async def test_worker_processes_replay_a_file_of_several_chunks(engine, sessions, tmp_path):
    """A file of several chunks is replayed by worker processes; a repeat is still found
    across chunks, and what they replayed is what is imported."""
    rows = [_row(content="x") for _ in range(5)]
    repeated = [*rows, _row(content="x", intake_id=rows[0]["intake_id"])]
    bad = await import_file(_write(tmp_path, repeated), engine, client=None,
                            task_queue="unused", progress=False, chunk_rows=2, workers=2)
    assert [(e.line, e.message) for e in bad.errors] == [
        (7, f"intake_id {rows[0]['intake_id']!r} repeats line 2")]
    result = await import_file(_write(tmp_path, rows), engine, client=None,
                               task_queue="unused", progress=False, chunk_rows=2, workers=2)
    assert (result.error_count, result.imported) == (0, 5)
    async with sessions() as session:
        trails = (await session.execute(
            select(PetitionEvent.workflow_id, func.count()).where(PetitionEvent.workflow_id.in_(
                [workflow_id_for(r['intake_id']) for r in rows])).group_by(
                PetitionEvent.workflow_id))).all()
    assert sorted(n for _, n in trails) == [6] * 5  # register ... review_window_lapsed
