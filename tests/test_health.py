"""Issue 17, item 4: liveness and readiness. The service's GET /readyz (service/health.py)
and the worker's `python -m worker --check` answer the same checks
(observability/readiness.py): the database at the head revision, Temporal reachable, the
keys configured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from adapters.engine import alembic_head, create_engine, session_maker
from adapters.petition_client import PetitionClient
from adapters.settings import Settings, get_settings
from devstack.postgres import database_url, drop_database, ensure_database
from devstack.roles import login_url
from devstack.temporal_server import free_port
from observability.readiness import check_keys
from security.codec import require_keys
from service.app import create_app
from tests.service_helpers import service_settings
from worker import check_ready

ROOT = Path(__file__).resolve().parent.parent


async def readyz(sessions: async_sessionmaker[AsyncSession],
                 client: Client | None) -> httpx.Response:
    petitions = PetitionClient(client, "readyz") if client is not None else None
    app = create_app(service_settings(), sessions=sessions, petitions=petitions)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as http:
        assert (await http.get("/healthz")).json() == {"ok": True}  # liveness, unchanged
        return await http.get("/readyz")


@pytest_asyncio.fixture(loop_scope="session")
async def empty_database_url() -> AsyncIterator[str]:
    """A database nobody migrated: the schema is behind head."""
    base = database_url(os.environ.get("DATABASE_URL"))
    name = f"petitionflow_unmigrated_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    url = await ensure_database(base, name, recreate=True)
    yield url
    await drop_database(base, name)


def closed_address() -> str:
    return f"127.0.0.1:{free_port()}"


def app_url(db_url: str) -> str:
    return login_url(db_url, get_settings().db_app_role,
                     os.environ.get("PETITION_APP_PASSWORD") or None)


async def test_ready_on_the_test_stack(sessions: async_sessionmaker[AsyncSession],
                                       dev_env: WorkflowEnvironment) -> None:
    response = await readyz(sessions, dev_env.client)
    body = response.json()
    assert response.status_code == 200, body
    assert body["ready"] is True and body["failing"] == []
    assert set(body["checks"]) == {"database", "temporal", "keys"}
    assert all(check["ok"] for check in body["checks"].values())
    assert alembic_head() in body["checks"]["database"]["detail"]
    assert response.headers["cache-control"] == "no-store"


async def test_not_ready_when_the_database_is_behind_head(
        empty_database_url: str, dev_env: WorkflowEnvironment) -> None:
    engine = create_engine(empty_database_url, pool_size=1)
    try:
        response = await readyz(session_maker(engine), dev_env.client)
    finally:
        await engine.dispose()
    body = response.json()
    assert response.status_code == 503
    assert body["ready"] is False and body["failing"] == ["database"]
    assert body["checks"]["database"]["detail"].startswith("schema at nothing")
    assert body["checks"]["temporal"]["ok"] and body["checks"]["keys"]["ok"]
    # Nothing of the connection in the answer: no URL, host or role.
    assert "postgres" not in response.text.lower()


async def test_not_ready_when_temporal_is_unreachable(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    client = await Client.connect(closed_address(), lazy=True)
    response = await readyz(sessions, client)
    body = response.json()
    assert response.status_code == 503
    assert body["failing"] == ["temporal"]
    assert body["checks"]["temporal"]["detail"].startswith("unreachable")
    assert body["checks"]["database"]["ok"]
    assert "127.0.0.1" not in response.text


async def test_not_ready_before_the_service_connects_to_temporal(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    response = await readyz(sessions, None)
    assert response.status_code == 503
    assert response.json()["checks"]["temporal"]["detail"] == "not connected yet"


def test_not_ready_without_keys() -> None:
    settings = Settings(_env_file=None, dev_keys=False, codec_keys=None)  # type: ignore[call-arg]
    check = check_keys(lambda: require_keys(settings))
    assert not check.ok and "PETITION_CODEC_KEYS" in check.detail
    assert check_keys(lambda: require_keys(get_settings())).ok  # the test's dev keys


def worker_settings(db_url: str, address: str, namespace: str) -> Settings:
    return Settings(_env_file=None, database_url=app_url(db_url),  # type: ignore[call-arg]
                    temporal_address=address, temporal_namespace=namespace)


async def test_the_worker_check_on_the_test_stack(db_url: str,
                                                  dev_env: WorkflowEnvironment) -> None:
    client = dev_env.client
    address = client.service_client.config.target_host
    ready = await check_ready(worker_settings(db_url, address, client.namespace))
    assert ready.ready, ready.body()
    down = await check_ready(worker_settings(db_url, closed_address(), client.namespace),
                             within=2.0)
    assert down.failing == ["temporal"]
    unknown = await check_ready(worker_settings(db_url, address, "no-such-namespace"))
    assert unknown.failing == ["temporal"]


@pytest.mark.processes
async def test_python_m_worker_check_exits_by_readiness(
        db_url: str, empty_database_url: str, dev_env: WorkflowEnvironment) -> None:
    """What compose's healthcheck runs: exit 0 and a JSON line when ready, 1 when not."""
    client = dev_env.client
    env = {**os.environ, "TEMPORAL_ADDRESS": client.service_client.config.target_host,
           "PETITION_TEMPORAL_NAMESPACE": client.namespace}

    def check(url: str) -> tuple[int, dict]:
        done = subprocess.run([sys.executable, "-m", "worker", "--check"], cwd=ROOT,
                              env={**env, "DATABASE_URL": url}, capture_output=True,
                              text=True, timeout=60)
        return done.returncode, json.loads(done.stdout.strip().splitlines()[-1])

    code, body = check(app_url(db_url))
    assert (code, body["ready"]) == (0, True), body
    code, body = check(empty_database_url)
    assert (code, body["failing"]) == (1, ["database"])
