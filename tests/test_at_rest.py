"""Issue 13, done when: no byte of PostgreSQL's files -- the database's data files and the
write-ahead log -- holds a petitioner's ID number or phone, after the sample petitions of
`make dev` are registered and a whole case is lived through (free text included)."""

from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.tables import Petition
from starter.intake import read_intake, submit
from starter.runtime import SAMPLE_INTAKES
from tests.lifecycle_helpers import eventually
from tests.test_personal_data import _personal, _whole_life


async def _lsn(engine: AsyncEngine) -> tuple[str, int]:
    async with engine.connect() as conn:
        row = (await conn.execute(text(
            "SELECT file_name, file_offset FROM pg_walfile_name_offset("
            "pg_current_wal_insert_lsn())"))).one()
    return row.file_name, row.file_offset


def _wal_between(wal: Path, start: tuple[str, int], end: tuple[str, int]) -> bytes:
    """The write-ahead log written between two positions (segments are recycled, so
    whatever lies outside them is older and not this test's)."""
    names = sorted(p.name for p in wal.iterdir() if len(p.name) == 24)
    chosen = [n for n in names if start[0] <= n <= end[0]]
    out = []
    for name in chosen:
        data = (wal / name).read_bytes()
        lo = start[1] if name == start[0] else 0
        hi = end[1] if name == end[0] else len(data)
        out.append(data[lo:hi])
    return b"".join(out)


async def test_no_id_number_or_phone_in_postgresqls_files(
        dev_env, running_worker, sessions, task_queue, engine: AsyncEngine) -> None:
    start = await _lsn(engine)
    tag = uuid.uuid4().hex[:8]
    samples = [read_intake(p) for p in sorted(SAMPLE_INTAKES.glob("*.json"))]
    fresh = [s.model_copy(update={"intake_id": f"ATREST-{tag}-{i}"})
             for i, s in enumerate(samples)]
    secrets = _personal()
    async with running_worker(dev_env.client):
        for intake in fresh:
            await submit(dev_env.client, sessions, intake, task_queue=task_queue)
        await _whole_life(dev_env.client, sessions, task_queue, secrets)

        async def registered() -> bool:
            async with sessions() as session:
                n = await session.scalar(select(func.count()).select_from(Petition).where(
                    Petition.intake_id.like(f"ATREST-{tag}-%")))
            return n == len(fresh)

        assert await eventually(registered, within=30)
    async with engine.connect() as conn:
        await conn.execute(text("CHECKPOINT"))  # every page of the database on disk
        data_dir = Path(await conn.scalar(text("SHOW data_directory")))
        oid = await conn.scalar(text(
            "SELECT oid FROM pg_database WHERE datname = current_database()"))
    end = await _lsn(engine)
    files = b"".join(p.read_bytes() for p in (data_dir / "base" / str(oid)).iterdir()
                     if p.is_file())
    wal = _wal_between(data_dir / "pg_wal", start, end)
    # The scans see what is stored in clear: the intake ids.
    for intake in fresh:
        assert intake.intake_id.encode() in files and intake.intake_id.encode() in wal
    leaks = []
    for where, data in (("data files", files), ("write-ahead log", wal)):
        for intake in [*fresh]:
            p = intake.petitioner
            for what, value in (("ID number", p.id_number), ("phone", p.phone),
                                ("name", p.name), ("address", p.address)):
                if value and value.encode() in data:
                    leaks.append(f"{intake.intake_id}'s {what} in the {where}")
        for what in ("id_number", "phone", "name", "content", "opinion"):
            if secrets[what].encode() in data:
                leaks.append(f"the whole case's {what} in the {where}")
    assert leaks == []
