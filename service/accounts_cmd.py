"""`petition accounts`: local staff passwords and intake clients of the service."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import click
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from adapters.tables import IntakeClient, Person, StaffAccount, Unit
from service.auth.hashing import hash_secret_async, new_client_secret

MIN_PASSWORD_CHARS = 12


class AccountError(ValueError):
    pass


async def set_password(sessions: async_sessionmaker[AsyncSession], person_id: str,
                       password: str) -> None:
    """Create or replace the local account of a directory person (and unlock it)."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise AccountError(f"a password needs at least {MIN_PASSWORD_CHARS} characters")
    password_hash = await hash_secret_async(password)
    async with sessions() as session:
        if await session.get(Person, person_id) is None:
            raise AccountError(f"{person_id} is not in the organisation directory")
        now = datetime.now(UTC)
        await session.execute(insert(StaffAccount).values(
            person_id=person_id, password_hash=password_hash, failed_attempts=0,
            locked_until=None, password_changed_at=now).on_conflict_do_update(
            index_elements=["person_id"], set_={
                "password_hash": password_hash, "failed_attempts": 0, "locked_until": None,
                "password_changed_at": now}))
        await session.commit()


async def add_intake_client(sessions: async_sessionmaker[AsyncSession], client_id: str,
                            name: str, units: list[str]) -> str:
    """Register (or re-key) an intake client; answers its new secret, shown once."""
    if not units:
        raise AccountError("name at least one unit the client registers for (--unit)")
    secret = new_client_secret()
    secret_hash = await hash_secret_async(secret)
    async with sessions() as session:
        known = set(await session.scalars(select(Unit.code).where(Unit.code.in_(units))))
        unknown = sorted(set(units) - known)
        if unknown:
            raise AccountError(f"unknown unit(s): {', '.join(unknown)}")
        await session.execute(insert(IntakeClient).values(
            client_id=client_id, secret_hash=secret_hash, name=name, units=sorted(set(units)),
            active=True).on_conflict_do_update(index_elements=["client_id"], set_={
                "secret_hash": secret_hash, "name": name, "units": sorted(set(units)),
                "active": True}))
        await session.commit()
    return secret


@click.group("accounts")
def accounts_cmd() -> None:
    """Local staff accounts and intake clients of the petition service."""


@accounts_cmd.command("set-password")
@click.argument("person_id")
@click.password_option("--password", prompt="New password", help="read from a prompt")
def set_password_cmd(person_id: str, password: str) -> None:
    """Set PERSON_ID's local password (a person of the directory); unlocks the account."""
    from starter.runtime import runtime

    async def run() -> None:
        async with runtime() as rt:
            await set_password(rt.sessions, person_id, password)

    try:
        asyncio.run(run())
    except AccountError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"password set for {person_id}")


@accounts_cmd.command("add-intake-client")
@click.argument("client_id")
@click.option("--unit", "units", multiple=True, required=True,
              help="a unit the client registers for (repeat for several)")
@click.option("--name", default=None, help="what the client is (default: its id)")
def add_intake_client_cmd(client_id: str, units: tuple[str, ...], name: str | None) -> None:
    """Register intake client CLIENT_ID and print its secret (shown this once)."""
    from starter.runtime import runtime

    async def run() -> str:
        async with runtime() as rt:
            return await add_intake_client(rt.sessions, client_id, name or client_id,
                                           list(units))

    try:
        secret = asyncio.run(run())
    except AccountError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"client_id:     {client_id}\nclient_secret: {secret}\n"
               "(the secret is shown this once and stored only as a hash)")
