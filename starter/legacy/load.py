"""Loading replayed cases into PostgreSQL: staging rows, COPY, one move per chunk.

Each replayed case becomes one staging row (what the intake registered, plus the read
model merged over its audit records in order, exactly as the recorder activity merges
them) and one staging row per audit record (keyed as the recorder keys it). The SQL is
in `sql/`: the staging tables, the move into the system of record, the clash search and
the catalogue queries of `--offline`.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

import asyncpg

from activities.records import event_key, sealed_detail, split_detail
from domain.case import CaseState
from domain.lifecycle import TABLE, Effect
from security.blind_index import BlindIndex
from security.sealing import Vault
from starter.legacy.read import RowError
from starter.legacy.replay import Replayed

# The columns of the staging tables (sql/staging.sql), in the order of the rows below.
INTAKE_COLUMNS = (
    "line", "intake_id", "workflow_id", "registration_no", "registered_unit", "channel",
    "category", "law_related", "profile", "persons", "matter_key", "petitioner_id_index",
    "petitioner_phone_index", "petitioner_sealed", "subject_sealed", "content_sealed",
    "attachments_sealed", "received_at", "registered_at",
)
# Where the personal data sits in a staging row: `staging_rows` puts it there in clear
# (in memory, in a replay process), `seal_rows` seals it before anything reaches the
# database -- staging tables included.
_PERSONAL = slice(INTAKE_COLUMNS.index("matter_key"), INTAKE_COLUMNS.index("received_at"))
# What `domain.projections.read_model_row` writes: a key it adds must be added here (and
# to sql/staging.sql and sql/move.sql), or the import stops at the first record.
READ_MODEL_COLUMNS = (
    "stage", "outcome", "holding_unit", "responsible_unit", "handler_id", "leader_id",
    "next_deadline", "overdue", "was_overdue", "escalation_level", "extension_days",
    "satisfaction", "repeat_visits", "reviewed", "acceptance_due", "handling_due",
    "accepted_at", "replied_at", "closed_at",
)
_TIME_COLUMNS = frozenset(c for c in READ_MODEL_COLUMNS
                          if c.endswith(("_at", "_due")) or c == "next_deadline")
_KNOWN = frozenset(READ_MODEL_COLUMNS)
PETITION_COLUMNS = (*INTAKE_COLUMNS, *READ_MODEL_COLUMNS, "last_seq", "concluded_at",
                    "concluded_by")
EVENT_COLUMNS = ("intake_id", "seq", "idempotency_key", "action", "actor_id", "actor_role",
                 "actor_unit", "from_stage", "to_stage", "detail", "detail_sealed", "at")
STAGING, EVENTS = "legacy_import_staging", "legacy_import_events"
# The tables the import writes (`--offline` drops and restores their indexes and keys).
BULK_TABLES = ("petitions", "petition_events", "registration_numbers", "termination_registry")


@cache
def sql(name: str) -> str:
    return resources.files("starter.legacy").joinpath("sql", f"{name}.sql").read_text(
        encoding="utf-8")


def read_model(case: CaseState) -> tuple[dict[str, Any], int]:
    """The read model after the case's queued records, merged in order (later states win,
    as `activities.records.write_transitions` merges a batch), and the last record's seq."""
    merged: dict[str, Any] = {}
    last_seq = 0
    for record in case.unrecorded:
        if record.accepted and record.read_model:
            merged.update(record.read_model)
            last_seq = record.seq
    unknown = merged.keys() - _KNOWN
    if unknown:
        raise RuntimeError(f"the read model has columns the importer does not stage: "
                           f"{sorted(unknown)}")
    return merged, last_seq


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def staging_rows(replayed: Replayed, file_name: str
                 ) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
    """The case's staging row and its audit records' rows."""
    r, case, line = replayed.record, replayed.case, replayed.line
    intake = replayed.intake
    values, last_seq = read_model(case)
    petitioner = intake.petitioner
    registered_at = case.unrecorded[0].at
    concluded_at = concluded_by = None
    events = []
    for record in case.unrecorded:
        row = TABLE.get(record.action)
        if row is not None and Effect.TERMINATION_REGISTRY in row.effects:
            # The unit the termination registry names: whoever concluded it.
            concluded_at, concluded_by = record.at, record.actor.unit
        detail = {**record.detail, "imported_from": file_name, "line": line}
        events.append((
            r.intake_id, record.seq, event_key(record), record.action.value, record.actor.id,
            record.actor.role.value, record.actor.unit,
            record.from_stage.value if record.from_stage else None,
            record.to_stage.value if record.to_stage else None,
            json.loads(json.dumps(detail, default=str)), None, record.at))
    petition: tuple[Any, ...] = (
        line, r.intake_id, case.workflow_id, case.registration_no, case.registered_unit,
        case.channel.value, case.category.value, case.law_related, case.profile.name,
        intake.persons, replayed.matter_digest, None, None,
        petitioner.model_dump(mode="json"), intake.subject, intake.content, [],
        intake.received_at, registered_at,
        *(_time(values.get(c)) if c in _TIME_COLUMNS else values.get(c)
          for c in READ_MODEL_COLUMNS),
        last_seq, concluded_at, concluded_by,
    )
    return petition, events


async def seal_rows(vault: Vault, index: BlindIndex, petitions: list[tuple[Any, ...]],
                    events: list[tuple[Any, ...]]
                    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The staging rows with their personal data sealed exactly as a live registration
    and the recorder seal it (activities.registry.sealed_intake, activities.records)."""
    sealed_petitions = []
    for row in petitions:
        intake_id = row[1]
        digest, _, _, petitioner, subject, content, attachments = row[_PERSONAL]
        where = f"petitions.{{}}:{intake_id}"
        phone = petitioner.get("phone")
        personal = (
            index.matter_key_of(digest), index.id_number(petitioner["id_number"]),
            index.phone(phone) if phone else None,
            await vault.seal_json(petitioner, where.format("petitioner")),
            await vault.seal(subject.encode(), where.format("subject")),
            await vault.seal(content.encode(), where.format("content")),
            await vault.seal_json(attachments, where.format("attachments")))
        sealed_petitions.append((*row[:_PERSONAL.start], *personal, *row[_PERSONAL.stop:]))
    sealed_events = []
    detail_at = EVENT_COLUMNS.index("detail")
    action_at = EVENT_COLUMNS.index("action")
    for event in events:
        detail, free = split_detail(event[action_at], event[detail_at])
        sealed = await sealed_detail(vault, event[2], free)
        sealed_events.append((*event[:detail_at], json.dumps(detail, ensure_ascii=False),
                              sealed, *event[detail_at + 2:]))
    return sealed_petitions, sealed_events


async def create_staging(pg: Any) -> None:
    await pg.execute(sql("staging"))


async def copy_chunk(pg: Any, petitions: list[tuple[Any, ...]],
                     events: list[tuple[Any, ...]]) -> None:
    await pg.execute(sql("clear"))
    await pg.copy_records_to_table(STAGING, records=petitions, columns=list(PETITION_COLUMNS))
    await pg.copy_records_to_table(EVENTS, records=events, columns=list(EVENT_COLUMNS))


async def move_chunk(pg: Any, max_errors: int) -> tuple[int, dict[int, int], list[RowError]]:
    """Move the staged chunk into the system of record, optimistically: the unique keys
    catch a clash with what is already stored; only then is the chunk searched for the
    lines to report. Returns the rows inserted, the petition id of every open case by
    line, and the clashes."""
    try:
        async with pg.transaction():  # a savepoint: the clash search needs a live txn
            moved = await pg.fetch(sql("move"))
    except asyncpg.UniqueViolationError as err:
        clashes = [RowError(c["line"], c["message"])
                   for c in await pg.fetch(sql("conflicts"), max_errors)]
        return 0, {}, clashes or [RowError(0, f"clash with stored records: {err}")]
    inserted = sum(row["id"] for row in moved if row["line"] == 0)
    return inserted, {row["line"]: row["id"] for row in moved if row["line"] != 0}, []


async def drop_secondary_indexes(pg: Any) -> list[str]:
    """Drop the indexes no constraint owns, and the foreign keys, of the tables the import
    writes; returns the statements that restore them, to run before the transaction
    commits: each index is then built by one sort, and each foreign key is checked by one
    join instead of a trigger per inserted row."""
    indexes = await pg.fetch(sql("secondary_indexes"), list(BULK_TABLES))
    foreign_keys = await pg.fetch(sql("foreign_keys"), list(BULK_TABLES))
    for row in indexes:
        await pg.execute(f'DROP INDEX "{row["indexname"]}"')
    for row in foreign_keys:
        await pg.execute(f'ALTER TABLE {row["tbl"]} DROP CONSTRAINT "{row["conname"]}"')
    return [*(row["indexdef"] for row in indexes),
            *(f'ALTER TABLE {row["tbl"]} ADD CONSTRAINT "{row["conname"]}" {row["def"]}'
              for row in foreign_keys)]
