"""Issue 4: every Alembic migration runs up and down on an empty database, the schema it
builds is the one the ORM maps, and the audit trail is append-only in the database itself."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from adapters.engine import create_engine
from adapters.settings import PROJECT_ROOT
from adapters.tables import Base
from starter.runtime import migrate_async
from tests.desk_helpers import scratch_database


def revisions() -> list[str]:
    """Oldest first."""
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    script = ScriptDirectory.from_config(config)
    return [r.revision for r in reversed(list(script.walk_revisions()))]


async def tables(url: str) -> set[str]:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
            return {r[0] for r in rows} - {"alembic_version"}
    finally:
        await engine.dispose()


async def current(url: str) -> str | None:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            return await conn.scalar(text("SELECT version_num FROM alembic_version"))
    finally:
        await engine.dispose()


async def drift(url: str) -> list:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(lambda sync: compare_metadata(
                MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata))
    finally:
        await engine.dispose()


async def test_every_migration_runs_up_and_down_on_an_empty_database():
    steps = revisions()
    assert steps[:2] == ["0001", "0002"]
    expected = set(Base.metadata.tables)
    async with scratch_database("migrations", migrated=False) as (url, _):
        assert await tables(url) == set()
        # One revision at a time, up and straight back down, then up again.
        for i, revision in enumerate(steps):
            await migrate_async(url, revision)
            assert await current(url) == revision
            below = steps[i - 1] if i else "base"
            await migrate_async(url, below, downgrade=True)
            assert await current(url) == (None if below == "base" else below)
            await migrate_async(url, revision)
        assert await tables(url) == expected
        assert await drift(url) == [], "the ORM and the migrations disagree"
        await migrate_async(url, "base", downgrade=True)
        assert await tables(url) == set()
        await migrate_async(url, "head")
        assert await tables(url) == expected and await current(url) == steps[-1]


async def test_the_audit_trail_refuses_update_and_delete(engine, sessions):
    async with engine.connect() as conn:
        await conn.execute(text(
            "INSERT INTO petition_events (workflow_id, idempotency_key, action, actor_id, "
            "actor_role, actor_unit, accepted, at) VALUES ('petition-x', :k, 'accept', 'a', "
            "'handler', 'QS-XFJ', true, :at)"),
            {"k": f"append-only-{datetime.now(UTC).timestamp()}", "at": datetime.now(UTC)})
        await conn.commit()
        for statement in ("UPDATE petition_events SET action = 'decline'",
                          "DELETE FROM petition_events",
                          "TRUNCATE petition_events"):
            with pytest.raises(DBAPIError, match="append-only audit trail"):
                await conn.execute(text(statement))
            await conn.rollback()
