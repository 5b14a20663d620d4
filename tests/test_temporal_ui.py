"""Issue 12: the Temporal Web UI is read-only for supervisors (devstack/temporal_ui.py).

A headless dev server, the standalone UI server in front of it with write actions off, and
a second UI server with them on as the control: the same Terminate request, carrying a
valid CSRF token, is refused by the read-only one (405, the workflow runs on) and carried
out by the control, so the refusal is the switch's doing. Reads still work. In Chromium the
workflow page of the read-only UI offers no usable Cancel / Terminate / Signal / Update /
Start (2.42.1 shows them greyed out), where the control's page does; a screenshot of the
read-only page goes to test-output/.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import uuid
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page, async_playwright
from playwright.async_api import TimeoutError as PlaywrightTimeout
from temporalio.client import Client, WorkflowExecutionStatus

import devstack.temporal_ui as temporal_ui
from devstack.browser import CHROMIUM_ARGS, ensure_chromium
from devstack.temporal_server import free_port, start_dev_server
from devstack.temporal_ui import UI_SERVER_VERSION, UiServer, start_ui_server

pytestmark = pytest.mark.servers

OUTPUT = Path(__file__).resolve().parent.parent / "test-output"
UI_WAIT_MS = 30_000
WRITE_BUTTONS = ("Request Cancellation", "Cancel", "Terminate", "Signal", "Reset", "Update",
                 "Start Workflow")


async def _start_idle_workflow(client: Client, prefix: str) -> str:
    """A workflow nobody works on: it stays Running until something terminates it."""
    workflow_id = f"{prefix}-{uuid.uuid4().hex[:8]}"
    await client.start_workflow("UiProbeWorkflow", id=workflow_id,
                                task_queue=f"ui-probe-{uuid.uuid4().hex}")
    return workflow_id


async def _terminate_through_ui(ui: UiServer, workflow_id: str) -> httpx.Response:
    """What the UI's Terminate button sends, with the CSRF token the browser would carry."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ui.port}", timeout=20) as http:
        (await http.get("/api/v1/settings")).raise_for_status()  # sets the _csrf cookie
        token = http.cookies["_csrf"]
        return await http.post(
            f"/api/v1/namespaces/default/workflows/{workflow_id}/terminate",
            json={"reason": "pressed Terminate in the Web UI"},
            headers={"X-CSRF-Token": token})


async def _status(client: Client, workflow_id: str) -> WorkflowExecutionStatus | None:
    return (await client.get_workflow_handle(workflow_id).describe()).status


async def _write_actions(page: Page) -> list[str]:
    """The write actions the workflow page lets one use: enabled header buttons, and the
    enabled entries of its "More Actions" menu (2.42 shows disabled ones greyed out)."""
    found = [name for name in WRITE_BUTTONS
             for button in await page.get_by_role("button", name=name, exact=True).all()
             if await button.is_enabled()]
    more = page.get_by_role("button", name="More Actions")
    if await more.count() and await more.first.is_enabled():
        await more.first.click()
        with contextlib.suppress(PlaywrightTimeout):
            await page.get_by_role("menuitem").first.wait_for(timeout=5_000)
        await page.wait_for_timeout(300)
        for item in await page.get_by_role("menuitem").all():
            if await item.is_visible() and await item.is_enabled() and \
                    await item.get_attribute("aria-disabled") != "true":
                found.append(" ".join((await item.inner_text()).split()))
        await page.keyboard.press("Escape")
    return found


async def test_ui_server_is_read_only_with_the_codec_endpoint(monkeypatch, capsys):
    codec = f"http://127.0.0.1:{free_port()}/codec"
    port = free_port()
    async with await start_dev_server(db_filename=None, port=port, ui=False) as env:
        client = env.client
        address = f"127.0.0.1:{port}"
        read_only = await asyncio.to_thread(start_ui_server, address, free_port(), codec)
        with monkeypatch.context() as patch:  # the control: the same server, writes on
            patch.setattr(temporal_ui, "_READ_ONLY", {})
            writable = await asyncio.to_thread(start_ui_server, address, free_port())
        async with read_only, writable:
            refused = await _start_idle_workflow(client, "ui-read-only")
            control = await _start_idle_workflow(client, "ui-control")

            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{read_only.port}",
                                         timeout=20) as http:
                settings = (await http.get("/api/v1/settings")).json()
                listed = await http.get("/api/v1/namespaces/default/workflows",
                                        params={"query": f'WorkflowId = "{refused}"'})
                described = await http.get(
                    f"/api/v1/namespaces/default/workflows/{refused}")
            assert settings["DisableWriteActions"] is True
            assert settings["Version"] == UI_SERVER_VERSION.removeprefix("v")
            assert settings["Codec"]["Endpoint"] == codec
            assert settings["Auth"]["Enabled"] is False
            for switch in ("WorkflowTerminateDisabled", "WorkflowCancelDisabled",
                           "WorkflowSignalDisabled", "WorkflowResetDisabled",
                           "BatchActionsDisabled", "StartWorkflowDisabled"):
                assert settings[switch] is True, switch
            # Reads work: the list (visibility may lag a moment) and the workflow itself.
            assert described.status_code == 200, described.text
            assert described.json()["workflowExecutionInfo"]["execution"]["workflowId"] == refused
            assert listed.status_code == 200, listed.text

            answer = await _terminate_through_ui(read_only, refused)
            assert answer.status_code == 405, answer.text
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{read_only.port}",
                                         timeout=20) as http:
                (await http.get("/api/v1/settings")).raise_for_status()
                signal = await http.post(
                    f"/api/v1/namespaces/default/workflows/{refused}/signal/withdraw",
                    json={}, headers={"X-CSRF-Token": http.cookies["_csrf"]})
            assert signal.status_code == 405, signal.text
            assert await _status(client, refused) == WorkflowExecutionStatus.RUNNING

            control_answer = await _terminate_through_ui(writable, control)
            assert control_answer.status_code == 200, control_answer.text
            assert await _status(client, control) == WorkflowExecutionStatus.TERMINATED

            shot, seen_read_only, seen_writable = await _look_in_chromium(
                read_only, writable, refused)

    with capsys.disabled():
        print(f"\n[read-only Web UI] screenshot: {shot}")
    # 2.42.1 greys out "Request Cancellation" and the menu's entries rather than hiding them.
    assert {"Request Cancellation", "Terminate", "Send a Signal"} <= set(seen_writable), \
        f"the control UI offers {seen_writable}: the button names changed?"
    assert seen_read_only == [], seen_read_only


async def _look_in_chromium(read_only: UiServer, writable: UiServer,
                            workflow_id: str) -> tuple[Path, list[str], list[str]]:
    """The workflow page in both UIs: which write buttons each shows; a screenshot of the
    read-only one."""
    chromium = await asyncio.to_thread(ensure_chromium)
    OUTPUT.mkdir(exist_ok=True)
    shot = OUTPUT / f"temporal-ui-read-only-{workflow_id}.png"
    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            tempfile.mkdtemp(prefix="petitionflow-chromium-"), executable_path=chromium,
            headless=True, args=list(CHROMIUM_ARGS), viewport={"width": 1600, "height": 1000})
        try:
            page = await context.new_page()
            seen = []
            for ui in (writable, read_only):
                await page.goto(f"{ui.url}/namespaces/default/workflows/{workflow_id}")
                await page.get_by_text(workflow_id).first.wait_for(timeout=UI_WAIT_MS)
                await page.get_by_text("Running", exact=True).first.wait_for(timeout=UI_WAIT_MS)
                await page.wait_for_timeout(1_000)  # the header's buttons follow the settings
                seen.append(await _write_actions(page))
            more = page.get_by_role("button", name="More Actions")  # its greyed-out entries
            if await more.count() and await more.first.is_enabled():
                await more.first.click()
                await page.wait_for_timeout(500)
            await page.screenshot(path=str(shot))
        finally:
            await context.close()
    return shot, seen[1], seen[0]


async def test_ui_server_signs_in_through_keycloak_and_stays_read_only():
    """With OIDC on, the UI sends people to Keycloak (client `workbench`) and hands their
    access token to the codec server; its API wants a bearer token, and writes stay 405.

    The UI server only checks that an Authorization header is there: validating the token
    is the Temporal frontend's job (the dev server has no authorizer), and the codec
    server's, which checks it against Keycloak's JWKS itself."""
    from devstack.keycloak import start_keycloak
    from devstack.temporal_ui import OidcSettings

    port = free_port()
    keycloak = await asyncio.to_thread(start_keycloak, free_port())
    async with keycloak, await start_dev_server(db_filename=None, port=port, ui=False) as env:
        workflow_id = await _start_idle_workflow(env.client, "ui-oidc")
        codec = f"http://127.0.0.1:{free_port()}/codec"
        ui = await asyncio.to_thread(start_ui_server, f"127.0.0.1:{port}", free_port(), codec,
                                     OidcSettings(issuer=keycloak.issuer))
        async with ui, httpx.AsyncClient(base_url=f"http://127.0.0.1:{ui.port}",
                                         timeout=20) as http:
            settings = (await http.get("/api/v1/settings")).json()
            anonymous = await http.get(f"/api/v1/namespaces/default/workflows/{workflow_id}")
            sign_in = await http.get("/auth/sso")
            bearer = {"Authorization": "Bearer any-token"}
            read = await http.get(f"/api/v1/namespaces/default/workflows/{workflow_id}",
                                  headers=bearer)
            write = await http.post(
                f"/api/v1/namespaces/default/workflows/{workflow_id}/terminate",
                json={"reason": "signed in, pressed Terminate"}, headers=bearer)
        status = await _status(env.client, workflow_id)

    assert settings["Auth"]["Enabled"] is True
    assert settings["DisableWriteActions"] is True
    assert settings["Codec"] == {**settings["Codec"], "Endpoint": codec, "PassAccessToken": True}
    assert anonymous.status_code == 401, anonymous.text
    assert sign_in.status_code == 302, sign_in.text
    target = httpx.URL(sign_in.headers["location"])
    assert str(target).startswith(f"{keycloak.issuer}/protocol/openid-connect/auth?")
    assert target.params["client_id"] == "workbench"
    assert target.params["redirect_uri"] == f"http://localhost:{ui.port}/auth/sso/callback"
    assert target.params["response_type"] == "code"
    assert read.status_code == 200, read.text  # presence only: see the docstring
    assert write.status_code == 405, write.text
    assert status == WorkflowExecutionStatus.RUNNING
