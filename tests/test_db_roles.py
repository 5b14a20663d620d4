"""Issue 13 (item 4): least privilege in the database (docs/database-roles.md).

On a migrated throwaway database, the application's role (`app_engine`, tests/conftest.py,
which the workers of the whole suite use too) reads and writes rows and can do nothing
else: not rewrite or erase the audit trail, not drop or disable its append-only trigger,
not change or create tables. The reports role only reads. Everything the schema holds, the
trigger's function included, belongs to the owner role, of which the application is no
member.

The roles log in without a password on the embedded server (trust, development only);
against a DATABASE_URL server, PETITION_APP_PASSWORD, PETITION_REPORTS_PASSWORD and
PETITION_OWNER_PASSWORD give theirs.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.engine import create_engine
from adapters.settings import Settings
from devstack.roles import login_url
from starter.runtime import migrate_async
from tests.desk_helpers import scratch_database

SETTINGS = Settings()
INSUFFICIENT_PRIVILEGE = "42501"


def as_role(url: str, role: str, password_variable: str) -> str:
    return login_url(url, role, os.environ.get(password_variable) or None)


@pytest_asyncio.fixture(loop_scope="session")
async def reports_engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(
        as_role(db_url, SETTINGS.db_reports_role, "PETITION_REPORTS_PASSWORD"), pool_size=1)
    yield engine
    await engine.dispose()


def sqlstate(error: DBAPIError) -> str | None:
    return getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)


async def refused(engine: AsyncEngine, statement: str) -> str:
    """Runs `statement` in a transaction that is rolled back; returns the refusal."""
    async with engine.connect() as conn:
        with pytest.raises(DBAPIError) as caught:
            await conn.execute(text(statement))
        await conn.rollback()
    assert sqlstate(caught.value) == INSUFFICIENT_PRIVILEGE, (statement, str(caught.value))
    return str(caught.value.orig)


def event_insert(key: str) -> str:
    return ("INSERT INTO petition_events (workflow_id, idempotency_key, action, actor_id, "
            f"actor_role, actor_unit, accepted, at) VALUES ('petition-roles', '{key}', "
            "'accept', 'a', 'handler', 'QS-XFJ', true, now())")


APP_REFUSED = [
    "UPDATE petition_events SET action = 'decline'",
    "DELETE FROM petition_events",
    "TRUNCATE petition_events",
    "DROP TRIGGER petition_events_append_only ON petition_events",
    "ALTER TABLE petition_events DISABLE TRIGGER petition_events_append_only",
    "ALTER TABLE petition_events DISABLE TRIGGER ALL",
    "DROP TABLE petition_events",
    "CREATE OR REPLACE FUNCTION petition_events_append_only() RETURNS trigger "
    "LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
    "DROP FUNCTION petition_events_append_only() CASCADE",
    "ALTER TABLE petitions ADD COLUMN smuggled text",
    "ALTER TABLE petitions DROP CONSTRAINT IF EXISTS petitions_pkey",
    "CREATE TABLE smuggled (id int)",
    "CREATE INDEX smuggled ON petitions (id)",
    "TRUNCATE petitions CASCADE",
    "UPDATE alembic_version SET version_num = '0001'",
    f"SET ROLE {SETTINGS.db_owner_role}",
]


@pytest.mark.parametrize("statement", APP_REFUSED)
async def test_the_application_cannot_touch_the_audit_trail_or_the_schema(
        app_engine: AsyncEngine, statement: str) -> None:
    await refused(app_engine, statement)


async def test_the_application_appends_to_the_audit_trail_and_reads_it(
        app_engine: AsyncEngine) -> None:
    async with app_engine.connect() as conn:
        assert await conn.scalar(text("SELECT current_user")) == SETTINGS.db_app_role
        key = f"roles-{datetime.now(UTC).timestamp()}"
        await conn.execute(text(event_insert(key)))
        assert await conn.scalar(text(
            f"SELECT count(*) FROM petition_events WHERE idempotency_key = '{key}'")) == 1
        # Rows elsewhere: read, write, delete (the outbox and counters need it).
        await conn.execute(text("SELECT count(*) FROM petitions"))
        await conn.execute(text("UPDATE petitions SET stage = stage WHERE false"))
        await conn.execute(text("DELETE FROM query_codes WHERE false"))
        assert await conn.scalar(text("SELECT version_num FROM alembic_version"))
        await conn.rollback()


async def test_reports_only_read(reports_engine: AsyncEngine) -> None:
    async with reports_engine.connect() as conn:
        assert await conn.scalar(text("SELECT current_user")) == SETTINGS.db_reports_role
        await conn.execute(text("SELECT count(*) FROM petition_events"))
        await conn.execute(text("SELECT count(*) FROM petitions"))
        await conn.execute(text("SELECT version_num FROM alembic_version"))
    await refused(reports_engine, event_insert("reports-may-not"))
    await refused(reports_engine, "UPDATE petitions SET stage = stage")
    await refused(reports_engine, "DELETE FROM units")
    await refused(reports_engine, "CREATE TABLE smuggled (id int)")


async def test_the_owner_role_owns_the_schema_and_the_trigger(engine: AsyncEngine) -> None:
    owner, app, reports = (SETTINGS.db_owner_role, SETTINGS.db_app_role,
                           SETTINGS.db_reports_role)
    async with engine.connect() as conn:
        function_owner = await conn.scalar(text(
            "SELECT proowner::regrole::text FROM pg_proc "
            "WHERE proname = 'petition_events_append_only'"))
        assert function_owner == owner
        triggers = (await conn.execute(text(
            "SELECT t.tgname, c.relowner::regrole::text FROM pg_trigger t "
            "JOIN pg_class c ON c.oid = t.tgrelid WHERE NOT t.tgisinternal "
            "AND c.relname = 'petition_events'"))).all()
        assert {name for name, _ in triggers} >= {"petition_events_append_only",
                                                  "petition_events_no_truncate"}
        assert {table_owner for _, table_owner in triggers} == {owner}
        others = (await conn.execute(text(
            "SELECT relname, relowner::regrole::text FROM pg_class "
            "WHERE relnamespace = 'public'::regnamespace AND relowner::regrole::text <> :o"),
            {"o": owner})).all()
        assert others == []
        for role in (app, reports):
            assert not await conn.scalar(text("SELECT pg_has_role(:r, :o, 'MEMBER')"),
                                         {"r": role, "o": owner})
            assert not await conn.scalar(text(
                "SELECT has_schema_privilege(:r, 'public', 'CREATE')"), {"r": role})
            assert not await conn.scalar(text(
                "SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls "
                "FROM pg_roles WHERE rolname = :r"), {"r": role})


async def test_a_database_migrated_as_a_superuser_before_0006_is_handed_to_the_owner(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Before 0006 (no roles yet) a superuser migrated and owned everything. As the owner
    role, 0006 cannot take that over and says what to do; as a superuser, it does."""
    owner = SETTINGS.db_owner_role
    async with scratch_database("roles_legacy", migrated=False) as (url, _):
        with monkeypatch.context() as before_roles:
            # What migrations/env.py and 0005 saw before the roles existed.
            before_roles.setenv("PETITION_DB_OWNER_ROLE", "petition_no_such_role")
            await migrate_async(url, "0005")
        engine = create_engine(url, pool_size=1)
        try:
            async with engine.connect() as conn:
                assert await conn.scalar(text(
                    "SELECT tableowner FROM pg_tables WHERE tablename = 'petition_events'")
                ) != owner

            with pytest.raises(RuntimeError, match=f"{owner} cannot take over"):
                await migrate_async(as_role(url, owner, "PETITION_OWNER_PASSWORD"), "0006")

            await migrate_async(url, "head")
            async with engine.connect() as conn:
                owners = set(await conn.scalars(text(
                    "SELECT DISTINCT relowner::regrole::text FROM pg_class "
                    "WHERE relnamespace = 'public'::regnamespace")))
                assert owners == {owner}
                assert await conn.scalar(text(
                    "SELECT has_table_privilege(:a, 'petition_events', 'INSERT') "
                    "AND NOT has_table_privilege(:a, 'petition_events', 'UPDATE')"),
                    {"a": SETTINGS.db_app_role})
        finally:
            await engine.dispose()


async def test_without_the_roles_0006_says_what_to_run(monkeypatch: pytest.MonkeyPatch) -> None:
    async with scratch_database("roles_missing", migrated=False) as (url, _):
        monkeypatch.setenv("PETITION_DB_APP_ROLE", "petition_no_such_app")
        with pytest.raises(RuntimeError, match=r"petition_no_such_app do not exist: create "
                                               r"them first with `python -m devstack.roles"):
            await migrate_async(url, "0006")
