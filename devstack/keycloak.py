"""Keycloak, the local OpenID Connect provider: staff sign in through it (authorization code
with PKCE), systems check bearer JWTs against its JWKS, intake systems get tokens with the
client-credentials grant. The realm they all use is devstack/keycloak-realm.json.

Provisioned like the Temporal test server (devstack/temporal_cli.py): the distribution
`org.keycloak:keycloak-quarkus-dist` comes from Maven Central through `mvn`, is unpacked once
under the per-user cache, and is started once there so Keycloak's one-off build step (Quarkus
augmentation, half a minute) is done and stored in the cached copy before any test needs it.

Each running server gets its own data directory, which doubles as its Keycloak home: links to
the cached `bin`, `lib`, `conf`, `providers`, `themes`, and real `data/` (the H2 `dev-file`
database, transaction logs, the realm to import), so the dev server and test runs side by
side never share a database. A fresh data directory starts from a copy of a pristine
database (`seeds/<sha256 of the realm file>`, made by one start of its own the first time a
realm file is seen), so it starts as fast as a restart instead of creating Keycloak's schema
and importing the realm again. Nothing is started at import.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path

from devstack.processes import ManagedServer, tail
from devstack.temporal_cli import ProvisioningError, _file_lock, _run, cache_dir

KEYCLOAK_VERSION = "26.7.3"
KEYCLOAK_ARTIFACT = f"org.keycloak:keycloak-quarkus-dist:{KEYCLOAK_VERSION}:tar.gz"
REALM = "petition-flow"
AUDIENCE = "petition-flow"
DEV_PORT = 8180
# Keycloak 26 still runs on Java 17 (measured: 26.7.3 starts and serves tokens on 17.0.15).
MIN_JAVA = 17
# kc.sh's own default outside containers; stated so the footprint is a decision of ours.
HEAP_OPTS = "-Xms64m -Xmx512m"
# Only the C1 compiler and the serial collector: a dev server on two cores starts in about
# half the time (measured: 14 s instead of 28 s for a restart) and keeps ~100 MB less RSS.
JVM_OPTS = "-XX:TieredStopAtLevel=1 -XX:-UseG1GC -XX:+UseSerialGC"
START_TIMEOUT_SECONDS = 300.0
# The master realm's administrator, created on a data directory's first start. DEV ONLY.
DEV_ADMIN_USERNAME = "admin"
DEV_ADMIN_PASSWORD = "dev-only-admin-password"

_HOME_LINKS = ("bin", "lib", "conf", "providers", "themes")
_READY_MARKER = ".petition-flow-ready"
_REALM_STAMP = "realm.sha256"
_LOG_NAME = "keycloak.log"


class KeycloakStartError(ProvisioningError):
    """Keycloak exited, or did not answer, before its realm's discovery document was served."""


def realm_file() -> Path:
    """The realm `petition-flow` (clients, dev users), shipped inside the devstack package."""
    return Path(str(resources.files("devstack").joinpath("keycloak-realm.json")))


def resolve_keycloak() -> Path:
    """The home directory of an unpacked, already built Keycloak, provisioned if needed.

    `$KEYCLOAK_HOME` wins (an unpacked distribution the operator provides, used as it is);
    otherwise the cached copy under `<cache>/keycloak/<version>/`, downloaded with Maven and
    warmed up by one start the first time (a minute or two).
    """
    explicit = os.environ.get("KEYCLOAK_HOME")
    if explicit:
        home = Path(explicit)
        if not (home / "bin" / "kc.sh").is_file():
            raise ProvisioningError(f"$KEYCLOAK_HOME points at {home}, which has no bin/kc.sh.")
        return home
    home = cache_dir() / "keycloak" / KEYCLOAK_VERSION / "dist"
    if (home / _READY_MARKER).is_file():
        return home
    java_home()  # fail early, before a download, if no usable Java exists
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ProvisioningError(
            f"Provisioning Keycloak needs Maven (`mvn`) on PATH to fetch {KEYCLOAK_ARTIFACT};"
            " none was found."
        )
    return _provision(mvn, home)


def java_home() -> Path | None:
    """The JDK Keycloak runs on: None for the `java` on PATH, else a JDK home to use.

    `$KEYCLOAK_JAVA_HOME` wins; then the `java` on PATH if it is Java 17 or newer; then the
    newest JDK 17+ under /usr/lib/jvm.
    """
    explicit = os.environ.get("KEYCLOAK_JAVA_HOME")
    if explicit:
        if java_major(Path(explicit) / "bin" / "java") is None:
            raise ProvisioningError(f"$KEYCLOAK_JAVA_HOME={explicit} has no working bin/java.")
        return Path(explicit)
    on_path = shutil.which("java")
    if on_path is not None and (java_major(Path(on_path)) or 0) >= MIN_JAVA:
        return None
    candidates = []
    for jdk in Path("/usr/lib/jvm").glob("*"):
        major = java_major(jdk / "bin" / "java")
        if major is not None and major >= MIN_JAVA:
            candidates.append((major, jdk))
    if not candidates:
        raise ProvisioningError(
            f"Keycloak {KEYCLOAK_VERSION} needs Java {MIN_JAVA}+; neither `java` on PATH nor a "
            "JDK under /usr/lib/jvm is one (set KEYCLOAK_JAVA_HOME)."
        )
    return max(candidates)[1]


def java_major(java: Path) -> int | None:
    """The feature release of a `java` binary (17, 21, 25...), or None if it does not run."""
    try:
        result = subprocess.run(
            [str(java), "-XshowSettings:properties", "-version"],
            capture_output=True, text=True, timeout=60, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"java\.specification\.version = (\d+)", result.stderr)
    return int(found.group(1)) if found else None


def _provision(mvn: str, home: Path) -> Path:
    version_dir = home.parent
    version_dir.mkdir(parents=True, exist_ok=True)
    with _file_lock(version_dir / ".provision.lock"):
        if (home / _READY_MARKER).is_file():
            return home
        print(
            f"petition-flow: provisioning Keycloak {KEYCLOAK_VERSION} into {version_dir} "
            "(one-off: a 170 MB download, then a first start that builds the server)...",
            file=sys.stderr, flush=True,
        )
        # A previous attempt may have died half way: start from a clean slate.
        shutil.rmtree(home, ignore_errors=True)
        with tempfile.TemporaryDirectory(dir=version_dir, prefix=".download-") as staging:
            _run(
                [mvn, "-q", "-B", "dependency:copy", f"-Dartifact={KEYCLOAK_ARTIFACT}",
                 f"-DoutputDirectory={staging}"],
                env=None,
                what=f"mvn dependency:copy {KEYCLOAK_ARTIFACT}",
            )
            archive = Path(staging) / f"keycloak-quarkus-dist-{KEYCLOAK_VERSION}.tar.gz"
            with tarfile.open(archive) as tar:
                tar.extractall(staging, filter="data")
            os.replace(Path(staging) / f"keycloak-{KEYCLOAK_VERSION}", home)
        # start-dev writes its build (lib/quarkus) into the distribution on the first start:
        # do it here, under the lock, rather than in two test runs racing to write it. That
        # start also makes the seed database of the project's realm.
        _seed(home, realm_file())
        (home / _READY_MARKER).write_text(f"{KEYCLOAK_VERSION}\n")
    return home


def start_keycloak(
    port: int,
    realm: Path | None = None,
    data_dir: Path | None = None,
    *,
    timeout: float = START_TIMEOUT_SECONDS,
) -> KeycloakServer:
    """Start `kc.sh start-dev` on 127.0.0.1:`port` and wait until `realm` is served.

    `realm` (default: the project's realm file) is imported on a fresh data directory; a
    data directory whose database came from a different realm file is reset first, so the
    realm file stays the one source of truth. `data_dir` defaults to a new temporary
    directory, removed again on a clean stop. Blocks for the start-up (seconds to a minute: call it
    through `asyncio.to_thread` from async code).
    """
    realm = realm if realm is not None else realm_file()
    home = resolve_keycloak()
    owned = data_dir is None
    data = Path(tempfile.mkdtemp(prefix="keycloak-")) if data_dir is None else Path(data_dir)
    # On failure a temporary data directory is kept: its keycloak.log tells why.
    seed = _seed(home, realm) if _needs_database(data, realm) else None
    server = _start(home, port, realm, data, timeout, seed=seed)
    server.remove_data_on_stop = owned
    return server


def start_project_keycloak() -> KeycloakServer:
    """The Keycloak `make dev` runs: port 8180, state in `<project>/.data/keycloak`."""
    # Imported here: devstack.postgres pulls in SQLAlchemy, which nothing else here needs.
    from devstack.postgres import project_data_dir

    return start_keycloak(DEV_PORT, realm_file(), project_data_dir() / "keycloak")


class KeycloakServer(ManagedServer):
    """A running Keycloak; `stop()` (or leaving a `with` / `async with` block) ends it."""

    STOP_TIMEOUT = 30.0  # kc.sh and its JVM shut down gracefully in a second or two

    def __init__(self, process: subprocess.Popen[bytes], port: int, data_dir: Path,
                 realm: str, started_in: float) -> None:
        super().__init__(process, data_dir)
        self.port = port
        self.realm = realm
        self.started_in = started_in

    @property
    def base_url(self) -> str:
        return f"http://localhost:{self.port}"

    @property
    def issuer(self) -> str:
        """The `iss` of every token: fixed by `--hostname`, whatever address a client used."""
        return f"{self.base_url}/realms/{self.realm}"

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def token_url(self) -> str:
        return f"{self.issuer}/protocol/openid-connect/token"

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer}/protocol/openid-connect/certs"

    @property
    def log_path(self) -> Path:
        return self.data_dir / _LOG_NAME


def _seed(home: Path, realm: Path) -> Path:
    """The H2 database of a pristine server that imported `realm` and stopped cleanly."""
    seeds = cache_dir() / "keycloak" / KEYCLOAK_VERSION / "seeds"
    seed = seeds / _digest(realm)
    if seed.is_dir():
        return seed
    seeds.mkdir(parents=True, exist_ok=True)
    with _file_lock(seeds / ".seed.lock"):
        if seed.is_dir():
            return seed
        with tempfile.TemporaryDirectory(prefix="keycloak-seed-") as scratch:
            server = _start(home, _free_port(), realm, Path(scratch), START_TIMEOUT_SECONDS,
                            seed=None)
            server.stop()
            if server.killed:
                raise KeycloakStartError(
                    f"Keycloak did not shut down cleanly after its first start; "
                    f"last lines of its log:\n{tail(server.log_path)}"
                )
            partial = seeds / f".{seed.name}.partial"
            shutil.rmtree(partial, ignore_errors=True)
            shutil.copytree(Path(scratch) / "data" / "h2", partial)
            os.replace(partial, seed)
    return seed


def _start(home: Path, port: int, realm: Path, data_dir: Path, timeout: float,
           *, seed: Path | None) -> KeycloakServer:
    if _listening(port):
        raise KeycloakStartError(f"Keycloak cannot start: something already listens on {port}.")
    data_dir.mkdir(parents=True, exist_ok=True)
    _prepare_home(home, data_dir, realm, seed)
    jdk = java_home()
    env = {
        **os.environ,
        "JAVA_OPTS_KC_HEAP": HEAP_OPTS,
        "JAVA_OPTS_APPEND": f"{JVM_OPTS} {os.environ.get('JAVA_OPTS_APPEND', '')}".strip(),
        "KC_BOOTSTRAP_ADMIN_USERNAME": DEV_ADMIN_USERNAME,
        "KC_BOOTSTRAP_ADMIN_PASSWORD": DEV_ADMIN_PASSWORD,
    }
    if jdk is not None:
        env["JAVA_HOME"] = str(jdk)
        env.pop("JAVA", None)
    command = [
        str(home / "bin" / "kc.sh"),
        # Later -D options win over kc.sh's own: the data directory is this server's home.
        f"-Dkc.home.dir={data_dir}",
        "start-dev",
        f"--http-port={port}",
        "--http-host=127.0.0.1",
        f"--hostname=http://localhost:{port}",
        "--import-realm",
    ]
    started = time.monotonic()
    log = (data_dir / _LOG_NAME).open("ab")
    try:
        # A session of its own, so stop() can signal kc.sh and the JVM it starts together.
        process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        log.close()
    server = KeycloakServer(process, port, data_dir, _realm_name(realm), 0.0)
    try:
        _wait_until_served(server, timeout)
    except BaseException:
        server.stop()
        raise
    server.started_in = time.monotonic() - started
    java = jdk / "bin" / "java" if jdk is not None else Path(shutil.which("java") or "java")
    print(
        f"petition-flow: Keycloak {KEYCLOAK_VERSION} (Java {java_major(java)}) serves "
        f"{server.issuer} after {server.started_in:.1f}s",
        file=sys.stderr, flush=True,
    )
    return server


def _needs_database(data_dir: Path, realm: Path) -> bool:
    """No database yet in `data_dir`, or one made from another realm file."""
    stamp = data_dir / _REALM_STAMP
    recorded = stamp.read_text().strip() if stamp.is_file() else None
    return recorded != _digest(realm) or not (data_dir / "data" / "h2").is_dir()


def _prepare_home(home: Path, data_dir: Path, realm: Path, seed: Path | None) -> None:
    """Make `data_dir` a Keycloak home: links to the distribution, a database, the realm."""
    for name in _HOME_LINKS:
        link = data_dir / name
        if link.is_symlink() and link.resolve() == (home / name).resolve():
            continue
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(home / name, target_is_directory=True)
    data = data_dir / "data"
    if _needs_database(data_dir, realm):
        if data.exists():
            # `--import-realm` skips a realm that exists: another realm file needs a new database.
            print(f"petition-flow: the realm file changed since {data} was made; resetting it.",
                  file=sys.stderr, flush=True)
            shutil.rmtree(data)
        if seed is not None:
            shutil.copytree(seed, data / "h2")
    imports = data / "import"
    imports.mkdir(parents=True, exist_ok=True)
    for old in imports.glob("*.json"):
        old.unlink()
    shutil.copyfile(realm, imports / f"{_realm_name(realm)}-realm.json")
    (data_dir / _REALM_STAMP).write_text(_digest(realm) + "\n")


def _digest(realm: Path) -> str:
    return hashlib.sha256(realm.read_bytes()).hexdigest()


def _realm_name(realm: Path) -> str:
    return str(json.loads(realm.read_text(encoding="utf-8"))["realm"])


def _wait_until_served(server: KeycloakServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{server.port}/realms/{server.realm}/.well-known/openid-configuration"
    while True:
        code = server.process.poll()
        if code is not None:
            raise KeycloakStartError(
                f"Keycloak exited with status {code} before serving realm {server.realm!r}; "
                f"last lines of {server.log_path}:\n{tail(server.log_path)}"
            )
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise KeycloakStartError(
                f"Keycloak did not serve realm {server.realm!r} on port {server.port} within "
                f"{timeout:.0f}s; last lines of {server.log_path}:\n{tail(server.log_path)}"
            )
        time.sleep(0.5)


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _free_port() -> int:
    # devstack.temporal_server.free_port, without importing the Temporal SDK for it.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
