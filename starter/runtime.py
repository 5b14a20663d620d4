"""What CLI commands share: settings, database, Temporal client, built lazily."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from adapters.directory import load_directory, read_directory
from adapters.engine import DatabasePurpose, create_engine, resolve_database_url, session_maker
from adapters.settings import PROJECT_ROOT, Settings, get_settings

SAMPLE_DIRECTORY = PROJECT_ROOT / "domain" / "directory" / "sample.toml"
SAMPLE_INTAKES = PROJECT_ROOT / "starter" / "samples"


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    _client: Client | None = None

    async def client(self) -> Client:
        if self._client is None:
            from worker import connect

            self._client = await connect(self.settings)
        return self._client


@asynccontextmanager
async def runtime(settings: Settings | None = None, *,
                  purpose: DatabasePurpose = "app") -> AsyncIterator[Runtime]:
    """`purpose`: the database role to connect as (`reports` for `petition report`, which
    only reads; docs/database-roles.md)."""
    settings = settings or get_settings()
    # `petition dev` runs the worker, the service and the demo on this one runtime.
    engine = create_engine(resolve_database_url(settings, purpose),
                           pool_size=settings.db_pool_size)
    try:
        yield Runtime(settings, engine, session_maker(engine))
    finally:
        await engine.dispose()


def migration_url(url: str | None = None, settings: Settings | None = None) -> str:
    """The URL migrations connect with: the migration URL (the schema owner's,
    `resolve_database_url(settings, "migration")`) when `url` is None or the application's
    own URL (`petition migrate` and `petition dev` hand over their runtime's), else `url`
    (a throwaway database of the tests and tools, as a superuser: migrations/env.py then
    acts as the owner role)."""
    settings = settings or get_settings()
    if url is None or make_url(url) == make_url(resolve_database_url(settings)):
        return resolve_database_url(settings, "migration")
    return url


def migrate(url: str | None = None, revision: str = "head", *,
            downgrade: bool = False) -> None:
    """Run Alembic programmatically (it runs its own event loop, hence a thread)."""
    from alembic import command
    from alembic.config import Config

    url = migration_url(url)
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["configure_logger"] = False
    (command.downgrade if downgrade else command.upgrade)(config, revision)


async def migrate_async(url: str | None = None, revision: str = "head", *,
                        downgrade: bool = False) -> None:
    await asyncio.to_thread(migrate, url, revision, downgrade=downgrade)


async def load_directory_file(sessions: async_sessionmaker[AsyncSession], path: Path) -> int:
    directory = read_directory(path)
    async with sessions() as session:
        await load_directory(session, directory)
        await session.commit()
    return len(directory.units)
