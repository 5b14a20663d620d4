"""adapters/backup.py and `petition backup` on a PostgreSQL server of their own: a backup is
the server at one instant, opens only with its identity, and refuses what it must."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyrage
import pytest

from adapters.backup import BackupError, load_identities, read_info, restore_backup, take_backup
from devstack.temporal_cluster import ClusterPostgres

pytestmark = [pytest.mark.processes]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ClusterPostgres]:
    pg = ClusterPostgres(tmp_path / "server" / "pgdata", user="temporal", password="unused",
                         max_connections=20)
    pg.init()
    pg.start()
    try:
        pg.wait_ready()
        pg.psql("CREATE DATABASE records")
        pg.psql("CREATE TABLE entries (n int); INSERT INTO entries "
                "SELECT generate_series(1, 500)", "records")
        yield pg
    finally:
        pg.stop()


def dsn(pg: ClusterPostgres) -> str:
    return f"host={pg.data} port={pg.port} user=postgres"


def petition(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).parent / "petition"), "backup", *args],
                          capture_output=True, text=True, check=False,
                          env={**os.environ, **(env or {})})


def started_on(data: Path, tmp_path: Path) -> ClusterPostgres:
    restored = ClusterPostgres(data, user="temporal", password="unused", max_connections=20)
    restored.adopt()
    restored.start()
    restored.wait_ready()
    return restored


def test_the_cli_backs_up_one_instant_and_restores_it(server: ClusterPostgres,
                                                      tmp_path: Path) -> None:
    identity_file = tmp_path / "keys" / "backup-identity.txt"
    identity_file.parent.mkdir()
    made = petition("identity", str(identity_file))
    assert made.returncode == 0, made.stderr
    recipient = made.stdout.strip()
    assert recipient.startswith("age1") and oct(identity_file.stat().st_mode)[-3:] == "600"

    backup = tmp_path / "backup"
    created = petition("create", "--to", str(backup),
                       env={"PETITION_BACKUP_DSN": dsn(server),
                            "PETITION_BACKUP_RECIPIENTS": recipient})
    assert created.returncode == 0, created.stderr
    assert "encrypted" in created.stdout and "NOT" not in created.stdout
    server.psql("INSERT INTO entries VALUES (-1)", "records")  # after the instant: not kept
    assert sorted(p.name for p in backup.iterdir()) == [
        "backup.json", "backup_manifest.age", "base.tar.gz.age", "pg_wal.tar.gz.age"]
    assert petition("verify", str(backup)).returncode == 0

    data = tmp_path / "restored" / "pgdata"
    restored_run = petition("restore", "--from", str(backup), "--data-dir", str(data),
                            "--identity", str(identity_file))
    assert restored_run.returncode == 0, restored_run.stderr
    server.stop()
    restored = started_on(data, tmp_path)
    try:
        assert restored.psql("SELECT count(*), min(n) FROM entries", "records").split() == [
            "500|1"]
    finally:
        restored.stop()


def test_only_its_identity_opens_a_backup(server: ClusterPostgres, tmp_path: Path) -> None:
    owner = pyrage.x25519.Identity.generate()
    take_backup(dsn(server), tmp_path / "backup", recipients=[str(owner.to_public())])
    stranger = pyrage.x25519.Identity.generate()
    data = tmp_path / "restored"
    with pytest.raises(BackupError, match="does not open"):
        restore_backup(tmp_path / "backup", data, identities=[stranger])
    assert list(data.iterdir()) == []  # nothing half-restored is left to start by mistake
    with pytest.raises(BackupError, match="encrypted: give the age identity"):
        restore_backup(tmp_path / "backup", data, identities=None)


def test_an_altered_or_incomplete_backup_is_refused(server: ClusterPostgres,
                                                    tmp_path: Path) -> None:
    owner = pyrage.x25519.Identity.generate()
    backup = tmp_path / "backup"
    take_backup(dsn(server), backup, recipients=[str(owner.to_public())])
    sealed = backup / "pg_wal.tar.gz.age"
    content = bytearray(sealed.read_bytes())
    content[-1] ^= 1
    sealed.write_bytes(bytes(content))
    with pytest.raises(BackupError, match="pg_wal.tar.gz.age is missing or altered"):
        restore_backup(backup, tmp_path / "restored", identities=[owner])
    sealed.unlink()
    result = petition("verify", str(backup))
    assert result.returncode == 2
    assert result.stderr.strip().endswith("pg_wal.tar.gz.age is missing or altered")


def test_no_directory_is_overwritten(server: ClusterPostgres, tmp_path: Path) -> None:
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "PG_VERSION").write_text("18\n")
    with pytest.raises(BackupError, match="not empty"):
        take_backup(dsn(server), occupied, recipients=None)
    take_backup(dsn(server), tmp_path / "backup", recipients=None)
    assert read_info(tmp_path / "backup")["encrypted"] is False
    with pytest.raises(BackupError, match="not empty"):
        restore_backup(tmp_path / "backup", occupied, identities=None)
    assert (occupied / "PG_VERSION").read_text() == "18\n"


def test_the_cli_says_what_is_wrong_in_one_line(server: ClusterPostgres,
                                                tmp_path: Path) -> None:
    env = {"PETITION_BACKUP_DSN": dsn(server)}
    cases = {
        "give --recipient": ("create", "--to", str(tmp_path / "a")),
        "not an age recipient": ("create", "--to", str(tmp_path / "b"), "--recipient", "x"),
        "exclude each other": ("create", "--to", str(tmp_path / "c"), "--recipient",
                               "age1x", "--unencrypted"),
    }
    for expected, args in cases.items():
        result = petition(*args, env=env)
        assert result.returncode == 2 and expected in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    bad = petition("create", "--to", str(tmp_path / "d"), "--unencrypted",
                   env={"PETITION_BACKUP_DSN": f"host={tmp_path} port=1 user=postgres"})
    assert bad.returncode == 2 and bad.stderr.startswith("error: pg_basebackup failed")
    with_password = petition("create", "--to", str(tmp_path / "e"), "--unencrypted",
                             env={"PETITION_BACKUP_DSN": dsn(server) + " password=secret"})
    assert with_password.returncode == 2 and "holds a password" in with_password.stderr
    assert "secret" not in with_password.stderr and not (tmp_path / "e").exists()
    identity = tmp_path / "not-an-identity"
    identity.write_text("AGE-SECRET-KEY-NOPE\n")
    with pytest.raises(BackupError, match="no valid age identity"):
        load_identities(identity)


def test_a_failed_backup_leaves_nothing_behind(server: ClusterPostgres, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The clear copy is staged apart from the backup directory (which may be synchronised
    off the host) and removed, and no half-written backup is left to be mistaken for one."""
    from adapters.backup import pg_bin_dir

    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "pg_basebackup").symlink_to(pg_bin_dir() / "pg_basebackup")
    failing = tools / "pg_verifybackup"
    failing.write_text(f"#!/bin/sh\nfor a; do last=$a; done; echo \"$last\" > {tools}/staged\n"
                       "echo 'pg_verifybackup: error: checksum mismatch' >&2\nexit 1\n")
    failing.chmod(0o755)
    staging_root = tmp_path / "staging"
    staging_root.mkdir()
    monkeypatch.setenv("PETITION_BACKUP_STAGING", str(staging_root))
    owner = pyrage.x25519.Identity.generate()
    with pytest.raises(BackupError, match="pg_verifybackup failed: .*checksum mismatch"):
        take_backup(dsn(server), tmp_path / "backup", recipients=[str(owner.to_public())],
                    bin_dir=tools)
    staged = Path((tools / "staged").read_text().strip())
    assert staged.parent == staging_root  # the clear copy was never in the backup directory
    assert list((tmp_path / "backup").iterdir()) == []
    assert list(staging_root.iterdir()) == []
