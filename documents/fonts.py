"""The Chinese fonts the letters are set in, and the check the renderer makes before it
renders: WeasyPrint falls back silently, so a letter without them shows boxes (tofu)
where the Chinese should be. `devstack.fonts.ensure_cjk_fonts` installs them."""

from __future__ import annotations

import shutil
import subprocess

NOTO_CJK_PACKAGE = "fonts-noto-cjk"
# The families documents/templates/notices/base.html.j2 names: a serif for the text (the
# role of 宋体/仿宋 in an official letter), a sans for the letterhead and headings.
CJK_FONT_FAMILIES = ("Noto Serif CJK SC", "Noto Sans CJK SC")


def chinese_font_families() -> set[str] | None:
    """The families fontconfig lists for Chinese (`fc-list :lang=zh`); None without fc-list."""
    if shutil.which("fc-list") is None:
        return None
    found = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True,
                           check=False)
    return {name.strip() for line in found.stdout.splitlines() for name in line.split(",")
            if name.strip()}


def cjk_font_problem() -> str | None:
    """None if the letters' Chinese fonts are installed, else one line saying what to do."""
    families = chinese_font_families()
    if families is None:
        return (f"fontconfig's fc-list is missing: install fontconfig and {NOTO_CJK_PACKAGE} "
                "(python -m devstack.prepare) before rendering notices")
    missing = [f for f in CJK_FONT_FAMILIES if f not in families]
    if missing:
        return (f"the Chinese font {', '.join(missing)} is missing (fc-list :lang=zh): "
                f"install {NOTO_CJK_PACKAGE} (python -m devstack.prepare, or apt-get install "
                f"{NOTO_CJK_PACKAGE}); a notice is never rendered in boxes")
    return None
