"""The petitions worker: PetitionWorkflow and its activities on task queue `petitions`.

Run `python worker.py`; SIGINT/SIGTERM finish in-flight tasks and stop cleanly.
`python -m worker --check` (or `python worker.py --check`): readiness -- the database at
the head revision, Temporal reachable, the keys configured -- as one JSON line; exit status
0 when ready, 1 when not (compose's healthcheck, docs/operations.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import sys
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes
from temporalio.runtime import Runtime
from temporalio.service import TLSConfig
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities import ActivityDesks, build_desks
from activities.delivery.wiring import build_delivery_drainer
from activities.notices import FileGateway, OutboxDrainer
from adapters.engine import (
    create_engine,
    require_current_schema,
    resolve_database_url,
    session_maker,
)
from adapters.settings import Settings, get_settings
from observability.metrics import (
    APP_METRICS_ENV,
    ActivityRetryInterceptor,
    MetricsPage,
    sdk_runtime,
    serve_worker_metrics,
)
from observability.readiness import Readiness, readiness
from observability.tracing import WORKER, configure_tracing, worker_interceptors
from security.assertion import assertion_ring
from security.codec import EncryptionCodec, KeyRing, keyring_from_settings, require_keys
from workflows.interceptor import AssertionInterceptor
from workflows.petition import PetitionWorkflow

log = logging.getLogger("petitionflow.worker")

# Pure, deterministic modules the workflow imports: passing them through the sandbox
# saves re-importing them for every workflow run. `workflows` too: bench/open_cases_bench
# showed a replay after a cache eviction costing ~20 ms of sandbox CPU per activation
# without it (5,000 open cases fell minutes behind their deadlines) and a fifth of that
# with it (lateness at the floor's). The price is the sandbox's isolation of that module;
# the replay of committed histories in CI (tests/test_replay.py) guards its determinism.
PASSTHROUGH = ("domain", "activities", "workflows", "pydantic", "pydantic_core", "sqlalchemy",
               "holidays")


def data_converter(keyring: KeyRing | None = None) -> DataConverter:
    """Pydantic JSON, then AES-GCM (security/codec.py): every payload and failure
    message Temporal stores is encrypted, bound to its namespace and workflow. Keys from
    settings unless `keyring` is given (the replay tests' own key).

    Strict: a payload that is not encrypted is refused, so a start or Signal sent by a
    tool without the codec fails its workflow task and nothing runs on it. The replay of
    the committed histories uses this converter too: they hold no plaintext payload (the
    SDK's own marker bookkeeping and the assertion headers never reach the codec)."""
    ring = keyring or keyring_from_settings(get_settings())
    return dataclasses.replace(
        pydantic_data_converter, payload_codec=EncryptionCodec(ring),
        # Failure messages and stack traces can quote personal data (a validation error
        # echoes its input): they are encrypted too.
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes)


async def connect(settings: Settings, converter: DataConverter | None = None,
                  runtime: Runtime | None = None) -> Client:
    """`runtime`: the SDK's runtime (its Prometheus endpoint, observability/metrics.py);
    None: the SDK's default."""
    return await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace,
                                data_converter=converter or data_converter(),
                                tls=temporal_tls(settings), runtime=runtime)


def temporal_tls(settings: Settings) -> TLSConfig | bool:
    """The frontend's TLS from PETITION_TEMPORAL_TLS_*: the CA that signed the server's
    certificate, this process's client certificate and key (mTLS), the name the server's
    certificate carries. None set: plain gRPC."""
    files = (settings.temporal_tls_ca, settings.temporal_tls_cert, settings.temporal_tls_key)
    if not any(files) and not settings.temporal_tls_server_name:
        return False
    if bool(settings.temporal_tls_cert) != bool(settings.temporal_tls_key):
        raise ValueError("PETITION_TEMPORAL_TLS_CERT and PETITION_TEMPORAL_TLS_KEY go together")
    ca, cert, key = (path.read_bytes() if path else None for path in files)
    return TLSConfig(server_root_ca_cert=ca, client_cert=cert, client_private_key=key,
                     domain=settings.temporal_tls_server_name)


def workflow_runner() -> SandboxedWorkflowRunner:
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH))


def build_worker(
    client: Client,
    desks: ActivityDesks,
    *,
    task_queue: str,
    settings: Settings | None = None,
    workflows: Sequence[type[Any]] = (PetitionWorkflow,),
    assertion_keys: KeyRing | None = None,
    interceptor: AssertionInterceptor | None = None,
) -> Worker:
    settings = settings or get_settings()
    return Worker(
        client,
        task_queue=task_queue,
        workflows=list(workflows),
        activities=desks.all(),
        workflow_runner=workflow_runner(),
        # Outermost first. Traces where configured (observability/tracing.py): their
        # spans cover the rest; they add their own header beside the assertion's. Every
        # start, Update and Signal must carry an assertion the petition service signed
        # with these keys (security/assertion.py, workflows/interceptor.py).
        interceptors=[*worker_interceptors(client), interceptor or AssertionInterceptor(
            assertion_keys or assertion_ring(settings)),
            ActivityRetryInterceptor()],  # attempts after the first, counted by type
        max_concurrent_activities=settings.max_concurrent_activities,
        max_concurrent_workflow_tasks=settings.max_concurrent_workflow_tasks,
        max_cached_workflows=settings.max_cached_workflows,
        graceful_shutdown_timeout=timedelta(seconds=10),
        **_pollers(settings),
    )


def _pollers(settings: Settings) -> dict[str, Any]:
    pollers: dict[str, Any] = {}
    if settings.workflow_task_pollers > 0:
        pollers["max_concurrent_workflow_task_polls"] = settings.workflow_task_pollers
        pollers["nonsticky_to_sticky_poll_ratio"] = 1.0  # as many shared as sticky
    if settings.activity_task_pollers > 0:
        pollers["max_concurrent_activity_task_polls"] = settings.activity_task_pollers
    return pollers


async def run_worker(settings: Settings, sessions: async_sessionmaker[AsyncSession],
                     client: Client, stop: asyncio.Event) -> None:
    desks = build_desks(sessions)
    await desks.vault.active_key_id()  # the data key ready before the first activity
    # Notices to staff: the file outbox. A petitioner's notices: letters, SMS, e-mail
    # (docs/delivery.md), rendered by documents/render.py.
    drainer = OutboxDrainer(sessions, desks.vault, FileGateway(settings.notice_outbox_dir))
    deliveries = build_delivery_drainer(settings, sessions, desks.vault)
    worker = build_worker(client, desks, task_queue=settings.task_queue, settings=settings)
    metrics = await _app_metrics(sessions)
    async with worker:
        drains = [asyncio.create_task(drainer.run(stop)),
                  asyncio.create_task(deliveries.run(stop))]
        log.info("worker polling task queue %r", settings.task_queue)
        await stop.wait()
        log.info("shutting down: finishing in-flight tasks")
        await asyncio.gather(*drains)
    if metrics is not None:
        metrics.close()


async def _app_metrics(sessions: async_sessionmaker[AsyncSession]) -> asyncio.Server | None:
    """The application's metrics on PETITION_WORKER_APP_METRICS_ADDRESS (host:port), if set
    (observability/metrics.py; the SDK's own are on PETITION_WORKER_METRICS_ADDRESS)."""
    import os

    address = os.environ.get(APP_METRICS_ENV)
    if not address:
        return None
    server = await serve_worker_metrics(MetricsPage(sessions), address)
    log.info("application metrics on %s/metrics", address)
    return server


async def check_ready(settings: Settings | None = None,
                      within: float = 3.0) -> Readiness:
    """The worker's readiness (observability/readiness.py), from its settings: its own
    connections, closed again; Temporal without the payload codec (no payload is sent)."""
    settings = settings or get_settings()

    async def temporal() -> Client:
        return await Client.connect(settings.temporal_address,
                                    namespace=settings.temporal_namespace,
                                    tls=temporal_tls(settings))

    engine = create_engine(resolve_database_url(settings), pool_size=1)
    try:
        return await readiness(sessions=session_maker(engine), temporal=temporal,
                               keys=lambda: require_keys(settings), within=within)
    finally:
        await engine.dispose()


def check_main() -> int:
    import json

    report = asyncio.run(check_ready())
    print(json.dumps(report.body(), ensure_ascii=False))
    return 0 if report.ready else 1


async def main() -> None:
    from observability.logs import TEXT_FORMAT, configure_logging

    logging.basicConfig(level=logging.INFO, format=TEXT_FORMAT)
    # JSON where PETITION_LOG_FORMAT=json, then the redaction: failed attempts are logged
    # with tracebacks, nothing personal in them.
    configure_logging()
    settings = get_settings()
    require_keys(settings)  # before the database and Temporal: one clear line if missing
    # Traces where OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT is set: before the engine, whose
    # statements it traces, and the worker, whose workflows and activities it traces.
    configure_tracing(WORKER)
    engine = create_engine(resolve_database_url(settings), pool_size=settings.db_pool_size)
    await require_current_schema(engine)
    # The SDK's metrics (temporal_*) where PETITION_WORKER_METRICS_ADDRESS is set.
    client = await connect(settings, runtime=sdk_runtime())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await run_worker(settings, session_maker(engine), client, stop)
    finally:
        await engine.dispose()


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        raise SystemExit(check_main())
    try:
        asyncio.run(main())
    except Exception as exc:  # the operator needs one clear line, not a traceback
        from adapters.engine import SchemaNotMigratedError
        from security.codec import CodecKeyError

        if isinstance(exc, SchemaNotMigratedError | CodecKeyError):  # assertion keys too
            raise SystemExit(f"worker refused to start: {exc}") from None
        raise
