"""What the Chromium page tests share (the `browser` fixture is in conftest): the page's
text, the leak check and the screenshots they save under test-output/ (to be looked at)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

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
