"""The backup-and-restore drill (issue 17, item 5), small: the production-shaped cluster
with the petitions' database on its PostgreSQL is backed up while two clients take
petitions through transfer, acceptance and payment; the stack is then lost, and a new one
is restored from the backup alone. `python -m drills --backup` is the full-size run.

The report's figures are saved to test-output/backup-restore-drill.json."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from drills import backup_restore

pytestmark = [pytest.mark.processes, pytest.mark.timeout(900)]

OUTPUT = Path(__file__).resolve().parent.parent / "test-output"


async def test_a_restored_stack_has_every_petition_deadline_and_timer_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PETITION_DEV_KEYS", os.environ.get("PETITION_DEV_KEYS", "true"))
    report = await backup_restore.run(tmp_path, waiting=16, lanes=2, spread=60.0)
    OUTPUT.mkdir(exist_ok=True)
    (OUTPUT / "backup-restore-drill.json").write_text(
        json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n")
    assert report["problems"] == []
    assert report["lost"] == 0 and report["duplicated"] == 0
    # The drill did what it claims: load ran across the backup, and every kind of timer
    # was there to check -- some due before the backup, some while the stack was gone,
    # some after the restore.
    assert report["petitions_before_backup"] >= 16 + 2
    assert report["petitions_restored"] >= report["petitions_before_backup"]
    assert report["transitions_checked"] > report["petitions_restored"]
    assert report["payments_checked"] > 0 and report["transfer_orders_checked"] > 0
    assert report["timers_checked"] == 32
    assert report["timers_due_before_backup"] > 0
    assert report["timers_due_while_down"] > 0
    assert report["timers_due_after_restore"] > 0
    assert report["after_restore_lateness_max_s"] <= 5.0
