"""Issue 13, item 2: nothing personal in the logs or in refusals, when the database fails.

A transient database error is injected into registration and into the audit writer: the
real INSERT of the petition (and of the audit rows) runs against PostgreSQL with one NOT
NULL column emptied, so PostgreSQL's own DETAIL ("Failing row contains (...)", the name,
ID number, phone and letter with it) comes back, and the error surfaces as a transient
OperationalError carrying the statement and its parameters -- what a serialization
failure or PostgreSQL going away mid-INSERT looks like. The real worker runs on the dev
server, so the Temporal SDK logs every failed attempt with its traceback. Every log line
(caplog at DEBUG, and a handler on the root logger with the redaction installed as in
production) is scanned for the petitioner's data, also in JSON-escaped forms; the same
scan over the raw records shows the fault did carry the data (the test can fail).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from activities import build_desks
from activities.common import integrity_refusal
from adapters.engine import create_engine, session_maker
from adapters.petition_client import workflow_id_for
from adapters.tables import Petition, PetitionEvent
from domain.models import Accept, Action, Actor, Role
from security.redact import REDACTED, RedactingFilter, install_redaction, redact, remove_redaction
from starter.actions import take_action
from starter.intake import submit
from tests.conftest import fictional_personal_data, make_intake

UNIT = "QS-HRSS"
HANDLER = Actor(id="QS-HRSS.h1", role=Role.HANDLER, unit=UNIT)
FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"  # worker.py's


def _personal() -> dict[str, str]:
    return fictional_personal_data("note", "已电话联系")


def _forms(value: str) -> set[str]:
    """A value as a log line might hold it: plain, JSON-escaped (`\\uXXXX`), escaped twice."""
    escaped = json.dumps(value)[1:-1]
    every_char = "".join(f"\\u{ord(c):04x}" for c in value)
    return {value, escaped, escaped.replace("\\", "\\\\"), every_char,
            every_char.upper().replace("\\U", "\\u"), every_char.replace("\\", "\\\\")}


def _leaks(lines: list[str], secrets: dict[str, str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for field, value in secrets.items():
        forms = _forms(value)
        hits = [line for line in lines
                if any(f in line or f in json.dumps(line) for f in forms)]
        if hits:
            found[field] = hits
    return found


class _Lines(logging.Handler):
    def __init__(self, formatter: logging.Formatter | None = None) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(formatter or logging.Formatter(FORMAT))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        extra = {k: v for k, v in vars(record).items() if k not in _PLAIN}
        self.lines.append(f"{self.format(record)} {extra}")


_PLAIN = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime"}


@contextmanager
def _raw_records() -> Iterator[list[str]]:
    """Every record as it was made, before any filter rewrote it (the control scan)."""
    lines: list[str] = []
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001
            text = str(record.msg)
        if record.exc_info:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info))
        lines.append(text)
        return record

    logging.setLogRecordFactory(factory)
    try:
        yield lines
    finally:
        logging.setLogRecordFactory(previous)


class _Fault:
    """The first `times` INSERTs into `table` (whose parameters hold `marker`) fail for
    real: the same INSERT runs with `column` emptied, PostgreSQL answers with its DETAIL
    (the row), and the error is raised as a transient OperationalError (SQLSTATE 40001)
    carrying the real statement and parameters, so the activity retries."""

    def __init__(self, table: str, column: str, marker: str, times: int) -> None:
        self.table, self.column, self.marker, self.left = table, column, marker, times
        self.injected = 0

    def matches(self, statement: str, parameters: Any) -> bool:
        return (self.left > 0 and statement.startswith(f"INSERT INTO {self.table} (")
                and any(self.marker in str(p) for p in parameters or ()))

    def emptied(self, statement: str, parameters: Any) -> tuple[Any, ...]:
        columns = [c.strip() for c in
                   re.match(r"INSERT INTO \w+ \(([^)]*)\)", statement).group(1).split(",")]  # type: ignore[union-attr]
        at = columns.index(self.column)
        params = list(parameters)
        for row in range(len(params) // len(columns)):
            params[row * len(columns) + at] = None
        return tuple(params)


def _inject(engine: AsyncEngine, faults: list[_Fault]) -> Callable[[], None]:
    dbapi = engine.dialect.loaded_dbapi

    def before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
               executemany: bool) -> None:
        for fault in faults:
            if fault.matches(statement, parameters):
                fault.left -= 1
                fault.injected += 1
                try:
                    cursor.execute(statement, fault.emptied(statement, parameters))
                except dbapi.IntegrityError as err:
                    cause = err.__cause__ or err
                    transient: Any = dbapi.OperationalError(
                        f"could not serialize access due to concurrent update; {cause}", cause)
                    transient.sqlstate = transient.pgcode = "40001"
                    raise transient from cause
                raise AssertionError("the emptied INSERT did not fail")

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    return lambda: event.remove(engine.sync_engine, "before_cursor_execute", before)


async def _wait_for(check: Callable[[], Any], within: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail("the write did not arrive once the fault passed")
        await asyncio.sleep(0.2)


async def test_faults_in_registration_and_the_audit_writer_leave_nothing_personal_in_logs(
        dev_env: Any, db_url: str, sessions: async_sessionmaker[AsyncSession],
        running_worker: Any, task_queue: str, caplog: pytest.LogCaptureFixture) -> None:
    secrets = _personal()
    # The production engine factory (hide_parameters) for the worker under test.
    engine = create_engine(db_url, pool_size=2)
    intake = make_intake(unit=UNIT, content=secrets["content"], petitioner={
        "name": secrets["name"], "id_number": secrets["id_number"], "phone": secrets["phone"],
        "address": secrets["address"]})
    # The rows are found by what they hold in clear (the personal data is sealed): the
    # intake id, and the workflow id of its audit records.
    registration = _Fault("petitions", "matter_key", intake.intake_id, times=2)
    audit = _Fault("petition_events", "actor_id", workflow_id_for(intake.intake_id), times=2)
    uninject = _inject(engine, [registration, audit])
    desks = build_desks(session_maker(engine))
    # PostgreSQL clips each value in its DETAIL to 64 bytes: the phone and name come first.
    note = f"{secrets['phone']} {secrets['name']} {secrets['note']}"

    caplog.set_level(logging.DEBUG)
    production = _Lines()
    root = logging.getLogger()
    root.addHandler(production)
    filtered = install_redaction()  # as worker.py does: every handler, caplog's too
    try:
        with _raw_records() as raw:
            async with running_worker(dev_env.client, desks):
                status = await submit(dev_env.client, sessions, intake, task_queue=task_queue)
                await take_action(dev_env.client, sessions, status.workflow_id,
                                  Action.ACCEPT, Accept(actor=HANDLER, note=note[:200]))

                async def audited() -> bool:
                    async with sessions() as session:
                        return bool(await session.scalar(
                            select(func.count()).select_from(PetitionEvent).where(
                                PetitionEvent.workflow_id == status.workflow_id,
                                PetitionEvent.action == Action.ACCEPT.value)))

                await _wait_for(audited)
    finally:
        remove_redaction(filtered)
        root.removeHandler(production)
        uninject()
        await engine.dispose()

    assert (registration.injected, audit.injected) == (2, 2)
    # Nothing lost: the petition registered once, with its petitioner, once the fault passed.
    async with sessions() as session:
        rows = (await session.scalars(
            select(Petition).where(Petition.intake_id == intake.intake_id))).all()
    petitioner = await desks.vault.open_json(rows[0].petitioner_sealed,
                                             f"petitions.petitioner:{intake.intake_id}")
    assert len(rows) == 1 and petitioner["id_number"] == secrets["id_number"]

    # The control: unfiltered, the failed attempts' log lines carry the failing rows
    # (PostgreSQL's DETAIL, with the intake id in clear) -- and, the personal data being
    # sealed, not even they carry the petitioner's data.
    assert any("Failing row contains" in line and intake.intake_id in line for line in raw)
    audit_raw = [line for line in raw if "'activity_type': 'record_transitions'" in line]
    assert any("Failing row contains" in line for line in audit_raw)
    assert _leaks(raw, secrets) == {}
    assert engine.sync_engine.hide_parameters
    assert any("Completing activity as failed" in line for line in raw)

    caplog_lines = [f"{r.name} {r.getMessage()} {r.exc_text or ''} {vars(r)}"
                    for r in caplog.records] + caplog.text.splitlines()
    assert any("Completing activity as failed" in line for line in production.lines)
    assert any("could not serialize access" in line for line in production.lines)
    assert _leaks(production.lines, secrets) == {}
    assert _leaks(caplog_lines, secrets) == {}


async def test_a_refusal_names_the_constraint_not_the_row(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    """A NOT NULL violation on a petition whose intake system chose the petitioner's phone
    as its intake id (the personal data itself is sealed): the refusal (which goes to the
    audit trail, the logs and the caller) names the column and table, not the row."""
    secrets = _personal()
    opaque = b"\x01" + uuid.uuid4().bytes
    async with sessions() as session:
        with pytest.raises(IntegrityError) as caught:
            await session.execute(insert(Petition).values(
                intake_id=f"{secrets['phone']}-{uuid.uuid4().hex[:8]}",
                workflow_id=f"wf-{uuid.uuid4().hex}",
                registration_no=f"R-{uuid.uuid4().hex[:12]}", registered_unit=UNIT,
                holding_unit=UNIT, channel="visit", category="wage_arrears", law_related=False,
                profile="standard", matter_key=None, petitioner_id_index="x",
                petitioner_sealed=opaque, subject_sealed=opaque, content_sealed=opaque,
                attachments_sealed=opaque, stage="registered",
                received_at=func.now(), registered_at=func.now()))
        await session.rollback()
    cause: Any = getattr(caught.value.orig, "__cause__", None)  # asyncpg's: it has the row
    assert secrets["phone"] in f"{cause}" and "Failing row contains" in cause.detail
    refusal = integrity_refusal(caught.value, "registration of intake X")
    assert refusal.message == ("refused [integrity]: registration of intake X leaves "
                               "column matter_key on petitions empty")
    assert refusal.non_retryable
    text = f"{refusal.message} {refusal.details}"
    assert _leaks([text], secrets) == {}


def test_the_filter_strips_parameters_details_and_numbers_also_json_escaped() -> None:
    secrets = _personal()
    payload = json.dumps({"id_number": secrets["id_number"], "phone": secrets["phone"]})
    escaped = "".join(f"\\u{ord(c):04x}" for c in secrets["phone"])
    try:
        raise RuntimeError(f"boom\n[SQL: INSERT INTO petitions ...]\n[parameters: "
                           f"('{secrets['name']}', '{secrets['content']}')]\n"
                           f"DETAIL:  Failing row contains ({secrets['name']}, {payload})")
    except RuntimeError:
        record = logging.LogRecord("temporalio.activity", logging.WARNING, __file__, 1,
                                   "failed %s %s", (payload, escaped), exc_info=None)
        record.exc_info = sys.exc_info()
    record.__dict__["temporal_activity"] = {"note": secrets["phone"]}  # as extra= puts it
    assert RedactingFilter().filter(record)
    line = f"{logging.Formatter(FORMAT).format(record)} {vars(record)['temporal_activity']}"
    assert _leaks([line], secrets) == {}
    assert REDACTED in line and "[SQL: INSERT INTO petitions ...]" in line
    assert redact("SQLAlchemy echo: Row (1, 'x')") == "SQLAlchemy echo: Row (1, 'x')"
    rows = logging.LogRecord("sqlalchemy.engine.Engine", logging.DEBUG, __file__, 1, "Row %r",
                             ((secrets["name"], secrets["content"]),), None)
    RedactingFilter().filter(rows)
    assert _leaks([rows.getMessage()], secrets) == {}


def test_install_redaction_reaches_handlers_of_loggers_that_do_not_propagate() -> None:
    own = logging.getLogger(f"test.redact.{uuid.uuid4().hex[:6]}")
    own.propagate = False
    handler = _Lines()
    own.addHandler(handler)
    added = install_redaction()
    try:
        assert handler in added and install_redaction() == []  # idempotent
        own.warning("phone %s", "13912345678")
    finally:
        remove_redaction(added)
        own.removeHandler(handler)
    assert "13912345678" not in handler.lines[0] and REDACTED in handler.lines[0]
