"""PostgreSQL for development and tests: an embedded server (pgserver) unless the operator
gives a DATABASE_URL, plus a helper to create the throwaway databases tests run against.

The embedded server is development-only: it listens on a unix socket only and trusts every
local connection (pgserver's pg_hba.conf), so its roles (devstack/roles.py) need no
passwords. Migrations connect as the owner role, the worker, the service and the CLI as the
application role, `petition report` as the reports role (`role_url`);
`database_url()` stays the superuser's, for creating and dropping databases.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

if TYPE_CHECKING:
    from pgserver.postgres_server import PostgresServer

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# sockaddr_un.sun_path is 108 bytes on Linux (104 on macOS) including the trailing NUL;
# stay under the smaller one. Postgres names its socket `<dir>/.s.PGSQL.5432`.
_MAX_SOCKET_PATH = 103
_SOCKET_NAME = ".s.PGSQL.5432"


def project_data_dir() -> Path:
    """`<repo root>/.data`, the git-ignored home of local state (databases, outbox)."""
    data = PROJECT_ROOT / ".data"
    data.mkdir(parents=True, exist_ok=True)
    return data


def embedded_postgres() -> PostgresServer:
    """The project's pgserver instance, started if it is not running.

    It is left running when this process exits (cleanup_mode=None) so the dev command,
    the worker and the tests share one server instead of racing to start and stop it.
    """
    # Imported here: pgserver pulls in psutil/platformdirs and warns at import time, a cost
    # nobody who passes DATABASE_URL (production, CI with a real server) should pay.
    from pgserver.postgres_server import get_server

    server = get_server(_embedded_data_dir(), cleanup_mode=None)
    _provision_roles(server)
    return server


_provisioned: set[Path] = set()
_provisioning = threading.Lock()
# Bumped when what _provision_roles does changes, so existing clusters get it once more.
_ROLES_MARK = "petition-roles-v1"


def _provision_roles(server: PostgresServer) -> None:
    """The database roles on the embedded server, once per cluster (a mark file in its data
    directory records it, with the role names) and per process: devstack/roles.py. The
    default database's objects created before the roles existed are handed to the owner."""
    from adapters.settings import get_settings
    from devstack.roles import ensure_roles_sync

    settings = get_settings()
    mark = Path(server.pgdata) / "petition-roles"
    wanted = " ".join((_ROLES_MARK, settings.db_owner_role, settings.db_app_role,
                       settings.db_reports_role))
    with _provisioning:
        if mark.parent in _provisioned:
            return
        if not (mark.is_file() and mark.read_text().strip() == wanted):
            ensure_roles_sync(_as_asyncpg(server.get_uri("postgres")), settings, adopt=True)
            with contextlib.suppress(OSError):  # an unwritable mark costs a repeat, no more
                mark.write_text(wanted + "\n")
        _provisioned.add(mark.parent)


def role_url(role: str, database: str = "postgres") -> str:
    """The embedded server's URL for `role` (no password: the server trusts local
    connections), its roles provisioned."""
    server = embedded_postgres()
    url = make_url(_as_asyncpg(server.get_uri(database))).set(username=role, password=None)
    return url.render_as_string(hide_password=False)


def database_url(explicit: str | None = None, database: str = "postgres") -> str:
    """An asyncpg SQLAlchemy URL: `explicit` (normalised) if given, else the embedded server's.

    An explicit URL wins as a whole, including the database it names: the operator chose it.
    """
    if explicit:
        return _as_asyncpg(explicit)
    server = embedded_postgres()
    return _as_asyncpg(server.get_uri(database))


async def ensure_database(url: str, name: str, *, recreate: bool = False) -> str:
    """Create database `name` on the server `url` points at (dropped first if `recreate`).

    Connects to the database named in `url` as a maintenance connection, and returns the
    URL of `name` on the same server.
    """
    engine = create_async_engine(_as_asyncpg(url), isolation_level="AUTOCOMMIT")
    quoted = engine.dialect.identifier_preparer.quote(name)
    try:
        # CREATE/DROP DATABASE cannot run inside a transaction, hence AUTOCOMMIT.
        async with engine.connect() as conn:
            if recreate:
                # FORCE ends sessions a previous, crashed test run may have left behind.
                await conn.execute(text(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
            exists = await conn.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            )
            if not exists:
                await conn.execute(text(f"CREATE DATABASE {quoted}"))
    finally:
        await engine.dispose()
    return make_url(_as_asyncpg(url)).set(database=name).render_as_string(hide_password=False)


def _embedded_data_dir() -> Path:
    preferred = PROJECT_ROOT / ".data" / "pg"
    if len(str(preferred / _SOCKET_NAME)) <= _MAX_SOCKET_PATH:
        return project_data_dir() / "pg"
    # Deep checkouts would overflow the socket path; a short per-project dir under /tmp
    # (keyed by the project path, so two checkouts never share a cluster) avoids that.
    digest = hashlib.sha256(str(PROJECT_ROOT).encode()).hexdigest()[:12]
    # Literal /tmp rather than $TMPDIR, which can itself be long (macOS).
    fallback = Path("/tmp") / f"petition-flow-{digest}"
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback / "pg"


def as_asyncpg(url: str) -> str:
    """`url` with SQLAlchemy's asyncpg driver (postgres://, postgresql+psycopg://, ...)."""
    return _as_asyncpg(url)


def _as_asyncpg(url: str) -> str:
    for prefix in (
        "postgresql+asyncpg://",
        "postgresql+psycopg://",
        "postgresql+psycopg2://",
        "postgresql://",
        "postgres://",
    ):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError(f"Not a PostgreSQL URL: {make_url(url).render_as_string()}")


async def drop_database(url: str, name: str) -> None:
    """Drop database `name` on the server `url` points at, ending its sessions."""
    engine = create_async_engine(_as_asyncpg(url), isolation_level="AUTOCOMMIT")
    quoted = engine.dialect.identifier_preparer.quote(name)
    try:
        async with engine.connect() as conn:
            await conn.execute(text(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
    finally:
        await engine.dispose()
