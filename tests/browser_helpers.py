"""What the Chromium page tests share (the `browser` fixture is in conftest): the page's
text, the leak check and the screenshots they save under test-output/ (to be looked at)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Page

OUTPUT = Path(__file__).resolve().parent.parent / "test-output"


async def page_text(page: Page) -> str:
    return " ".join((await page.inner_text("body")).split())


def assert_no_leak(text: str, leaks: Iterable[str]) -> None:
    for leak in leaks:
        assert leak not in text, (leak, text)


async def screenshot(page: Page, name: str, shots: list[Path]) -> None:
    """test-output/<name>.png, the whole page; its path kept to be printed."""
    OUTPUT.mkdir(exist_ok=True)
    path = OUTPUT / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    shots.append(path)


# The WCAG 2.1 A and AA rules of axe-core (bundled by axe-playwright-python).
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
BLOCKING = ("serious", "critical")


async def assert_accessible(page: Page, name: str) -> list[dict[str, Any]]:
    """axe-core on the page as it is now: no serious or critical WCAG 2.1 A/AA violation.
    Returns the lesser violations (moderate, minor) for the caller to print."""
    results = await Axe().run(page, options={"runOnly": {"type": "tag", "values": WCAG_TAGS},
                                             "resultTypes": ["violations"]})
    violations: list[dict[str, Any]] = results.response["violations"]
    blocking = [f"{v['id']} ({v['impact']}): {v['help']} at "
                f"{[n['target'] for n in v['nodes']][:5]}"
                for v in violations if v.get("impact") in BLOCKING]
    assert not blocking, f"accessibility of {name}:\n" + "\n".join(blocking)
    return [v for v in violations if v.get("impact") not in BLOCKING]
