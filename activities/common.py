"""What every activity desk shares: the refusal error and the idempotent write."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError

from domain.rules import Refusal
from security.redact import redact

T = TypeVar("T")

Clock = Callable[[], datetime]

# PostgreSQL SQLSTATEs of class 23, integrity constraint violation.
UNIQUE_VIOLATION = "23505"
FOREIGN_KEY_VIOLATION = "23503"
NOT_NULL_VIOLATION = "23502"


def utc_now() -> datetime:
    return datetime.now(UTC)


def lateness(at: datetime, timer_due_at: datetime | None) -> timedelta | None:
    """How late a deadline's timer fired: the workflow's time at firing (`at`, carried in
    the activity's input) minus the instant the timer was due; None when the workflow
    passed no due instant."""
    return at - timer_due_at if timer_due_at is not None else None


def refuse(rule: str, message: str, field: str | None = None,
           **details: Any) -> ApplicationError:
    """A business refusal: retrying cannot change the answer, so it is non-retryable. The
    rule, field and figures travel as structured details, for programs to read."""
    return ApplicationError(f"refused [{rule}]: {message}",
                            {"rule": rule, "message": message, "field": field, **details},
                            type="BusinessRefusal", non_retryable=True)


def refusal_of(error: ApplicationError) -> Refusal:
    """The structured refusal an ApplicationError carries (its message, if it has none):
    the inverse of `refuse`, for the workflow and the client."""
    details = error.details[0] if error.details and isinstance(error.details[0], dict) else {}
    known = {"rule", "message", "field"}
    return Refusal(details.get("rule", error.type or "refused"),
                   details.get("message", error.message), details.get("field"),
                   {k: v for k, v in details.items() if k not in known})


def refusal_error(refusal: Refusal) -> ApplicationError:
    """A refusal the domain core decided, raised by an activity."""
    return refuse(refusal.rule, refusal.message, refusal.field, **refusal.details)


def sqlstate(err: DBAPIError) -> str | None:
    return getattr(err.orig, "sqlstate", None)


def _violation(err: DBAPIError) -> dict[str, str]:
    """What PostgreSQL names about a violation -- constraint, table, column -- never the
    values: its DETAIL ("Failing row contains (...)", "Key (...)=(...)") quotes the row,
    the petitioner's name, ID number and letter with it."""
    cause = getattr(err.orig, "__cause__", None)
    named = {"constraint": getattr(cause, "constraint_name", None),
             "table": getattr(cause, "table_name", None),
             "column": getattr(cause, "column_name", None),
             "sqlstate": sqlstate(err)}
    return {k: v for k, v in named.items() if isinstance(v, str) and v}


def _name(violation: dict[str, str]) -> str:
    if "constraint" in violation:
        name = violation["constraint"]
    elif "column" in violation:
        name = f"column {violation['column']}"
    else:
        return "a constraint"
    return f"{name} on {violation['table']}" if "table" in violation else name


def integrity_refusal(err: IntegrityError, what: str) -> ApplicationError:
    """An integrity violation that is not our own earlier write: the same write would fail
    the same way on every retry, so it is a refusal naming the constraint (never the row:
    the refusal travels into the audit trail, the logs and the caller's answer)."""
    violation = _violation(err)
    constraint = _name(violation)
    if sqlstate(err) == FOREIGN_KEY_VIOLATION:
        return refuse("integrity", f"{what} refers to something that does not exist "
                      f"({constraint})", **violation)
    if sqlstate(err) == UNIQUE_VIOLATION:
        return refuse("integrity", f"{what} conflicts with an existing record "
                      f"({constraint})", **violation)
    if sqlstate(err) == NOT_NULL_VIOLATION:
        return refuse("integrity", f"{what} leaves {constraint} empty", **violation)
    return refuse("integrity", f"{what} breaks {constraint}", **violation)


def is_data_exception(err: DBAPIError) -> bool:
    """SQLSTATE class 22: a value a column cannot hold (too long, out of range)."""
    return (sqlstate(err) or "").startswith("22")


_QUOTED = re.compile(r'"[^"\n]*"')


def data_refusal(err: DBAPIError, what: str) -> ApplicationError:
    """A data exception recurs on every retry: a refusal naming it -- PostgreSQL's message
    without the value it quotes (`invalid input syntax for type integer: "..."`) or its
    DETAIL."""
    cause = getattr(err.orig, "__cause__", None)
    message = (cause.args[0] if cause is not None and cause.args else
               str(err.orig) if err.orig is not None else "a value the column cannot hold")
    message = redact(_QUOTED.sub('"..."', str(message).splitlines()[0]))
    violation = _violation(err)
    where = f" ({_name(violation)})" if {"column", "constraint"} & set(violation) else ""
    return refuse("data", f"{what}: {message}{where}", **violation)


async def advisory_lock(session: AsyncSession, name: str) -> None:
    """A transaction-scoped lock on a name: serialises writers on one business key."""
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": name})


async def find_by_key(session: AsyncSession, model: type[T], key: str) -> T | None:
    column = model.idempotency_key  # type: ignore[attr-defined]
    return await session.scalar(select(model).where(column == key))


async def write_once(
    sessions: async_sessionmaker[AsyncSession],
    model: type[Any],
    key: str,
    write: Callable[[AsyncSession], Awaitable[T]],
    found: Callable[[Any], T],
) -> T:
    """Return the earlier write for `key` if there is one, else make it and commit
    (`write_or_find`, without saying which)."""
    result, _ = await write_or_find(sessions, model, key, write, found)
    return result


async def write_or_find(
    sessions: async_sessionmaker[AsyncSession],
    model: type[Any],
    key: str,
    write: Callable[[AsyncSession], Awaitable[T]],
    found: Callable[[Any], T],
) -> tuple[T, bool]:
    """(the earlier write for `key` if there is one, else the one made and committed now;
    True only when this call's commit wrote it): what happened once -- a deadline that
    fired -- is counted by the attempt that wrote it, not again by a retry that found it.

    A concurrent duplicate loses on the unique key, rolls back and reads the winner.
    Any other integrity violation (a missing petition or unit, a clash on another
    unique column, a check constraint), or a value a column cannot hold, would recur on
    every retry: it is refused.
    """
    async with sessions() as session:
        existing = await find_by_key(session, model, key)
        if existing is not None:
            return found(existing), False
        try:
            result = await write(session)
            await session.commit()
            return result, True
        except IntegrityError as err:
            await session.rollback()
            violation = err
        except DBAPIError as err:
            if is_data_exception(err):
                raise data_refusal(err, f"{model.__tablename__} write {key}") from None
            raise  # the connection, a deadlock, a timeout: worth a retry
    async with sessions() as session:
        existing = await find_by_key(session, model, key)
        if existing is not None:
            return found(existing), False
    raise integrity_refusal(violation, f"{model.__tablename__} write {key}")
