"""Session-scoped real infrastructure: PostgreSQL, the Temporal dev server, the
time-skipping test server. Each test gets a fresh task queue and unique intake ids."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

# Development keys (generated once under .data/) for the tests and every process they
# start; production leaves PETITION_DEV_KEYS unset and must configure keys.
os.environ.setdefault("PETITION_DEV_KEYS", "true")

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities import ActivityDesks, build_desks
from adapters.engine import create_engine, session_maker
from adapters.petition_client import PetitionClient, workflow_id_for
from adapters.settings import get_settings
from devstack.postgres import database_url, drop_database, ensure_database
from devstack.roles import RolePasswords, ensure_roles, login_url
from devstack.temporal_server import free_port, settled, start_dev_server, start_time_skipping
from domain.case import PetitionStatus
from domain.models import PetitionIntake, reference
from starter.runtime import SAMPLE_DIRECTORY, load_directory_file, migrate_async
from worker import build_worker, data_converter
from workflows.petition import PetitionWorkflow

# The fast tier (`make test-fast`, `pytest -m fast`): the pure domain core and tests of a
# single service (PostgreSQL). A test is in it unless it needs a Temporal server, through
# these fixtures or by starting one itself (marked `servers`), or runs the `petition`
# command (marked `cli`: seconds of interpreter start-up each) or other processes of its
# own (marked `processes`).
TEMPORAL_FIXTURES = frozenset({"dev_env", "ts_env", "running_worker", "time_skipping_server",
                               "petitions", "dev_ui_url", "temporal_cluster"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        needs = TEMPORAL_FIXTURES & set(getattr(item, "fixturenames", ()))
        slow_faces = (item.get_closest_marker("servers") or item.get_closest_marker("cli")
                      or item.get_closest_marker("processes"))
        if not needs and slow_faces is None:
            item.add_marker(pytest.mark.fast)


# One database per test session, so runs side by side never drop each other's data.
TEST_DATABASE = f"petitionflow_test_{os.getpid()}"


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def db_url() -> AsyncIterator[str]:
    """A fresh, migrated test database on DATABASE_URL's server or the embedded one."""
    base = database_url(os.environ.get("DATABASE_URL"))
    if os.environ.get("DATABASE_URL"):  # the embedded server provisions its roles itself
        await ensure_roles(base, passwords=RolePasswords.from_environment())
    url = await ensure_database(base, TEST_DATABASE, recreate=True)
    await migrate_async(url)
    yield url
    await drop_database(base, TEST_DATABASE)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    """The test database as its superuser (for what only tests do)."""
    engine = create_engine(db_url, pool_size=10)
    yield engine
    await engine.dispose()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def app_engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    """The test database as the application's role (docs/database-roles.md): `sessions`,
    and through them the workers, need no more than production's grants."""
    engine = create_engine(login_url(db_url, get_settings().db_app_role,
                                     os.environ.get("PETITION_APP_PASSWORD") or None),
                           pool_size=10)
    yield engine
    await engine.dispose()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def sessions(app_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    maker = session_maker(app_engine)
    await load_directory_file(maker, SAMPLE_DIRECTORY)
    return maker


@pytest.fixture(scope="session")
def dev_ui_port() -> int:
    return free_port()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def dev_env(dev_ui_port: int, db_url: str) -> AsyncIterator[WorkflowEnvironment]:
    """The real Temporal CLI dev server (with its UI, for the browser test). Its UI decrypts
    payloads through a codec server for staff signed in there (tokens checked against the
    test database's directory, as the petition service checks them)."""
    import shutil

    from security.codec_server import StaffAuthenticator, ui_codec_server
    from service.config import ServiceSettings

    audit = Path(tempfile.mkdtemp(prefix="petitionflow-codec-audit-")) / "codec-audit.log"
    codec_server = ui_codec_server(
        dev_ui_port, authenticator=StaffAuthenticator(ServiceSettings(), db_url),
        audit_path=audit)
    with tempfile.TemporaryDirectory(prefix="petitionflow-temporal-") as tmp:
        try:
            env = await start_dev_server(db_filename=str(Path(tmp) / "temporal.db"), ui=True,
                                         ui_port=dev_ui_port, data_converter=data_converter(),
                                         ui_codec_endpoint=codec_server.ui_endpoint)
            async with env:
                yield env
        finally:
            codec_server.stop()
            shutil.rmtree(audit.parent, ignore_errors=True)


# `make test-cluster` (PETITION_TEST_TEMPORAL=cluster): `dev_env` is a client of the
# production-shaped cluster instead (tests/cluster/fixtures.py), for every test that uses it.
if os.environ.get("PETITION_TEST_TEMPORAL") == "cluster":
    from tests.cluster.fixtures import dev_env, temporal_cluster  # noqa: F401, F811


@pytest.fixture(scope="session")
def dev_ui_url(dev_env: WorkflowEnvironment, dev_ui_port: int) -> str:
    """The dev server's Web UI (started with `dev_env`)."""
    return f"http://127.0.0.1:{dev_ui_port}"


class TimeSkippingServer:
    """The Java time-skipping test server, one per session.

    Its virtual time advances only while nothing holds its time lock, and a workflow
    terminated while one of its workflow tasks or activities is outstanding keeps that
    lock for good (temporal-test-server 1.38: the release is refused as "Completed
    workflow"). So after each test that used it, `check_after` makes sure a day still
    passes promptly; if not, that test fails (it is the one that stalled the clock) and
    the next test gets a fresh server. Nothing is replaced silently.
    """

    PROBE = timedelta(days=1)
    PROBE_WITHIN_SECONDS = 10.0

    def __init__(self) -> None:
        self._env: WorkflowEnvironment | None = None

    async def ready(self) -> WorkflowEnvironment:
        if self._env is None:
            self._env = await start_time_skipping(data_converter=data_converter())
        return self._env

    async def check_after(self, test: str) -> None:
        """Fail `test` if it left the server unable to skip time (and start afresh)."""
        if self._env is None or await self._skips_time(self._env):
            return
        await self.close()  # its clock is locked for good: the next test needs a new one
        pytest.fail(f"{test} left the time-skipping server unable to skip time: a petition "
                    "was terminated with a task outstanding (settle it first)", pytrace=False)

    async def _skips_time(self, env: WorkflowEnvironment) -> bool:
        try:
            await asyncio.wait_for(env.sleep(self.PROBE), timeout=self.PROBE_WITHIN_SECONDS)
        except (TimeoutError, RPCError):
            return False
        return True

    def serves(self, client: Client) -> bool:
        return self._env is not None and self._env.client is client

    async def close(self) -> None:
        env, self._env = self._env, None
        if env is not None:
            with contextlib.suppress(Exception):
                await env.shutdown()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def time_skipping_server() -> AsyncIterator[TimeSkippingServer]:
    server = TimeSkippingServer()
    yield server
    await server.close()


@pytest_asyncio.fixture(loop_scope="session")
async def ts_env(time_skipping_server: TimeSkippingServer, petitions: Petitions,
                 request: pytest.FixtureRequest) -> AsyncIterator[WorkflowEnvironment]:
    """The Java time-skipping test server: statutory months in seconds."""
    env = await time_skipping_server.ready()
    yield env
    await petitions.close()  # the test's open petitions, before the clock is checked
    await time_skipping_server.check_after(request.node.nodeid)


@pytest.fixture
def task_queue() -> str:
    return f"petitions-test-{uuid.uuid4().hex[:10]}"


RunningWorker = Callable[..., Any]


@pytest.fixture
def running_worker(sessions: async_sessionmaker[AsyncSession], task_queue: str,
                   petitions: Petitions,
                   time_skipping_server: TimeSkippingServer) -> RunningWorker:
    """`async with running_worker(client) as desks:` runs the real worker on this test's queue.

    On the time-skipping server the worker stays until the test's petitions have finished
    their outstanding tasks, so that none is terminated mid-task afterwards."""

    @asynccontextmanager
    async def run(client: Client, desks: ActivityDesks | None = None) -> AsyncIterator[
            ActivityDesks]:
        desks = desks or build_desks(sessions)
        worker: Worker = build_worker(client, desks, task_queue=task_queue)
        async with worker:
            yield desks
            if time_skipping_server.serves(client):
                await petitions.settle(client)

    return run


class Petitions:
    """Starts petitions for one test and terminates the still-open ones afterwards: on the
    time-skipping server a workflow left open would take workflow tasks nobody answers as
    its timers fire, and hold virtual time still."""

    def __init__(self, task_queue: str):
        self.task_queue = task_queue
        self._handles: list[WorkflowHandle[Any, Any]] = []

    async def start(self, env: WorkflowEnvironment, intake: PetitionIntake | None = None,
                    **overrides: Any) -> WorkflowHandle[PetitionWorkflow, PetitionStatus]:
        intake = intake or make_intake(**overrides)
        client = PetitionClient(env.client, self.task_queue, clock=env.get_current_time)
        handle = client.handle(workflow_id_for(intake.intake_id))
        self._handles.append(handle)
        await client.submit(intake)
        return handle

    def track(self, handle: WorkflowHandle[Any, Any]) -> None:
        self._handles.append(handle)

    async def settle(self, client: Client, within: float = 5.0) -> None:
        """Wait, briefly, until no petition of this test has a task outstanding; a petition
        that does not settle fails the test (terminated mid-task, it would stall the
        time-skipping server for every later test)."""
        busy = [handle.id for handle in self._handles
                if not await settled(client, handle.id, within)]
        if busy:
            pytest.fail(f"petitions still had tasks outstanding after {within} s: {busy}",
                        pytrace=False)

    async def close(self) -> None:
        handles, self._handles = self._handles, []
        for handle in handles:
            with contextlib.suppress(RPCError):  # closed already
                await handle.terminate(reason="test finished")


@pytest_asyncio.fixture(loop_scope="session")
async def petitions(task_queue: str) -> AsyncIterator[Petitions]:
    tracker = Petitions(task_queue)
    yield tracker
    await tracker.close()


def fictional_personal_data(extra: str, text: str) -> dict[str, str]:
    """A fictional petitioner's data, unique per call, for tests that scan for leaks: the
    name, ID number, phone, address, letter text, and a free text `extra` (a note, an
    opinion ...) starting with `text`, all under the same tag."""
    tag = uuid.uuid4().hex[:8]
    digits = str(int(tag, 16)).rjust(10, "7")[:10]
    return {"name": f"欧阳隐私{tag}", "id_number": f"3301021985{digits[:7]}X",
            "phone": f"139{digits[:8]}", "address": f"杭州市保密路{tag}号",
            "content": f"信件正文 LETTER-{tag} 本人工资被拖欠",
            extra: f"{text} {extra.upper()}-{tag}"}


def make_intake(**overrides: Any) -> PetitionIntake:
    """A valid intake with a unique id and a unique petitioner (so no repeat matching)."""
    unique = uuid.uuid4().hex
    digits = str(int(unique[:12], 16))[:17].rjust(17, "1")
    base: dict[str, Any] = {
        "intake_id": reference("T"),
        "channel": "visit",
        "category": "wage_arrears",
        "unit": "QS-XFJ",
        "received_at": datetime.now().astimezone().isoformat(),
        "petitioner": {"name": "测试人", "id_number": digits + "X", "phone": "13800000000"},
        "subject": f"拖欠工资 wage arrears {unique[:6]}",
        "content": "某公司拖欠工资三个月。The company has not paid wages for three months.",
    }
    base.update(overrides)
    return PetitionIntake.model_validate(base)


ONE_DAY = timedelta(days=1)


@pytest_asyncio.fixture(loop_scope="session")
async def browser() -> AsyncIterator[Any]:
    """Debian's Chromium, headless, for the page tests (tests/browser_helpers.py)."""
    from playwright.async_api import async_playwright

    from devstack.browser import CHROMIUM_ARGS, ensure_chromium

    chromium = await asyncio.to_thread(ensure_chromium)
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=chromium, headless=True,
                                            args=list(CHROMIUM_ARGS))
        try:
            yield launched
        finally:
            await launched.close()
