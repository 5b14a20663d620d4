"""RFC 9457 problem details (`application/problem+json`) for every error the service
answers: validation (naming the field), refusals (naming the rule and field), 401, 403,
404, 409, 413, 429 and the unexpected."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from domain.rules import Refusal

MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://petition-flow.invalid/problems/"
LOG = logging.getLogger("petition.service")

TITLES = {400: "Bad request", 401: "Not authenticated", 403: "Forbidden", 404: "Not found",
          405: "Method not allowed", 406: "Not acceptable", 409: "Conflict",
          413: "Request body too large", 415: "Unsupported media type",
          422: "Unprocessable content", 429: "Too many requests",
          500: "Internal server error", 503: "Service unavailable"}

# Refusals about who acts (not what the case allows) are 403; a payload rule naming a field
# is 422; the rest (the stage, a pending request, a closed case) conflict with the case.
FORBIDDEN_RULES = ("role", "unit", "identity", "petitioner", "case")


# The OpenAPI document's `Problem` schema (components/schemas/Problem; `install` adds it):
# every declared error response of every operation answers it as application/problem+json.
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem", "type": "object", "required": ["type", "title", "status"],
    "description": "RFC 9457 problem details. `field` names the offending field, `rule` "
                   "the refused rule; `errors` lists every invalid field.",
    "properties": {
        "type": {"type": "string"}, "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"}, "instance": {"type": "string"},
        "field": {"type": ["string", "null"]}, "rule": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}}},
    "additionalProperties": True}
# Any request may be answered these: a malformed Content-Length (400), a body over the
# limit (413), an invalid request (422), the client's rate limit (429).
EVERY_REQUEST = (400, 413, 422, 429)
SIGNED_IN = (*EVERY_REQUEST, 401, 403)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these statuses (plus those of every request), each a
    problem+json `Problem`."""
    wanted = sorted(set(statuses) | set(EVERY_REQUEST))
    answers: dict[int | str, dict[str, Any]] = {}
    for status in wanted:
        answer: dict[str, Any] = {"description": TITLES.get(status, "Error"), "content": {
            MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
        if status in (429, 503):
            answer["headers"] = {"Retry-After": {
                "description": "seconds to wait", "schema": {"type": "integer"}}}
        answers[status] = answer
    return answers


class Problem(Exception):
    """Raise anywhere in a request: answered as problem+json."""

    def __init__(self, status: int, detail: str, *, kind: str | None = None,
                 title: str | None = None, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.kind = kind
        self.title = title or TITLES.get(status, "Error")
        self.headers = headers or {}
        self.extra = extra


def problem_body(status: int, detail: str, *, kind: str | None = None,
                 title: str | None = None, instance: str | None = None,
                 **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": TYPE_BASE + kind if kind else "about:blank",
                            "title": title or TITLES.get(status, "Error"),
                            "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    body.update(extra)
    return body


def problem_response(status: int, detail: str, *, headers: dict[str, str] | None = None,
                     **kwargs: Any) -> JSONResponse:
    return JSONResponse(problem_body(status, detail, **kwargs), status_code=status,
                        headers=headers, media_type=MEDIA_TYPE)


def refusal_status(refusal: Refusal) -> int:
    head = refusal.rule.split(":", 1)[0]
    if head in FORBIDDEN_RULES:
        return 403
    if refusal.field is not None:
        return 422
    return 409


def refused(refusal: Refusal, status: int | None = None) -> Problem:
    return Problem(status or refusal_status(refusal), refusal.message, kind="refused",
                   title="Action refused", rule=refusal.rule, field=refusal.field,
                   details=refusal.details)


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    """pydantic's loc without the request part: `body.petitioner.id_number` ->
    `petitioner.id_number`."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "form", "cookie"):
        parts = parts[1:]
    return ".".join(parts) or "body"


def validation_problem(errors: list[Any], prefix: str = "") -> Problem:
    fields = [{"field": prefix + _field(e.get("loc", ())), "message": e.get("msg", ""),
               "type": e.get("type", "")} for e in errors]
    detail = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:5])
    return Problem(422, detail or "invalid request", kind="validation",
                   title="Invalid request", errors=fields,
                   field=fields[0]["field"] if fields else None)


def from_validation_error(err: ValidationError, prefix: str = "") -> Problem:
    return validation_problem(list(err.errors(include_url=False, include_input=False)),
                              prefix)


def _with_problem_schema(app: FastAPI) -> None:
    """The OpenAPI document with the `Problem` schema the error responses refer to."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            document.setdefault("components", {}).setdefault("schemas", {})[
                "Problem"] = PROBLEM_SCHEMA
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def install(app: FastAPI) -> None:
    """The one place errors become problem+json."""
    _with_problem_schema(app)

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem_response(exc.status, exc.detail, kind=exc.kind, title=exc.title,
                                instance=request.url.path, headers=exc.headers, **exc.extra)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problem = validation_problem(
            [{k: v for k, v in e.items() if k in ("loc", "msg", "type")}
             for e in exc.errors()])
        return await on_problem(request, problem)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "")
        return problem_response(exc.status_code, detail, instance=request.url.path,
                                headers=dict(exc.headers or {}))

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        LOG.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem_response(500, "the service failed to answer this request",
                                instance=request.url.path)

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
