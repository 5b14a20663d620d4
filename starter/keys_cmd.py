"""`petition keys`: the keys of the personal-data columns (security/sealing.py).

Runs as the schema's owner (the migration connection, docs/database-roles.md).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from typing import TYPE_CHECKING, NoReturn, TypeVar

import click

if TYPE_CHECKING:
    from adapters.key_tool import Retirement
    from security.sealing import LocalKeyWrapper

T = TypeVar("T")


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def _run(work: Awaitable[T]) -> T:
    from security.codec import CodecKeyError
    from security.sealing import SealingError

    try:
        return asyncio.run(work)  # type: ignore[arg-type]
    except (ValueError, CodecKeyError, SealingError) as err:
        _fail(str(err))


def _wrapper() -> LocalKeyWrapper:
    from adapters.settings import get_settings
    from security.sealing import LocalKeyWrapper, kek_ring_from_settings

    return LocalKeyWrapper(kek_ring_from_settings(get_settings()))


@click.group("keys")
def keys_cmd() -> None:
    """The keys that seal petitioners' personal data in the database."""


@keys_cmd.command("list")
def list_cmd() -> None:
    """Key-encryption keys configured, data keys in the database and what each seals."""
    from adapters.key_tool import key_usage
    from starter.runtime import runtime

    async def work() -> None:
        wrapper = _wrapper()
        click.echo("key-encryption keys (PETITION_DATA_KEYS): " + ", ".join(
            f"{k}{' (active)' if k == wrapper.active_id else ''}" for k in wrapper.ids()))
        async with runtime(purpose="migration") as rt:
            usage = await key_usage(rt.engine)
        click.echo(f"{'data key':<18} {'wrapped by':<14} {'created (UTC)':<17} "
                   f"{'retired':<8} values")
        for u in usage:
            detail = ", ".join(f"{c} {n}" for c, n in sorted(u.values.items())) or "-"
            click.echo(f"{u.id:<18} {u.kek_id:<14} {u.created_at:%Y-%m-%d %H:%M} "
                       f"{'yes' if u.retired_at else 'no':<8} {u.total} ({detail})")
        stale = sorted({u.kek_id for u in usage} - {wrapper.active_id})
        if stale:
            # A process still configured with an older active KEK keeps wrapping new data
            # keys with it: roll the new one out everywhere before retiring the old.
            click.echo(f"wrapped by a key-encryption key that is not the active one: "
                       f"{', '.join(stale)} (`petition keys retire-kek` each)", err=True)

    _run(work())


@keys_cmd.command("retire-kek")
@click.argument("kek_id")
def retire_kek_cmd(kek_id: str) -> None:
    """Rewrap the data keys KEK_ID wraps with the active key-encryption key; afterwards
    KEK_ID may be removed from PETITION_DATA_KEYS."""
    from adapters.key_tool import rewrap
    from starter.runtime import runtime

    async def work() -> int:
        wrapper = _wrapper()
        async with runtime(purpose="migration") as rt:
            return await rewrap(rt.engine, wrapper, kek_id)

    click.echo(f"rewrapped {_run(work())} data keys from {kek_id}")


@keys_cmd.command("retire")
@click.argument("data_key_id")
@click.option("--batch", type=click.IntRange(1, 100_000), default=1000, show_default=True,
              help="rows re-encrypted per transaction")
def retire_cmd(data_key_id: str, batch: int) -> None:
    """Stop sealing with DATA_KEY_ID and re-encrypt what it sealed under the active data
    key (or a new one); the system keeps running meanwhile."""
    from adapters.key_tool import retire_data_key
    from starter.runtime import runtime

    async def work() -> Retirement:
        wrapper = _wrapper()
        async with runtime(purpose="migration") as rt:
            return await retire_data_key(rt.engine, wrapper, data_key_id, batch=batch,
                                         cipher=rt.settings.data_cipher)

    done = _run(work())
    total = sum(done.resealed.values())
    click.echo(f"retired {data_key_id}: re-encrypted {total} values in {done.seconds:.1f} s "
               f"({', '.join(f'{c} {n}' for c, n in done.resealed.items())}); "
               f"{done.remaining} left")
    for column, ids in done.unopenable.items():
        click.echo(f"{len(ids)} values of {column} do not open (rows {ids[:10]}...): "
                   "restore them from a backup before shredding", err=True)
    if done.remaining:
        click.echo("run it again in a minute: workers stop sealing with a retired key "
                   "within a minute", err=True)


@keys_cmd.command("shred")
@click.argument("data_key_id")
def shred_cmd(data_key_id: str) -> None:
    """Delete a retired data key that seals nothing any more (irreversible)."""
    from adapters.key_tool import shred
    from starter.runtime import runtime

    async def work() -> None:
        async with runtime(purpose="migration") as rt:
            await shred(rt.engine, data_key_id)

    _run(work())
    click.echo(f"shredded data key {data_key_id}")
