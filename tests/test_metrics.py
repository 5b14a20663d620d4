"""Issue 17, item 1: metrics. The service's /metrics and a worker's endpoints (the
application's and the Temporal SDK's) scraped before and after one lifecycle on the dev
server; the alert rules parse and name only metrics that exist."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client

from devstack.temporal_server import free_port
from observability import metrics
from observability.metrics import MetricsPage, sdk_runtime, serve_worker_metrics
from tests.conftest import make_intake
from tests.service_helpers import running_service
from tests.test_service import client_token, staff_token

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus" / "petition-flow-rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "petition-flow.json"

# The SDK's runtime metrics the rules and the dashboard may name (Temporal's SDK metrics
# reference; Prometheus names as the SDK exports them: no _total, histograms in ms).
SDK_METRICS = {
    "temporal_workflow_task_schedule_to_start_latency_bucket",
    "temporal_activity_schedule_to_start_latency_bucket",
    "temporal_activity_execution_failed",
    "temporal_activity_execution_latency_bucket",
    "temporal_workflow_task_execution_failed",
    "temporal_worker_task_slots_available",
    "temporal_sticky_cache_size",
    "temporal_request_failure",
}
# The ones one lifecycle surely produces on the worker's SDK endpoint (temporal_request: a
# counter without _total, as temporal_activity_execution_failed in the rules).
SDK_AFTER_LIFECYCLE = {
    "temporal_request",
    "temporal_workflow_task_schedule_to_start_latency_bucket",
    "temporal_activity_schedule_to_start_latency_bucket",
    "temporal_worker_task_slots_available",
}
PROMQL_WORDS = {"sum", "by", "rate", "increase", "histogram_quantile", "max", "le",
                "task_queue", "activity_type", "channel", "result", "unit", "kind",
                "on", "and", "or", "without", "instance", "job", "worker_type", "action",
                "avg", "min", "count"}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(scraped: dict[Any, float], name: str, **labels: str) -> float:
    return scraped.get((name, tuple(sorted(labels.items()))), 0.0)


def total(scraped: dict[Any, float], name: str) -> float:
    return sum(v for (n, _), v in scraped.items() if n == name)


def raw_names(text: str) -> set[str]:
    """Sample names as exposed (the parser would add _total to a counter's)."""
    return {re.split(r"[{ ]", line, maxsplit=1)[0] for line in text.splitlines()
            if line and not line.startswith("#")}


def expr_metric_names(expr: str) -> set[str]:
    """The metric names in a PromQL expression: its identifiers less label matchers,
    ranges, PromQL's own words and the label names grouped by."""
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)
    return {w for w in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr)
            if w not in PROMQL_WORDS}


def rule_metric_names(text: str) -> set[str]:
    return {name for group in yaml.safe_load(text)["groups"] for rule in group["rules"]
            for name in expr_metric_names(rule["expr"])}


def test_the_rules_parse_and_name_only_exported_metrics() -> None:
    text = RULES.read_text()
    doc = yaml.safe_load(text)
    rules = [r for g in doc["groups"] for r in g["rules"]]
    assert {r["alert"] for r in rules} >= {"WorkflowTaskBacklog", "ActivityRetryingTooLong",
                                           "NoticesFailing", "DeadlinesFiringLate"}
    assert all(r["expr"].strip() and r["annotations"]["summary"] for r in rules)
    named = rule_metric_names(text)
    assert named, "no metric found in the rules"
    unknown = named - metrics.exported_names() - SDK_METRICS
    assert not unknown, f"the rules name metrics nobody exports: {sorted(unknown)}"
    # And the check bites: a misspelt name is caught.
    assert "petitionflow_notice_delivery_total" in (
        rule_metric_names(text.replace("petitionflow_notice_deliveries_total",
                                       "petitionflow_notice_delivery_total"))
        - metrics.exported_names() - SDK_METRICS)


def test_the_dashboard_queries_exported_metrics() -> None:
    import json

    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 6
    named = {name for expr in exprs for name in expr_metric_names(expr)}
    assert {"petitionflow_cases_overdue", "petitionflow_deadline_lateness_seconds_bucket",
            "temporal_workflow_task_schedule_to_start_latency_bucket"} <= named
    assert not named - metrics.exported_names() - SDK_METRICS, sorted(
        named - metrics.exported_names() - SDK_METRICS)


@pytest.mark.servers
async def test_counters_move_through_one_lifecycle(sessions, dev_env, running_worker,
                                                  task_queue, petitions) -> None:
    # The worker as `python worker.py` runs it: its client on a runtime with the SDK's
    # Prometheus endpoint, its application metrics on their own endpoint.
    sdk_port, app_port = free_port(), free_port()
    runtime = sdk_runtime(f"127.0.0.1:{sdk_port}")
    assert runtime is not None
    env_client = dev_env.client
    worker_client = await Client.connect(
        env_client.service_client.config.target_host, namespace=env_client.namespace,
        data_converter=env_client.data_converter, runtime=runtime)
    app_server = await serve_worker_metrics(MetricsPage(sessions, cache_seconds=0),
                                            f"127.0.0.1:{app_port}")
    worker_app = f"http://127.0.0.1:{app_port}/metrics"
    worker_sdk = f"http://127.0.0.1:{sdk_port}/metrics"
    try:
        async with (running_worker(worker_client),
                    running_service(sessions, env_client, task_queue) as url,
                    httpx.AsyncClient(base_url=url, timeout=60) as http):
            pages: list[str] = []

            async def scrape() -> tuple[dict[Any, float], dict[Any, float]]:
                service = await http.get("/metrics")
                assert service.status_code == 200, service.text
                assert service.headers["content-type"].startswith("text/plain")
                worker = await http.get(worker_app)
                assert worker.status_code == 200
                pages.append(worker.text)
                return samples(service.text), samples(worker.text)

            service_before, worker_before = await scrape()
            headers = await client_token(http, sessions, ["QS-XFJ"])
            answer = await http.post("/api/v1/petitions", headers=headers,
                                     json=make_intake().model_dump(mode="json"))
            assert answer.status_code == 201, answer.text
            found = answer.json()
            petitions.track(env_client.get_workflow_handle(found["workflow_id"]))
            number = found["registration_no"]
            staff = await staff_token(http, sessions, "QS-XFJ.h1")
            path = f"/api/v1/petitions/{number}/actions"
            accepted = await http.post(f"{path}/accept", headers=staff, json={"note": "受理"})
            assert accepted.status_code == 200, accepted.text
            again = await http.post(f"{path}/accept", headers={
                **staff, "Idempotency-Key": f"again-{uuid.uuid4().hex}"}, json={})
            assert again.status_code == 409, again.text  # refused by the workflow
            replied = await http.post(f"{path}/reply", headers={
                **staff, "Idempotency-Key": f"reply-{uuid.uuid4().hex}"},
                json={"opinion": "经核查，已督促公司支付工资。"})
            assert replied.status_code == 200, replied.text
            service_after, worker_after = await scrape()
            sdk = (await http.get(worker_sdk)).text
    finally:
        app_server.close()
        await app_server.wait_closed()

    def moved(before: dict[Any, float], after: dict[Any, float], name: str,
              **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # The service: actions and refusals by action.
    assert moved(service_before, service_after, "petitionflow_actions_total",
                 action="accept", result="accepted") == 1
    assert moved(service_before, service_after, "petitionflow_actions_total",
                 action="accept", result="refused") == 1
    assert moved(service_before, service_after, "petitionflow_actions_total",
                 action="reply", result="accepted") == 1
    # The worker: the registration counted by its activity; the reply's notice to the
    # petitioner waits in its channels (no delivery drainer runs in this test).
    assert moved(worker_before, worker_after, "petitionflow_petitions_registered_total") == 1
    assert total(worker_after, "petitionflow_notices_pending") > total(
        worker_before, "petitionflow_notices_pending")
    for gauge in ("notices_pending", "notices_failed", "cases_overdue", "cases_escalated"):
        assert f"# TYPE petitionflow_{gauge} gauge" in pages[-1]
    # The SDK's runtime metrics on the worker's own endpoint.
    sdk_names = raw_names(sdk)
    assert sdk_names >= SDK_AFTER_LIFECYCLE, sorted(n for n in sdk_names
                                                    if n.startswith("temporal_"))
    assert not any(n.startswith("petitionflow_") for n in sdk_names)
    assert "temporal_request_total" not in sdk_names


async def test_a_retry_is_counted_by_activity_type() -> None:
    """The interceptor counts attempts after the first, and how long since the first."""
    from dataclasses import replace
    from datetime import UTC, datetime, timedelta

    from prometheus_client import REGISTRY
    from temporalio import activity
    from temporalio.testing import ActivityEnvironment
    from temporalio.worker import ExecuteActivityInput

    @activity.defn(name="flaky_for_metrics")
    async def flaky() -> str:
        return "done"

    class Last:
        async def execute_activity(self, input: ExecuteActivityInput) -> Any:
            return await input.fn(*input.args)

    chain = metrics.ActivityRetryInterceptor().intercept_activity(Last())  # type: ignore[arg-type]
    labels = {"activity_type": "flaky_for_metrics"}

    def count(name: str, **extra: str) -> float:
        return REGISTRY.get_sample_value(name, {**labels, **extra}) or 0.0

    async def run(attempt: int) -> None:
        env = ActivityEnvironment()
        env.info = replace(env.info, attempt=attempt, activity_type="flaky_for_metrics",
                           scheduled_time=datetime.now(UTC) - timedelta(hours=1))
        call = ExecuteActivityInput(fn=flaky, args=[], executor=None, headers={})
        assert await env.run(chain.execute_activity, call) == "done"

    retries = "petitionflow_activity_retries_total"
    old = "petitionflow_activity_retry_age_seconds_bucket"
    before, before_recent = count(retries), count(old, le="1800.0")
    await run(1)
    assert count(retries) == before
    await run(3)
    assert count(retries) == before + 1
    # An hour since it was first scheduled: counted, but not under the 30-minute bucket
    # (ActivityRetryingTooLong's rule).
    assert count("petitionflow_activity_retry_age_seconds_count") >= 1
    assert count(old, le="1800.0") == before_recent


def test_a_deadline_firing_is_counted_with_its_lateness() -> None:
    from datetime import timedelta

    from prometheus_client import REGISTRY

    def get(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    fired = get("petitionflow_deadlines_fired_total", kind="escalation_1")
    late = get("petitionflow_deadline_lateness_seconds_bucket", kind="escalation_1", le="60.0")
    every = get("petitionflow_deadline_lateness_seconds_count", kind="escalation_1")
    metrics.deadline_fired("escalation_1", timedelta(minutes=5))
    assert get("petitionflow_deadlines_fired_total", kind="escalation_1") == fired + 1
    assert get("petitionflow_deadline_lateness_seconds_count", kind="escalation_1") == every + 1
    assert get("petitionflow_deadline_lateness_seconds_bucket", kind="escalation_1",
               le="60.0") == late  # five minutes late: above the minute
