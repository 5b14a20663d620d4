"""Log lines as JSON, one object a line, where PETITION_LOG_FORMAT=json (compose sets it;
developers' terminals keep the text lines by default).

Each line: `time` (UTC, ISO 8601), `level`, `logger`, `message`, and the context it was
written in where there is one -- `request_id` (the service's request, context.py),
`workflow_id`, `run_id`, `workflow_type` (a workflow's logger or an activity's),
`activity_type`, `activity_id`, `attempt`, `task_queue`, `namespace` -- then `exception`
and `stack` when the record has them. The Temporal SDK's loggers put the workflow's and
the activity's details into the record's `temporal_workflow` / `temporal_activity` extra;
a line any other logger writes inside an activity gets them from `activity.info()`.

`configure_logging()` sets the format and then installs the redaction filter
(security/redact.py) on every handler: the filter rewrites the record before any
formatter reads it, so the JSON holds only redacted text (no personal data)."""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from typing import Any, Literal

from observability.context import current_request_id
from security.redact import _STANDARD, install_redaction

LogFormat = Literal["text", "json"]
FORMAT_ENV = "PETITION_LOG_FORMAT"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

# The SDK's extra -> the line's field.
_WORKFLOW_FIELDS = {"workflow_id": "workflow_id", "run_id": "run_id",
                    "workflow_type": "workflow_type", "task_queue": "task_queue",
                    "namespace": "namespace", "attempt": "attempt",
                    "update_id": "update_id", "update_name": "update_name"}
_ACTIVITY_FIELDS = {"workflow_id": "workflow_id", "workflow_run_id": "run_id",
                    "workflow_type": "workflow_type", "activity_type": "activity_type",
                    "activity_id": "activity_id", "attempt": "attempt",
                    "task_queue": "task_queue", "namespace": "namespace"}
_SDK_EXTRAS = frozenset({"temporal_workflow", "temporal_activity", "workflow_info",
                         "activity_info"})


def log_format(value: str | None = None) -> LogFormat:
    """PETITION_LOG_FORMAT: `json` or `text` (the default); anything else is refused."""
    raw = (value if value is not None else os.environ.get(FORMAT_ENV, "")).strip().lower()
    if raw in ("", "text"):
        return "text"
    if raw == "json":
        return "json"
    raise ValueError(f"{FORMAT_ENV} must be text or json, not {raw!r}")


def _activity_details() -> dict[str, Any] | None:
    try:
        from temporalio import activity

        if not activity.in_activity():
            return None
        info = activity.info()
    except Exception:  # noqa: BLE001 - no context is no context
        return None
    return {"workflow_id": info.workflow_id, "workflow_run_id": info.workflow_run_id,
            "workflow_type": info.workflow_type, "activity_type": info.activity_type,
            "activity_id": info.activity_id, "attempt": info.attempt,
            "task_queue": info.task_queue, "namespace": info.workflow_namespace}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = current_request_id()
        if request_id:
            line["request_id"] = request_id
        workflow = getattr(record, "temporal_workflow", None)
        activity = getattr(record, "temporal_activity", None)
        if not isinstance(activity, dict) and not isinstance(workflow, dict):
            activity = _activity_details()
        for details, fields in ((workflow, _WORKFLOW_FIELDS), (activity, _ACTIVITY_FIELDS)):
            if isinstance(details, dict):
                for key, field in fields.items():
                    if details.get(key) not in (None, ""):
                        line[field] = details[key]
        # Other `extra=` fields (already redacted by the filter); none of the SDK's own.
        for name, value in vars(record).items():
            if name not in _STANDARD and name not in _SDK_EXTRAS and not name.startswith("_") \
                    and name not in line:
                line[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, ensure_ascii=False, default=str)


def _handlers() -> list[logging.Handler]:
    handlers = list(logging.getLogger().handlers)
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            handlers.extend(logger.handlers)
    return handlers


def configure_logging(fmt: LogFormat | None = None, *,
                      level: int = logging.INFO) -> list[logging.Handler]:
    """The process's logging: text leaves the handlers as they are (the worker's
    basicConfig, uvicorn's); JSON sets the formatter on every handler there is (the
    root's -- one is added at `level` where there is none --, uvicorn's, Python's last
    resort); then the redaction filter on all of them. Call it once logging is otherwise
    set up (uvicorn's before the service's factory runs). Returns the handlers the
    redaction was added to (security.redact.remove_redaction)."""
    fmt = fmt or log_format()
    if fmt == "json":
        root = logging.getLogger()
        if not root.handlers:
            logging.basicConfig(level=level)
        root.setLevel(min(root.level or level, level))
        formatter = JsonFormatter()
        for handler in _handlers():
            handler.setFormatter(formatter)
        if logging.lastResort is not None:
            logging.lastResort.setFormatter(formatter)
        # The SDK's loggers append the same details to the message as text; the fields
        # carry them here.
        from temporalio import activity, workflow

        activity.logger.activity_info_on_message = False
        workflow.logger.workflow_info_on_message = False
    return install_redaction()  # after the formatter: the filter runs before any formatter reads


__all__ = ["FORMAT_ENV", "JsonFormatter", "configure_logging", "log_format"]
