"""A server the devstack runs as a child process group (Keycloak, the Temporal UI server):
stopped gracefully, then killed; its data directory removed when the devstack made it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
from collections import deque
from pathlib import Path
from types import TracebackType
from typing import Self


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log, for a one-line error that says why a server failed."""
    try:
        with path.open(errors="replace") as handle:
            return "".join(deque(handle, maxlen=lines)).rstrip()
    except OSError:
        return "(no log)"


def signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


class ManagedServer:
    """`stop()` (or leaving a `with` / `async with` block) ends the process group."""

    STOP_TIMEOUT = 10.0

    def __init__(self, process: subprocess.Popen[bytes], data_dir: Path) -> None:
        self.process = process
        self.data_dir = data_dir
        self.remove_data_on_stop = False
        self.killed = False  # it did not stop within the timeout

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM to the group (a graceful shutdown), then SIGKILL."""
        if self.process.poll() is None:
            signal_group(self.process, signal.SIGTERM)
            try:
                self.process.wait(self.STOP_TIMEOUT if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                signal_group(self.process, signal.SIGKILL)
                self.process.wait()
                self.killed = True
        if self.remove_data_on_stop:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        tb: TracebackType | None) -> None:
        await asyncio.to_thread(self.stop)
