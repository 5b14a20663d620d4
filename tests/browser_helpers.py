"""What the Chromium page tests share (the `browser` fixture is in conftest): the page's
text, the leak check and the screenshots they save under test-output/ (to be looked at)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from axe_playwright_python.async_playwright import Axe
from playwright.async_api import BrowserContext, Page

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


SIGN_IN_WAIT_MS = 30_000


async def staff_sign_in(context: BrowserContext, url: str, person: str, password: str,
                        target: str) -> Page:
    """A new page that asks for the staff page `target`, is sent to the sign-in page
    (?next=), signs in there as `person` and lands back on `target`."""
    page = await context.new_page()
    await sign_in_on(page, url, person, password, target)
    return page


async def sign_in_on(page: Page, url: str, person: str, password: str, target: str) -> None:
    """`staff_sign_in` on a page already open (signed out)."""
    await page.goto(f"{url}{target}")
    await page.wait_for_url(re.compile(r"/signin\?next="), timeout=SIGN_IN_WAIT_MS)
    await page.get_by_label("人员编号").fill(person)
    await page.get_by_label("密码").fill(password)
    await page.get_by_role("button", name="登录", exact=True).click()
    await page.wait_for_url(f"{url}{target}", timeout=SIGN_IN_WAIT_MS)


async def petitioner_sign_in(context: BrowserContext, url: str, number: str,
                             code: str) -> Page:
    """A new page on /track signed in with the case's number and query code."""
    page = await context.new_page()
    await page.goto(f"{url}/track")
    await page.get_by_label("信访事项编号").fill(number)
    await page.get_by_label("查询码").fill(code)
    await page.get_by_role("button", name="查询").click()
    await page.wait_for_url(f"{url}/track/case", timeout=SIGN_IN_WAIT_MS)
    return page
