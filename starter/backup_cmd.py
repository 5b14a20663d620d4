"""`petition backup`: the operator's backup and restore of the database server
(adapters/backup.py, docs/backup.md)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from adapters.backup import BackupError, read_info, restore_backup, take_backup
from starter.errors import fail as _fail


def _why(error: OSError) -> str:
    return f"{error.strerror or error}: {error.filename}" if error.filename else str(error)


@click.group("backup")
def backup_cmd() -> None:
    """Back up and restore the database server: petitions, Temporal's stores, and all."""


@backup_cmd.command("identity")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def identity_cmd(file: Path) -> None:
    """Make a new age identity in FILE (mode 600) and print its recipient (age1...):
    give the recipient to `create`; keep FILE apart from the backups."""
    import pyrage

    if file.exists():
        _fail(f"{file} exists: an identity is never overwritten")
    identity = pyrage.x25519.Identity.generate()
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(f"# recipient: {identity.to_public()}\n{identity}\n")
    click.echo(str(identity.to_public()))


@backup_cmd.command("create")
@click.option("--to", "destination", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="An empty or new directory for this backup.")
@click.option("--dsn", envvar="PETITION_BACKUP_DSN", required=True,
              help="libpq connection string of a REPLICATION role, e.g. "
                   "'host=postgresql user=petition_backup' (password: PGPASSWORD or "
                   "~/.pgpass). Env: PETITION_BACKUP_DSN.")
@click.option("--recipient", "recipients", multiple=True,
              envvar="PETITION_BACKUP_RECIPIENTS",
              help="age recipient (age1...) to encrypt to; repeat for several. "
                   "Env: PETITION_BACKUP_RECIPIENTS (space separated).")
@click.option("--unencrypted", is_flag=True,
              help="Write the files in the clear (only onto an encrypted disk).")
@click.option("--label", default="petition-flow", show_default=True)
def create_cmd(destination: Path, dsn: str, recipients: tuple[str, ...], unencrypted: bool,
               label: str) -> None:
    """One consistent, verified backup of the whole server."""
    if not recipients and not unencrypted:
        _fail("give --recipient (age1...), or --unencrypted to write the files in the clear")
    if recipients and unencrypted:
        _fail("--recipient and --unencrypted exclude each other")
    try:
        info = take_backup(dsn, destination, recipients=None if unencrypted else recipients,
                           label=label)
    except BackupError as error:
        _fail(str(error))
    except OSError as error:  # e.g. a backup directory this user may not write
        _fail(_why(error))
    click.echo(f"backup {info.directory}: {info.bytes} bytes in {info.seconds:.1f} s, WAL "
               f"{info.start_lsn}..{info.end_lsn}, "
               f"{'encrypted' if info.encrypted else 'NOT encrypted'}")


@backup_cmd.command("verify")
@click.argument("backup", type=click.Path(file_okay=False, path_type=Path))
def verify_cmd(backup: Path) -> None:
    """Check a backup's files against the digests recorded when it was made."""
    try:
        info = read_info(backup)
    except BackupError as error:
        _fail(str(error))
    click.echo(f"backup {backup}: {len(info['files'])} files intact, made "
               f"{info['finished_at']}, WAL {info['start_lsn']}..{info['end_lsn']}")


@backup_cmd.command("restore")
@click.option("--from", "backup", required=True,
              type=click.Path(file_okay=False, path_type=Path))
@click.option("--data-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="An empty or new directory: the restored server's data directory.")
@click.option("--identity", type=click.Path(dir_okay=False, path_type=Path),
              help="The age identity file (needed for an encrypted backup).")
def restore_cmd(backup: Path, data_dir: Path, identity: Path | None) -> None:
    """Make a PostgreSQL data directory from a backup; then start the server on it, and
    the Temporal services, workers and service after it (docs/backup.md)."""
    from adapters.backup import load_identities

    try:
        identities = load_identities(identity) if identity else None
        info = restore_backup(backup, data_dir, identities=identities)
    except BackupError as error:
        _fail(str(error))
    except OSError as error:
        _fail(_why(error))
    click.echo(f"restored {data_dir} from the backup made {info['finished_at']} "
               f"(WAL to {info['end_lsn']}); start PostgreSQL on it, then the stack")
