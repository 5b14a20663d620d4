"""Issue 15: a supervisor's dashboard in headless Chromium, with the real Temporal Web UI.

Two petitions are registered at Qingshan's HRSS through the real worker (and one at
Baishui's, which no Qingshan view may list). Qingshan's bureau supervisor signs in, opens
/dashboard (this month, Qingshan by territory): the figures and the trend charts; drills
into the petitions registered and finds both with their Beijing dates; follows one's history
link into the Temporal Web UI (the workflow's page); and opens the "open petitions" view,
which lists Qingshan's petitions and not Baishui's. Every page is checked by axe (WCAG 2.1
AA), in Chinese and once in English; screenshots go to test-output/dashboard-*.png.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.async_api import Page

from adapters.petition_client import PetitionClient
from reports.views import saved_views
from service import pages_dashboard
from service.accounts_cmd import set_password
from starter.intake import submit
from tests.browser_helpers import (
    assert_accessible,
    assert_no_leak,
    page_text,
    screenshot,
    sign_in_on,
)
from tests.conftest import make_intake
from tests.service_helpers import running_service
from tests.test_browser_ui import _visible_in_visibility

pytestmark = pytest.mark.servers

SUPERVISOR = "QS-XFJ.sup"
PASSWORD = "dashboard browser test password"
WAIT_MS = 30_000
LEAKS = ("Traceback", "Exception", "None", "null", "in_handling", "registered_at",
         "petition-", "QS-HRSS:", "Internal Server Error")


async def _ui_text(page: Page, wanted: str) -> str:
    await page.get_by_text(wanted).first.wait_for(timeout=WAIT_MS)
    return await page_text(page)


async def test_supervisor_reads_the_dashboard_drills_down_and_opens_the_temporal_ui(
        dev_env, dev_ui_url, running_worker, sessions, task_queue, petitions, browser,
        monkeypatch, capsys):
    monkeypatch.setenv("PETITION_SERVICE_TEMPORAL_UI_URL", dev_ui_url)
    pages_dashboard.dashboard_settings.cache_clear()
    client = dev_env.client
    shots: list[Path] = []
    try:
        async with running_worker(client):
            ours = [await submit(client, sessions, make_intake(unit="QS-HRSS"),
                                 task_queue=task_queue) for _ in range(2)]
            decoy = await submit(client, sessions, make_intake(unit="BS-HRSS"),
                                 task_queue=task_queue)
            acting = PetitionClient(client, task_queue)
            for status in (*ours, decoy):
                petitions.track(acting.handle(status.workflow_id))
            numbers = [str(s.registration_no) for s in ours]
            view = next(v for v in saved_views(["QS-HRSS"]) if v.key == "open")
            assert await _visible_in_visibility(client, view.query, ours[0].workflow_id)
            await set_password(sessions, SUPERVISOR, PASSWORD)

            async with running_service(sessions, client, task_queue) as url:
                context = await browser.new_context(locale="zh-CN",
                                                    viewport={"width": 1280, "height": 900})
                try:
                    page = await context.new_page()
                    await _walk(page, url, numbers, ours[0].workflow_id, decoy.workflow_id,
                                shots)
                finally:
                    await context.close()
    finally:
        pages_dashboard.dashboard_settings.cache_clear()
    with capsys.disabled():
        print("\n[dashboard] screenshots:\n  " + "\n  ".join(str(s) for s in shots))


async def _walk(page: Page, url: str, numbers: list[str], workflow_id: str, decoy: str,
                shots: list[Path]) -> None:
    # Signed out: /dashboard asks for a sign-in and comes back.
    await sign_in_on(page, url, SUPERVISOR, PASSWORD, "/dashboard")

    # The figures of this month, Qingshan by territory, and the two charts.
    await page.get_by_role("heading", name="考核统计", exact=True).wait_for(timeout=WAIT_MS)
    text = await page_text(page)
    for words in ("青山县", "及时受理率", "按期办结率", "群众满意率", "一次性化解率", "趋势",
                  "分单位考核数据", "青山县人力资源和社会保障局", "流程监控视图", "在办信访事项"):
        assert words in text, words
    assert_no_leak(text, LEAKS)
    for chart in ("#trend-rates", "#trend-counts"):
        box = await page.locator(chart).bounding_box()
        assert box is not None and box["width"] > 400 and box["height"] > 150, chart
    assert "比率（%）" in await page.locator("#trend-rates").inner_html()
    registered = page.locator('td[data-row="QS:total"][data-figure="registered"]')
    total = int(await registered.get_attribute("data-value") or 0)
    assert total >= 2
    await screenshot(page, "dashboard-zh", shots)
    await assert_accessible(page, "/dashboard")

    # The petitions registered: both of ours, with their Beijing dates and stage in words.
    await registered.get_by_role("link").click()
    await page.wait_for_url(re.compile(r"/dashboard/cases\?"), timeout=WAIT_MS)
    await page.get_by_role("heading", name="登记信访事项").wait_for(timeout=WAIT_MS)
    assert int(await page.locator("#count").get_attribute("data-count") or -1) == total
    assert await page.locator("tr[data-registration-no]").count() == total
    text = await page_text(page)
    for number in numbers:
        assert number in text
    assert "已登记，待决定是否受理" in text and "年" in text and "月" in text
    assert "青山县人力资源和社会保障局" in text
    assert_no_leak(text.replace(workflow_id, ""), LEAKS)
    await screenshot(page, "dashboard-cases-zh", shots)
    await assert_accessible(page, "/dashboard/cases")

    # English, once: the same pages, translated.
    cases_url = page.url
    await page.get_by_role("link", name="English").click()
    await page.get_by_role("heading", name="Petitions registered").wait_for(timeout=WAIT_MS)
    listed = await page.locator("#cases").inner_text()
    assert "Registered, acceptance to be decided" in listed
    assert not re.search(r"\d+年\d+月", listed)  # dates written the English way
    await screenshot(page, "dashboard-cases-en", shots)
    await assert_accessible(page, "/dashboard/cases in English")
    await page.get_by_role("link", name="Assessment", exact=True).first.click()
    await page.get_by_role("heading", name="Assessment", exact=True).wait_for(timeout=WAIT_MS)
    text = await page_text(page)
    assert "Timely acceptance rate" in text and "Rate (%)" in await page.locator(
        "#trend-rates").inner_html()
    await screenshot(page, "dashboard-en", shots)
    await assert_accessible(page, "/dashboard in English")
    await page.get_by_role("link", name="中文").click()
    await page.get_by_role("heading", name="考核统计", exact=True).wait_for(timeout=WAIT_MS)

    # A case's history in the Temporal Web UI.
    await page.goto(cases_url)
    history = page.locator(f'tr[data-registration-no="{numbers[0]}"] a[data-history]')
    assert (await history.get_attribute("href") or "").startswith(
        f"{pages_dashboard.dashboard_settings().temporal_ui_url}/namespaces/default/workflows/")
    await history.click()
    await page.wait_for_url(re.compile(re.escape(workflow_id)), timeout=WAIT_MS)
    text = await _ui_text(page, workflow_id)
    assert "PetitionWorkflow" in text
    await screenshot(page, "dashboard-temporal-history", shots)

    # A supervisor view: Qingshan's open petitions, filtered in the Temporal Web UI.
    await page.goto(f"{url}/dashboard")
    await page.get_by_role("link", name="在办信访事项").click()
    await page.wait_for_url(re.compile(r"/namespaces/default/workflows\?query="),
                            timeout=WAIT_MS)
    await page.get_by_role("link", name=workflow_id, exact=True).first.wait_for(
        timeout=WAIT_MS)
    assert await page.get_by_role("link", name=decoy).count() == 0
    assert "ResponsibleUnit" in await page_text(page)
    await screenshot(page, "dashboard-temporal-view", shots)
