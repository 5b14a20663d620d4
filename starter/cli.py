"""`petition`: the command line for intake systems, handlers and operators."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import BaseModel
from temporalio.exceptions import ApplicationError

from domain.models import Category, Stage
from observability.tracing import CLI, configure_tracing
from starter.actions import (
    ActionError,
    person_action,
    resolve_registration_no,
    resolve_workflow_id,
)
from starter.errors import fail as _fail
from starter.intake import IntakeError, read_intake, submit
from starter.queries import QueryError
from starter.runtime import SAMPLE_DIRECTORY, load_directory_file, migrate_async, runtime
from starter.session import DEFAULT_SERVICE, SERVICE_ENV

T = TypeVar("T")


def _run(coro: Awaitable[T]) -> T:
    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except (IntakeError, ActionError, QueryError) as err:
        _fail(str(err))
    except ApplicationError as err:
        _fail(err.message)
    raise AssertionError("unreachable")


def _print(value: Any) -> None:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    click.echo(json.dumps(value, ensure_ascii=False, indent=2, default=str))


@click.group()
def main() -> None:
    """Petition Flow: public petition work (信访) as durable Temporal workflows."""
    # Traces where OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT is set (docs/operations.md): what
    # a command sends Temporal itself (an import's starts, `petition dev`) is traced.
    configure_tracing(CLI)


@main.command("migrate")
def migrate_cmd() -> None:
    """Bring the database schema to the newest Alembic revision."""

    async def go() -> None:
        async with runtime() as rt:
            await migrate_async(rt.engine.url.render_as_string(hide_password=False))

    _run(go())
    click.echo("database schema is current")


@main.command("load-directory")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                default=SAMPLE_DIRECTORY)
def load_directory_cmd(file: Path) -> None:
    """Load (upsert) the organisation directory from a TOML file."""

    async def go() -> int:
        async with runtime() as rt:
            return await load_directory_file(rt.sessions, file)

    try:
        count = _run(go())
    except ValueError as err:
        _fail(f"{file}: {err}")
    click.echo(f"loaded {count} units from {file}")


@main.command("submit")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def submit_cmd(file: Path) -> None:
    """Register a petition from an intake JSON file; prints its registration number."""
    try:
        intake = read_intake(file)
    except IntakeError as err:
        _fail(str(err))

    async def go() -> dict[str, Any]:
        async with runtime() as rt:
            status = await submit(await rt.client(), rt.sessions, intake,
                                  task_queue=rt.settings.task_queue)
        return {"registration_no": status.registration_no, "workflow_id": status.workflow_id,
                "stage": status.stage, "attached_to": status.attached_to}

    _print(_run(go()))


@main.command("login")
@click.option("--service", default=None, metavar="URL",
              help=f"the petition service (default: ${SERVICE_ENV}, else {DEFAULT_SERVICE})")
@click.option("--person", default=None, metavar="PERSON_ID",
              help="your person id in the directory (asked for if not given)")
def login_cmd(service: str | None, person: str | None) -> None:
    """Sign in to the petition service with your local account; `petition act` then acts
    as you. The password is asked for (or read from a pipe)."""
    from starter import session as signed

    url = signed.service_url(service)
    person_id = (person or _ask("Person id")).strip()
    password = _ask("Password", hidden=True)
    try:
        current = signed.sign_in(url, person_id, password)
        path = signed.save(current)
    except signed.SessionError as err:
        _fail(str(err))
    except OSError as err:
        _fail(f"cannot keep the session: {err}")
    click.echo(f"signed in to {url} as {person_id} until "
               f"{current.expires_at.astimezone():%Y-%m-%d %H:%M:%S %Z} (session: {path})")


def _ask(label: str, *, hidden: bool = False) -> str:
    """At a terminal, a prompt (the password hidden); piped (as `docker login
    --password-stdin`), one line of stdin, without prompt or echo to turn off."""
    if sys.stdin.isatty():
        answer: str = click.prompt(label, hide_input=hidden, err=True)
    else:
        answer = sys.stdin.readline().rstrip("\r\n")
    if not answer:
        _fail(f"no {label.lower()} given")
    return answer


@main.command("logout")
def logout_cmd() -> None:
    """Forget the session kept by `petition login`."""
    from starter import session as signed

    path = signed.session_file()
    click.echo("signed out" if signed.remove(path) else f"not signed in (no {path})")


@main.command("act")
@click.argument("petition")
@click.argument("action")
@click.option("--data", default=None, help="the action's payload as a JSON object")
def act_cmd(petition: str, action: str, data: str | None) -> None:
    """Take ACTION on PETITION (registration number or workflow id) through the petition
    service, as the person signed in with `petition login`; prints the new status.

    The service builds the actor from your identity and the directory. A `request_id` in
    --data is sent as the Idempotency-Key (the same id again does not act twice)."""
    from starter import session as signed

    try:
        chosen = person_action(action)
        payload, request_id = signed.action_body(data)
        current = signed.load()
    except (ActionError, signed.SessionError) as err:
        _fail(str(err))
    number = petition
    if petition.startswith("petition-"):  # a workflow id: its number from the read model

        async def go() -> str:
            async with runtime() as rt:
                return await resolve_registration_no(rt.sessions, petition)

        number = _run(go())
    try:
        status = signed.act(current, number, chosen.value, payload, request_id)
    except signed.SessionError as err:
        _fail(str(err))
    _print(status)


@main.command("show")
@click.argument("petition")
def show_cmd(petition: str) -> None:
    """Status, timeline and audit trail of PETITION."""
    from starter.queries import show_petition

    async def go() -> dict[str, Any]:
        async with runtime() as rt:
            workflow_id = await resolve_workflow_id(rt.sessions, petition)
            return await show_petition(await rt.client(), rt.sessions, workflow_id)

    _print(_run(go()))


@main.command("list")
@click.option("--unit", default=None, help="registered at, held by or responsible: a unit code")
@click.option("--stage", type=click.Choice([s.value for s in Stage]), default=None)
@click.option("--overdue", is_flag=True, help="only open cases past a deadline")
@click.option("--category", type=click.Choice([c.value for c in Category]), default=None)
@click.option("--from", "date_from", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="registered on or after this Beijing date, YYYY-MM-DD")
@click.option("--to", "date_to", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="registered on or before this Beijing date, YYYY-MM-DD")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
def list_cmd(unit: str | None, stage: str | None, overdue: bool, category: str | None,
             date_from: Any, date_to: Any, limit: int, fmt: str) -> None:
    """Petitions from the read model, newest first, filtered."""
    from pydantic import ValidationError

    from starter.queries import PetitionFilter, list_petitions, petition_table, print_table

    try:
        where = PetitionFilter(
            unit=unit, stage=stage, overdue=overdue, category=category, limit=limit,
            registered_from=date_from.date() if date_from else None,
            registered_to=date_to.date() if date_to else None)
    except ValidationError as err:
        _fail(err.errors()[0]["msg"].removeprefix("Value error, "))

    async def go() -> list[dict[str, Any]]:
        async with runtime() as rt:
            return await list_petitions(rt.sessions, where)

    rows = _run(go())
    if fmt == "json":
        _print(rows)
    else:
        print_table(petition_table(rows))


@main.command("diagram")
@click.option("--image", type=click.Path(dir_okay=False, path_type=Path), default=None)
def diagram_cmd(image: Path | None) -> None:
    """The lifecycle table as a Mermaid state diagram."""
    from starter.diagram import mermaid, render_image

    source = mermaid()
    click.echo(source)
    if image is not None and not render_image(source, image):
        click.echo("note: mermaid-cli (mmdc) is not installed; no image drawn", err=True)


@main.command("dev")
@click.option("--demo", "demo_count", default=200, show_default=True,
              help="petitions of the demo load on a first run (0: none)")
def dev_cmd(demo_count: int) -> None:
    """Bring up the embedded stack, sample petitions and a demo load (Ctrl-C stops it)."""
    from starter.dev import run_dev

    asyncio.run(run_dev(demo_count=demo_count))


from starter.legacy.command import import_command  # noqa: E402 - registered last, on purpose

main.add_command(import_command)

from starter.report_cmd import demo_cmd, report_cmd, views_cmd  # noqa: E402 - supervisor commands

main.add_command(report_cmd)
main.add_command(views_cmd)
main.add_command(demo_cmd)

from security.cli import codec_server_cmd  # noqa: E402 - the Web UI's codec endpoint

main.add_command(codec_server_cmd)

from starter.holidays_cmd import holidays_cmd  # noqa: E402 - official holiday notices

main.add_command(holidays_cmd)

from service.accounts_cmd import accounts_cmd  # noqa: E402 - the service's accounts

main.add_command(accounts_cmd)

from starter.keys_cmd import keys_cmd  # noqa: E402 - the key-custodian's command

main.add_command(keys_cmd)

from starter.letters_cmd import letters_cmd  # noqa: E402 - the post room's letters

main.add_command(letters_cmd)

from starter.backup_cmd import backup_cmd  # noqa: E402 - the operator's backups

main.add_command(backup_cmd)
