"""Running the real `petition` command against the test stack."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from typing import Any


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


async def petition(*args: str, db_url: str, address: str, task_queue: str,
                   stdin: str | None = None, env: dict[str, str] | None = None) -> CliResult:
    """`env`: more environment, e.g. `PETITION_SERVICE_URL` and `PETITION_SESSION_FILE`
    (tests.service_helpers.cli_env)."""
    env = {**os.environ, "DATABASE_URL": db_url, "TEMPORAL_ADDRESS": address,
           "PETITION_TASK_QUEUE": task_queue, **(env or {})}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "starter", *args, env=env,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
    assert proc.returncode is not None
    return CliResult(proc.returncode, out.decode(), err.decode())
