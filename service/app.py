"""`create_app`: the petition service as a FastAPI application. Nothing is built at
import time; `service.main:app_factory` builds the engine and Temporal client."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from adapters.petition_client import PetitionClient
from adapters.settings import get_settings
from observability.context import RequestIdMiddleware
from observability.metrics import MetricsPage, metrics_response
from observability.tracing import instrument_app
from security.blind_index import index_from_settings
from service import (
    api,
    documents,
    health,
    pages,
    pages_approvals,
    pages_dashboard,
    pages_intake,
    pages_track,
    pages_workbench,
    problems,
)
from service.auth import routes as auth_routes
from service.auth.oidc import OidcVerifier
from service.auth.tokens import TokenIssuer, token_ring
from service.config import ServiceSettings
from service.context import ServiceContext
from service.limits import BodyLimit, RateLimit

DESCRIPTION = """\
Petition Flow's front door (信访). Intake systems register petitions with client
credentials; staff act on cases with a local account or the bureau's OpenID Connect
tokens; a petitioner follows their one case with its registration number and query code
(查询码). Every action's actor comes from the verified identity and the directory.
Errors are RFC 9457 `application/problem+json`."""


def create_app(settings: ServiceSettings, *, sessions: async_sessionmaker[AsyncSession],
               petitions: PetitionClient | None, tokens: TokenIssuer | None = None,
               oidc: OidcVerifier | None = None) -> FastAPI:
    app = FastAPI(title="Petition Flow", version="1", description=DESCRIPTION,
                  openapi_url="/openapi.json", docs_url="/docs", redoc_url=None)
    """`petitions` None: connected later (`ServiceContext.connect`, by the factory's
    lifespan); until then acting answers 503."""
    app.state.ctx = ServiceContext(
        settings=settings, sessions=sessions, client=petitions,
        tokens=tokens or TokenIssuer(token_ring(settings)),
        oidc=oidc if oidc is not None else OidcVerifier.from_settings(settings),
        index=index_from_settings(get_settings()))
    problems.install(app)
    app.include_router(auth_routes.router)
    app.include_router(api.router)
    app.include_router(documents.router)
    app.include_router(pages.router)
    app.include_router(pages_track.router)
    app.include_router(pages_intake.router)
    app.include_router(pages_workbench.router)
    app.include_router(pages_approvals.router)
    app.include_router(pages_dashboard.router)
    app.include_router(health.router)  # /readyz

    # Prometheus: the counters and the state gauges (observability/metrics.py).
    app.add_route("/metrics", metrics_response(MetricsPage(sessions)), include_in_schema=False)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, Any]:
        return {"ok": True}

    # Outermost first: the request id (observability/context.py), the rate limit, then the
    # body limit, then the application.
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(RateLimit, rate=settings.rate_per_second, burst=settings.rate_burst)
    app.add_middleware(RequestIdMiddleware)
    # Traces where configured (observability/tracing.py): each request a server span
    # around all of the above, parent of the Temporal client's spans.
    instrument_app(app)
    return app
