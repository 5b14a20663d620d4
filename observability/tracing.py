"""Traces (issue 17, item 2; docs/operations.md, "Traces"): OpenTelemetry from the
service's request through the Temporal client, the workflow and each activity to its
database statements, exported by OTLP (http/protobuf) where configured.

Off unless `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` is set
(and `OTEL_SDK_DISABLED` is not true): then `configure_tracing` finds nothing to do, the
SDK is not even imported, and every hook below (`client_interceptors`,
`worker_interceptors`, `instrument_app`, `instrument_engine`) adds nothing. The exporter
reads the rest of the standard variables itself (OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT,
_CERTIFICATE, _COMPRESSION; the sampler from OTEL_TRACES_SAMPLER/_ARG).

The provider is this module's, handed explicitly to each instrumentation; OpenTelemetry's
global provider is left alone.

The Temporal side is the SDK's `TracingInterceptor` with two changes, both by the
subclassing its docstring asks for:

- the trace context travels as W3C `traceparent` only, no baggage: a caller's baggage
  would otherwise sit in Temporal's history in clear (headers are not encrypted);
- an Update's or a Signal's handler span is a child of the caller's span (the action's
  trace: service request -> client span -> handler -> the activities it runs), linked to
  the workflow's start, where the SDK puts it under the workflow's start and links the
  caller. Without the caller's context it falls back to the SDK's behaviour.

Nothing personal leaves the process: every span passes `RedactingExporter` on its way
out -- no query strings, no client address or user agent, no captured headers, no
exception messages or stack traces (the exception's type only), and the redaction of
the logs (security/redact.py) over every remaining text. Request bodies and statement
parameters are never recorded in the first place.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from security.redact import redact

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
    from sqlalchemy.ext.asyncio import AsyncEngine
    from temporalio import client as temporal_client
    from temporalio import worker as temporal_worker

log = logging.getLogger("petitionflow.tracing")

SERVICE = "petition-service"
WORKER = "petition-worker"
CLI = "petition-cli"
TRACES_ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
DISABLED_ENV = "OTEL_SDK_DISABLED"

# Never traced: probes, scrapes and static files (regexes on the URL without its query).
EXCLUDED_URLS = ",".join((r"/metrics$", r"/readyz$", r"/healthz$", r"/static/",
                          r"/favicon\.ico$"))


@dataclass(frozen=True)
class TracingSettings:
    """Whether traces are exported: an OTLP endpoint is configured and the SDK not
    disabled. The standard variables, so any OpenTelemetry documentation applies."""

    endpoint: str | None = None
    disabled: bool = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> TracingSettings:
        env = os.environ if environ is None else environ
        endpoint = (env.get(TRACES_ENDPOINT_ENV) or env.get(ENDPOINT_ENV) or "").strip()
        disabled = env.get(DISABLED_ENV, "").strip().lower() == "true"
        return cls(endpoint=endpoint or None, disabled=disabled)

    @property
    def enabled(self) -> bool:
        return bool(self.endpoint) and not self.disabled


_provider: TracerProvider | None = None


def configure_tracing(service_name: str, settings: TracingSettings | None = None, *,
                      exporter: SpanExporter | None = None) -> TracerProvider | None:
    """This process's tracer provider -- a batch processor into the OTLP exporter -- where
    tracing is configured (`settings`, else the environment); None, and nothing built,
    where it is not. `exporter`: spans go there instead of OTLP (tests), configured or
    not. A second call returns the provider of the first."""
    global _provider
    settings = settings or TracingSettings.from_environment()
    if exporter is None and not settings.enabled:
        return None
    if _provider is not None:
        return _provider
    from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()  # the endpoint and the rest from OTEL_EXPORTER_OTLP_*
    provider = TracerProvider(sampler=_sampler(), resource=Resource.create({
        SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or service_name,
        SERVICE_VERSION: _version()}))
    provider.add_span_processor(BatchSpanProcessor(cast("SpanExporter",
                                                         RedactingExporter(exporter))))
    _provider = provider
    log.info("traces exported by OTLP as %s", service_name)
    return provider


def active_provider() -> TracerProvider | None:
    """The provider `configure_tracing` installed, None while tracing is off."""
    return _provider


def shutdown_tracing() -> None:
    """Export what is buffered and turn tracing off (the end of a process or a test)."""
    global _provider
    provider, _provider = _provider, None
    if provider is not None:
        provider.shutdown()


def _sampler() -> Any:
    """None -- the SDK reads OTEL_TRACES_SAMPLER(_ARG) -- where one is named; else every
    trace (compose passes the variable empty when the operator sets none, which the SDK
    would warn about)."""
    if os.environ.get("OTEL_TRACES_SAMPLER", "").strip():
        return None
    from opentelemetry.sdk.trace.sampling import DEFAULT_ON

    return DEFAULT_ON  # the SDK's own default: as the parent decided, else sampled


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("petition-flow")
    except PackageNotFoundError:
        return "unknown"


# ----------------------------------------------------------------------- Temporal


def client_interceptors(existing: Sequence[object] = ()) -> list[temporal_client.Interceptor]:
    """The tracing interceptor for a Temporal client, unless off or among `existing`."""
    if _provider is None or any(isinstance(i, _traced_types()) for i in existing):
        return []
    return [_tracing_interceptor(_provider)]


def worker_interceptors(client: temporal_client.Client | None = None
                        ) -> list[temporal_worker.Interceptor]:
    """The tracing interceptor for a worker (or a replayer: no client), unless off or its
    client has one (a worker takes over its client's interceptors: it would trace
    everything twice)."""
    if _provider is None or (client is not None and any(
            isinstance(i, _traced_types()) for i in client.config()["interceptors"])):
        return []
    return [_tracing_interceptor(_provider)]


def _traced_types() -> tuple[type, ...]:
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return (TracingInterceptor,)


def _tracing_interceptor(provider: TracerProvider) -> Any:
    interceptor, _ = _temporal_classes()
    return interceptor(provider.get_tracer("temporalio.contrib.opentelemetry"))


_classes: tuple[type, type] | None = None


def _temporal_classes() -> tuple[type, type]:
    """The SDK's interceptors as subclassed here (the module's docstring), built once, on
    first use: importing them imports the SDK."""
    global _classes
    if _classes is not None:
        return _classes
    import opentelemetry.context
    from opentelemetry.context import Context
    from opentelemetry.trace import SpanKind
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    from temporalio.contrib.opentelemetry import (
        TracingInterceptor,
        TracingWorkflowInboundInterceptor,
    )

    class CallerTracedWorkflow(TracingWorkflowInboundInterceptor):
        """Instantiated inside the sandbox, for each workflow."""

        def __init__(self, next: Any) -> None:
            super().__init__(next)
            self.text_map_propagator = TraceContextTextMapPropagator()

        @contextmanager
        def _callers_context(self, headers: Mapping[str, Any]) -> Iterator[Any]:
            """The caller's trace where its header carries one (then linked to the
            workflow's start), else the workflow's start, as the SDK does."""
            started = self._load_workflow_context_carrier()
            payload = headers.get(self.header_key)
            carrier = self.payload_converter.from_payloads([payload])[0] if payload else None
            context = (self.text_map_propagator.extract(carrier or started)
                       if carrier or started else Context())
            token = opentelemetry.context.attach(self._set_on_context(context))
            try:
                yield started if carrier else None
            finally:
                # An evicted workflow's handler is finalised in another context, where
                # the token is foreign: nothing of ours is attached there.
                with suppress(ValueError, RuntimeError):
                    token.var.reset(token)

        async def handle_signal(self, input: Any) -> None:
            with self._callers_context(input.headers) as link:
                self._completed_span(f"HandleSignal:{input.signal}",
                                     link_context_carrier=link, kind=SpanKind.SERVER)
                await self.next.handle_signal(input)

        def handle_update_validator(self, input: Any) -> None:
            with self._callers_context(input.headers) as link:
                self._completed_span(f"ValidateUpdate:{input.update}",
                                     link_context_carrier=link, kind=SpanKind.SERVER)
                self.next.handle_update_validator(input)

        async def handle_update_handler(self, input: Any) -> Any:
            with self._callers_context(input.headers) as link:
                self._completed_span(f"HandleUpdate:{input.update}",
                                     link_context_carrier=link, kind=SpanKind.SERVER)
                return await self.next.handle_update_handler(input)

    class PetitionTracing(TracingInterceptor):
        def __init__(self, tracer: Any) -> None:
            super().__init__(tracer)
            self.text_map_propagator = TraceContextTextMapPropagator()

        def workflow_interceptor_class(self, input: Any) -> Any:
            super().workflow_interceptor_class(input)  # registers the span extern
            return CallerTracedWorkflow

    _classes = (PetitionTracing, CallerTracedWorkflow)
    return _classes


# ------------------------------------------------------------------ HTTP, database


def instrument_app(app: FastAPI) -> None:
    """Each request a server span (named by its route template), parent of what it calls;
    probes, scrapes and static files untraced, no `send`/`receive` spans."""
    if _provider is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, tracer_provider=_provider,
                                       excluded_urls=EXCLUDED_URLS,
                                       exclude_spans=["receive", "send"])


def instrument_engine(engine: AsyncEngine) -> None:
    """A span for each statement of `engine` run inside a trace (a request, an activity):
    its text, with placeholders, never the values; no sqlcommenter. Statements outside
    any trace -- the outbox drainers' polling, scrapes, probes -- make no trace of their
    own."""
    if _provider is None:
        return
    from opentelemetry.instrumentation.sqlalchemy import __version__
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.metrics import NoOpMeter

    connections = NoOpMeter("petitionflow").create_up_down_counter("db.client.connections")
    tracer = _children_only(
        _provider.get_tracer("opentelemetry.instrumentation.sqlalchemy", __version__))
    EngineTracer(tracer, engine.sync_engine, connections, enable_commenter=False)


def _children_only(tracer: Any) -> Any:
    """`tracer`, whose spans without a parent are not recorded."""
    from opentelemetry import trace

    class ChildrenOnly(trace.Tracer):
        def start_span(self, name: str, context: Any = None,
                       *args: Any, **kwargs: Any) -> trace.Span:
            if not trace.get_current_span(context).get_span_context().is_valid:
                return trace.INVALID_SPAN
            return tracer.start_span(name, context, *args, **kwargs)

        def start_as_current_span(self, name: str, context: Any = None,
                                  *args: Any, **kwargs: Any) -> Any:
            if not trace.get_current_span(context).get_span_context().is_valid:
                return trace.use_span(trace.INVALID_SPAN)
            return tracer.start_as_current_span(name, context, *args, **kwargs)

    return ChildrenOnly()


# ------------------------------------------------------------------------- redaction

# Attributes never exported: who called from where, and anything taken from headers.
_DROPPED = frozenset({
    "client.address", "client.port", "net.peer.ip", "net.peer.port", "net.sock.peer.addr",
    "net.sock.peer.port", "network.peer.address", "network.peer.port", "http.client_ip",
    "http.user_agent", "user_agent.original", "url.query", "http.request.body",
    "http.response.body"})
_DROPPED_PREFIXES = ("http.request.header.", "http.response.header.", "enduser.")
# URLs: kept without their query string.
_URLS = frozenset({"http.url", "url.full", "http.target"})
_EXCEPTION_KEPT = frozenset({"exception.type", "exception.escaped"})


def _clean_text(value: str) -> str:
    return redact(value)


def _clean_value(key: str, value: Any) -> Any:
    if isinstance(value, str):
        return _clean_text(value.split("?", 1)[0] if key in _URLS else value)
    if isinstance(value, tuple | list):
        return tuple(_clean_text(v) if isinstance(v, str) else v for v in value)
    return value


def clean_attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    """`attributes` as they may leave the process."""
    return {key: _clean_value(key, value) for key, value in (attributes or {}).items()
            if key not in _DROPPED and not key.startswith(_DROPPED_PREFIXES)}


def _clean_event(event: Any) -> Any:
    from opentelemetry.sdk.trace import Event

    attributes = event.attributes or {}
    if event.name == "exception":
        attributes = {k: v for k, v in attributes.items() if k in _EXCEPTION_KEPT}
    return Event(event.name, clean_attributes(attributes), event.timestamp)


def _clean_status(status: Any) -> Any:
    from opentelemetry.trace import Status

    if not status.description:
        return status
    # "ActivityError: <message>": the exception's type, never its message.
    return Status(status.status_code, status.description.split(":", 1)[0].strip()[:100])


def redacted(span: ReadableSpan) -> ReadableSpan:
    """A copy of `span` without anything personal (the module's docstring)."""
    from opentelemetry.sdk.trace import ReadableSpan

    return ReadableSpan(
        name=_clean_text(span.name.split("?", 1)[0]), context=span.context,
        parent=span.parent, resource=span.resource,
        attributes=clean_attributes(span.attributes),
        events=[_clean_event(e) for e in span.events],
        links=[link for link in span.links], kind=span.kind,
        status=_clean_status(span.status), start_time=span.start_time,
        end_time=span.end_time, instrumentation_scope=span.instrumentation_scope)


class RedactingExporter:
    """Hands `inner` the spans as `redacted` leaves them (a SpanExporter by its methods:
    subclassing it would import the SDK with this module)."""

    def __init__(self, inner: SpanExporter) -> None:
        self._inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._inner.export([redacted(span) for span in spans])

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


__all__ = ["CLI", "SERVICE", "WORKER", "RedactingExporter", "TracingSettings", "active_provider",
           "clean_attributes", "client_interceptors", "configure_tracing",
           "instrument_app", "instrument_engine", "redacted", "shutdown_tracing",
           "worker_interceptors"]
