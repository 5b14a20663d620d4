"""The Chinese fonts of the written notices (documents/): Debian's Noto CJK, never a download.

`ensure_cjk_fonts()` is idempotent: it answers the font families when fontconfig knows them
and installs the `fonts-noto-cjk` package with apt-get only when they are missing, as
`devstack.browser.ensure_chromium` does for Chromium. `python -m devstack.prepare` calls it,
so `make test` provisions it (with a timing) before the run.

The renderer's own check (documents.fonts.cjk_font_problem) refuses to render without
them: a PDF rendered without the font shows boxes (tofu) and nothing fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from devstack.temporal_cli import ProvisioningError
from documents.fonts import CJK_FONT_FAMILIES, NOTO_CJK_PACKAGE, cjk_font_problem

__all__ = ["CJK_FONT_FAMILIES", "NOTO_CJK_PACKAGE", "cjk_font_problem", "ensure_cjk_fonts"]

APT_TIMEOUT_SECONDS = 1800


def _apt_get(*args: str) -> subprocess.CompletedProcess[str]:
    command = ["apt-get", "-o", "DPkg::Lock::Timeout=300", *args]
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            raise ProvisioningError(
                f"the notices' Chinese fonts are missing and this user cannot install them: "
                f"run `sudo apt-get install -y {NOTO_CJK_PACKAGE}`")
        command = ["sudo", "-n", *command]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(command, env=env, capture_output=True, text=True,
                          timeout=APT_TIMEOUT_SECONDS, check=False)


def ensure_cjk_fonts() -> str:
    """The notices' font families, installing Debian's fonts-noto-cjk if they are missing."""
    if cjk_font_problem() is None:
        return ", ".join(CJK_FONT_FAMILIES)
    if shutil.which("apt-get") is None:
        raise ProvisioningError(f"{NOTO_CJK_PACKAGE} missing and apt-get is not available: "
                                f"install it (and fontconfig) by hand")
    packages = (NOTO_CJK_PACKAGE, "fontconfig")
    result = _apt_get("install", "-y", "--no-install-recommends", *packages)
    # A fresh container has no package lists yet: fetch them once, then try again.
    if result.returncode != 0 and _apt_get("update").returncode == 0:
        result = _apt_get("install", "-y", "--no-install-recommends", *packages)
    if result.returncode == 0 and shutil.which("fc-cache") is not None:
        subprocess.run(["fc-cache"], capture_output=True, check=False)
    problem = cjk_font_problem()
    if result.returncode != 0 or problem is not None:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise ProvisioningError(f"apt-get install {NOTO_CJK_PACKAGE} failed: "
                                + (" | ".join(tail) if result.returncode else str(problem)))
    return ", ".join(CJK_FONT_FAMILIES)
