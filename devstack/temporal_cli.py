"""Find (or provision) the Temporal binaries the dev command and the tests run.

The SDK can download both the CLI dev server and the time-skipping test server,
but only with internet access to temporal.download. Machines without it can
still build the CLI from source with Go, and fetch the Java test server from
Maven Central; both results are cached so the minutes-long work happens once.
"""

from __future__ import annotations

import fcntl
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

# Newer CLI tags carry a `replace` directive in go.mod, which `go install pkg@version` refuses.
CLI_VERSION = "v1.5.1"
CLI_PACKAGE = "github.com/temporalio/cli/cmd/temporal"
TEST_SERVER_VERSION = "1.38.0"
TEST_SERVER_MAIN = "io.temporal.testserver.TestServer"


class ProvisioningError(RuntimeError):
    """A Temporal binary could not be found or provisioned on this machine."""


def cache_dir() -> Path:
    """The per-user cache shared by every checkout: `$PETITION_FLOW_CACHE` or ~/.cache."""
    configured = os.environ.get("PETITION_FLOW_CACHE")
    base = Path(configured) if configured else Path.home() / ".cache" / "petition-flow"
    return base.expanduser()


def resolve_temporal_cli() -> str | None:
    """Path of a `temporal` CLI to run the dev server with, or None to let the SDK download one.

    Order: $TEMPORAL_CLI, `temporal` on PATH, the cached build, a fresh build with Go.
    """
    explicit = os.environ.get("TEMPORAL_CLI")
    if explicit:
        return _require_executable(Path(explicit), "$TEMPORAL_CLI")
    on_path = shutil.which("temporal")
    if on_path:
        return on_path
    cached = cache_dir() / "bin" / "temporal"
    if _is_executable(cached):
        return str(cached)
    go = shutil.which("go")
    if go is None:
        return None
    return _build_cli(go, cached)


def resolve_test_server() -> str:
    """Path of a launcher script for the Java time-skipping test server, provisioned if needed."""
    if shutil.which("java") is None:
        raise ProvisioningError(
            "The time-skipping test server needs `java` (JDK 11+) on PATH; none was found."
        )
    home = cache_dir() / "test-server" / TEST_SERVER_VERSION
    launcher = home / "test-server"
    if _is_executable(launcher):
        return str(launcher)
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ProvisioningError(
            "Provisioning the time-skipping test server needs Maven (`mvn`) on PATH "
            f"to fetch io.temporal:temporal-test-server:{TEST_SERVER_VERSION}; none was found."
        )
    return _provision_test_server(mvn, home, launcher)


def _build_cli(go: str, target: Path) -> str:
    return go_install(go, f"{CLI_PACKAGE}@{CLI_VERSION}", "temporal", target,
                      f"Temporal CLI {CLI_VERSION}", "takes a few minutes")


def go_install(go: str, package: str, built_name: str, target: Path, label: str,
               duration: str) -> str:
    """`go install package` once into `target` (a cached binary), under a file lock."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(target.parent / f".{target.name}.build.lock"):
        # Another process may have finished the build while we waited for the lock.
        if _is_executable(target):
            return str(target)
        print(f"petition-flow: building {label} with Go into {target.parent} (one-off, "
              f"{duration})...", file=sys.stderr, flush=True)
        started = time.monotonic()
        # Build into a private directory, then rename: a reader that does not take the lock
        # must never see a half-copied binary.
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as staging:
            env = {**os.environ, "CGO_ENABLED": "0", "GOBIN": staging}
            _run([go, "install", package], env=env, what=f"go install ({label})")
            os.replace(Path(staging) / built_name, target)
        print(f"petition-flow: built {label} in {time.monotonic() - started:.1f}s",
              file=sys.stderr, flush=True)
    return str(target)


def _provision_test_server(mvn: str, home: Path, launcher: Path) -> str:
    home.mkdir(parents=True, exist_ok=True)
    with _file_lock(home / ".provision.lock"):
        if _is_executable(launcher):
            return str(launcher)
        pom = home / "pom.xml"
        pom.write_bytes(resources.files("devstack").joinpath("test-server-pom.xml").read_bytes())
        lib = home / "lib"
        # A previous run may have died half way through copying jars.
        shutil.rmtree(lib, ignore_errors=True)
        _run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={lib}",
            ],
            env=None,
            what="mvn dependency:copy-dependencies",
        )
        # The launcher is written last, and atomically: its presence means "lib/ is complete".
        classpath = shlex.quote(f"{lib}/*")  # quoted: java expands the wildcard, not the shell
        script = f'#!/bin/sh\nexec java -cp {classpath} {TEST_SERVER_MAIN} "$@"\n'
        partial = launcher.with_suffix(".partial")
        partial.write_text(script)
        partial.chmod(0o755)
        os.replace(partial, launcher)
    return str(launcher)


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock, so concurrent test runs provision a binary only once."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(command: list[str], *, env: dict[str, str] | None, what: str) -> None:
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()[-4000:]
        raise ProvisioningError(f"{what} failed (exit {result.returncode}):\n{output}")


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _require_executable(path: Path, source: str) -> str:
    if not _is_executable(path):
        raise ProvisioningError(f"{source} points at {path}, which is not an executable file.")
    return str(path)
