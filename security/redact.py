"""Nothing personal in the logs: a filter on every handler that strips what a database
error or a debug line can carry about a petitioner.

A transient database error (a serialization failure, PostgreSQL going away mid-INSERT)
raised inside an activity is logged by the Temporal SDK with its traceback, and its text
can quote the statement's parameters (`[parameters: ...]`, unless the engine hides them),
PostgreSQL's `DETAIL:` ("Failing row contains (...)", "Key (...)=(...)") and, at DEBUG, the
rows SQLAlchemy fetched. `RedactingFilter` removes those, and anything shaped like an ID
number or a mainland mobile number, from the message, its arguments, the formatted
exception and stack, and the record's extra fields -- including JSON's `\\uXXXX` forms.

Names and letter text have no shape a pattern could find: they are kept out by removing
the places they travel in (parameters, DETAIL, rows), and by refusals that name the
constraint, never the row (activities/common.py).

`install_redaction()` puts the filter on the root logger's handlers and on those of every
logger that does not propagate (uvicorn's), and on Python's last-resort handler; call it
wherever logging is configured.
"""

from __future__ import annotations

import logging
import re
import traceback
from typing import Any

REDACTED = "[redacted]"

# SQLAlchemy's statement errors: "[parameters: (...)]" up to the end of its line.
_PARAMETERS = re.compile(r"\[parameters: [^\n]*")
# PostgreSQL's DETAIL line (the failing row, the conflicting key) and its bare forms.
_DETAIL = re.compile(r"DETAIL:[^\n]*")
_FAILING_ROW = re.compile(r"Failing row contains[^\n]*")
_KEY_VALUES = re.compile(r"Key \([^\n]*\)=\([^\n]*")
# An 18-character resident ID number, a mainland mobile number (optionally +86).
_ID_NUMBER = re.compile(r"(?<![0-9])[0-9]{17}[0-9Xx](?![0-9])")
_PHONE = re.compile(r"(?<![0-9])(?:\+?86[- ]?)?1[3-9][0-9]{9}(?![0-9])")
# JSON's escaped forms: "\u6b27" (json.dumps' ensure_ascii) and "\\u6b27" (escaped twice).
_UNICODE_ESCAPE = re.compile(r"\\{1,2}u([0-9a-fA-F]{4})")

_PATTERNS = (
    (_PARAMETERS, f"[parameters: {REDACTED}]"),
    (_DETAIL, f"DETAIL: {REDACTED}"),
    (_FAILING_ROW, f"Failing row contains {REDACTED}"),
    (_KEY_VALUES, f"Key {REDACTED}"),
    (_ID_NUMBER, REDACTED),
    (_PHONE, REDACTED),
)

# Attributes every LogRecord has: everything else came in through `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {
    "message", "asctime", "taskName"}


def redact(text: str) -> str:
    """`text` without SQL parameters, PostgreSQL details, ID numbers and phone numbers."""
    if "\\u" in text:
        # Decode JSON escapes first, so "\u0031\u0033\u0039..." or an escaped DETAIL line
        # cannot hide from the patterns (the redacted text keeps the decoded characters).
        text = _UNICODE_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(v) for v in value)
    return value


class RedactingFilter(logging.Filter):
    """Rewrites a record in place (it never drops one). The record is shared by every
    handler, so rewriting it once covers them all; a second pass changes nothing."""

    SQLALCHEMY_ROWS = ("Row ", "Col ")
    SQLALCHEMY_PARAMETERS = "[%s] %r"  # the echo's "[generated in 0.0001s] (...)"

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_petitionflow_redacted", False):
            return True
        try:
            self._redact(record)
        except Exception:  # noqa: BLE001 - a log line must not die of its own redaction
            record.msg, record.args = f"<log record redacted: {record.name}>", None
            record.exc_info, record.exc_text, record.stack_info = None, None, None
        record._petitionflow_redacted = True
        return True

    def _redact(self, record: logging.LogRecord) -> None:
        if record.name.startswith("sqlalchemy") and isinstance(record.msg, str) and \
                record.msg.startswith(self.SQLALCHEMY_ROWS):
            # Rows and column lists SQLAlchemy echoes at DEBUG: the petitioner's columns.
            record.msg, record.args = f"{record.msg[:4]}{REDACTED}", None
        elif record.name.startswith("sqlalchemy") and record.msg == self.SQLALCHEMY_PARAMETERS \
                and isinstance(record.args, tuple) and record.args:
            record.msg, record.args = f"[{record.args[0]}] {REDACTED}", None
        else:
            record.msg, record.args = redact(record.getMessage()), None
        if record.exc_info:
            # Formatted once here, redacted, and cached where every formatter looks first;
            # the exception itself (which still holds the parameters) is let go.
            text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            record.exc_text, record.exc_info = redact(text), None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for name, value in list(vars(record).items()):
            if name not in _STANDARD and not name.startswith("_petitionflow"):
                setattr(record, name, _redact_value(value))


_FILTER = RedactingFilter()


def _handlers() -> list[logging.Handler]:
    handlers = list(logging.getLogger().handlers)
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            handlers.extend(logger.handlers)
    if logging.lastResort is not None:
        handlers.append(logging.lastResort)
    return handlers


def install_redaction() -> list[logging.Handler]:
    """Put the redacting filter on every handler there is now (idempotent). Returns the
    handlers it was added to, for `remove_redaction`."""
    added = []
    for handler in _handlers():
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(_FILTER)
            added.append(handler)
    return added


def remove_redaction(handlers: list[logging.Handler]) -> None:
    for handler in handlers:
        handler.removeFilter(_FILTER)


__all__ = ["REDACTED", "RedactingFilter", "install_redaction", "redact", "remove_redaction"]
