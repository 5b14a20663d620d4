"""The worker as a separate process, as in production: started, killed, restarted."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

from adapters.settings import PROJECT_ROOT

READY = "worker polling task queue"


class WorkerProcess:
    """`python worker.py` (or another module) against the given stack, supervised: a
    worker that dies is started again, as systemd or Kubernetes would."""

    def __init__(self, *, address: str, database_url: str, task_queue: str, log_dir: Path,
                 module: str | None = None, extra_env: dict[str, str] | None = None):
        self.command = ([sys.executable, "-m", module] if module
                        else [sys.executable, str(PROJECT_ROOT / "worker.py")])
        self.env = {**os.environ, "TEMPORAL_ADDRESS": address, "DATABASE_URL": database_url,
                    "PETITION_TASK_QUEUE": task_queue,
                    "PETITION_NOTICE_OUTBOX_DIR": str(log_dir / "outbox"),
                    **(extra_env or {})}
        self.log_dir = log_dir
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.kills = 0  # SIGKILLs sent from outside
        self.deaths = 0  # exits nobody asked for (a crash point killing itself)
        self._expected_exit = False
        self._supervisor: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one incarnation at a time
        self.paused = False  # supervision off (the server it needs is down on purpose)

    @property
    def log_path(self) -> Path:
        return self.log_dir / "worker.log"

    async def start(self) -> None:
        async with self._lock:
            await self._start()

    async def _start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        before = self._ready_lines()
        log = self.log_path.open("ab")  # noqa: SIM115 - the child owns it once spawned
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.command, cwd=str(PROJECT_ROOT), env=self.env, stdout=log, stderr=log,
                start_new_session=True)
        finally:
            log.close()
        self.starts += 1
        self._expected_exit = False
        for _ in range(600):
            if self._ready_lines() > before:
                return
            if self.proc.returncode is not None:
                raise RuntimeError(f"worker exited at start ({self.proc.returncode}); see "
                                   f"{self.log_path}:\n{self.tail()}")
            await asyncio.sleep(0.05)
        raise RuntimeError(f"worker not ready after 30 s; see {self.log_path}:\n{self.tail()}")

    def _ready_lines(self) -> int:
        if not self.log_path.exists():
            return 0
        return self.log_path.read_text(errors="replace").count(READY)

    def tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def kill(self) -> None:
        async with self._lock:
            await self._kill()

    async def _kill(self) -> None:
        """kill -9: no cleanup, no graceful shutdown, in-flight tasks lost."""
        if self.proc is None or not self.alive:
            return
        self._expected_exit = True
        os.kill(self.proc.pid, signal.SIGKILL)
        await self.proc.wait()
        self.kills += 1

    async def restart(self) -> None:
        """kill -9, then a fresh process (started whether or not one was running)."""
        async with self._lock:
            await self._kill()
            await self._start()

    def supervise(self) -> None:
        """Restart the worker whenever it dies on its own."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(0.1)
                async with self._lock:
                    if self.paused or self.proc is None or self.proc.returncode is None:
                        continue
                    if not self._expected_exit:
                        self.deaths += 1
                    try:
                        await self._start()
                    except RuntimeError:  # e.g. its database restarting: try again
                        self._expected_exit = True  # the same death, not a new one
                        await asyncio.sleep(1.0)

        self._supervisor = asyncio.create_task(loop())

    async def stop(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        if self.proc is not None and self.alive:
            self._expected_exit = True
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                os.kill(self.proc.pid, signal.SIGKILL)
                await self.proc.wait()
