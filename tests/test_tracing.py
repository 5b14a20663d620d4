"""Issue 17, item 2: traces. A trace of one action links the service's request span, the
Temporal client's span, the workflow's span, the activity's spans and the activity's
database statements, through `configure_tracing`'s own provider (its exporter swapped
for an in-memory one) -- the real service, dev server, worker and PostgreSQL. Nothing
personal reaches an exported span; without an OTLP endpoint nothing is installed."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode
from temporalio.worker import Replayer

from activities import build_desks
from adapters.engine import create_engine, session_maker
from adapters.petition_client import PetitionClient
from adapters.settings import get_settings
from devstack.roles import login_url
from observability import tracing
from observability.tracing import SERVICE, WORKER, TracingSettings, configure_tracing
from service.app import create_app
from tests.conftest import fictional_personal_data, make_intake
from tests.test_service import client_token, settings, staff_token
from worker import data_converter, workflow_runner
from workflows.interceptor import AssertionInterceptor
from workflows.petition import PetitionWorkflow

Trace = list[ReadableSpan]


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on for the test, through configure_tracing's provider and batch processor
    (OTLP's exporter replaced by an in-memory one), off again afterwards."""
    exporter = InMemorySpanExporter()
    provider = configure_tracing(SERVICE, TracingSettings(), exporter=exporter)
    assert provider is not None and tracing.active_provider() is provider
    try:
        yield exporter
    finally:
        tracing.shutdown_tracing()
    assert tracing.active_provider() is None


def finished(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    provider = tracing.active_provider()
    assert provider is not None
    assert provider.force_flush(10_000)
    return list(exporter.get_finished_spans())


def trace_of(all_spans: list[ReadableSpan], root: ReadableSpan) -> Trace:
    assert root.context is not None
    return [s for s in all_spans if s.context and s.context.trace_id == root.context.trace_id]


def parent_of(span: ReadableSpan, trace: Trace) -> ReadableSpan:
    parent: SpanContext | None = span.parent
    assert parent is not None, f"{span.name} has no parent"
    found = [s for s in trace if s.context and s.context.span_id == parent.span_id]
    assert found, f"the parent of {span.name} is not in its trace"
    return found[0]


def one(trace: Trace, name: str, kind: SpanKind | None = None) -> ReadableSpan:
    found = [s for s in trace if s.name == name and (kind is None or s.kind == kind)]
    assert len(found) == 1, (name, sorted(s.name for s in trace))
    return found[0]


def chain(span: ReadableSpan, trace: Trace) -> list[str]:
    """The names from `span` up to the trace's root."""
    names = [span.name]
    while span.parent is not None:
        span = parent_of(span, trace)
        names.append(span.name)
    return names


def database_spans_under(run: ReadableSpan, trace: Trace) -> list[ReadableSpan]:
    return [s for s in trace if s.kind == SpanKind.CLIENT and s.parent is not None
            and run.context is not None and s.parent.span_id == run.context.span_id
            and "db.statement" in (s.attributes or {})]


def texts_of(span: ReadableSpan) -> list[str]:
    """Every text an exporter sends for `span`."""
    texts = [span.name, span.status.description or ""]
    attribute_sets = [span.attributes or {}, span.resource.attributes]
    attribute_sets += [event.attributes or {} for event in span.events]
    attribute_sets += [link.attributes or {} for link in span.links]
    texts += [event.name for event in span.events]
    for attributes in attribute_sets:
        for value in attributes.values():
            texts += [str(v) for v in (value if isinstance(value, tuple | list) else [value])]
    return texts


@pytest_asyncio.fixture(loop_scope="session")
async def traced_engine(db_url: str, sessions) -> AsyncIterator[Any]:
    """The application's engine as the worker and the service create theirs, once tracing
    is on (adapters.engine.create_engine instruments it). `sessions`: the directory."""
    engine = create_engine(login_url(db_url, get_settings().db_app_role,
                                     os.environ.get("PETITION_APP_PASSWORD") or None),
                           pool_size=4)
    yield engine
    await engine.dispose()


async def test_a_trace_of_one_action_links_service_workflow_and_activity_spans(
        spans, traced_engine, sessions, dev_env, running_worker, task_queue, petitions):
    traced_sessions = session_maker(traced_engine)
    data = fictional_personal_data("note", "备注")
    intake = make_intake(petitioner={"name": data["name"], "id_number": data["id_number"],
                                     "phone": data["phone"], "address": data["address"]},
                         content=data["content"])
    async with running_worker(dev_env.client, build_desks(traced_sessions)):
        app = create_app(settings(), sessions=traced_sessions,
                         petitions=PetitionClient(dev_env.client, task_queue))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://service", timeout=60) as http:
            intake_client = await client_token(http, sessions, ["QS-XFJ"])
            registered = await http.post("/api/v1/petitions", headers=intake_client,
                                         json=intake.model_dump(mode="json"))
            assert registered.status_code == 201, registered.text
            answer = registered.json()
            petitions.track(dev_env.client.get_workflow_handle(answer["workflow_id"]))
            number, code = answer["registration_no"], answer["query_code"]
            staff = await staff_token(http, sessions, "QS-XFJ.h1")
            # A query string the service ignores: it never reaches a span.
            transferred = await http.post(
                f"/api/v1/petitions/{number}/actions/transfer?code={code}&p={data['phone']}",
                headers={**staff, "Idempotency-Key": f"transfer-{uuid.uuid4().hex}"},
                json={"to_unit": "QS-HRSS", "instructions": data["note"]})
            assert transferred.status_code == 200, transferred.text
            for probe in ("/healthz", "/metrics", "/readyz"):
                await http.get(probe)
        FastAPIInstrumentor.uninstrument_app(app)  # the class-wide patch too
    # The worker has stopped: every activity's span has ended.
    exported = finished(spans)

    # The transfer: request -> Update -> its handler -> the activity it runs -> SQL.
    request = one(exported, "POST /api/v1/petitions/{registration_no}/actions/transfer",
                  SpanKind.SERVER)
    action = trace_of(exported, request)
    update = one(action, "StartWorkflowUpdate:transfer", SpanKind.CLIENT)
    handler = one(action, "HandleUpdate:transfer", SpanKind.SERVER)
    started = one(action, "StartActivity:issue_transfer_order", SpanKind.CLIENT)
    ran = one(action, "RunActivity:issue_transfer_order", SpanKind.SERVER)
    assert chain(ran, action) == [ran.name, started.name, update.name, request.name]
    assert parent_of(handler, action) is update
    assert handler.links and handler.links[0].context.trace_id != request.context.trace_id, \
        "the handler links the workflow's start"
    assert database_spans_under(ran, action), sorted(s.name for s in action)
    assert request.parent is None
    for span in action:  # one connected trace: every parent is in it
        assert span is request or parent_of(span, action)

    # The registration: request -> start -> the workflow -> the activity recording the
    # transition -> SQL.
    registration = one(exported, "POST /api/v1/petitions", SpanKind.SERVER)
    register = trace_of(exported, registration)
    start = one(register, "StartWorkflow:PetitionWorkflow", SpanKind.CLIENT)
    assert parent_of(start, register) is registration
    assert parent_of(one(register, "RunWorkflow:PetitionWorkflow"), register) is start
    assert parent_of(one(register, "HandleUpdate:wait_registered"), register).name \
        == "StartWorkflowUpdate:wait_registered"
    recorded = [s for s in register if s.name == "RunActivity:record_transitions"]
    assert recorded, sorted(s.name for s in register)
    assert parent_of(recorded[0], register).name == "StartActivity:record_transitions"
    assert database_spans_under(recorded[0], register)
    for span in register:
        assert span is registration or parent_of(span, register)

    # Every span belongs to a request's trace: probes, scrapes and the statements made
    # outside any trace (the gauges' reads on /metrics, the readiness check) make none.
    roots = {chain(span, exported)[-1] for span in exported}
    assert all(root.startswith(("POST /", "GET /")) for root in roots), roots
    assert not [s for s in exported if any(p in s.name for p in ("healthz", "metrics",
                                                                  "readyz"))]
    # Query strings, client addresses and personal data are never exported.
    secrets = [data["name"], data["id_number"], data["phone"], data["address"],
               data["content"], data["note"], code]
    for span in exported:
        for text in texts_of(span):
            assert not any(secret in text for secret in secrets), (span.name, text)
            assert "?" not in text or span.kind != SpanKind.SERVER, (span.name, text)
        assert not {"client.address", "net.peer.ip", "http.user_agent",
                    "user_agent.original"} & set(span.attributes or {}), span.name
    assert {s.resource.attributes["service.name"] for s in exported} == {SERVICE}


def test_without_an_endpoint_nothing_is_installed() -> None:
    off = TracingSettings.from_environment({})
    assert off.enabled is False
    assert configure_tracing(SERVICE, off) is None
    assert tracing.active_provider() is None
    assert tracing.client_interceptors() == []
    assert tracing.worker_interceptors() == []
    app = FastAPI()
    tracing.instrument_app(app)
    assert not getattr(app, "_is_instrumented_by_opentelemetry", False)
    engine = create_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")  # never connects
    assert not engine.sync_engine.dispatch.before_cursor_execute
    # Either variable turns it on; OTEL_SDK_DISABLED wins.
    for variable in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        assert TracingSettings.from_environment({variable: "http://collector:4318"}).enabled
    assert not TracingSettings.from_environment({
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
        "OTEL_SDK_DISABLED": "true"}).enabled


async def test_the_recorded_histories_replay_with_tracing_on(spans) -> None:
    """The interceptor never changes a workflow's commands, and a replay makes no span."""
    from tests.test_replay import RECORDED, TEST_ONLY, TEST_ONLY_ASSERTIONS, _history

    interceptors = tracing.worker_interceptors()
    assert interceptors
    replayer = Replayer(workflows=[PetitionWorkflow], namespace="default",
                        data_converter=data_converter(keyring=TEST_ONLY),
                        workflow_runner=workflow_runner(),
                        interceptors=[*interceptors, AssertionInterceptor(TEST_ONLY_ASSERTIONS)])
    for name in sorted(RECORDED):
        result = await replayer.replay_workflow(_history(name), raise_on_replay_failure=False)
        assert result.replay_failure is None, (name, result.replay_failure)
    assert [s.name for s in finished(spans)] == []


@pytest.mark.processes
def test_without_an_endpoint_the_sdk_is_not_even_imported() -> None:
    """The worker's and the service's modules, their hooks run: OpenTelemetry's SDK and
    the Temporal interceptor stay unimported (no overhead where tracing is off)."""
    script = """if True:
        import sys
        import worker, service.app, service.main, adapters.engine
        from fastapi import FastAPI
        from observability import tracing
        assert tracing.configure_tracing(tracing.WORKER) is None
        tracing.instrument_app(FastAPI())
        adapters.engine.create_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")
        print(sorted(m for m in sys.modules if m.startswith(
            ("opentelemetry.sdk", "opentelemetry.instrumentation",
             "opentelemetry.exporter", "temporalio.contrib.opentelemetry"))))
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    ran = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=60, cwd=Path(__file__).resolve().parent.parent,
                         check=False)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "[]"


def test_with_an_endpoint_spans_go_out_by_otlp(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT set: configure_tracing's provider posts protobuf to
    its /v1/traces, with the process's name and version, redacted on the way."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    received: list[tuple[str, str, bytes]] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the handler's protocol
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, self.headers["Content-Type"], body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT",
                           f"http://127.0.0.1:{server.server_address[1]}")
        provider = configure_tracing(WORKER)
        assert provider is not None
        with provider.get_tracer("test").start_as_current_span(
                "GET /track", attributes={"http.url": "http://h/track?code=ABCD2345"}):
            pass
        tracing.shutdown_tracing()  # flushes
    finally:
        tracing.shutdown_tracing()
        server.shutdown()
    [(path, content_type, body)] = received
    assert (path, content_type) == ("/v1/traces", "application/x-protobuf")
    [resource_spans] = ExportTraceServiceRequest.FromString(body).resource_spans
    resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert resource["service.name"] == WORKER and resource["service.version"] == "0.1.0"
    [span] = [span for scope in resource_spans.scope_spans for span in scope.spans]
    assert span.name == "GET /track"
    assert {a.key: a.value.string_value for a in span.attributes} == {
        "http.url": "http://h/track"}


def test_exported_spans_are_redacted() -> None:
    """What the exporter is handed: no query string, caller, header, exception message or
    ID-number-shaped text."""
    span = ReadableSpan(
        name="GET /track?code=ABCD2345", context=None, parent=None,
        attributes={"http.url": "http://h/track/case?code=ABCD2345",
                    "http.target": "/track/case?code=ABCD2345", "url.query": "code=ABCD2345",
                    "client.address": "203.0.113.9", "net.peer.ip": "203.0.113.9",
                    "http.user_agent": "Mozilla", "http.request.header.authorization": "x",
                    "db.statement": "SELECT 330102198501011234 FROM t WHERE id = $1",
                    "temporalWorkflowID": "petition-abc", "http.status_code": 200},
        events=[Event("exception", {"exception.type": "ValueError",
                                    "exception.message": "欧阳某 13912345678",
                                    "exception.stacktrace": "Traceback ... 欧阳某"})],
        status=Status(StatusCode.ERROR, "ValueError: 欧阳某 13912345678"))
    clean = tracing.redacted(span)
    assert clean.name == "GET /track"
    assert clean.attributes == {
        "http.url": "http://h/track/case", "http.target": "/track/case",
        "db.statement": "SELECT [redacted] FROM t WHERE id = $1",
        "temporalWorkflowID": "petition-abc", "http.status_code": 200}
    assert [dict(e.attributes or {}) for e in clean.events] == [{"exception.type": "ValueError"}]
    assert clean.status.status_code is StatusCode.ERROR
    assert clean.status.description == "ValueError"
