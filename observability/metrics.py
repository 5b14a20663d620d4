"""Application metrics for Prometheus (issue 17, item 1; docs/operations.md, "Metrics").

Counters move where the thing happens, in whichever process does it: petitions registered
and deadlines fired in the worker's activities, actions and refusals in the service's
`take_action`, notice deliveries sent and failed in the worker's delivery drainer, activity
retries in the worker's activity interceptor (`ActivityRetryInterceptor`). They live in
prometheus_client's default registry.

Gauges that describe the state of the cases (notices pending and failed by channel, cases
overdue and escalated by unit) are read from the database when scraped, at most once every
`CACHE_SECONDS` (`StateGauges`): two grouped counts, cheap on the indexed columns.

Labels are codes only (action, channel, unit code, activity type): nothing personal.

Endpoints: the service mounts GET /metrics (`metrics_response`); the worker serves its
application metrics on PETITION_WORKER_APP_METRICS_ADDRESS (`serve_worker_metrics`) and
the SDK's runtime metrics (temporal_*) on PETITION_WORKER_METRICS_ADDRESS (`sdk_runtime`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

log = logging.getLogger("petitionflow.metrics")

PREFIX = "petitionflow"
CACHE_SECONDS = 5.0
SDK_METRICS_ENV = "PETITION_WORKER_METRICS_ADDRESS"
APP_METRICS_ENV = "PETITION_WORKER_APP_METRICS_ADDRESS"

PETITIONS_REGISTERED = Counter(
    f"{PREFIX}_petitions_registered", "Petitions registered (new cases, not repeats of one).")
ACTIONS = Counter(
    f"{PREFIX}_actions", "Actions taken through the service, by action and result "
    "(accepted, refused).", ["action", "result"])
NOTICE_DELIVERIES = Counter(
    f"{PREFIX}_notice_deliveries", "Notice delivery attempts finished, by channel and "
    "result (sent, retry, failed: failed for good).", ["channel", "result"])
DEADLINES_FIRED = Counter(
    f"{PREFIX}_deadlines_fired", "Deadlines that fired, by kind (reminder, escalation_1, "
    "escalation_2, lapse); each once, by the activity attempt that wrote its row.", ["kind"])
DEADLINE_LATENESS = Histogram(
    f"{PREFIX}_deadline_lateness_seconds", "How late a deadline's timer fired: the "
    "workflow's time at firing minus the instant its timer was due, for every kind "
    "(reminder, escalation_1, escalation_2, lapse). Not observed for a deadline already "
    "past when the workflow began waiting (an imported overdue case).",
    ["kind"], buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600))
ACTIVITY_RETRIES = Counter(
    f"{PREFIX}_activity_retries", "Activity attempts after the first, by activity type.",
    ["activity_type"])
ACTIVITY_RETRY_AGE = Histogram(
    f"{PREFIX}_activity_retry_age_seconds", "At each retry attempt's start: the time since "
    "the activity was first scheduled (how long it has been retrying).", ["activity_type"],
    buckets=(10, 60, 300, 900, 1800, 3600, 4 * 3600, 24 * 3600))

# The gauges StateGauges yields (read from the database on scrape).
NOTICES_PENDING = f"{PREFIX}_notices_pending"
NOTICES_FAILED = f"{PREFIX}_notices_failed"
CASES_OVERDUE = f"{PREFIX}_cases_overdue"
CASES_ESCALATED = f"{PREFIX}_cases_escalated"
STATE_SCRAPE_ERRORS = Counter(
    f"{PREFIX}_state_scrape_errors", "Scrapes whose database read of the gauges failed "
    "(the previous values are shown).")


def exported_names() -> set[str]:
    """Every metric name this module exports, as it appears in the exposition (counters
    with _total, histograms with _bucket/_sum/_count): what the alert rules may name."""
    names = {NOTICES_PENDING, NOTICES_FAILED, CASES_OVERDUE, CASES_ESCALATED}
    for metric in (PETITIONS_REGISTERED, ACTIONS, NOTICE_DELIVERIES, DEADLINES_FIRED,
                   ACTIVITY_RETRIES, STATE_SCRAPE_ERRORS):
        names.add(f"{metric._name}_total")
    for hist in (DEADLINE_LATENESS, ACTIVITY_RETRY_AGE):
        names.update(f"{hist._name}{s}" for s in ("_bucket", "_sum", "_count"))
    return names


# ------------------------------------------------------------------ counting helpers


def petition_registered() -> None:
    PETITIONS_REGISTERED.inc()


def action_taken(action: str, *, refused: bool) -> None:
    ACTIONS.labels(action=action, result="refused" if refused else "accepted").inc()


def delivery_finished(channel: str, result: str) -> None:
    NOTICE_DELIVERIES.labels(channel=channel, result=result).inc()


def deadline_fired(kind: str, lateness: timedelta | None = None) -> None:
    """A deadline of `kind` fired; `lateness`: how late its timer fired (None: unknown,
    or no timer was late), observed at 0 when the timer fired early."""
    DEADLINES_FIRED.labels(kind=kind).inc()
    if lateness is not None:
        DEADLINE_LATENESS.labels(kind=kind).observe(max(lateness.total_seconds(), 0.0))


# ------------------------------------------------------------------ activity retries


class _RetryCounting(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        if info.attempt > 1:
            ACTIVITY_RETRIES.labels(activity_type=info.activity_type).inc()
            first = info.scheduled_time
            if first is not None:
                age = (datetime.now(first.tzinfo) - first).total_seconds()
                ACTIVITY_RETRY_AGE.labels(activity_type=info.activity_type).observe(
                    max(age, 0.0))
        return await self.next.execute_activity(input)


class ActivityRetryInterceptor(Interceptor):
    """Counts each activity attempt after the first, by type; nothing in workflows."""

    def intercept_activity(self, next: ActivityInboundInterceptor
                           ) -> ActivityInboundInterceptor:
        return _RetryCounting(next)


# ------------------------------------------------------------------ state gauges


@dataclass
class _Snapshot:
    pending: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    overdue: dict[str, int] = field(default_factory=dict)
    escalated: dict[str, int] = field(default_factory=dict)


class StateGauges(Collector):
    """Notices pending/failed by channel and cases overdue/escalated by unit, from the
    database, cached `cache_seconds`. `await refresh()` before collecting."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession],
                 cache_seconds: float = CACHE_SECONDS):
        self._sessions = sessions
        self._cache_seconds = cache_seconds
        self._snapshot = _Snapshot()
        self._read_at: float | None = None
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        async with self._lock:
            now = time.monotonic()
            if self._read_at is not None and now - self._read_at < self._cache_seconds:
                return
            try:
                self._snapshot = await self._read()
            except Exception:  # a scrape must answer: the old values, and a count
                STATE_SCRAPE_ERRORS.inc()
                log.warning("metrics: reading the state gauges failed", exc_info=True)
            self._read_at = now

    async def _read(self) -> _Snapshot:
        from adapters.tables import NoticeDelivery, Petition

        snap = _Snapshot()
        async with self._sessions() as session:
            rows = await session.execute(
                select(NoticeDelivery.channel, NoticeDelivery.state, func.count())
                .where(NoticeDelivery.state.in_(("pending", "failed")))
                .group_by(NoticeDelivery.channel, NoticeDelivery.state))
            for channel, state, count in rows:
                (snap.pending if state == "pending" else snap.failed)[channel] = count
            units = await session.execute(
                select(Petition.holding_unit,
                       func.count().filter(Petition.overdue),
                       func.count().filter(Petition.escalation_level > 0))
                .where(Petition.closed_at.is_(None),
                       Petition.overdue | (Petition.escalation_level > 0))
                .group_by(Petition.holding_unit))
            for unit, overdue, escalated in units:
                snap.overdue[unit], snap.escalated[unit] = overdue, escalated
        return snap

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snap = self._snapshot
        yield _family(NOTICES_PENDING, "Notice deliveries waiting to be sent, by channel.",
                      "channel", snap.pending.items())
        yield _family(NOTICES_FAILED, "Notice deliveries failed for good, by channel.",
                      "channel", snap.failed.items())
        yield _family(CASES_OVERDUE, "Open cases overdue, by holding unit.", "unit",
                      snap.overdue.items())
        yield _family(CASES_ESCALATED, "Open cases escalated (level 1 or 2), by holding "
                      "unit.", "unit", snap.escalated.items())


def _family(name: str, doc: str, label: str, values: Iterable[tuple[str, int]]
            ) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=[label])
    for key, value in sorted(values):
        family.add_metric([key], value)
    return family


class MetricsPage:
    """The exposition of the process's counters and one database's state gauges."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession] | None,
                 cache_seconds: float = CACHE_SECONDS):
        self._gauges: StateGauges | None = None
        self._state = CollectorRegistry(auto_describe=True)
        if sessions is not None:
            self._gauges = StateGauges(sessions, cache_seconds)
            self._state.register(self._gauges)

    async def render(self) -> bytes:
        if self._gauges is not None:
            await self._gauges.refresh()
        return generate_latest(REGISTRY) + generate_latest(self._state)


def metrics_response(page: MetricsPage) -> Any:
    """A Starlette endpoint serving `page` (the service's GET /metrics)."""
    from starlette.requests import Request
    from starlette.responses import Response

    async def endpoint(request: Request) -> Response:
        return Response(await page.render(), media_type=CONTENT_TYPE_LATEST)

    return endpoint


# ------------------------------------------------------------------ the worker's endpoints


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return (host or "0.0.0.0"), int(port)


async def serve_worker_metrics(page: MetricsPage, address: str) -> asyncio.Server:
    """A minimal HTTP server answering GET /metrics with `page` (the worker has no web
    framework; the gauges need the event loop for the database)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), timeout=5)
            while (await asyncio.wait_for(reader.readline(), timeout=5)) not in (b"\r\n",
                                                                                 b"\n", b""):
                pass
            parts = request.split()
            if len(parts) >= 2 and parts[0] == b"GET" and parts[1].split(b"?")[0] in (
                    b"/metrics", b"/"):
                body, status = await page.render(), b"200 OK"
                ctype = CONTENT_TYPE_LATEST.encode()
            else:
                body, status, ctype = b"not found\n", b"404 Not Found", b"text/plain"
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: " + ctype +
                         b"\r\nContent-Length: " + str(len(body)).encode() +
                         b"\r\nConnection: close\r\n\r\n" + body)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    host, port = split_address(address)
    return await asyncio.start_server(handle, host, port)


def sdk_runtime(address: str | None = None) -> Any:
    """The Temporal SDK's runtime with its Prometheus endpoint on `address` (default:
    PETITION_WORKER_METRICS_ADDRESS); None when not configured (the SDK's default
    runtime, no metrics)."""
    from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

    address = address or os.environ.get(SDK_METRICS_ENV)
    if not address:
        return None
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=address)))
