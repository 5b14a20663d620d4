"""Issue 15: the case handler's workbench (service/pages_workbench.py), driven in headless
Chromium against the live Temporal dev server, a real worker and the real service.

A petition registered at the Qingshan human resources bureau by an intake client; its
handler 冯振宇 (QS-HRSS.h1, the sample directory) signs in, finds it in the unit's inbox
(stage in words, the unit by name, the deadline as a Beijing date), opens the case (the
petitioner's name, the deadline with how it was counted and its article), accepts it
through the generated form (the stage changes, the audit trail names the action and the
handler), then asks for an extension of 400 days and of 45 days: the Chinese error beside
the field each time, nothing taken. The same form submitted twice is one action. The case
page in English too; an unknown case and a stranger's visit are refused in words.

Screenshots go to test-output/workbench-*.png; their paths are printed.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import BrowserContext, Page
from sqlalchemy import select, update

from adapters.tables import Petition, PetitionEvent
from documents.render import beijing_date
from service.accounts_cmd import set_password
from tests.browser_helpers import (
    assert_accessible,
    assert_no_leak,
    page_text,
    screenshot,
    staff_sign_in,
)
from tests.conftest import fictional_personal_data, make_intake
from tests.service_helpers import PASSWORD, running_service
from tests.test_service import client_token

pytestmark = pytest.mark.servers  # Chromium and the Temporal dev server

UNIT = "QS-HRSS"
UNIT_NAME = "青山县人力资源和社会保障局"
HANDLER, HANDLER_NAME = "QS-HRSS.h1", "冯振宇"
STRANGER = "LJ-HRSS.h1"  # another city's bureau: no part in the case
WAIT_MS = 20_000
# Nothing technical, no enum value, no id reaches a page.
LEAKS = ("Traceback", "Exception", "problem", "detail", "invalid", "token", "null", "None",
         "Internal Server Error", "KeyError", "petition-", "registered", "in_handling",
         "wage_arrears", "handler", "acceptance", "refused [", "extension:", "Field required",
         "less than", "request_extension", "QS-HRSS.h1")


async def _text(page: Page) -> str:
    return await page_text(page)


async def _shot(page: Page, name: str, shots: list[Path]) -> None:
    await screenshot(page, f"workbench-{name}", shots)


async def _sign_in(context: BrowserContext, url: str, person: str, target: str) -> Page:
    return await staff_sign_in(context, url, person, PASSWORD, target)


async def _until(page: Page, check: Any, what: str) -> None:
    """Reload until the read model (written by activities) shows what the page waits for."""
    for _ in range(60):
        if await check():
            return
        await asyncio.sleep(0.25)
        await page.reload()
    raise AssertionError(f"the page never showed {what}")


async def _audit_rows(sessions, workflow_id: str, action: str) -> list[PetitionEvent]:
    async with sessions() as session:
        return list((await session.scalars(select(PetitionEvent).where(
            PetitionEvent.workflow_id == workflow_id, PetitionEvent.action == action,
            PetitionEvent.accepted.is_(True)))).all())


async def _form_fields(page: Page, form: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for name in ("csrf_token", "form_token"):
        value = await page.locator(f"#{form} input[name={name}]").get_attribute("value")
        assert value
        found[name] = value
    return found


async def test_handler_works_a_case_on_the_workbench(
        sessions, browser, dev_env, running_worker, task_queue, petitions, capsys) -> None:
    shots: list[Path] = []
    await set_password(sessions, HANDLER, PASSWORD)
    await set_password(sessions, STRANGER, PASSWORD)
    personal = fictional_personal_data("subject", "拖欠工资")
    intake = make_intake(unit=UNIT, petitioner={
        "name": personal["name"], "id_number": personal["id_number"],
        "phone": personal["phone"]}, subject=personal["subject"])
    async with running_worker(dev_env.client), \
            running_service(sessions, dev_env.client, task_queue) as url, \
            httpx.AsyncClient(base_url=url, timeout=60) as http:
        headers = await client_token(http, sessions, [UNIT])
        answer = await http.post("/api/v1/petitions", headers=headers,
                                 json=intake.model_dump(mode="json"))
        assert answer.status_code == 201, answer.text
        number, workflow_id = answer.json()["registration_no"], answer.json()["workflow_id"]
        petitions.track(dev_env.client.get_workflow_handle(workflow_id))
        status = await petitions_status(url, http, number, answer.json()["query_code"])
        [acceptance] = status["clocks"]
        due_day = beijing_date(datetime.fromisoformat(acceptance["due_at"]))
        late = await _overdue_case(http, headers, sessions, petitions, dev_env)

        context = await browser.new_context(locale="zh-CN",
                                            viewport={"width": 1280, "height": 900})
        try:
            # Not signed in: to the sign-in page, and back to the inbox after it.
            page = await _sign_in(context, url, HANDLER, "/workbench")
            assert await page.get_attribute("html", "lang") == "zh-CN"

            # The inbox: the case with its stage in words, the unit by name, the deadline.
            row = page.locator("#inbox tr", has=page.get_by_role("link", name=number))

            async def listed() -> bool:
                return await row.count() == 1 and due_day in await row.inner_text()
            await _until(page, listed, "the registered case in the inbox")
            cells = await row.inner_text()
            assert "已登记，待受理" in cells and UNIT_NAME in cells and "拖欠工资" in cells
            assert "来访" in cells and re.search(r"剩余 \d+ 日", cells), cells
            assert int(await page.inner_text("#count-open")) >= 2
            # The overdue case first (nearest deadline), with its badges; the figures count it.
            numbers = await page.locator("#inbox td.no a").all_inner_texts()
            assert numbers.index(late) < numbers.index(number)
            flagged = await page.locator("#inbox tr", has=page.get_by_role(
                "link", name=late)).inner_text()
            for badge in ("已超期", "二级督办", "已延期", "已超期 3 日"):
                assert badge in flagged, flagged
            for count in ("overdue", "escalated", "extended"):
                assert int(await page.inner_text(f"#count-{count}")) >= 1
            text = await _text(page)
            assert personal["name"] not in text and personal["subject"] not in text
            assert_no_leak(text, LEAKS)
            await _shot(page, "inbox", shots)
            await assert_accessible(page, "/workbench")

            # Filters: another stage hides it; mine only hides it (no handler yet).
            await page.get_by_label("办理阶段").select_option("in_handling")
            await page.get_by_role("button", name="筛选").click()
            await page.wait_for_url(re.compile(r"stage=in_handling"))
            assert await page.get_by_role("link", name=number).count() == 0
            await page.goto(f"{url}/workbench?mine=1")
            assert await page.get_by_role("link", name=number).count() == 0
            assert "没有符合筛选条件的信访事项" in await _text(page)
            await page.goto(f"{url}/workbench")

            # The case page.
            await page.get_by_role("link", name=number).click()
            await page.wait_for_url(f"{url}/workbench/cases/{number}")
            assert await page.inner_text("#stage") == "已登记，待受理"
            assert await page.inner_text("#holding-unit") == UNIT_NAME
            petitioner = await page.inner_text("#petitioner")
            assert personal["name"] in petitioner and personal["phone"] in petitioner
            deadlines = await page.inner_text("#deadlines")
            assert "决定是否受理期限" in deadlines and due_day in deadlines
            assert "《信访工作条例》第二十三条" in deadlines
            assert "按自然日计算：15 日" in deadlines and "当日不计入" in deadlines
            actions = await page.inner_text("#actions")
            for offered in ("受理", "不予受理", "转送或交办", "补充材料"):
                assert offered in actions
            assert "申请延长办理期限" not in actions  # not in this stage
            assert "登记" in await page.inner_text("#timeline")
            text = await _text(page)
            assert_no_leak(text, LEAKS)
            await _shot(page, "case", shots)
            await assert_accessible(page, "case page")

            # Accept through the generated form.
            await page.locator("#action-accept > summary").click()
            await page.get_by_label("受理备注").fill("材料齐全，予以受理。")
            await page.get_by_role("button", name="提交：受理").click()
            await page.wait_for_url(re.compile(r"\?done=accept"), timeout=WAIT_MS)
            assert await page.inner_text("#notice") == "已受理。"
            assert await page.inner_text("#stage") == "办理中"
            assert "办理期限（出具处理意见）" in await page.inner_text("#deadlines")
            assert "申请延长办理期限" in await page.inner_text("#actions")

            async def audited() -> bool:
                trail = await page.inner_text("#audit") if await page.locator(
                    "#audit").count() else ""
                return "受理" in trail and f"{HANDLER_NAME}（承办人员）" in trail
            await _until(page, audited, "the acceptance in the audit trail")
            assert "办理中" in await page.inner_text("#audit")

            # An invalid submission: 400 days is out of the field's range (the command's 366,
            # and the profile's 30, which the form says).
            await page.locator("#action-request-extension > summary").click()
            assert await page.locator(
                "#action-request-extension-days-hint").inner_text() == "可填 1–30"
            await page.get_by_label("延期天数").fill("400")
            await page.get_by_label("申请延期的理由").fill("需要调取外单位材料")
            async with page.expect_response(re.compile(r"/actions/request_extension$")) as sent:
                await page.get_by_role("button", name="提交：申请延长办理期限").click()
            assert (await sent.value).status == 422
            error = page.locator("#action-request-extension-days-error")
            assert await error.inner_text() == "不能大于 30。"  # the profile's bound
            assert await page.get_by_label("延期天数").get_attribute("aria-invalid") == "true"
            assert await page.get_by_label("延期天数").input_value() == "400"  # kept as typed
            assert await page.get_by_label("申请延期的理由").input_value() == "需要调取外单位材料"
            assert_no_leak(await _text(page), LEAKS)
            await _shot(page, "error", shots)
            # Within the command's range, beyond the profile's 30 days: the rule, in words,
            # beside its field only.
            await page.get_by_label("延期天数").fill("45")
            async with page.expect_response(re.compile(r"/actions/request_extension$")) as sent:
                await page.get_by_role("button", name="提交：申请延长办理期限").click()
            assert (await sent.value).status == 422
            assert await error.inner_text() == "延期不能超过 30 日。"
            assert await page.locator("#action-request-extension-error").count() == 0
            text = await _text(page)
            assert_no_leak(text, LEAKS)
            assert await page.inner_text("#stage") == "办理中"
            await _shot(page, "refused", shots)
            await assert_accessible(page, "case page with errors")

            # The same form submitted twice (a double click, a resent page): one action.
            fields = await _form_fields(page, "action-add-note")
            for _ in range(2):
                posted = await page.request.post(
                    f"{url}/workbench/cases/{number}/actions/add_note",
                    form={**fields, "text": "信访人补充提交工资条复印件。"}, max_redirects=0)
                assert posted.status == 303
            await asyncio.sleep(1)
            assert len(await _audit_rows(sessions, workflow_id, "add_note")) == 1
            # Without the CSRF token: nothing taken, a page in words.
            forged = await page.request.post(
                f"{url}/workbench/cases/{number}/actions/add_note",
                form={"form_token": fields["form_token"] + "x", "text": "伪造"}, max_redirects=0)
            assert forged.status == 400 and "页面已过期" in await forged.text()

            # In English.
            await page.goto(f"{url}/lang/en?next=/workbench/cases/{number}")
            await page.wait_for_url(f"{url}/workbench/cases/{number}")
            assert await page.get_attribute("html", "lang") == "en"
            text = await _text(page)

            assert "In handling" in text and "Counted in calendar days: 60 days" in text
            assert "Request to extend the handling period" in text
            assert not re.search(r"[\u4e00-\u9fff]", (await page.inner_text("#deadlines"))
                                 .replace(UNIT_NAME, ""))
            await _shot(page, "case-english", shots)
            await assert_accessible(page, "case page in English")
            await page.goto(f"{url}/workbench")
            await _shot(page, "inbox-english", shots)
            await assert_accessible(page, "/workbench in English")
            await page.goto(f"{url}/lang/zh?next=/workbench")

            # An unknown case: a page in words.
            missing = await page.goto(f"{url}/workbench/cases/QS-HRSS-2099-999999")
            assert missing is not None and missing.status == 404
            assert "未找到该信访事项" in await _text(page)
        finally:
            await context.close()

        # A member of staff with no part in the case is refused in words.
        other = await browser.new_context(locale="zh-CN")
        try:
            page = await _sign_in(other, url, STRANGER, "/workbench")
            refused = await page.goto(f"{url}/workbench/cases/{number}")
            assert refused is not None and refused.status == 403
            text = await _text(page)
            assert "无权查看该信访事项" in text and personal["name"] not in text
            assert await page.get_by_role("link", name=number).count() == 0
        finally:
            await other.close()
        async with sessions() as session:
            stage = await session.scalar(select(Petition.stage).where(
                Petition.registration_no == number))
        assert stage == "in_handling"
    with capsys.disabled():
        print("\n[browser workbench] " + " ".join(str(p) for p in shots))


async def _overdue_case(http: httpx.AsyncClient, headers: dict[str, str], sessions,
                        petitions: Any, dev_env: Any) -> str:
    """A second case whose read-model row says overdue by three days, escalated to level 2
    and extended: what the inbox shows of such a row (the workflow's own clocks would take
    weeks to get there)."""
    answer = await http.post("/api/v1/petitions", headers=headers,
                             json=make_intake(unit=UNIT).model_dump(mode="json"))
    assert answer.status_code == 201, answer.text
    petitions.track(dev_env.client.get_workflow_handle(answer.json()["workflow_id"]))
    number = str(answer.json()["registration_no"])
    for _ in range(80):  # the registration's own row written first, never after ours
        if await _audit_rows(sessions, answer.json()["workflow_id"], "register"):
            break
        await asyncio.sleep(0.25)
    else:
        raise AssertionError(f"{number}: the registration was never recorded")
    async with sessions() as session:
        await session.execute(update(Petition).where(Petition.registration_no == number).values(
            overdue=True, escalation_level=2, extension_days=30,
            next_deadline=datetime.now(UTC) - timedelta(days=3)))
        await session.commit()
    return number


async def petitions_status(url: str, http: httpx.AsyncClient, number: str,
                           code: str) -> dict[str, Any]:
    """The case's status as its petitioner reads it from the API."""
    signed = await http.post("/auth/petitioner",
                             json={"registration_no": number, "query_code": code})
    bearer = {"Authorization": f"Bearer {signed.json()['access_token']}"}
    status = (await http.get(f"/api/v1/petitions/{number}", headers=bearer)).json()
    assert status["clocks"], status
    return dict(status)
