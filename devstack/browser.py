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


# Pages and notices are in Chinese: without a CJK font a screenshot shows boxes.
CJK_FONT_PACKAGE = "fonts-wqy-microhei"


def _has_chinese_font() -> bool:
    if shutil.which("fc-list") is None:
        return Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc").is_file()
    found = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True,
                           check=False)
    return bool(found.stdout.strip())


def ensure_chromium() -> str:
    """The path of a usable Chromium with a Chinese font, installing the Debian packages if
    needed."""
    path = chromium_path()
    missing = []
    if not (path.is_file() and os.access(path, os.X_OK)):
        if path != DEFAULT_CHROMIUM:
            raise ProvisioningError(f"PETITION_CHROMIUM={path} is not an executable file")
        missing.append("chromium")
    if not _has_chinese_font():
        missing.append(CJK_FONT_PACKAGE)
    if not missing:
        return str(path)
    if shutil.which("apt-get") is None:
        raise ProvisioningError(
            f"{' and '.join(missing)} missing and apt-get is not available: install them "
            "(and set PETITION_CHROMIUM to Chromium's binary)")
    result = _apt_get("install", "-y", *missing)
    if result.returncode != 0:
        # A fresh container has no package lists yet: fetch them once, then try again.
        update = _apt_get("update")
        if update.returncode == 0:
            result = _apt_get("install", "-y", *missing)
    if result.returncode != 0 or not path.is_file():
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise ProvisioningError(f"apt-get install {' '.join(missing)} failed: "
                                + " | ".join(tail))
    return str(path)
