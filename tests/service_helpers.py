"""The petition service running for a test, and the `petition` command signed in to it.

`running_service` serves the real application (service.app.create_app) with uvicorn on a
free port, in the test's own event loop: the same PostgreSQL sessions, and a
PetitionClient on the dev server and this test's task queue (run the worker alongside with
`running_worker`). `signed_in` gives a person a local account and runs `petition login`
as a process; the answer runs `petition ...` as that person:

    async with running_worker(client), running_service(sessions, client, task_queue) as url:
        handler = await signed_in(sessions, url, "QS-HRSS.h1", tmp_path / "h1.json",
                                  db_url=db_url, address=address, task_queue=task_queue)
        result = await handler("act", number, "accept")
"""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from adapters.petition_client import PetitionClient
from service.accounts_cmd import set_password
from service.app import create_app
from service.config import ServiceSettings
from starter.session import SERVICE_ENV, SESSION_ENV
from tests.cli import CliResult, petition

TOKEN_KEY = base64.b64encode(b"s" * 32).decode()
PASSWORD = "correct horse battery staple"
START_WITHIN_SECONDS = 15.0


def service_settings(**overrides: Any) -> ServiceSettings:
    """Test settings: a fixed token key, no rate limit to speak of, lockout after 3."""
    base: dict[str, Any] = {"token_keys": f"test-s1:{TOKEN_KEY}", "lockout_failures": 3,
                            "lockout_minutes": 5, "rate_burst": 10_000,
                            "rate_per_second": 1000.0}
    return ServiceSettings(_env_file=None, **{**base, **overrides})


@asynccontextmanager
async def running_service(sessions: async_sessionmaker[AsyncSession], client: Client | None,
                          task_queue: str, **overrides: Any) -> AsyncIterator[str]:
    """The service at the URL answered, until the block ends. `client` None: a service
    without Temporal (sign-in works; acting answers 503)."""
    petitions = PetitionClient(client, task_queue) if client is not None else None
    app = create_app(service_settings(**overrides), sessions=sessions, petitions=petitions)
    # Bound here, on a port the system picks: no race with other tests for a free port.
    listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listening.bind(("127.0.0.1", 0))
    port = int(listening.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning",
                                           access_log=False))
    serving = asyncio.create_task(server.serve(sockets=[listening]))
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_WITHIN_SECONDS
        while not server.started:
            if serving.done() or loop.time() > deadline:
                raise RuntimeError("the petition service did not start")
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving
        listening.close()


def cli_env(service_url: str, session_file: Path) -> dict[str, str]:
    """The environment that points `petition` at this service and this session file."""
    return {SERVICE_ENV: service_url, SESSION_ENV: str(session_file)}


@dataclass(frozen=True)
class SignedIn:
    """`await person("act", ...)`: the `petition` command with this person's session."""

    person_id: str
    session_file: Path
    env: dict[str, str]
    db_url: str
    address: str
    task_queue: str

    async def __call__(self, *args: str, stdin: str | None = None) -> CliResult:
        return await petition(*args, db_url=self.db_url, address=self.address,
                              task_queue=self.task_queue, stdin=stdin, env=self.env)


async def signed_in(sessions: async_sessionmaker[AsyncSession], service_url: str,
                    person_id: str, session_file: Path, *, db_url: str, address: str,
                    task_queue: str) -> SignedIn:
    """Give `person_id` (a person of the directory) a local account and sign in with
    `petition login` (the password piped on stdin)."""
    await set_password(sessions, person_id, PASSWORD)
    person = SignedIn(person_id, session_file, cli_env(service_url, session_file), db_url,
                      address, task_queue)
    login = await person("login", stdin=f"{person_id}\n{PASSWORD}\n")
    assert login.code == 0, login.err
    return person
