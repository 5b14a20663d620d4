"""The image the Dockerfile builds, proven without a Docker engine (tests/image_helpers.py).

Exactly the files its COPY lines name (minus .dockerignore) are staged as /app and installed
the Dockerfile's way into a fresh virtual environment; from there, with production's
settings (every key configured, PETITION_DEV_KEYS off, each process its own database role),
the migration job migrates a fresh database, `petition load-directory` loads the units, the
worker and the service start against the dev Temporal server, the codec server answers, and
`petition submit` registers a petition the image's worker handles. tests/cluster/ runs the
same against the production-shaped cluster, over mTLS (`make test-cluster`).
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import signal
import socket
import subprocess
import time
import tomllib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import httpx
import pytest

from tests.image_helpers import (
    DOCKERFILE,
    ROOT,
    WORKDIR,
    ImageVenv,
    InstallError,
    copies,
    env_of,
    ignored,
    image_files,
    install,
    workdir_of,
)

START_WITHIN_SECONDS = 90.0


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_image_holds_every_package_its_data_and_the_migrations() -> None:
    """pyproject.toml's packages, py-modules and package-data, and what the migration job
    reads, are all among the files the COPY lines bring in; nothing of .data/, caches or
    the virtual environment is."""
    setuptools = _pyproject()["tool"]["setuptools"]
    files = image_files()
    names = {str(path) for path in files}
    for package in setuptools["packages"]:
        init = package.replace(".", "/") + "/__init__.py"
        assert init in names, f"the image lacks package {package} ({init})"
    for module in setuptools["py-modules"]:
        assert f"{module}.py" in names, module
    for package, globs in setuptools["package-data"].items():
        folder = ROOT / package.replace(".", "/")
        for pattern in globs:
            wanted = {str(p.relative_to(ROOT).as_posix()) for p in folder.glob(pattern)}
            assert wanted, f"{package}: {pattern} matches nothing in the checkout"
            assert wanted <= names, f"{package}: {sorted(wanted - names)[:3]} not copied"
    assert "alembic.ini" in names
    migrations = {p.relative_to(ROOT).as_posix() for p in (ROOT / "migrations").rglob("*.py")
                  if "__pycache__" not in p.parts}
    assert migrations and migrations <= names
    assert not [name for name in names if "__pycache__" in name or name.startswith(".")]
    text = DOCKERFILE.read_text()
    assert workdir_of(text) == WORKDIR
    # Every process imports from /app, the console scripts too (the settings find .data/,
    # alembic.ini and migrations/ next to the code).
    assert env_of(text)["PYTHONPATH"] == str(WORKDIR)


def test_the_helpers_read_the_dockerfile_as_docker_does() -> None:
    """The parser and the ignore rules the proof relies on, on a small Dockerfile."""
    text = ("FROM python:3.11-slim\nWORKDIR /app\nCOPY --from=builder /x /y\n"
            "COPY a b ./\n# COPY c ./c\nCOPY --chown=1:1 d \\\n   ./d\nENV A=1 \\\n  B=2\n")
    assert [(c.sources, c.destination) for c in copies(text)] == [
        (("a", "b"), "./"), (("d",), "./d")]
    assert env_of(text) == {"A": "1", "B": "2"}
    patterns = ["**/__pycache__", ".data", "*.egg-info"]
    assert ignored(PurePosixPath("domain/__pycache__/x.pyc"), patterns)
    assert ignored(PurePosixPath(".data/pg/x"), patterns)
    assert ignored(PurePosixPath("petition_flow.egg-info/PKG-INFO"), patterns)
    assert not ignored(PurePosixPath("domain/profiles/national.toml"), patterns)


@pytest.mark.processes
def test_a_package_missing_from_the_copies_fails_the_build(tmp_path: Path) -> None:
    """What the issue measured on the old Dockerfile: without `COPY reports`, the wheel
    cannot be built. (Guards the proof below: a stage that copied everything would pass.)"""
    context = tmp_path / "context"
    context.mkdir()
    for name in ("Dockerfile", ".dockerignore", "pyproject.toml", "constraints.txt"):
        (context / name).write_text((ROOT / name).read_text())
    for path in {Path(c.sources[0]).parts[0] for c in copies(DOCKERFILE.read_text())}:
        source = ROOT / path
        if source.is_dir():
            (context / path).symlink_to(source, target_is_directory=True)
        elif not (context / path).exists():
            (context / path).symlink_to(source)
    dockerfile = context / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace("COPY reports ./reports\n", ""))
    with pytest.raises(InstallError, match="package directory 'reports' does not exist"):
        install(tmp_path / "image", root=context)


# --- the image's processes, with production's settings --------------------------------


def _key(name: str) -> str:
    return f"{name}:{base64.b64encode(secrets.token_bytes(32)).decode()}"


def production_keys() -> dict[str, str]:
    """Every key configured, as an operator would: nothing is generated (dev keys off)."""
    return {
        "PETITION_DEV_KEYS": "false",
        "PETITION_CODEC_KEYS": _key("img-k1"),
        "PETITION_ASSERTION_KEYS": _key("img-a1"),
        "PETITION_ID_KEY": _key("id"),
        "PETITION_DATA_KEYS": _key("img-kek1"),
        "PETITION_INDEX_KEY": _key("ix"),
        "PETITION_QUERY_CODE_KEY": _key("qc"),
        "PETITION_SERVICE_TOKEN_KEYS": _key("img-t1"),
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Started:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@contextmanager
def started(image: ImageVenv, name: str, argv: list[str], env: dict[str, str],
            logs: Path) -> Iterator[Started]:
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(argv, cwd=image.app, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    running = Started(name, process, log)
    try:
        yield running
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def wait_http(running: Started, url: str, within: float = START_WITHIN_SECONDS) -> None:
    deadline = time.monotonic() + within
    while True:
        if running.process.poll() is not None:
            pytest.fail(f"{running.name} exited ({running.process.returncode}):\n"
                        f"{running.output()}")
        try:
            if httpx.get(url, timeout=2.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{running.name} did not answer {url} in {within:.0f} s:\n"
                        f"{running.output()}")
        time.sleep(0.2)


def wait_log(running: Started, marker: str, within: float = START_WITHIN_SECONDS) -> None:
    deadline = time.monotonic() + within
    while marker not in running.output():
        if running.process.poll() is not None:
            pytest.fail(f"{running.name} exited ({running.process.returncode}):\n"
                        f"{running.output()}")
        if time.monotonic() > deadline:
            pytest.fail(f"{running.name} never logged {marker!r}:\n{running.output()}")
        time.sleep(0.2)


def run(image: ImageVenv, argv: list[str], env: dict[str, str],
        timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, cwd=image.app, env=env, capture_output=True, text=True,
                            timeout=timeout, check=False)
    assert result.returncode == 0, f"{argv}: {result.stdout}\n{result.stderr}"
    return result


async def fresh_database(name: str) -> tuple[str, dict[str, str]]:
    """A database as deploy/postgres-init/00-roles.sh prepares the application's: the
    schema's owner may create in it, btree_gist is there. Returns the superuser URL and
    each role's URL."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    from adapters.settings import get_settings
    from devstack.postgres import database_url, ensure_database
    from devstack.roles import login_url

    settings = get_settings()
    url = await ensure_database(database_url(os.environ.get("DATABASE_URL")), name,
                                recreate=True)
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(f"GRANT CREATE ON SCHEMA public TO {settings.db_owner_role}"))
            await conn.execute(text("CREATE EXTENSION IF NOT EXISTS btree_gist SCHEMA public"))
    finally:
        await engine.dispose()
    roles = {
        "owner": login_url(url, settings.db_owner_role,
                           os.environ.get("PETITION_OWNER_PASSWORD") or None),
        "app": login_url(url, settings.db_app_role,
                         os.environ.get("PETITION_APP_PASSWORD") or None),
        "reports": login_url(url, settings.db_reports_role,
                             os.environ.get("PETITION_REPORTS_PASSWORD") or None),
    }
    return url, roles


async def drop(name: str) -> None:
    from devstack.postgres import database_url, drop_database

    await drop_database(database_url(os.environ.get("DATABASE_URL")), name)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> ImageVenv:
    return install(tmp_path_factory.mktemp("image"))


async def prove_the_image_runs(image: ImageVenv, temporal: dict[str, str],
                               logs: Path) -> dict[str, float]:
    """Migrate, load the directory, start worker, service and codec server from the image
    with `temporal` (TEMPORAL_ADDRESS, namespace, TLS settings) and submit a petition from
    the image's `petition` command. Returns how long the steps took."""
    timings: dict[str, float] = dict(image.timings)
    database = f"petitionflow_image_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    _, roles = await fresh_database(database)
    try:
        await asyncio.to_thread(run_processes, image, temporal, roles, logs, timings)
    finally:
        await drop(database)
    return timings


def run_processes(image: ImageVenv, temporal: dict[str, str], roles: dict[str, str],
                  logs: Path, timings: dict[str, float]) -> None:
    """The blocking part of the proof (processes, HTTP), in a thread of its own."""
    base = image.environment(
        **production_keys(), **temporal,
        DATABASE_URL=roles["app"], PETITION_REPORTS_DATABASE_URL=roles["reports"],
        PETITION_TASK_QUEUE=f"image-{uuid.uuid4().hex[:8]}",
        PETITION_NOTICE_OUTBOX_DIR=str(image.app / ".data" / "outbox"),
        PETITION_LETTER_DIR=str(image.app / ".data" / "letters"))
    python = str(image.python)

    # Every module comes from the staged /app, none from this checkout.
    probe = run(image, [python, "-c", (
        "import adapters.settings, worker, service.main, security.codec_server, "
        "starter.cli, reports, documents.render, devstack.temporal_cluster;"
        "print(adapters.settings.PROJECT_ROOT, worker.__file__)")], base)
    root, worker_file = probe.stdout.split()
    assert Path(root) == image.app and Path(worker_file).parent == image.app

    mark = time.monotonic()
    run(image, [python, "-m", "alembic", "upgrade", "head"],
        {**base, "PETITION_MIGRATION_DATABASE_URL": roles["owner"]})
    timings["migrations"] = time.monotonic() - mark
    loaded = run(image, [str(image.bin("petition")), "load-directory"], base)
    assert "loaded" in loaded.stdout

    service_port, codec_port = _free_port(), _free_port()
    mark = time.monotonic()
    with started(image, "worker", [python, "worker.py"], base, logs) as worker, \
            started(image, "service", [python, "-m", "uvicorn", "--factory",
                                       "service.main:app_factory", "--host", "127.0.0.1",
                                       "--port", str(service_port)], base, logs) as service, \
            started(image, "codec-server", [
                str(image.bin("petition")), "codec-server", "--port", str(codec_port),
                "--audit-log", str(image.app / ".data" / "audit" / "codec-audit.log")],
                base, logs) as codec:
        wait_log(worker, "worker polling task queue")
        wait_http(service, f"http://127.0.0.1:{service_port}/healthz")
        wait_http(codec, f"http://127.0.0.1:{codec_port}/login")
        timings["processes up"] = time.monotonic() - mark

        # The service: its pages render from the image's templates and catalogues.
        with httpx.Client(base_url=f"http://127.0.0.1:{service_port}",
                          follow_redirects=True) as http:
            assert http.get("/healthz").json() == {"ok": True}
            chinese = http.get("/signin")
            assert chinese.status_code == 200 and "登录" in chinese.text
            english = http.get("/lang/en", params={"next": "/signin"})
            assert english.status_code == 200 and "Sign in" in english.text
        # The codec server: a sign-in page; no decode without a staff member's token.
        assert httpx.get(f"http://127.0.0.1:{codec_port}/login").status_code == 200
        refused = httpx.post(f"http://127.0.0.1:{codec_port}/decode",
                             json={"payloads": []})
        assert refused.status_code == 401

        # A petition through the image's command, registered by the image's worker.
        mark = time.monotonic()
        sample = image.app / "starter" / "samples" / "01-wage-arrears-visit.json"
        submitted = run(image, [str(image.bin("petition")), "submit", str(sample)], base)
        timings["petition registered"] = time.monotonic() - mark
        assert '"registration_no"' in submitted.stdout, submitted.stdout
        assert '"stage"' in submitted.stdout
        for process in (worker, service, codec):
            assert process.process.poll() is None, process.output()
    assert worker.process.returncode == 0, worker.output()  # a clean SIGTERM shutdown
    assert "finishing in-flight tasks" in worker.output()


@pytest.mark.processes
async def test_the_image_runs_against_the_dev_server(image: ImageVenv, dev_env,
                                                     tmp_path: Path) -> None:
    address = dev_env.client.service_client.config.target_host
    timings = await prove_the_image_runs(
        image, {"TEMPORAL_ADDRESS": address, "PETITION_TEMPORAL_NAMESPACE": "default"},
        tmp_path / "logs")
    print("image proof: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
