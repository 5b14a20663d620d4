"""Chromium for the browser test of the Web UI: the Debian package, never a downloaded build.

`ensure_chromium()` is idempotent: it returns the system binary, installing the
`chromium` package with apt-get only when it is missing. `python -m devstack.prepare`
calls it, so CI provisions it before the test run (with a timing), like the Temporal
binaries. Playwright drives the system binary (`executable_path`); its own browser
downloads are never used.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from devstack.temporal_cli import ProvisioningError

__all__ = ["CHROMIUM_ARGS", "chromium_path", "ensure_chromium"]

DEFAULT_CHROMIUM = Path("/usr/bin/chromium")
# Headless, sandbox-free (containers run as root), and quiet: no network calls of its own.
CHROMIUM_ARGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)
APT_TIMEOUT_SECONDS = 1800


def chromium_path() -> Path:
    """`PETITION_CHROMIUM` if set, else the Debian package's /usr/bin/chromium."""
    return Path(os.environ.get("PETITION_CHROMIUM", str(DEFAULT_CHROMIUM)))


def _apt_get(*args: str) -> subprocess.CompletedProcess[str]:
    command = ["apt-get", "-o", "DPkg::Lock::Timeout=300", *args]
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            raise ProvisioningError(
                "Chromium is missing and this user cannot install it: run "
                "`sudo apt-get install -y chromium` (or set PETITION_CHROMIUM)")
        command = ["sudo", "-n", *command]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(command, env=env, capture_output=True, text=True,
                          timeout=APT_TIMEOUT_SECONDS, check=False)


def ensure_chromium() -> str:
    """The path of a usable Chromium, installing the Debian package if needed."""
    path = chromium_path()
    if path.is_file() and os.access(path, os.X_OK):
        return str(path)
    if path != DEFAULT_CHROMIUM:
        raise ProvisioningError(f"PETITION_CHROMIUM={path} is not an executable file")
    if shutil.which("apt-get") is None:
        raise ProvisioningError(
            "Chromium is missing and apt-get is not available: install Chromium and set "
            "PETITION_CHROMIUM to its binary")
    result = _apt_get("install", "-y", "chromium")
    if result.returncode != 0:
        # A fresh container has no package lists yet: fetch them once, then try again.
        update = _apt_get("update")
        if update.returncode == 0:
            result = _apt_get("install", "-y", "chromium")
    if result.returncode != 0 or not path.is_file():
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise ProvisioningError("apt-get install chromium failed: " + " | ".join(tail))
    return str(path)
