"""`uvicorn --factory service.main:app_factory`: the service with its own database engine
and Temporal client, built at start-up from the settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from adapters.engine import create_engine, resolve_database_url, session_maker
from adapters.petition_client import PetitionClient
from adapters.settings import get_settings
from observability.logs import configure_logging
from observability.tracing import SERVICE, configure_tracing
from security.codec import CodecKeyError, require_keys
from service.app import create_app
from service.auth.tokens import token_ring
from service.config import ServiceSettings


def app_factory() -> FastAPI:
    # uvicorn has configured its logging by the time it calls this factory: its handlers
    # (and the root's) get the JSON format where PETITION_LOG_FORMAT=json, then the
    # redacting filter, so no log line carries personal data.
    configure_logging()
    settings = get_settings()
    service_settings = ServiceSettings()
    try:  # the keys before anything else: one clear line, not a traceback, without them
        # The data keys too: the service seals and opens documents (docs/documents.md).
        require_keys(settings)
        token_ring(service_settings)
    except CodecKeyError as err:
        raise SystemExit(f"service refused to start: {err}") from None
    # Traces where OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT is set: before the engine and the
    # application it instruments.
    configure_tracing(SERVICE)
    engine = create_engine(resolve_database_url(settings), pool_size=settings.db_pool_size)
    sessions = session_maker(engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from worker import connect

        client = await connect(settings)
        app.state.ctx.connect(PetitionClient(client, settings.task_queue))
        try:
            yield
        finally:
            await engine.dispose()

    app = create_app(service_settings, sessions=sessions, petitions=None)
    app.router.lifespan_context = lifespan
    return app
