"""What every activity desk shares: the refusal error and the idempotent write."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError

T = TypeVar("T")

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def refuse(rule: str, message: str) -> ApplicationError:
    """A business refusal: retrying cannot change the answer, so it is non-retryable."""
    return ApplicationError(f"refused [{rule}]: {message}", type="BusinessRefusal",
                            non_retryable=True)


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
    """Return the earlier write for `key` if there is one, else make it and commit.

    A concurrent duplicate loses on the unique key, rolls back and reads the winner.
    """
    for _ in range(2):
        async with sessions() as session:
            existing = await find_by_key(session, model, key)
            if existing is not None:
                return found(existing)
            try:
                result = await write(session)
                await session.commit()
                return result
            except IntegrityError:
                await session.rollback()
    async with sessions() as session:
        existing = await find_by_key(session, model, key)
        if existing is None:
            raise RuntimeError(f"write for {key} conflicted but no row is there")
        return found(existing)
