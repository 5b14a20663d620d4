"""least privilege: the schema belongs to the owner role; the application and reports get grants

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 09:00:00

Issue 13 (item 4). Until now one role owned everything, so the application could have
dropped the audit trail's append-only trigger (0002). From here on (docs/database-roles.md):

- every table, sequence, view and function of the schema belongs to the owner role
  (`db_owner_role`, petition_owner), which only migrations use; so does the trigger
  function, and only a table's owner may drop or disable its triggers;
- the application role (`db_app_role`, petition_app) may SELECT, INSERT, UPDATE and DELETE
  rows and use the sequences, nothing more: on petition_events only SELECT and INSERT, on
  alembic_version only SELECT (it checks the schema is current);
- the reports role (`db_reports_role`, petition_reports) may only SELECT;
- default privileges give the tables and sequences later migrations create the same grants.

Objects still owned by another role (a database migrated before this revision, as a
superuser) are handed to the owner role, which needs the migration to connect as a
superuser once; migrations/env.py then runs every migration as the owner role.
The roles themselves are the cluster's, not the schema's: `python -m devstack.roles
<superuser URL>` or deploy/postgres-init/00-roles.sh creates them. Downgrading revokes the
grants; ownership stays with the owner role.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

from adapters.settings import Settings

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The schema's objects not owned by :owner (extension members left alone), each with the
# statement that hands it over. Tables before sequences: a table takes its own (serial,
# identity) sequences along, and ALTER SEQUENCE refuses those.
NOT_OWNED = """
SELECT format('%I', c.relname) AS name, c.relowner::regrole::text AS owner,
       format('ALTER %s public.%I OWNER TO %I',
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
SELECT p.oid::regprocedure::text, p.proowner::regrole::text,
       format('ALTER ROUTINE %s OWNER TO %I', p.oid::regprocedure, CAST(:owner AS text)),
       pg_has_role(session_user, p.proowner, 'USAGE')
FROM pg_proc p
WHERE p.pronamespace = 'public'::regnamespace
  AND p.proowner <> (SELECT oid FROM pg_roles WHERE rolname = CAST(:owner AS text))
  AND 'functions' = ANY(CAST(:kinds AS text[]))
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                  AND d.objid = p.oid AND d.deptype = 'e')
"""

ROLES_MISSING = (
    "database role(s) {missing} do not exist: create them first with "
    "`python -m devstack.roles <a superuser URL of this database>` "
    "(compose: deploy/postgres-init/00-roles.sh; see docs/database-roles.md)"
)
CANNOT_TAKE_OVER = (
    "{owner} cannot take over {objects} (owned by {owners}): run the migrations once as a "
    "superuser (PETITION_MIGRATION_DATABASE_URL), or hand them over with "
    "`python -m devstack.roles <a superuser URL of this database>`"
)


def _roles() -> tuple[str, str, str]:
    settings = Settings()
    return settings.db_owner_role, settings.db_app_role, settings.db_reports_role


def _quote(name: str) -> str:
    return op.get_context().dialect.identifier_preparer.quote(name)


def _take_ownership(bind: sa.Connection, owner: str) -> None:
    """Hand every object of the schema to `owner`, as the connection's own (session) user:
    migrations/env.py may have switched to the owner role, which cannot take objects from
    others; a superuser (or a member of both roles) can."""
    def pending(kinds: list[str]) -> list[sa.Row]:
        return list(bind.execute(sa.text(NOT_OWNED), {"owner": owner, "kinds": kinds}))

    first = pending(["r", "p", "v", "m", "f", "S", "functions"])
    if not first:
        return
    may_become_owner = bind.scalar(sa.text("SELECT pg_has_role(session_user, :o, 'MEMBER')"),
                                   {"o": owner})
    refused = [row for row in first if not (row.may and may_become_owner)]
    if refused:
        raise RuntimeError(CANNOT_TAKE_OVER.format(
            owner=owner, objects=", ".join(row.name for row in refused[:5])
            + (" ..." if len(refused) > 5 else ""),
            owners=", ".join(sorted({row.owner for row in refused}))))
    acting = bind.scalar(sa.text("SELECT current_user"))
    bind.execute(sa.text("RESET ROLE"))
    for kinds in (["r", "p", "v", "m", "f"], ["S"], ["functions"]):
        for row in pending(kinds):
            bind.execute(sa.text(row.statement))
    bind.execute(sa.text(f"SET ROLE {_quote(acting)}"))


def upgrade() -> None:
    owner, app, reports = (_quote(role) for role in _roles())
    if not context.is_offline_mode():
        bind = op.get_bind()
        names = _roles()
        found = set(bind.scalars(sa.text("SELECT rolname FROM pg_roles WHERE rolname = ANY(:n)"),
                                 {"n": list(names)}))
        missing = [name for name in names if name not in found]
        if missing:
            raise RuntimeError(ROLES_MISSING.format(missing=", ".join(missing)))
        _take_ownership(bind, names[0])

    # A clean slate, then exactly the grants above.
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {app}, {reports}")
    op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {app}, {reports}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {app}")
    op.execute(f"REVOKE UPDATE, DELETE ON petition_events FROM {app}")
    op.execute(f"REVOKE INSERT, UPDATE, DELETE ON alembic_version FROM {app}")
    op.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {app}")
    op.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {reports}")
    op.execute(f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public "
               f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {app}")
    op.execute(f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public "
               f"GRANT USAGE ON SEQUENCES TO {app}")
    op.execute(f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public "
               f"GRANT SELECT ON TABLES TO {reports}")


def downgrade() -> None:
    if not context.is_offline_mode():
        names = _roles()
        found = set(op.get_bind().scalars(
            sa.text("SELECT rolname FROM pg_roles WHERE rolname = ANY(:n)"), {"n": list(names)}))
        if len(found) < len(names):
            return  # nothing was granted to a role that does not exist
    owner, app, reports = (_quote(role) for role in _roles())
    op.execute(f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public "
               f"REVOKE SELECT ON TABLES FROM {reports}")
    op.execute(f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public "
               f"REVOKE USAGE ON SEQUENCES FROM {app}")
    op.execute(f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public "
               f"REVOKE SELECT, INSERT, UPDATE, DELETE ON TABLES FROM {app}")
    op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {app}, {reports}")
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {app}, {reports}")
