"""Calling activity desks directly (inside a real activity context) against PostgreSQL."""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import ActivityEnvironment

from activities import ActivityDesks
from activities.contracts import (
    RegisterPetitionInput,
    Registration,
)
from adapters.engine import create_engine, session_maker
from adapters.petition_client import workflow_id_for
from devstack.postgres import database_url, drop_database, ensure_database
from domain.calendar import WorkingCalendar
from domain.models import PetitionIntake
from starter.runtime import migrate_async
from tests.conftest import make_intake

T = TypeVar("T")
BEIJING = ZoneInfo("Asia/Shanghai")


async def run(fn: Any, *args: Any) -> Any:
    """One activity attempt, with the activity context Temporal would give it."""
    return await ActivityEnvironment().run(fn, *args)


async def register(desks: ActivityDesks, intake: PetitionIntake | None = None,
                   **overrides: Any) -> Registration:
    intake = intake or make_intake(**overrides)
    return await run(desks.registry.register_petition, RegisterPetitionInput(
        workflow_id=workflow_id_for(intake.intake_id), intake=intake, registration_no=None,
        registered_at=datetime.now(UTC)))


async def count(sessions: async_sessionmaker[AsyncSession], model: type[Any],
                *where: Any) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where))
                   or 0)


# Hearing dates far from anything other tests book: each call gets its own working day.
_days = itertools.count()
_CALENDAR = WorkingCalendar()


def hearing_day() -> date:
    day = date(2033, 3, 1) + timedelta(days=next(_days) * 3)
    return _CALENDAR.next_working_day_on_or_after(day)


def beijing(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), BEIJING)


@asynccontextmanager
async def scratch_database(
    label: str, *, migrated: bool = True,
) -> AsyncIterator[tuple[str, async_sessionmaker[AsyncSession]]]:
    """A database of its own (migrated to head unless told otherwise), dropped afterwards."""
    base = database_url(os.environ.get("DATABASE_URL"))
    name = f"petitionflow_{label}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    url = await ensure_database(base, name, recreate=True)
    try:
        if migrated:
            await migrate_async(url)
        engine = create_engine(url, pool_size=4)
        try:
            yield url, session_maker(engine)
        finally:
            await engine.dispose()
    finally:
        await drop_database(base, name)


# The personal-data columns of a read-model row built by hand for the reports' tests,
# which read none of them: bytes no key opens, and an index value nothing looks up.
OPAQUE_PERSONAL_DATA = {
    "petitioner_id_index": "not-an-index", "petitioner_sealed": b"\x00",
    "subject_sealed": b"\x00", "content_sealed": b"\x00", "attachments_sealed": b"\x00"}
