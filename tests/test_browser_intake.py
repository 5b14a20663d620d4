"""Issue 15, third piece: the online intake form (/petition, service/pages_intake.py) and
the petitioner's own actions on /track/case (service/pages_track.py), driven in headless
Chromium on a phone-sized screen against the live Temporal dev server, a real worker and
the service.

The petitioner fills the form with a photo attached; bad input first (inline Chinese
errors, nothing registered); then the receipt with the registration number and the query
code (answered by the POST itself: the code is in no URL). The same form posted again,
twice at once, is the same petition. With the receipt's number and code /track opens the
case; staff accept and reply through the API; the petitioner rates it 基本满意 (the same
form sent twice is one rating) and asks for review in the browser, and the page shows it;
an action no longer allowed is refused in words. The English switch once. No staff names
on any of these pages; axe-core on each.

Screenshots go to test-output/intake-*.png and test-output/track-*.png; their paths are
printed.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.async_api import BrowserContext, Page
from sqlalchemy import func, select

from adapters.document_tables import Document
from adapters.petition_client import PetitionClient
from adapters.tables import Person, Petition
from service import pages_intake
from service.accounts_cmd import add_intake_client
from service.auth.tokens import TokenIssuer, token_ring
from service.context import ServiceContext
from tests.browser_helpers import assert_accessible, assert_no_leak, page_text, screenshot
from tests.service_helpers import running_service, service_settings
from tests.test_attachments import tiny_png
from tests.test_service import staff_token

pytestmark = pytest.mark.servers  # Chromium and the Temporal dev server

UNIT, UNIT_ZH = "QS-HRSS", "青山县人力资源和社会保障局"
REVIEW_ORGAN, REVIEW_ORGAN_ZH = "YZ-HRSS", "云州市人力资源和社会保障局"
HANDLER = "QS-HRSS.h1"
WAIT_MS = 30_000
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2,
         "is_mobile": True, "has_touch": True}
LEAKS = ("Traceback", "Exception", "problem", "detail", "invalid", "token", "null", "None",
         "Internal Server Error", "petition-", "web-", "wage_arrears", "registered",
         "in_handling", "replied", "under_review", "basically_satisfied", "handler",
         "doc_", "YZ-HRSS", ".h1", ".head")
# A fictional petitioner (a valid ID number: the GB 11643 check character).
TYPED = {"姓名": "王小明", "身份证号码": "11010519491231002X", "联系电话": "139 1234 5678",
         "通讯地址": "青山县东街1号", "事项标题": "某公司拖欠工资三个月",
         "信访内容": "本人在青山县某公司工作，公司已拖欠工资三个月，请求督促支付。"}


def _ctx() -> ServiceContext:
    """The service's token keys (the test service's fixed key): to name a form's intake."""
    settings = service_settings()
    return ServiceContext(settings=settings, sessions=None, client=None,  # type: ignore[arg-type]
                          tokens=TokenIssuer(token_ring(settings)), oidc=None)


class Pages:
    """Each page looked at: its text checked for leaks and staff names, a screenshot, and
    axe-core."""

    def __init__(self, staff_names: list[str]) -> None:
        self.shots: list[Path] = []
        self.staff_names = staff_names

    async def check(self, page: Page, name: str, *, allow: str = "") -> str:
        text = await page_text(page)
        assert_no_leak(text.replace(allow, "") if allow else text, LEAKS)
        for person in self.staff_names:
            assert person not in text, (person, name)
        width = await page.evaluate("document.documentElement.scrollWidth")
        viewport = page.viewport_size
        assert viewport is None or width <= viewport["width"], (name, width)  # no sideways
        await screenshot(page, name, self.shots)
        await assert_accessible(page, name)
        return text


async def _fill(page: Page, values: dict[str, str]) -> None:
    for label, value in values.items():
        await page.get_by_label(label).fill(value)


async def _form_fields(page: Page) -> dict[str, str]:
    """The form as the page would send it (its hidden tokens included)."""
    fields: dict[str, str] = await page.evaluate("""() => {
        const out = {};
        for (const el of document.querySelectorAll('form input, form select, form textarea')) {
            if (el.type === 'file' || el.type === 'submit') continue;
            out[el.name] = el.value;
        }
        return out; }""")
    return fields


async def _status(http: httpx.AsyncClient, headers: dict[str, str], number: str
                  ) -> dict[str, Any]:
    answer = await http.get(f"/api/v1/petitions/{number}", headers=headers)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def test_a_petitioner_submits_online_and_follows_the_case(
        sessions, browser, dev_env, running_worker, task_queue, petitions, monkeypatch,
        capsys) -> None:
    client_id = f"portal-{uuid.uuid4().hex[:8]}"
    await add_intake_client(sessions, client_id, "网上信访平台", ["QS-XFJ", UNIT])
    monkeypatch.setenv("PETITION_SERVICE_PORTAL_CLIENT", client_id)
    pages_intake.portal_settings.cache_clear()
    async with sessions() as session:
        staff = list(await session.scalars(select(Person.name).where(
            Person.unit_code.in_([UNIT, REVIEW_ORGAN, "QS-XFJ"]))))
    checked = Pages(staff)
    today = datetime.now(ZoneInfo("Asia/Shanghai"))
    try:
        async with running_worker(dev_env.client), \
                running_service(sessions, dev_env.client, task_queue) as url, \
                httpx.AsyncClient(base_url=url, timeout=60) as http:
            phone = await browser.new_context(locale="zh-CN", **PHONE)
            try:
                number, code = await _submit_online(phone, url, sessions, petitions,
                                                    dev_env, checked, today)
                await _follow_and_act(phone, url, http, sessions,
                                      PetitionClient(dev_env.client, task_queue), number,
                                      code, checked)
            finally:
                await phone.close()
    finally:
        pages_intake.portal_settings.cache_clear()
    with capsys.disabled():
        print("\n[browser intake] " + " ".join(str(p) for p in checked.shots))


async def _submit_online(phone: BrowserContext, url: str, sessions, petitions, dev_env,
                         checked: Pages, today: datetime) -> tuple[str, str]:
    page = await phone.new_page()
    opened = await page.goto(f"{url}/petition")
    assert opened is not None and opened.status == 200
    assert await page.get_attribute("html", "lang") == "zh-CN"
    text = await checked.check(page, "intake-form")
    assert "网上提交信访事项" in text and UNIT_ZH in text and "拖欠工资" in text
    assert UNIT not in text

    # Bad input: an ID number whose check character is wrong, a phone that is none.
    await page.get_by_label("受理单位").select_option(label=UNIT_ZH)
    await page.get_by_label("问题类别").select_option(label="拖欠工资")
    await _fill(page, {**TYPED, "身份证号码": "110105194912310021", "联系电话": "12"})
    await page.get_by_label("附件").set_input_files(
        [{"name": "欠条照片.png", "mimeType": "image/png", "buffer": tiny_png()}])
    form_token = (await _form_fields(page))["form_token"]
    intake_id = pages_intake.intake_id_of(_ctx(), form_token)
    assert intake_id is not None
    async with page.expect_response(f"{url}/petition") as posted:
        await page.get_by_role("button", name="提交", exact=True).click()
    await page.wait_for_load_state()
    assert (await posted.value).status == 400
    assert "提交未成功" in await page.get_by_role("alert").inner_text()
    assert (await page.inner_text("#id_number-error")).startswith("身份证号码有误")
    assert (await page.inner_text("#phone-error")).startswith("联系电话格式不正确")
    assert await page.get_by_label("身份证号码").get_attribute("aria-invalid") == "true"
    assert await page.get_by_label("姓名").input_value() == TYPED["姓名"]
    assert await page.get_by_label("信访内容").input_value() == TYPED["信访内容"]
    assert await page.get_by_label("受理单位").input_value() == UNIT
    text = await checked.check(page, "intake-errors")
    assert "之前选择的附件没有保留" in text
    async with sessions() as session:  # nothing registered
        assert await session.scalar(select(Petition.id).where(
            Petition.intake_id == intake_id)) is None

    # Corrected, the photo chosen again: the receipt, as the POST's own answer.
    await _fill(page, {"身份证号码": TYPED["身份证号码"], "联系电话": TYPED["联系电话"]})
    await page.get_by_label("附件").set_input_files(
        [{"name": "欠条照片.png", "mimeType": "image/png", "buffer": tiny_png()}])
    again = await _form_fields(page)
    assert again["form_token"] == form_token  # the same form: the same petition
    async with page.expect_response(f"{url}/petition") as posted:
        await page.get_by_role("button", name="提交", exact=True).click()
    await page.wait_for_load_state()
    assert (await posted.value).status == 201
    assert page.url == f"{url}/petition"  # no redirect: the code is in no URL
    number = await page.inner_text("#registration-no")
    code = await page.inner_text("#query-code")
    assert re.fullmatch(rf"{UNIT}-{today.year}-\d{{6}}", number), number
    assert re.fullmatch(r"[A-Z0-9]{8}", code.replace(" ", "")), code
    assert await page.inner_text("#unit") == UNIT_ZH
    assert await page.inner_text("#date") == f"{today.year}年{today.month}月{today.day}日"
    assert re.fullmatch(r"\d{4}年\d{1,2}月\d{1,2}日", await page.inner_text("#deadline"))
    text = await checked.check(page, "intake-receipt", allow=number)
    assert "查询码只在本页显示这一次" in text and "决定是否受理的期限" in text
    assert "English" not in text  # no switch away from the only page with the code
    async with sessions() as session:
        row = await session.scalar(select(Petition).where(Petition.intake_id == intake_id))
        assert row is not None and row.registration_no == number
        assert row.channel == "online" and row.registered_unit == UNIT
        bound = await session.scalar(select(func.count()).select_from(Document).where(
            Document.petition_id == row.id))
    assert bound == 1
    petitions.track(dev_env.client.get_workflow_handle(row.workflow_id))

    # The same form posted again, twice at once (a double tap): the same petition, the
    # same receipt; no second case, no stray copy of the photo.
    async def post_again() -> Any:
        return await phone.request.post(f"{url}/petition", multipart={
            **again, "attachments": {"name": "欠条照片.png", "mimeType": "image/png",
                                     "buffer": tiny_png()}})

    for answer in await asyncio.gather(post_again(), post_again()):
        assert answer.status in (200, 201)
        assert f'id="registration-no">{number}<' in await answer.text()
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Petition).where(
            Petition.intake_id == intake_id)) == 1
        assert await session.scalar(select(func.count()).select_from(Document).where(
            Document.uploaded_by.like(f"%/{intake_id}"))) == 1
    return number, code


async def _follow_and_act(phone: BrowserContext, url: str, http: httpx.AsyncClient,
                          sessions, reader: PetitionClient, number: str, code: str,
                          checked: Pages) -> None:
    page = phone.pages[0]
    await page.get_by_role("link", name="查询办理进度").click()
    await page.wait_for_url(f"{url}/track", timeout=WAIT_MS)
    await checked.check(page, "track-intake-form")
    await page.get_by_label("信访事项编号").fill(number)
    await page.get_by_label("查询码").fill(code)
    await page.get_by_role("button", name="查询").click()
    await page.wait_for_url(f"{url}/track/case", timeout=WAIT_MS)
    assert await page.inner_text("#stage") == "已登记"
    assert await page.inner_text("#unit") == UNIT_ZH
    assert await page.locator("#actions").count() == 0  # nothing to rate or review yet
    assert await page.locator("#withdraw").count() == 1  # withdrawing is always open
    await checked.check(page, "track-intake-registered", allow=number)

    # Staff accept and reply through the API.
    handler = await staff_token(http, sessions, HANDLER)
    opinion = "经核查，已责令该公司支付拖欠工资。"
    for action, body in (("accept", {}), ("reply", {"opinion": opinion})):
        answer = await http.post(f"/api/v1/petitions/{number}/actions/{action}",
                                 headers=handler, json=body)
        assert answer.status_code == 200, answer.text
    await page.reload()
    assert await page.inner_text("#stage") == "已答复"
    actions = await page.inner_text("#actions")
    assert "满意度评价" in actions and "请求复查" in actions and "请求复核" not in actions
    review_select = page.get_by_label("复查机关")
    organs = await review_select.locator("option").all_inner_texts()
    assert REVIEW_ORGAN_ZH in organs and all("-" not in o for o in organs), organs
    await checked.check(page, "track-actions", allow=number)

    # Rate 基本满意; the same form sent again is the same rating.
    rate_form = await page.locator("form[action='/track/case/rate']").evaluate(
        "f => Object.fromEntries(new FormData(f))")
    await page.get_by_label("基本满意").check()
    await page.get_by_label("意见和建议").fill("处理及时，但希望尽快到账。")
    await page.get_by_role("button", name="提交评价").click()
    await page.wait_for_url(f"{url}/track/case?done=rate", timeout=WAIT_MS)
    assert "您的评价已提交" in await page.inner_text("#done")
    assert await page.inner_text("#rated") == "基本满意"
    resent = await phone.request.post(f"{url}/track/case/rate", form={
        **rate_form, "satisfaction": "basically_satisfied"})
    assert resent.ok
    await checked.check(page, "track-rated", allow=number)
    signed = await http.post("/auth/petitioner",
                             json={"registration_no": number, "query_code": code})
    bearer = {"Authorization": f"Bearer {signed.json()['access_token']}"}
    assert (await _status(http, bearer, number))["satisfaction"] == "basically_satisfied"
    timeline = (await http.get(f"/api/v1/petitions/{number}/timeline", headers=bearer)).json()
    assert [e["action"] for e in timeline].count("rate") == 1, timeline
    # A rating form drawn now, to be sent when rating is no longer open.
    stale_rate = await page.locator("form[action='/track/case/rate']").evaluate(
        "f => Object.fromEntries(new FormData(f))")

    # Request review by the city department, in the browser.
    await page.get_by_label("复查机关").select_option(label=REVIEW_ORGAN_ZH)
    await page.get_by_label("请求复查的理由").fill("公司至今未支付，处理意见没有落实。")
    await page.get_by_role("button", name="提交复查请求").click()
    await page.wait_for_url(f"{url}/track/case?done=review", timeout=WAIT_MS)
    assert "复查请求已提交" in await page.inner_text("#done")
    assert await page.inner_text("#stage") == "复查中"
    assert await page.locator("#actions").count() == 0
    assert "出具复查意见的期限" in await page.inner_text("#deadlines")
    await checked.check(page, "track-review-requested", allow=number)
    assert (await _status(http, bearer, number))["stage"] == "under_review"
    async with sessions() as session:
        row = await session.scalar(select(Petition).where(Petition.registration_no == number))
    assert row is not None
    case = await reader.case(row.workflow_id)  # the workflow's own record of the request
    assert case is not None and case.review_organ == REVIEW_ORGAN

    # Rating is not open under review: refused in plain words.
    refused = await page.request.post(f"{url}/track/case/rate", form={
        **stale_rate, "satisfaction": "unsatisfied"}, max_redirects=0)
    assert refused.status == 409
    await page.set_content(await refused.text())
    text = await checked.check(page, "track-refused")
    assert "目前不能办理这一项" in text
    assert (await _status(http, bearer, number))["satisfaction"] == "basically_satisfied"

    # In English, once.
    await page.goto(f"{url}/track/case")
    await page.get_by_role("link", name="English").click()
    await page.wait_for_url(f"{url}/track/case", timeout=WAIT_MS)
    assert await page.get_attribute("html", "lang") == "en"
    assert await page.inner_text("#stage") == "Under review"
    assert "Qingshan County Human Resources" in await page.inner_text("#unit")
    text = await checked.check(page, "track-case-en", allow=number)
    assert "Review opinion due" in text and "Beijing time" in text
    assert not re.search(r"[\u4e00-\u9fff]", text.replace("中文", "")), text
    await page.goto(f"{url}/petition")
    text = await checked.check(page, "intake-form-en")
    assert "Submit a petition online" in text and "Unpaid wages" in text
    await page.get_by_role("link", name="中文").click()
    await page.wait_for_url(f"{url}/petition", timeout=WAIT_MS)
    assert await page.get_attribute("html", "lang") == "zh-CN"

