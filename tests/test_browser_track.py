"""Issue 15, first piece: the petitioner's progress page (service/pages_track.py), driven in
headless Chromium against the live Temporal dev server and a real worker.

A petition registered through the API by an intake client; the petitioner opens /track,
a wrong query code answers a Chinese error (the same for an unknown number); the right one
lands on /track/case with the stage in words, the holding unit's Chinese name, the
deadlines as Beijing dates and the registration notice with its letter. On a phone-sized
screen too. Repeated wrong codes lock the query, in Chinese.

Screenshots go to test-output/track-*.png; their paths are printed.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from playwright.async_api import BrowserContext, Page
from sqlalchemy import select

from adapters.tables import Notice, Petition, Unit
from service.pages_track import TRACK_COOKIE, deadline_date
from tests.browser_helpers import assert_no_leak, page_text, petitioner_sign_in, screenshot
from tests.conftest import make_intake
from tests.service_helpers import running_service
from tests.test_service import client_token

pytestmark = pytest.mark.servers  # Chromium and the Temporal dev server

UNIT = "QS-XFJ"
WAIT_MS = 20_000
BAD_CODE = "信访事项编号或查询码不正确"
LEAKS = ("Traceback", "Exception", "problem", "detail", "invalid", "token", "null", "None",
         "Internal Server Error", "KeyError", "petition-", "registered", "in_handling",
         "handler", "acceptance", "routing", ".h1", ".head")




async def _text(page: Page) -> str:
    return await page_text(page)


def _no_leak(text: str) -> None:
    assert_no_leak(text, LEAKS)


async def _shot(page: Page, name: str, shots: list[Path]) -> None:
    await screenshot(page, f"track-{name}", shots)


async def _submit(page: Page, url: str, number: str, code: str) -> int:
    await page.get_by_label("信访事项编号").fill(number)
    await page.get_by_label("查询码").fill(code)
    async with page.expect_response(f"{url}/track") as posted:
        await page.get_by_role("button", name="查询").click()
    await page.wait_for_load_state()
    return (await posted.value).status


async def _registration_notice(sessions, number: str) -> None:
    """The workflow writes the registration notice by an activity: wait for it."""
    for _ in range(150):
        async with sessions() as session:
            found = await session.scalar(
                select(Notice.id).join(Petition, Petition.id == Notice.petition_id)
                .where(Petition.registration_no == number,
                       Notice.recipient_kind == "petitioner",
                       Notice.facts_sealed.is_not(None)))
        if found is not None:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"no registration notice for {number}")


async def _sign_in(context: BrowserContext, url: str, number: str, code: str) -> Page:
    return await petitioner_sign_in(context, url, number, code)


async def test_petitioner_follows_the_case_on_the_track_page(
        sessions, browser, dev_env, running_worker, task_queue, petitions, capsys) -> None:
    shots: list[Path] = []
    async with sessions() as session:
        unit_name = str(await session.scalar(select(Unit.name).where(Unit.code == UNIT)))
    unit_zh = re.split(r"\s+(?=[\x00-\x7f]+$)", unit_name)[0]
    async with running_worker(dev_env.client), \
            running_service(sessions, dev_env.client, task_queue) as url, \
            httpx.AsyncClient(base_url=url, timeout=60) as http:
        headers = await client_token(http, sessions, [UNIT])
        answer = await http.post("/api/v1/petitions", headers=headers,
                                 json=make_intake(unit=UNIT).model_dump(mode="json"))
        assert answer.status_code == 201, answer.text
        registered = answer.json()
        petitions.track(dev_env.client.get_workflow_handle(registered["workflow_id"]))
        number, code = registered["registration_no"], registered["query_code"]
        await _registration_notice(sessions, number)
        # What the API says of the case: the page's dates are these deadlines in Beijing.
        signed = await http.post("/auth/petitioner",
                                 json={"registration_no": number, "query_code": code})
        bearer = {"Authorization": f"Bearer {signed.json()['access_token']}"}
        status = (await http.get(f"/api/v1/petitions/{number}", headers=bearer)).json()
        assert status["clocks"], status
        # ... dated as the letters date them (a deadline at 24:00: its last day).
        due_dates = [deadline_date(datetime.fromisoformat(c["due_at"]))
                     for c in status["clocks"]]

        context = await browser.new_context(locale="zh-CN",
                                            viewport={"width": 900, "height": 760})
        try:
            page = await context.new_page()
            opened = await page.goto(f"{url}/track")
            assert opened is not None and opened.status == 200
            assert await page.get_attribute("html", "lang") == "zh-CN"
            text = await _text(page)
            assert "信访事项办理进度查询" in text and "查询码" in text
            await _shot(page, "form", shots)

            # A wrong code, and an unknown number: the same Chinese error, no session.
            assert await _submit(page, url, number, "AAAAAAAA") == 401
            alert = await page.get_by_role("alert").inner_text()
            assert BAD_CODE in alert
            assert await page.get_by_label("信访事项编号").input_value() == number
            _no_leak(await _text(page))
            await _shot(page, "wrong-code", shots)
            assert await _submit(page, url, "QS-XFJ-2026-999999", code) == 401
            assert BAD_CODE in await page.get_by_role("alert").inner_text()
            assert TRACK_COOKIE not in {c["name"] for c in await context.cookies()}

            # The right one (typed in lower case with a space): the progress page.
            await page.get_by_label("信访事项编号").fill(number)
            await page.get_by_label("查询码").fill(f"{code[:4].lower()} {code[4:].lower()}")
            await page.get_by_role("button", name="查询").click()
            await page.wait_for_url(f"{url}/track/case", timeout=WAIT_MS)
            cookie = next(c for c in await context.cookies() if c["name"] == TRACK_COOKIE)
            assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
            assert cookie["path"] == "/track"
            text = await _text(page)
            assert await page.inner_text("#registration-no") == number
            assert await page.inner_text("#stage") == "已登记"
            assert await page.inner_text("#unit") == unit_zh
            deadlines = await page.inner_text("#deadlines")
            for day in due_dates:
                assert day in deadlines, (day, deadlines)
            assert "北京时间" in text
            notices = await page.inner_text("#notices")
            assert "登记告知书" in notices
            # Unit codes only inside the registration number, never on their own.
            assert UNIT not in text.replace(number, "")
            _no_leak(text)
            await _shot(page, "case", shots)

            # The letter, through the page's route with the cookie session.
            link = page.get_by_role("link", name=re.compile("下载登记告知书"))
            href = await link.get_attribute("href")
            assert href is not None and href.startswith("/track/notices/")
            letter = await context.request.get(f"{url}{href}")
            assert letter.status == 200
            assert letter.headers["content-type"] == "application/pdf"
            assert (await letter.body()).startswith(b"%PDF")
            # Another notice id is not this petitioner's: a Chinese page, no letter.
            other = await context.request.get(f"{url}/track/notices/999999999.pdf")
            assert other.status == 404 and "未找到该告知书" in await other.text()

            # Signing out ends the session.
            await page.get_by_role("button", name="退出查询").click()
            await page.wait_for_url(f"{url}/track", timeout=WAIT_MS)
            gone = await page.goto(f"{url}/track/case")
            assert gone is not None and gone.status == 401
            assert "请先输入查询码" in await _text(page)
        finally:
            await context.close()

        # On a phone.
        phone = await browser.new_context(locale="zh-CN", viewport={"width": 390, "height": 844},
                                          device_scale_factor=2, is_mobile=True, has_touch=True)
        try:
            page = await phone.new_page()
            await page.goto(f"{url}/track")
            await _shot(page, "phone-form", shots)
            page = await _sign_in(phone, url, number, code)
            assert await page.inner_text("#stage") == "已登记"
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, width  # no sideways scrolling
            await _shot(page, "phone-case", shots)

            # Lockout: three wrong codes in a row, then even the right one is refused.
            await page.goto(f"{url}/track")
            for _ in range(3):
                assert await _submit(page, url, number, "BBBBBBBB") == 401
            assert await _submit(page, url, number, code) == 401
            text = await _text(page)
            assert "已暂时锁定" in text and "分钟后再试" in text
            _no_leak(text)
            await _shot(page, "phone-locked", shots)
        finally:
            await phone.close()
    with capsys.disabled():
        print("\n[browser track] " + " ".join(str(p) for p in shots))
