"""Issue 17, item 3: JSON log lines (observability/logs.py) carry the request, the workflow
and the activity they were written in, and the redaction still applies to them."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from temporalio import activity
from temporalio.testing import ActivityEnvironment

from observability.context import REQUEST_ID, request_id_from
from observability.logs import JsonFormatter, configure_logging, log_format
from security.redact import REDACTED, remove_redaction
from service.app import create_app
from tests.service_helpers import service_settings

LOGGER = "petitionflow.test_json_logs"
ID_NUMBER = "110101199003071234"  # fictional, of the resident ID number's shape
PHONE = "13800138000"


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """A handler of this test's logger, configured as production's JSON logging is (every
    handler's formatter, then the redaction); every handler's formatter restored after."""
    from temporalio import workflow

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(lambda r: r.name in (LOGGER, "temporalio.activity"))
    logging.getLogger(LOGGER).setLevel(logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(handler)
    saved = [(h, h.formatter) for h in [*root.handlers, *_all_handlers()]]
    last_resort = logging.lastResort.formatter if logging.lastResort else None
    level = root.level
    redacted = configure_logging("json")
    try:
        assert isinstance(handler.formatter, JsonFormatter)
        yield stream
    finally:
        remove_redaction(redacted)
        for h, formatter in saved:
            h.setFormatter(formatter)
        if logging.lastResort is not None:
            logging.lastResort.setFormatter(last_resort)  # type: ignore[arg-type]
        root.setLevel(level)
        root.removeHandler(handler)
        activity.logger.activity_info_on_message = True
        workflow.logger.workflow_info_on_message = True


def _all_handlers() -> list[logging.Handler]:
    return [h for lg in logging.Logger.manager.loggerDict.values()
            if isinstance(lg, logging.Logger) for h in lg.handlers]


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_the_format_is_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PETITION_LOG_FORMAT", raising=False)
    assert log_format() == "text"
    monkeypatch.setenv("PETITION_LOG_FORMAT", "JSON")
    assert log_format() == "json"
    with pytest.raises(ValueError, match="PETITION_LOG_FORMAT"):
        log_format("yaml")


def test_a_line_has_time_level_logger_message(json_lines: io.StringIO) -> None:
    logging.getLogger(LOGGER).warning("deadline %s fired", "D-1")
    [line] = lines(json_lines)
    assert line["level"] == "WARNING" and line["logger"] == LOGGER
    assert line["message"] == "deadline D-1 fired"
    assert line["time"].endswith("Z") and line["time"][10] == "T"
    assert "request_id" not in line and "workflow_id" not in line


async def test_a_record_from_a_request_carries_its_request_id(
        json_lines: io.StringIO) -> None:
    app = create_app(service_settings(), sessions=async_sessionmaker(), petitions=None)

    @app.get("/test-log")
    async def test_log() -> dict[str, bool]:
        logging.getLogger(LOGGER).info("handling")
        return {"ok": True}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as http:
        given = await http.get("/test-log", headers={"X-Request-ID": "req-7f3a.1"})
        generated = await http.get("/test-log")
        personal = await http.get("/test-log", headers={"X-Request-ID": ID_NUMBER})
    assert given.headers["x-request-id"] == "req-7f3a.1"
    new_id = generated.headers["x-request-id"]
    assert len(new_id) == 32
    # An ID number sent as a request id is not taken (nor logged): a fresh one instead.
    assert personal.headers["x-request-id"] != ID_NUMBER
    assert [line["request_id"] for line in lines(json_lines)] == [
        "req-7f3a.1", new_id, personal.headers["x-request-id"]]
    assert ID_NUMBER not in json_lines.getvalue()
    assert REQUEST_ID.get() is None  # nothing left behind after the request


def test_request_ids_are_plain_tokens() -> None:
    assert request_id_from("abc-1_2.3") == "abc-1_2.3"
    for bad in ("", "a b", "x" * 65, "line\nbreak", PHONE):
        assert request_id_from(bad) != bad


async def test_a_record_from_an_activity_carries_workflow_run_and_activity(
        json_lines: io.StringIO) -> None:
    @activity.defn(name="send_notice")
    async def send_notice() -> None:
        activity.logger.info("sending")  # the SDK's adapter: `temporal_activity` extra
        logging.getLogger(LOGGER).info("rendered")  # any logger: from activity.info()

    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, workflow_id="pf-0f3c", workflow_run_id="run-9",
                                   activity_type="send_notice", activity_id="7")
    await env.run(send_notice)
    sending, rendered = lines(json_lines)[-2:]
    for line in (sending, rendered):
        assert line["workflow_id"] == "pf-0f3c"
        assert line["run_id"] == "run-9"
        assert line["activity_type"] == "send_notice"
        assert line["activity_id"] == "7"
    assert sending["message"] == "sending"  # the details in fields, not the message
    assert rendered["message"] == "rendered"
    assert "temporal_activity" not in sending  # flattened, not repeated


def test_a_workflow_loggers_extra_becomes_fields(json_lines: io.StringIO) -> None:
    """workflow.logger puts the workflow's details into `temporal_workflow`."""
    logging.getLogger(LOGGER).info("deadline armed", extra={"temporal_workflow": {
        "workflow_id": "pf-1", "run_id": "r-1", "workflow_type": "PetitionWorkflow",
        "task_queue": "petitions", "namespace": "petitions", "attempt": 1}})
    [line] = lines(json_lines)
    assert (line["workflow_id"], line["run_id"], line["workflow_type"]) == (
        "pf-1", "r-1", "PetitionWorkflow")
    assert "activity_type" not in line


def test_an_id_number_is_redacted_in_the_json_line(json_lines: io.StringIO) -> None:
    log = logging.getLogger(LOGGER)
    log.info("petitioner %s called from %s", ID_NUMBER, PHONE, extra={"detail": ID_NUMBER})
    try:
        raise ValueError(f"DETAIL: Failing row contains ({ID_NUMBER})")
    except ValueError:
        log.exception("insert failed")
    text = json_lines.getvalue()
    assert ID_NUMBER not in text and PHONE not in text
    first, second = lines(json_lines)
    assert first["message"] == f"petitioner {REDACTED} called from {REDACTED}"
    assert first["detail"] == REDACTED
    assert "ValueError" in second["exception"] and REDACTED in second["exception"]


def test_the_json_formatter_alone_would_leak() -> None:
    """The redaction, not the formatter, removes the number (guards the test above)."""
    record = logging.LogRecord(LOGGER, logging.INFO, __file__, 1, "id %s", (ID_NUMBER,), None)
    assert ID_NUMBER in JsonFormatter().format(record)
