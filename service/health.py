"""GET /readyz: ready to serve (observability/readiness.py) -- the database migrated to
head, Temporal reachable, the keys configured. 200 with each check, or 503 naming the
failing ones. GET /healthz (service/app.py) is liveness only: the process answers.
docs/operations.md."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from adapters.settings import get_settings
from observability.readiness import readiness
from security.codec import require_keys
from service.auth.tokens import token_ring
from service.config import ServiceSettings
from service.context import context

router = APIRouter()


def service_keys(settings: ServiceSettings) -> None:
    """The keys the service starts with (service/main.py): require_keys' and its tokens'."""
    require_keys(get_settings())
    token_ring(settings)


@router.get("/readyz", include_in_schema=False)
async def readyz(request: Request) -> JSONResponse:
    ctx = context(request)
    report = await readiness(
        sessions=ctx.sessions,
        temporal=ctx.client.client if ctx.client is not None else None,
        keys=lambda: service_keys(ctx.settings))
    return JSONResponse(report.body(), status_code=200 if report.ready else 503,
                        headers={"Cache-Control": "no-store"})
