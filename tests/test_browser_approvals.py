"""Issue 15, part 2: the unit head's approvals queue and bulk reassignment, in headless
Chromium against the Temporal dev server, a real worker and the petition service.

The head of 云州市信访局 signs in, sees a handler's extension request in /approvals (the
case, who asked, since when in Beijing time, the days, the reason), an assistance
application within the head's limit (the one above it is the leader's, and only in the
leader's queue) and a joint petition to contract to a leader; approves the extension and
sees it leave the queue with a notice. A handler opening /approvals is told, in Chinese,
that the queue is for unit heads and leaders. Then the head moves one handler's open
cases to another through /approvals/reassign (choose, check the count, confirm) and
follows the progress page to its final count. Every page is checked by axe-core (WCAG
2.1 AA), in Chinese and in English.

Screenshots go to test-output/approvals-*.png and reassign-*.png; their paths are printed.
"""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page

from adapters.batch_reassign import BatchReassigner
from adapters.petition_client import PetitionClient
from domain.models import (
    Accept,
    Actor,
    Assign,
    RequestAssistance,
    RequestExtension,
    Role,
)
from service.accounts_cmd import set_password
from tests.browser_helpers import (
    assert_accessible,
    assert_no_leak,
    page_text,
    screenshot,
    staff_sign_in,
)
from tests.conftest import make_intake
from tests.service_helpers import PASSWORD, running_service

pytestmark = pytest.mark.servers  # Chromium and the Temporal dev server

UNIT = "YZ-XFJ"
HEAD, H1, H2 = f"{UNIT}.head", f"{UNIT}.h1", f"{UNIT}.h2"
LEADER = "YZ-LDR1"  # the supervising leader of 云州市信访局
HEAD_NAME, H1_NAME, H2_NAME = "苏永刚", "史雪梅", "林卫东"
REASON = "需调取外地企业工资流水，协调人社部门联合核查"
WAIT_MS = 30_000
LEAKS = ("Traceback", "Exception", "problem", "detail", "token", "null", "None",
         "Internal Server Error", "KeyError", "petition-", "in_handling", "registered",
         "decide_extension", "reassign-", "unit_head", ".h1", ".h2", ".head", "-LDR")


def _actor(person: str, role: Role = Role.HANDLER) -> Actor:
    return Actor(id=person, role=role, unit=UNIT)


def _rid() -> str:
    return f"t-{uuid.uuid4().hex}"


async def _context(browser: Browser) -> BrowserContext:
    return await browser.new_context(locale="zh-CN", viewport={"width": 1100, "height": 900})


async def _sign_in(context: BrowserContext, url: str, person: str, target: str) -> Page:
    return await staff_sign_in(context, url, person, PASSWORD, target)


async def _checked(page: Page, name: str, shots: list[Path]) -> str:
    """Screenshot, accessibility, nothing technical on the page; its text."""
    await screenshot(page, name, shots)
    await assert_accessible(page, name)
    text = await page_text(page)
    assert_no_leak(text, LEAKS)
    return text


async def test_unit_head_approves_and_reassigns_in_the_browser(
        sessions, browser, dev_env, running_worker, task_queue, petitions, capsys) -> None:
    shots: list[Path] = []
    client = dev_env.client
    cases = PetitionClient(client, task_queue)
    head = _actor(HEAD, Role.UNIT_HEAD)
    for person in (HEAD, H1, LEADER):
        await set_password(sessions, person, PASSWORD)
    async with running_worker(client), running_service(sessions, client, task_queue) as url:
        async def opened(persons: int = 1) -> tuple[str, str]:
            status = await cases.submit(make_intake(unit=UNIT, persons=persons))
            petitions.track(cases.handle(status.workflow_id))
            await cases.act(status.workflow_id, Assign(actor=head, handler_id=H1,
                                                       request_id=_rid()))
            assert status.registration_no
            return status.workflow_id, status.registration_no

        # A case in handling whose handler asks for 20 more days, one asking for assistance,
        # a joint petition without a leader, and two plain cases of the same handler.
        extension_case, extension_no = await opened()
        await cases.act(extension_case, Accept(actor=_actor(H1), request_id=_rid()))
        await cases.act(extension_case, RequestExtension(
            actor=_actor(H1), days=20, reason=REASON, request_id=_rid()))
        assistance_case, assistance_no = await opened()
        await cases.act(assistance_case, Accept(actor=_actor(H1), request_id=_rid()))
        await cases.act(assistance_case, RequestAssistance(
            actor=_actor(H1), kind="hardship", amount_yuan=Decimal("8000.00"), persons=2,
            reason="家庭生活困难，子女就学", request_id=_rid()))
        large_case, large_no = await opened()  # above the unit head's limit: the leader's
        await cases.act(large_case, Accept(actor=_actor(H1), request_id=_rid()))
        await cases.act(large_case, RequestAssistance(
            actor=_actor(H1), kind="judicial", amount_yuan=Decimal("60000.00"), persons=1,
            reason="工伤致残，医疗费用无力承担", request_id=_rid()))
        _joint_case, joint_no = await opened(persons=6)
        await opened()
        await opened()

        context = await _context(browser)
        try:
            page = await _sign_in(context, url, HEAD, "/approvals")
            text = await _checked(page, "approvals-queue", shots)
            extension = page.locator(f"article[data-kind=extension][data-no='{extension_no}']")
            await extension.wait_for(timeout=WAIT_MS)
            card = await extension.inner_text()
            for expected in (extension_no, "延期申请", H1_NAME, "20天", REASON, "年"):
                assert expected in card, (expected, card)
            assistance = page.locator(f"article[data-kind=assistance][data-no='{assistance_no}']")
            card = await assistance.inner_text()
            for expected in ("救助申请", "8,000.00 元", "生活困难救助", "家庭生活困难"):
                assert expected in card, (expected, card)
            assert await page.locator(f"article[data-no='{large_no}']").count() == 0
            assert joint_no in await page.locator("#contract").inner_text()
            assert "集体访6人" in text
            assert await extension.get_by_role("link", name=extension_no).get_attribute(
                "href") == f"/workbench/cases/{extension_no}"

            await extension.get_by_label("告知信访人的理由").fill("需协调外地部门核查")
            await extension.get_by_role("button", name="批准延期").click()
            await page.wait_for_selector("#notice", timeout=WAIT_MS)
            assert f"已批准 {extension_no} 的延期申请。" in await page.inner_text("#notice")
            assert await page.locator(f"article[data-no='{extension_no}']").count() == 0
            await _checked(page, "approvals-approved", shots)
            status = await cases.status(extension_case)
            assert status.extension_days == 20

            await page.goto(f"{url}/lang/en?next=/approvals")
            english = await _checked(page, "approvals-en", shots)
            assert "Waiting on my decision" in english and "Assistance application" in english
            await page.goto(f"{url}/lang/zh?next=/approvals")

            # Bulk reassignment: every open case of 史雪梅 to 林卫东.
            batch = BatchReassigner(client)
            held = await _held_open(batch, 6)  # all six cases above
            await page.get_by_role("link", name="批量转办").last.click()
            await page.wait_for_url(f"{url}/approvals/reassign", timeout=WAIT_MS)
            await _checked(page, "reassign-choose", shots)
            await page.get_by_label("移出案件的承办人").select_option(H1)
            await page.get_by_label("接手的承办人").select_option(H2)
            await page.get_by_role("button", name="下一步：核对").click()
            await page.wait_for_selector("#confirm", timeout=WAIT_MS)
            confirm = await page.inner_text("#confirm-text")
            assert confirm == f"{H1_NAME}名下共有{held}件在办案件，将全部转给{H2_NAME}。"
            await _checked(page, "reassign-confirm", shots)
            await page.get_by_role("button", name=f"确认转办{held}件").click()
            await page.wait_for_url(f"{url}/approvals/reassign/reassign-*", timeout=WAIT_MS)
            for _ in range(30):
                if await page.locator("#final").count():
                    break
                await page.get_by_role("link", name="刷新进度").click()
                await page.wait_for_load_state()
            final = await page.inner_text("#final")
            assert final == f"转办完成：{held}件案件已由{H1_NAME}转给{H2_NAME}。", final
            assert await page.inner_text("#moved") == str(held)
            progress = await _checked(page, "reassign-progress", shots)
            assert HEAD_NAME in progress
            for workflow_id in (extension_case, assistance_case):
                assert (await cases.status(workflow_id)).handler_id == H2
            await page.goto(f"{url}/lang/en?next={page.url.removeprefix(url)}")
            english = await _checked(page, "reassign-progress-en", shots)
            assert f"Done: {held} cases moved" in english
            await page.goto(f"{url}/lang/zh?next=/approvals")
        finally:
            await context.close()

        # The leader's queue holds the application above the unit head's limit.
        context = await _context(browser)
        try:
            page = await _sign_in(context, url, LEADER, "/approvals")
            await _checked(page, "approvals-leader", shots)
            large = page.locator(f"article[data-kind=assistance][data-no='{large_no}']")
            card = await large.inner_text()
            for expected in ("60,000.00 元", "司法救助", "超过单位负责人审批额度", "工伤致残"):
                assert expected in card, (expected, card)
            assert await page.locator(f"article[data-no='{assistance_no}']").count() == 0
        finally:
            await context.close()

        # A handler is told, in Chinese, whose queue this is.
        context = await _context(browser)
        try:
            page = await _sign_in(context, url, H1, "/approvals")
            text = await _checked(page, "approvals-handler", shots)
            assert "审批事项仅供单位负责人和包案领导使用" in text
        finally:
            await context.close()
    with capsys.disabled():
        print("\nscreenshots:", *(str(p) for p in shots), sep="\n  ")


async def _held_open(batch: BatchReassigner, expected: int) -> int:
    """Wait until visibility finds the handler's open cases (it lags a little)."""
    for _ in range(200):
        if await batch.count(UNIT, H1) == expected:
            return expected
        await asyncio.sleep(0.2)
    raise AssertionError(f"visibility never counted {expected} cases of {H1}")
