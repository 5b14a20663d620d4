"""Alembic environment: async engine; URL from the caller, the migration URL (settings) or
the embedded PostgreSQL's owner role.

Migrations create objects as the owner role (docs/database-roles.md): a connection that is
not the owner but may act as it (a superuser, as the tests' and tools' throwaway databases
connect; or an operator's login granted the owner role) switches to it first, so every
table later migrations create belongs to the owner and gets the application's grants
through the owner's default privileges (migration 0006)."""

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from adapters.engine import create_engine, resolve_database_url
from adapters.settings import Settings
from adapters.tables import Base
from devstack.roles import hand_over

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or resolve_database_url(Settings(),
                                                                            "migration")


def _act_as_owner(connection: Connection) -> None:
    owner = Settings().db_owner_role
    row = connection.execute(text(
        "SELECT current_user = :owner AS is_owner, "
        "       r.oid IS NOT NULL AND pg_has_role(current_user, r.oid, 'MEMBER') AS member, "
        "       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser "
        "FROM (SELECT 1) AS one LEFT JOIN pg_roles r ON r.rolname = :owner"),
        {"owner": owner}).one()
    connection.commit()
    if row.is_owner or not row.member:
        # Not a member (or no such role): migration 0006 explains what is missing.
        return
    # Objects created before migration 0006 (by a superuser): the owner's from now on.
    hand_over(connection, owner)
    quoted = connection.dialect.identifier_preparer.quote(owner)
    if row.superuser and not connection.scalar(
            text("SELECT has_schema_privilege(:r, 'public', 'CREATE')"), {"r": owner}):
        # A throwaway database created by a superuser: the owner may create in it.
        connection.execute(text(f"GRANT CREATE ON SCHEMA public TO {quoted}"))
    connection.execute(text(f"SET ROLE {quoted}"))
    connection.commit()


def _refuse_a_schema_out_of_reach(connection: Connection) -> None:
    """A database migrated before migration 0006 by another role (a superuser) is out of the
    owner role's reach, from alembic_version on: say what to do, not 'permission denied'."""
    owner = connection.scalar(text(
        "SELECT c.relowner::regrole::text FROM pg_class c "
        "WHERE c.relnamespace = 'public'::regnamespace AND c.relname = 'alembic_version' "
        "AND NOT has_table_privilege(c.oid, 'SELECT, UPDATE')"))
    connection.commit()
    if owner is not None:
        user = connection.scalar(text("SELECT current_user"))
        raise RuntimeError(
            f"{user} cannot take over this database's schema (owned by {owner}): run the "
            "migrations once as a superuser (PETITION_MIGRATION_DATABASE_URL), or hand it "
            "over with `python -m devstack.roles <a superuser URL of this database>`")


def _run(connection: Connection) -> None:
    _act_as_owner(connection)
    _refuse_a_schema_out_of_reach(connection)
    context.configure(connection=connection, target_metadata=Base.metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    engine = create_engine(_url(), pool_size=1)
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
