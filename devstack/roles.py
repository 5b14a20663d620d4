"""The database roles (docs/database-roles.md): who may change the schema, who may only
read and write rows, who may only read.

- owner (`db_owner_role`, petition_owner): owns every table, sequence and function, the
  audit trail's append-only trigger included; only migrations connect as it;
- app (`db_app_role`, petition_app): the worker, the service and the CLI; rows only, and on
  petition_events only SELECT and INSERT (migration 0006 grants);
- reports (`db_reports_role`, petition_reports): `petition report`; SELECT only.

`ensure_roles` creates them (idempotent) through a superuser (or CREATEROLE) connection,
lets the owner create tables in that database's schema `public`, and creates there the
extensions the schema needs (`EXTENSIONS`: btree_gist, for migration 0010's exclusion
constraint on hearings), which the owner, without CREATE on the database, may not. The
grants on the tables are the schema's business: migration 0006 and default privileges
after it.

Run by hand against an operator's server (passwords from the environment, as
deploy/postgres-init/00-roles.sh does for compose):

    PETITION_OWNER_PASSWORD=... PETITION_APP_PASSWORD=... PETITION_REPORTS_PASSWORD=... \\
        python -m devstack.roles postgresql://postgres@db-host/petitionflow

The embedded server (devstack/postgres.py) runs it itself, without passwords: it accepts
only local connections over its unix socket, with `trust` authentication (initdb
`--auth=trust`), so any local user may connect as any role. It is for development and tests
only; there the roles show that the application needs no more than its grants.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from adapters.settings import Settings

T = TypeVar("T")

# Serialises concurrent provisioning (processes starting side by side on the embedded
# server): CREATE ROLE and GRANT on one catalog row race otherwise.
_LOCK_KEY = 0x7065746974696F6E  # "petition"

# The public schema's objects not owned by :owner (extension members aside), with the
# statement that hands each over; the same query as migration 0006's. Tables first: they
# take their own sequences along (ALTER SEQUENCE refuses a table's sequence). `may`: the
# session's user has the current owner's privileges (a superuser has everyone's).
_NOT_OWNED = """
SELECT format('ALTER %s public.%I OWNER TO %I',
              CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                             WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE'
                             ELSE 'TABLE' END, c.relname, CAST(:owner AS text)) AS statement,
       pg_has_role(session_user, c.relowner, 'USAGE') AS may
FROM pg_class c
WHERE c.relnamespace = 'public'::regnamespace
  AND c.relkind::text = ANY(CAST(:kinds AS text[]))
  AND c.relowner <> (SELECT oid FROM pg_roles WHERE rolname = CAST(:owner AS text))
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype = 'e')
UNION ALL
SELECT format('ALTER ROUTINE %s OWNER TO %I', p.oid::regprocedure, CAST(:owner AS text)),
       pg_has_role(session_user, p.proowner, 'USAGE')
FROM pg_proc p
WHERE p.pronamespace = 'public'::regnamespace
  AND p.proowner <> (SELECT oid FROM pg_roles WHERE rolname = CAST(:owner AS text))
  AND 'functions' = ANY(CAST(:kinds AS text[]))
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                  AND d.objid = p.oid AND d.deptype = 'e')
"""
_KINDS = (["r", "p", "v", "m", "f"], ["S"], ["functions"])

# Extensions the schema needs, created in `public` by `ensure_roles` (contrib; PostgreSQL's
# own images and the embedded server ship them).
EXTENSIONS = ("btree_gist",)


def hand_over(connection: Connection, owner: str) -> int:
    """Hand the public schema's tables, sequences, views and functions to `owner`, those
    the connection's session user may give away (a superuser: all; and it must be able to
    become `owner`); returns how many changed hands. Run as the session user (before any
    SET ROLE). Used by `ensure_roles(adopt=True)` and migrations/env.py."""
    if not connection.scalar(text("SELECT pg_has_role(session_user, :o, 'MEMBER')"),
                             {"o": owner}):
        return 0
    moved = 0
    for kinds in _KINDS:
        rows = connection.execute(text(_NOT_OWNED), {"owner": owner, "kinds": kinds}).all()
        for row in rows:
            if row.may:
                connection.execute(text(row.statement))
                moved += 1
    return moved


@dataclass(frozen=True)
class RolePasswords:
    """Passwords to set (None: leave the role's password as it is; the embedded server
    needs none)."""

    owner: str | None = None
    app: str | None = None
    reports: str | None = None

    @classmethod
    def from_environment(cls, env: Mapping[str, str] = os.environ) -> RolePasswords:
        return cls(owner=env.get("PETITION_OWNER_PASSWORD") or None,
                   app=env.get("PETITION_APP_PASSWORD") or None,
                   reports=env.get("PETITION_REPORTS_PASSWORD") or None)


async def ensure_roles(admin_url: str, settings: Settings | None = None, *,
                       passwords: RolePasswords | None = None, adopt: bool = False) -> None:
    """Create the owner, app and reports roles if missing (LOGIN, no other attribute), set
    the given passwords, and let the owner create in `public` of `admin_url`'s database
    (while nobody else may). `adopt`: also hand that schema's objects owned by another role
    to the owner (a database migrated before migration 0006, by a superuser)."""
    from devstack.postgres import as_asyncpg

    settings = settings or Settings()
    passwords = passwords or RolePasswords()
    engine = create_async_engine(as_asyncpg(admin_url), pool_size=1)
    try:
        async with engine.connect() as conn:
            quote = engine.dialect.identifier_preparer.quote
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
            for role, password in ((settings.db_owner_role, passwords.owner),
                                   (settings.db_app_role, passwords.app),
                                   (settings.db_reports_role, passwords.reports)):
                await _ensure_role(conn, quote(role), role, password)
            owner = quote(settings.db_owner_role)
            database = quote(await conn.scalar(text("SELECT current_database()")))
            if not await conn.scalar(text("SELECT has_schema_privilege(:r, 'public', 'CREATE')"),
                                     {"r": settings.db_owner_role}):
                await conn.execute(text(f"GRANT CREATE ON SCHEMA public TO {owner}"))
            # PostgreSQL before 15 let everyone create in `public`; 15 and later do not.
            await conn.execute(text("REVOKE CREATE ON SCHEMA public FROM PUBLIC"))
            for role in (settings.db_owner_role, settings.db_app_role, settings.db_reports_role):
                await conn.execute(text(f"GRANT CONNECT ON DATABASE {database} TO {quote(role)}"))
            await ensure_extensions(conn)
            if adopt:
                await adopt_schema(conn, settings.db_owner_role)
            await conn.commit()
    finally:
        await engine.dispose()


async def ensure_extensions(conn: AsyncConnection) -> None:
    """`EXTENSIONS` in the connection's database (schema `public`), if its user may create
    them (a superuser, or whoever has CREATE on the database); otherwise the migration that
    needs one says what is missing."""
    may = await conn.scalar(text(
        "SELECT rolsuper OR has_database_privilege(current_database(), 'CREATE') "
        "FROM pg_roles WHERE rolname = current_user"))
    if not may:
        return
    for name in EXTENSIONS:
        if not await conn.scalar(text("SELECT 1 FROM pg_extension WHERE extname = :n"),
                                 {"n": name}):
            await conn.execute(text(f"CREATE EXTENSION IF NOT EXISTS {name} SCHEMA public"))


async def _ensure_role(conn: AsyncConnection, quoted: str, name: str,
                       password: str | None) -> None:
    exists = await conn.scalar(text("SELECT 1 FROM pg_roles WHERE rolname = :n"), {"n": name})
    verb = "ALTER" if exists else "CREATE"
    attributes = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
    if password is not None:
        # A literal: utility statements take no bind parameters.
        literal = "'" + password.replace("'", "''") + "'"
        await conn.execute(text(f"{verb} ROLE {quoted} {attributes} PASSWORD {literal}"))
    elif not exists:
        await conn.execute(text(f"CREATE ROLE {quoted} {attributes}"))


async def adopt_schema(conn: AsyncConnection, owner: str) -> int:
    """`hand_over` on an async connection."""
    return await conn.run_sync(hand_over, owner)


def login_url(url: str, role: str, password: str | None = None) -> str:
    """`url` (the same server and database) logging in as `role`."""
    from sqlalchemy.engine import make_url

    from devstack.postgres import as_asyncpg

    return (make_url(as_asyncpg(url)).set(username=role, password=password)
            .render_as_string(hide_password=False))


def ensure_roles_sync(admin_url: str, settings: Settings | None = None, *,
                      passwords: RolePasswords | None = None, adopt: bool = False) -> None:
    """`ensure_roles` from synchronous code, even code a running event loop called."""
    run_in_thread(ensure_roles(admin_url, settings, passwords=passwords, adopt=adopt))


def run_in_thread(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` to its end on an event loop of its own (a thread), from synchronous
    code, even code a running event loop called."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = asyncio.run(coroutine)
        except BaseException as error:  # re-raised in the caller's thread
            outcome["error"] = error

    thread = threading.Thread(target=run, name="ensure-roles")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    value: T = outcome["value"]
    return value


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m devstack.roles <superuser URL of the application's database>",
              file=sys.stderr)
        return 2
    settings = Settings()
    asyncio.run(ensure_roles(argv[0], settings, passwords=RolePasswords.from_environment(),
                             adopt=True))
    print(f"roles {settings.db_owner_role}, {settings.db_app_role}, "
          f"{settings.db_reports_role} are in place")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
