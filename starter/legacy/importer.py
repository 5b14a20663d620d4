"""`petition import FILE.csv`: historical petitions into the system of record, all or nothing.

The stages: `read` (CSV chunks, the record model) -> `validate` (row checks) ->
`replay` (each record replayed through the domain core into the case the workflow
would hold: clocks, audit records, read model) -> `load` (COPY into staging tables, one
`INSERT ... SELECT` per chunk) -> `resume` (open cases start their workflows carrying
the replayed case).

Rows are read, validated and replayed chunk by chunk -- in worker processes when the
file has more than one chunk and there are cores to spare, else in a thread -- while the
database moves the previous chunk. Replaying is the costly part: about six transitions
of the core per record, some 0.4-0.5 ms of CPU (the deadline arithmetic memoised by
day, `replay._CountedOnce`), where the old hand-written path took 0.08 ms; so the import
is bound by it on two cores. Everything runs in ONE transaction: the first bad
row stops all writing, the rest of the file is still validated and replayed so that
every bad row is reported with its line number, and the transaction rolls back --
nothing is imported. Re-running the same file after a crash is safe: rows already
imported unchanged (same intake id and registration number) are skipped, and an open
case whose workflow already exists is left alone.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import multiprocessing
import os
import time
from collections import deque
from collections.abc import AsyncGenerator, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import aclosing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from activities.holiday_notices import load_notices
from adapters.data_keys import vault_from_settings
from adapters.settings import get_settings
from adapters.tables import Unit
from domain.calendar import WorkingCalendar
from domain.case import UnitFacts
from domain.policy import available_profiles
from security.blind_index import index_from_settings
from starter.legacy import load
from starter.legacy.read import Chunk, ImportFileError, RowError, read_chunks, validate_chunk
from starter.legacy.replay import Directory, Replayed, Replayer, ReplayRefused
from starter.legacy.resume import start_workflows
from starter.legacy.validate import FileRepeats

# Small enough that a file of a few tens of thousands of rows is already a pipeline (the
# thread replays chunk n+1 while the server moves chunk n), large enough that the
# per-statement costs of a chunk vanish.
CHUNK_ROWS = 5_000
MAX_ERRORS_KEPT = 1_000
WORKERS_VARIABLE = "PETITION_IMPORT_WORKERS"


@dataclass
class ImportResult:
    rows: int = 0
    imported: int = 0
    already_imported: int = 0
    open_cases: int = 0
    workflows_started: int = 0
    workflows_existing: int = 0
    workflow_failures: list[str] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    error_count: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error_count == 0 and not self.workflow_failures

    def error(self, e: RowError) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(e)


async def load_directory(sessions: async_sessionmaker[AsyncSession]) -> Directory:
    async with sessions() as session:
        rows = (await session.scalars(select(Unit))).all()
    units = {u.code: UnitFacts(code=u.code, name=u.name, kind=u.kind, level=u.level,
                               parent=u.parent_code, superior_bureau=u.superior_bureau_code,
                               supervising_leader=u.supervising_leader_id, head=u.head_id)
             for u in rows}
    return Directory(units=units, profiles_by_unit={u.code: u.profile for u in rows})


def worker_calendar() -> WorkingCalendar:
    """The calendar the worker counts on: the holidays library and the official notices
    loaded (`petition holidays load`), so an imported clock is the one a live one would be."""
    return WorkingCalendar(notices=load_notices())


@dataclass
class Batch:
    size: int
    petitions: list[tuple[Any, ...]]
    events: list[tuple[Any, ...]]
    open_cases: list[Replayed]
    errors: list[RowError]
    keys: list[tuple[int, str, str]]  # (line, intake id, registration no.) of valid records
    seconds: float


class Preparer:
    """Validates, replays and stages one chunk at a time (in a worker thread or process).
    Repeats across the file are the caller's to find (`Batch.keys`, `FileRepeats`)."""

    def __init__(self, directory: Directory, calendar: WorkingCalendar, now: datetime,
                 file_name: str):
        self._context = {"units": frozenset(directory.units),
                         "profiles": frozenset(available_profiles())}
        self._replayer = Replayer(directory, calendar, now)
        self._file_name = file_name

    def prepare(self, chunk: Chunk) -> Batch:
        t = time.perf_counter()  # summed over the workers when there are several
        records, errors = validate_chunk(chunk, self._context)
        batch = Batch(len(chunk), [], [], [], errors, [], 0.0)
        for line, r in records:
            batch.keys.append((line, r.intake_id, r.registration_no))
            try:
                replayed = self._replayer.replay(line, r)
            except ReplayRefused as err:
                errors.append(RowError(line, str(err)))
                continue
            petition, events = load.staging_rows(replayed, self._file_name)
            batch.petitions.append(petition)
            batch.events += events
            if replayed.is_open:
                batch.open_cases.append(replayed)
        batch.seconds = time.perf_counter() - t
        return batch


# The preparer of a worker process (see `_batches`).
_WORKER: Preparer | None = None


def _start_worker(directory: Directory, calendar: WorkingCalendar, now: datetime,
                  file_name: str) -> None:
    global _WORKER
    gc.disable()  # as in the importing process (`collector_paused`)
    _WORKER = Preparer(directory, calendar, now, file_name)


def _prepare_in_worker(chunk: Chunk) -> Batch:
    assert _WORKER is not None
    return _WORKER.prepare(chunk)


def replay_workers() -> int:
    """How many processes replay a file of several chunks: `$PETITION_IMPORT_WORKERS`, or
    one per core but one (left to PostgreSQL and the COPY), at most 8; 1 replays in a
    thread of the importing process (on two cores, worker processes only add their start
    and the pickling of every batch: bench/README.md)."""
    configured = os.environ.get(WORKERS_VARIABLE, "").strip()
    if configured:
        return max(1, int(configured))
    return max(1, min((os.cpu_count() or 1) - 1, 8))


async def _batches(chunks: Iterator[Chunk], prepare: Preparer, workers: int,
                   setup: tuple[Any, ...]) -> AsyncGenerator[Batch, None]:
    """The file's batches, in order. One chunk (or one worker): replayed in a thread. More:
    in `workers` processes (spawned, so nothing of this process is shared with them),
    `workers + 1` chunks in flight."""
    first = await asyncio.to_thread(next, chunks, None)
    second = await asyncio.to_thread(next, chunks, None) if first is not None else None
    ahead = iter([c for c in (first, second) if c is not None])
    chunks = itertools.chain(ahead, chunks)
    if second is None or workers <= 1:
        while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
            yield await asyncio.to_thread(prepare.prepare, chunk)
        return
    loop = asyncio.get_running_loop()
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_worker, initargs=setup)
    try:
        pending: deque[asyncio.Future[Batch]] = deque()
        exhausted = False
        while True:
            while not exhausted and len(pending) <= workers:
                chunk = await asyncio.to_thread(next, chunks, None)
                if chunk is None:
                    exhausted = True
                else:
                    pending.append(loop.run_in_executor(pool, _prepare_in_worker, chunk))
            if not pending:
                return
            yield await pending.popleft()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


class Progress:
    """rich.progress when wanted, else nothing (tests, benchmarks)."""

    def __init__(self, enabled: bool):
        self._bar: Any = None
        if enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(),
                                 console=Console(stderr=True))
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def add(self, key: str, description: str, total: int | None) -> None:
        if self._bar is not None:
            self._tasks[key] = self._bar.add_task(description, total=total)

    def advance(self, key: str, n: int) -> None:
        if self._bar is not None and key in self._tasks:
            self._bar.advance(self._tasks[key], n)

    def finish(self, key: str, total: int) -> None:
        if self._bar is not None and key in self._tasks:
            self._bar.update(self._tasks[key], total=total, completed=total)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Validation and replay allocate millions of short-lived, acyclic objects; with the
    cyclic garbage collector running, its repeated full passes over them cost as much as
    the work itself. Paused for the import, run once after."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
        gc.collect()


async def import_file(
    path: Path, engine: AsyncEngine, *, client: Client | None, task_queue: str,
    progress: bool = True, chunk_rows: int = CHUNK_ROWS, dry_run: bool = False,
    now: datetime | None = None, offline: bool = False,
    calendar: WorkingCalendar | None = None, workers: int | None = None,
) -> ImportResult:
    """Validate and import `path`; start the workflows of its open cases on `task_queue`.

    One transaction: chunk by chunk, rows are validated and replayed (in a thread) while
    the database moves the previous chunk from staging into the system of record; the
    first bad row stops all writing (the rest is only validated, to report every bad line)
    and the transaction rolls back. `client` may be None for a dry run or a file without
    open cases. `calendar`: the working days to count on (default: the worker's);
    `workers`: replay processes (default `replay_workers()`).

    `offline`: for the first migration, before the system goes live. The secondary
    indexes and the foreign keys of the tables written are dropped inside the transaction
    and restored before it commits (one sort per index instead of a million insertions,
    one join per foreign key instead of a check per row); the tables are locked against
    every other reader and writer until then. Unique indexes stay: they are what catches
    a clash.
    """
    with collector_paused():
        return await _import_file(path, engine, client=client, task_queue=task_queue,
                                  progress=progress, chunk_rows=chunk_rows, dry_run=dry_run,
                                  now=now or datetime.now(UTC), offline=offline,
                                  calendar=calendar or worker_calendar(), workers=workers)


async def _import_file(path: Path, engine: AsyncEngine, *, client: Client | None,
                       task_queue: str, progress: bool, chunk_rows: int, dry_run: bool,
                       now: datetime, offline: bool, calendar: WorkingCalendar,
                       workers: int | None) -> ImportResult:
    from sqlalchemy.ext.asyncio import async_sessionmaker as maker

    started = time.perf_counter()
    result = ImportResult()
    sessions = maker(engine, expire_on_commit=False)
    directory = await load_directory(sessions)
    vault = vault_from_settings(get_settings(), sessions)
    index = index_from_settings(get_settings())
    setup = (directory, calendar, now, path.name)
    prepared = _batches(read_chunks(path, chunk_rows), Preparer(*setup),
                        replay_workers() if workers is None else workers, setup)
    repeats = FileRepeats()
    open_cases: list[Replayed] = []
    ids: dict[int, int] = {}
    timings = result.timings
    for key in ("validate_s", "copy_s", "insert_s", "wait_s"):
        timings[key] = 0.0

    async def move(pg: Any) -> None:
        t = time.perf_counter()
        inserted, opened, clashes = await load.move_chunk(pg, MAX_ERRORS_KEPT)
        result.imported += inserted
        ids.update(opened)
        for clash in clashes:
            result.error(clash)
        timings["insert_s"] += time.perf_counter() - t

    async with aclosing(prepared) as batches, engine.connect() as sa_conn:
        raw = await sa_conn.get_raw_connection()
        pg: Any = raw.driver_connection
        transaction = pg.transaction()
        await transaction.start()
        moving: asyncio.Task[None] | None = None
        try:
            await load.create_staging(pg)
            rebuild = await load.drop_secondary_indexes(pg) if offline and not dry_run else []
            with Progress(progress) as bar:
                bar.add("rows", f"validating and importing {path.name}", None)
                while True:
                    # The next chunk is prepared while the server runs `moving`.
                    batch = await anext(batches, None)
                    if moving is not None:
                        t = time.perf_counter()
                        await moving
                        timings["wait_s"] += time.perf_counter() - t
                        moving = None
                    if batch is None:
                        break
                    timings["validate_s"] += batch.seconds
                    result.rows += batch.size
                    errors = batch.errors + [
                        RowError(line, problem) for line, intake_id, number in batch.keys
                        if (problem := repeats.problem(line, intake_id, number)) is not None]
                    for e in sorted(errors, key=lambda e: e.line):
                        result.error(e)
                    open_cases += batch.open_cases
                    bar.advance("rows", batch.size)
                    if result.error_count or dry_run:
                        continue
                    t = time.perf_counter()
                    await load.copy_chunk(pg, *await load.seal_rows(
                        vault, index, batch.petitions, batch.events))
                    timings["copy_s"] += time.perf_counter() - t
                    moving = asyncio.create_task(move(pg))
                bar.finish("rows", result.rows)
                result.open_cases = len(open_cases)
                if result.error_count or dry_run:
                    await transaction.rollback()
                    timings["total_s"] = time.perf_counter() - started
                    return result
                if open_cases and client is None:
                    raise ImportFileError("open cases need a Temporal client to start them")
                if rebuild:
                    t = time.perf_counter()
                    bar.add("indexes", "rebuilding indexes and foreign keys", len(rebuild))
                    await pg.execute("SET LOCAL maintenance_work_mem = '256MB'")
                    for definition in rebuild:
                        await pg.execute(definition)
                        bar.advance("indexes", 1)
                    timings["reindex_s"] = time.perf_counter() - t
                await transaction.commit()
                result.already_imported = result.rows - result.imported
                if open_cases and client is not None:
                    t = time.perf_counter()
                    bar.add("workflows", "starting workflows of open cases", len(open_cases))
                    (result.workflows_started, result.workflows_existing,
                     result.workflow_failures) = await start_workflows(
                        client, task_queue, open_cases, ids, now,
                        lambda: bar.advance("workflows", 1))
                    timings["workflows_s"] = time.perf_counter() - t
        except BaseException:
            if moving is not None and not moving.done():
                moving.cancel()
            if not transaction._done:  # noqa: SLF001 - asyncpg exposes no public flag
                await transaction.rollback()
            raise
    timings["total_s"] = time.perf_counter() - started
    return result
