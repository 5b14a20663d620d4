"""Engine factory and unit of work. Nothing here connects at import time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from adapters.settings import PROJECT_ROOT, Settings
from observability.tracing import instrument_engine

DatabasePurpose = Literal["app", "migration", "reports"]


def resolve_database_url(settings: Settings, purpose: DatabasePurpose = "app") -> str:
    """The URL to connect with for `purpose` (docs/database-roles.md):

    - `app` (worker, service, CLI): `DATABASE_URL`;
    - `migration` (DDL, as the schema's owner): `PETITION_MIGRATION_DATABASE_URL`, else
      `DATABASE_URL` (then the operator has chosen that role for migrations too);
    - `reports` (read-only): `PETITION_REPORTS_DATABASE_URL`, else `DATABASE_URL`.

    None of them set: the embedded PostgreSQL (18) in `.data/pg18`, as the role of that
    purpose (`db_app_role`, `db_owner_role`, `db_reports_role`)."""
    from devstack.postgres import database_url, role_url

    explicit, role = {
        "app": (settings.database_url, settings.db_app_role),
        "migration": (settings.migration_database_url or settings.database_url,
                      settings.db_owner_role),
        "reports": (settings.reports_database_url or settings.database_url,
                    settings.db_reports_role),
    }[purpose]
    return database_url(explicit) if explicit else role_url(role)


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """`hide_parameters`: a database error's text (which the Temporal SDK logs with every
    failed activity attempt) and SQLAlchemy's echo never quote the statement's values --
    the petitioner's name, ID number, phone and letter (security/redact.py, docs/security.md).

    Where traces are on (observability/tracing.py), each statement is a span: its text,
    never its values."""
    engine = create_async_engine(url, pool_size=pool_size, max_overflow=pool_size,
                                 pool_pre_ping=True, hide_parameters=True)
    instrument_engine(engine)
    return engine


def session_maker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def unit_of_work(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A transaction that rolls back unless the body calls `await session.commit()`."""
    async with sessions() as session:
        try:
            yield session
        finally:
            if session.in_transaction():
                await session.rollback()


class SchemaNotMigratedError(RuntimeError):
    pass


def alembic_head() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    head = ScriptDirectory.from_config(config).get_current_head()
    if head is None:
        raise RuntimeError("no Alembic migrations found")
    return head


async def require_current_schema(engine: AsyncEngine) -> None:
    """Refuse to run against a database Alembic has not brought to head."""
    head = alembic_head()
    async with engine.connect() as conn:
        exists = await conn.scalar(text("SELECT to_regclass('alembic_version') IS NOT NULL"))
        current = (await conn.scalar(text("SELECT version_num FROM alembic_version"))
                   if exists else None)
    if current != head:
        raise SchemaNotMigratedError(
            f"database schema is at {current or 'nothing'}, code expects {head}: "
            "run `petition migrate` (or `alembic upgrade head`) first"
        )
