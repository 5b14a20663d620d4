"""Issue 15: one petition through every face, in Chromium, against the live Temporal dev
server, a real worker and the service; nothing done through the API or the client.

1. A supervisor of the county petition bureau opens the dashboard: this month's figures
   of the county, by territory, read off the Human Resources and Social Security Bureau's
   column.
2. A petitioner submits online on a phone and keeps the receipt's number and query code.
3. The bureau's handler finds the case in the workbench inbox, accepts it and asks for an
   extension of 10 days, through the generated forms.
4. The unit head approves the extension in the approvals queue.
5. The handler replies with the handling opinion.
6. The petitioner opens /track with the receipt, rates the answer 基本满意 and asks the
   city department for review.
7. The supervisor reloads the dashboard: the registered and rated counts have each moved
   by one, and the rated figure's drill-down lists the case.

Each page is screenshotted (test-output/e2e-*.png), checked for leaks and scanned by axe.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import BrowserContext, Page
from sqlalchemy import select

from adapters.tables import Petition, PetitionEvent
from service import pages_intake
from service.accounts_cmd import add_intake_client, set_password
from tests.browser_helpers import (
    assert_accessible,
    assert_no_leak,
    page_text,
    petitioner_sign_in,
    screenshot,
    staff_sign_in,
)
from tests.service_helpers import PASSWORD, running_service

pytestmark = pytest.mark.servers  # Chromium and the Temporal dev server

UNIT, UNIT_ZH = "QS-HRSS", "青山县人力资源和社会保障局"
REVIEW_ORGAN_ZH = "云州市人力资源和社会保障局"
HANDLER, HEAD, SUPERVISOR = "QS-HRSS.h1", "QS-HRSS.head", "QS-XFJ.sup"
WAIT_MS = 30_000
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2,
         "is_mobile": True, "has_touch": True}
DESK = {"viewport": {"width": 1280, "height": 900}}
LEAKS = ("Traceback", "Exception", "Internal Server Error", "None", "null", "petition-",
         "in_handling", "under_review", "basically_satisfied", "request_extension")
# A fictional petitioner (the ID number's check character is right).
PETITIONER = {"姓名": "赵小青", "身份证号码": "11010519491231002X", "联系电话": "139 2345 6789",
              "通讯地址": "青山县西街8号", "事项标题": "某厂拖欠工资两个月",
              "信访内容": "本人在青山县某厂务工，工厂拖欠两个月工资，请求督促支付。"}


class Looked:
    """Every page looked at: no technical words, a screenshot, axe-core."""

    def __init__(self) -> None:
        self.shots: list[Path] = []

    async def at(self, page: Page, name: str) -> str:
        text = await page_text(page)
        assert_no_leak(text, LEAKS)
        await screenshot(page, f"e2e-{name}", self.shots)
        await assert_accessible(page, name)
        return text


def _cell(page: Page, figure: str):  # noqa: ANN202 - a Locator
    return page.locator(f"td[data-row^='{UNIT}:'][data-figure='{figure}']").first


async def _dashboard(page: Page, url: str, period: str) -> dict[str, int]:
    """The department's registered count, and its satisfaction rate's parts (content of
    rated; a rate with no rated case shows no parts)."""
    await page.goto(f"{url}/dashboard?unit=QS-XFJ&period={period}&by=territory")
    registered = int(await _cell(page, "registered").get_attribute("data-value") or "0")
    parts = _cell(page, "satisfaction").locator(".detail")
    content, rated = (map(int, (await parts.inner_text()).split("/"))
                      if await parts.count() else (0, 0))
    return {"registered": registered, "content": content, "rated": rated}


async def _submit_online(phone: BrowserContext, url: str, looked: Looked) -> tuple[str, str]:
    page = await phone.new_page()
    await page.goto(f"{url}/petition")
    await page.get_by_label("受理单位").select_option(label=UNIT_ZH)
    await page.get_by_label("问题类别").select_option(label="拖欠工资")
    for label, value in PETITIONER.items():
        await page.get_by_label(label).fill(value)
    await looked.at(page, "petitioner-form")
    await page.get_by_role("button", name="提交", exact=True).click()
    await page.locator("#query-code").wait_for(timeout=WAIT_MS)
    number = await page.inner_text("#registration-no")
    code = (await page.inner_text("#query-code")).replace(" ", "")
    assert number.startswith(f"{UNIT}-")
    await looked.at(page, "petitioner-receipt")
    await page.close()
    return number, code


async def _open_case(page: Page, url: str, number: str) -> None:
    await page.goto(f"{url}/workbench")
    for _ in range(60):  # the read model is written by an activity
        if await page.get_by_role("link", name=number).count():
            break
        await asyncio.sleep(0.5)
        await page.reload()
    await page.get_by_role("link", name=number).click()
    await page.wait_for_url(f"{url}/workbench/cases/{number}", timeout=WAIT_MS)


async def _act(page: Page, action: str, title: str, fields: dict[str, str]) -> None:
    await page.locator(f"#action-{action} > summary").click()
    for label, value in fields.items():
        await page.get_by_label(label).fill(value)
    await page.get_by_role("button", name=f"提交：{title}").click()
    await page.wait_for_load_state()


async def _stage(sessions, number: str) -> str:
    async with sessions() as session:
        row = await session.scalar(select(Petition).where(Petition.registration_no == number))
    assert row is not None
    return row.stage


async def _until_stage(sessions, number: str, stage: str) -> None:
    for _ in range(100):
        if await _stage(sessions, number) == stage:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{number} never reached {stage}: {await _stage(sessions, number)}")


async def test_one_petition_through_every_face(
        sessions, browser, dev_env, running_worker, task_queue, petitions, monkeypatch,
        capsys) -> None:
    client_id = f"portal-{uuid.uuid4().hex[:8]}"
    await add_intake_client(sessions, client_id, "网上信访平台", [UNIT])
    monkeypatch.setenv("PETITION_SERVICE_PORTAL_CLIENT", client_id)
    pages_intake.portal_settings.cache_clear()
    for person in (HANDLER, HEAD, SUPERVISOR):
        await set_password(sessions, person, PASSWORD)
    period = datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
    looked = Looked()
    try:
        async with running_worker(dev_env.client), \
                running_service(sessions, dev_env.client, task_queue) as url:
            contexts = {name: await browser.new_context(locale="zh-CN", **options)
                        for name, options in (("petitioner", PHONE), ("handler", DESK),
                                              ("head", DESK), ("supervisor", DESK))}
            try:
                await _walk(contexts, url, period, sessions, petitions, dev_env, looked)
            finally:
                for context in contexts.values():
                    await context.close()
    finally:
        pages_intake.portal_settings.cache_clear()
    with capsys.disabled():
        print("\n[end to end] " + " ".join(str(p) for p in looked.shots))


async def _walk(contexts: dict[str, BrowserContext], url: str, period: str, sessions,
                petitions, dev_env, looked: Looked) -> None:
    # 1. The supervisor's figures before.
    supervisor = await staff_sign_in(contexts["supervisor"], url, SUPERVISOR, PASSWORD,
                                     "/dashboard")
    before = await _dashboard(supervisor, url, period)
    await looked.at(supervisor, "dashboard-before")

    # 2. The petitioner submits online.
    number, code = await _submit_online(contexts["petitioner"], url, looked)
    async with sessions() as session:
        workflow_id = await session.scalar(select(Petition.workflow_id).where(
            Petition.registration_no == number))
    assert workflow_id is not None
    petitions.track(dev_env.client.get_workflow_handle(workflow_id))

    # 3. The handler accepts it and asks for 10 more days.
    handler = await staff_sign_in(contexts["handler"], url, HANDLER, PASSWORD, "/workbench")
    await _open_case(handler, url, number)
    await looked.at(handler, "handler-case")
    await _act(handler, "accept", "受理", {})
    assert "已受理" in await page_text(handler)
    await _until_stage(sessions, number, "in_handling")
    await _act(handler, "request-extension", "申请延长办理期限",
               {"延期天数": "10", "申请延期的理由": "需要调取工厂考勤记录"})
    await looked.at(handler, "handler-extension-asked")

    # 4. The unit head approves it.
    head = await staff_sign_in(contexts["head"], url, HEAD, PASSWORD, "/approvals")
    asked = head.locator(f"article[data-kind=extension][data-no='{number}']")
    await asked.wait_for(timeout=WAIT_MS)
    assert "10" in await asked.inner_text()
    await looked.at(head, "head-approvals")
    await asked.get_by_label("告知信访人的理由").fill("需核实工厂考勤记录，延长办理期限")
    await asked.get_by_role("button", name="批准延期").click()
    await head.wait_for_load_state()
    assert await head.locator(f"article[data-no='{number}']").count() == 0
    await looked.at(head, "head-approved")

    # 5. The handler replies: the extended deadline is on the case page first.
    await handler.goto(f"{url}/workbench/cases/{number}")
    assert "已延期" in await page_text(handler) or "延长" in await page_text(handler)
    await _act(handler, "reply", "出具处理意见",
               {"处理意见": "经核查，已责令该厂十日内支付拖欠工资。"})
    await _until_stage(sessions, number, "replied")
    await looked.at(handler, "handler-replied")

    # 6. The petitioner rates and asks for review.
    track = await petitioner_sign_in(contexts["petitioner"], url, number, code)
    assert await track.inner_text("#stage") == "已答复"
    await looked.at(track, "petitioner-track")
    await track.get_by_label("基本满意").check()
    await track.get_by_role("button", name="提交评价").click()
    await track.wait_for_url(f"{url}/track/case?done=rate", timeout=WAIT_MS)
    assert await track.inner_text("#rated") == "基本满意"
    await track.get_by_label("复查机关").select_option(label=REVIEW_ORGAN_ZH)
    await track.get_by_label("请求复查的理由").fill("工厂至今未支付。")
    await track.get_by_role("button", name="提交复查请求").click()
    await track.wait_for_url(f"{url}/track/case?done=review", timeout=WAIT_MS)
    assert await track.inner_text("#stage") == "复查中"
    await looked.at(track, "petitioner-review-requested")
    await _until_stage(sessions, number, "under_review")

    # Each step once in the audit trail, by the person who took it.
    async with sessions() as session:
        events = list(await session.execute(
            select(PetitionEvent.action, PetitionEvent.actor_id).where(
                PetitionEvent.workflow_id == workflow_id, PetitionEvent.accepted)))
    taken = [(action, actor) for action, actor in events]
    for step in (("accept", HANDLER), ("request_extension", HANDLER),
                 ("decide_extension", HEAD), ("reply", HANDLER)):
        assert taken.count(step) == 1, (step, taken)
    assert [a for a, _ in taken].count("rate") == 1
    assert [a for a, _ in taken].count("request_review") == 1

    # 7. The supervisor's figures moved by exactly this case.
    after = before
    for _ in range(60):
        after = await _dashboard(supervisor, url, period)
        if after["rated"] > before["rated"]:
            break
        await asyncio.sleep(0.5)
    assert after["registered"] == before["registered"] + 1, (before, after)
    assert after["rated"] == before["rated"] + 1, (before, after)
    assert after["content"] == before["content"] + 1, (before, after)  # 基本满意 counts
    await looked.at(supervisor, "dashboard-after")
    await _cell(supervisor, "satisfaction").locator("a").click()
    await supervisor.wait_for_url(lambda u: "/dashboard/cases" in u, timeout=WAIT_MS)
    assert number in await page_text(supervisor)
    await looked.at(supervisor, "dashboard-drill-down")
