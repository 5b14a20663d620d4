"""Issue 5: the Temporal Web UI, driven in headless Chromium (the Debian package).

A supervisor signs in on the codec server's /login page (a local account) and tells the
UI to send cross-origin credentials to it (the UI's own Codec Server setting, kept in the
browser), filters the workflow list by a custom search attribute (`RegistrationNo`), opens
the petition, and finds its static summary, its current details and its deadline timers'
summaries -- the same texts the server holds, decrypted for them only. A screenshot goes
to `test-output/` and its path is printed in the test output.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import tempfile
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page, async_playwright
from temporalio.api.enums.v1 import EventType
from temporalio.api.sdk.v1 import WorkflowMetadata

from adapters.petition_client import PetitionClient
from devstack.browser import CHROMIUM_ARGS, ensure_chromium
from devstack.temporal_cli import ProvisioningError
from service.accounts_cmd import set_password
from starter.intake import static_summary, submit
from tests.conftest import make_intake

OUTPUT = Path(__file__).resolve().parent.parent / "test-output"
UI_WAIT_MS = 30_000
SUPERVISOR = "PROV-XFJ.sup"
PASSWORD = "browser test password, local account"


def _plain(markdown: str) -> list[str]:
    """The text a Markdown renderer shows, line by line: emphasis markers dropped, and list
    bullets too (a bullet right after a paragraph line may be rendered as a plain dash)."""
    lines = []
    for line in markdown.splitlines():
        text = re.sub(r"^\s*[-*]\s+", "", line).replace("**", "").replace("`", "").strip()
        if text:
            lines.append(" ".join(text.split()))
    return lines


async def _page_text(page: Page) -> str:
    """The visible text of the page and of its frames: the UI renders the summary, details
    and current details (Markdown) each in a sandboxed iframe."""
    parts = []
    for frame in page.frames:
        with contextlib.suppress(PlaywrightError):
            parts.append(await frame.inner_text("body", timeout=2_000))
    return " ".join(" ".join(parts).split())


async def _wait_for_text(page: Page, wanted: list[str]) -> str:
    deadline = asyncio.get_running_loop().time() + UI_WAIT_MS / 1000
    while True:
        text = await _page_text(page)
        missing = [w for w in wanted if w not in text]
        if not missing or asyncio.get_running_loop().time() > deadline:
            return text
        await asyncio.sleep(0.5)


async def _visible_in_visibility(client, query: str, workflow_id: str) -> bool:  # type: ignore[no-untyped-def]
    for _ in range(60):
        if workflow_id in [w.id async for w in client.list_workflows(query)]:
            return True
        await asyncio.sleep(0.5)
    return False


def _ui_settings(ui_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{ui_url}/api/v1/settings", timeout=10) as answer:
        settings: dict[str, Any] = json.loads(answer.read())
    return settings


async def _sign_in_to_the_codec_server(page: Page, endpoint: str) -> None:
    """The codec server's own sign-in page; it sets an HttpOnly cookie for its host."""
    await page.goto(f"{endpoint}/login")
    await page.get_by_label("Person id").fill(SUPERVISOR)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_text(f"Signed in as {SUPERVISOR}").wait_for(timeout=UI_WAIT_MS)


def _send_credentials_to(endpoint: str) -> str:
    """What a user sets in the UI's Codec Server dialog (kept in localStorage): this
    endpoint, with cross-origin credentials, overriding the server's setting."""
    settings = {"endpoint": endpoint, "includeCredentials": True, "passAccessToken": False,
                "overrideRemoteCodecConfiguration": True}
    return "".join(f"window.localStorage.setItem({json.dumps(k)}, {json.dumps(json.dumps(v))});"
                   for k, v in settings.items())


def test_chromium_setting_that_points_nowhere_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("PETITION_CHROMIUM", "/nonexistent/chromium")
    with pytest.raises(ProvisioningError, match="PETITION_CHROMIUM=/nonexistent/chromium"):
        ensure_chromium()


async def test_web_ui_filters_by_registration_no_and_shows_summary_details_and_timers(
        dev_env, dev_ui_url, running_worker, sessions, task_queue, petitions, capsys):
    chromium = await asyncio.to_thread(ensure_chromium)  # installs the Debian package once
    client = dev_env.client
    async with running_worker(client):
        intake = make_intake(unit="QS-HRSS")  # a competent unit: the acceptance clock runs
        status = await submit(client, sessions, intake, task_queue=task_queue)
        decoy = await submit(client, sessions, make_intake(unit="QS-HRSS"),
                             task_queue=task_queue)
        acting = PetitionClient(client, task_queue)
        handle = acting.handle(status.workflow_id)
        petitions.track(handle)
        petitions.track(acting.handle(decoy.workflow_id))
        number = status.registration_no
        assert number is not None

        # What the server holds, decoded by the client: the UI must show the same.
        summary = await (await handle.describe()).static_summary()
        assert summary == static_summary(intake, number)
        metadata = await handle.query("__temporal_workflow_metadata",
                                      result_type=WorkflowMetadata)
        details = _plain(metadata.current_details)
        assert details and any(number in line for line in details)
        timers = []
        async for event in handle.fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
                [text] = await client.data_converter.decode([event.user_metadata.summary],
                                                            [str])
                timers.append(text)
        assert timers and "acceptance" in timers[-1], timers

        query = f'RegistrationNo = "{number}"'
        assert await _visible_in_visibility(client, query, handle.id)
        await set_password(sessions, SUPERVISOR, PASSWORD)
        endpoint = (await asyncio.to_thread(_ui_settings, dev_ui_url))["Codec"]["Endpoint"]

        OUTPUT.mkdir(exist_ok=True)
        shot = OUTPUT / f"browser-ui-{number}.png"
        async with async_playwright() as pw:
            context = await pw.chromium.launch_persistent_context(
                tempfile.mkdtemp(prefix="petitionflow-chromium-"), executable_path=chromium,
                headless=True, args=list(CHROMIUM_ARGS), viewport={"width": 1600, "height": 1200})
            try:
                page = await context.new_page()
                await _sign_in_to_the_codec_server(page, endpoint)
                await context.add_init_script(_send_credentials_to(endpoint))
                await page.goto(f"{dev_ui_url}/namespaces/default/workflows?query="
                                f"{quote(query, safe='')}")
                link = page.get_by_role("link", name=handle.id, exact=True)
                await link.first.wait_for(timeout=UI_WAIT_MS)
                # The filter did its work: the other petition of this test is not listed.
                assert await page.get_by_role("link", name=decoy.workflow_id).count() == 0
                await link.first.click()
                await page.wait_for_url(re.compile(re.escape(handle.id)), timeout=UI_WAIT_MS)
                await page.get_by_text("User Metadata", exact=True).first.click()
                wanted = [summary, *details, *(" ".join(t.split()) for t in timers)]
                text = await _wait_for_text(page, wanted)
                await page.screenshot(path=str(shot), full_page=True)
            finally:
                await context.close()

    with capsys.disabled():
        print(f"\n[browser test] screenshot of the petition in the Web UI: {shot}")
    assert summary in text
    for line in details:
        assert line in text, (line, text[:3000])
    for timer in timers:
        assert " ".join(timer.split()) in text, f"timer summary not shown: {timer!r}"
    assert shot.stat().st_size > 20_000
