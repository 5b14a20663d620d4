"""`petition dev`: the whole embedded stack in one foreground process.

PostgreSQL (pgserver, `.data/pg`), migrations, the sample directory, the Temporal
dev server with its Web UI (state in `.data/temporal.db`), the worker, and a
handful of sample petitions. Ctrl-C stops everything; state survives for next time.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

from sqlalchemy import func, select
from temporalio.client import Client

from adapters.tables import Petition, Unit
from devstack.temporal_server import DEV_UI_PORT, start_project_dev_server
from security.codec_server import CodecServer
from starter.intake import read_intake, submit
from starter.runtime import (
    SAMPLE_DIRECTORY,
    SAMPLE_INTAKES,
    Runtime,
    load_directory_file,
    migrate_async,
    runtime,
)
from worker import data_converter, run_worker


async def _submit_samples(rt: Runtime, client: Client, folder: Path) -> None:
    for path in sorted(folder.glob("*.json")):  # noqa: ASYNC240 - a handful of small files
        status = await submit(client, rt.sessions, read_intake(path),
                              task_queue=rt.settings.task_queue)
        print(f"  {status.registration_no:<24} {status.stage or 'attached'}  {path.name}")


DEMO_WHEN_FEWER_THAN = 100  # petitions: the first run gets a realistic load, later runs keep theirs


async def _demo(rt: Runtime, client: Client, count: int) -> None:
    """A mixed load played by directory staff, so the UI and reports show something real."""
    from starter.demo import run_demo

    async with rt.sessions() as session:
        existing = await session.scalar(select(func.count()).select_from(Petition))
    if count <= 0 or (existing or 0) >= DEMO_WHEN_FEWER_THAN:
        return
    print(f"demo: {count} petitions across units, channels and categories (runs in the "
          "background; some go overdue and escalate within minutes under the demo profile)")
    summary = await run_demo(client, rt.sessions, rt.settings.task_queue, count,
                             log=lambda line: None)
    print(summary.render())


async def run_dev(samples: Path = SAMPLE_INTAKES, demo_count: int = 200) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with runtime() as rt:
        print("PostgreSQL:", rt.engine.url.render_as_string(hide_password=True))
        await migrate_async(rt.engine.url.render_as_string(hide_password=False))
        async with rt.sessions() as session:
            units = await session.scalar(select(func.count()).select_from(Unit))
        if not units:
            print("directory:", await load_directory_file(rt.sessions, SAMPLE_DIRECTORY), "units")
        print("starting the Temporal dev server (the first run may build the CLI) ...")
        codec = _codec_server(rt)
        env = await start_project_dev_server(
            data_converter=data_converter(), ui_codec_endpoint=codec.ui_endpoint if codec else None)
        async with env:
            worker = asyncio.create_task(run_worker(rt.settings, rt.sessions, env.client, stop))
            await asyncio.sleep(1)
            print("sample petitions:")
            await _submit_samples(rt, env.client, samples)
            print(f"\nWeb UI: http://localhost:{DEV_UI_PORT}  (Ctrl-C stops the stack)")
            demo = asyncio.create_task(_demo(rt, env.client, demo_count))
            with contextlib.suppress(asyncio.CancelledError):
                await stop.wait()
            demo.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await demo
            await worker
        if codec is not None:
            codec.stop()


def _codec_server(rt: Runtime) -> CodecServer | None:
    """Payloads are encrypted: the Web UI reads them through the local codec server."""
    from security.codec_server import server_token, ui_codec_server

    try:
        server = ui_codec_server(DEV_UI_PORT, settings=rt.settings,
                                 port=rt.settings.codec_server_port,
                                 token=server_token(rt.settings))
    except OSError as err:
        print(f"codec server not started ({err}): the Web UI will show payloads encrypted")
        return None
    print(f"codec server: {server.url} (the Web UI decrypts payloads through it)")
    return server
