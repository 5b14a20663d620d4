"""The `petition import FILE.csv` command."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click

from starter.legacy.importer import ImportResult, import_file
from starter.legacy.read import ImportFileError


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="validate every row, import nothing")
@click.option("--no-progress", is_flag=True, help="no progress bar (logs, CI)")
@click.option("--offline", is_flag=True,
              help="first migration before go-live: rebuild secondary indexes at the end "
                   "(faster; the tables are locked until the import commits)")
def import_command(file: Path, dry_run: bool, no_progress: bool, offline: bool) -> None:
    """Import historical petitions from a CSV FILE, all or nothing; each record's history
    is replayed through the lifecycle and open cases resume as workflows. Columns
    (* required): see `starter/legacy/read.py`."""
    from starter.runtime import runtime

    async def go() -> ImportResult:
        async with runtime() as rt:
            # Connect first: an unreachable server must stop the import before it writes.
            client = None if dry_run else await rt.client()
            return await import_file(file, rt.engine, client=client,
                                     task_queue=rt.settings.task_queue,
                                     progress=not no_progress, dry_run=dry_run,
                                     offline=offline)

    try:
        result = asyncio.run(go())
    except ImportFileError as err:
        click.echo(f"error: {err}; nothing was imported", err=True)
        sys.exit(2)
    if result.error_count:
        for e in result.errors:
            click.echo(f"{file}: {e}", err=True)
        hidden = result.error_count - len(result.errors)
        if hidden:
            click.echo(f"... and {hidden} more", err=True)
        click.echo(f"error: {result.error_count} bad row(s) of {result.rows}; "
                   "nothing was imported", err=True)
        sys.exit(2)
    summary = {"rows": result.rows, "imported": result.imported,
               "already_imported": result.already_imported, "open_cases": result.open_cases,
               "workflows_started": result.workflows_started,
               "workflows_already_closed": result.workflows_existing, "dry_run": dry_run,
               "seconds": {k: round(v, 2) for k, v in result.timings.items()}}
    click.echo(json.dumps(summary, indent=2))
    if result.workflow_failures:
        for failure in result.workflow_failures[:50]:
            click.echo(f"workflow not started: {failure}", err=True)
        click.echo(f"error: records imported, but {len(result.workflow_failures)} open case(s) "
                   "have no workflow yet: run the same import again to start them", err=True)
        sys.exit(3)
