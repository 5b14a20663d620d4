"""Issue 12: staff sign in in the browser (service/pages.py), driven in headless Chromium
(the Debian package).

(a) A local account: /signin in Chinese, a wrong password answers a Chinese error and no
    session cookie; the right one lands on /me with the person's name, role and unit name;
    signing out ends the session.
(b) OpenID Connect against a real Keycloak (devstack/keycloak.py): the button
    「使用统一身份认证登录」, Keycloak's own login page for QS-HRSS.h1, and back on /me as
    that person (authorization code + PKCE S256, state, nonce).

Screenshots go to test-output/signin-*.png; their paths are printed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page

from devstack.keycloak import KeycloakServer, start_keycloak
from devstack.temporal_server import free_port
from service.accounts_cmd import set_password
from service.pages import CSRF_COOKIE, SESSION_COOKIE
from tests.browser_helpers import assert_accessible, assert_no_leak, page_text, screenshot
from tests.service_helpers import running_service

pytestmark = pytest.mark.servers  # Chromium, and a Keycloak of its own for (b)

PERSON = "QS-HRSS.h1"
HEAD = "QS-HRSS.head"
NAME = "冯振宇"
UNIT_NAME = "青山县人力资源和社会保障局"
ROLE = "承办人员"
PASSWORD = "browser sign-in test password"
KEYCLOAK_PASSWORD = "dev-only-password"
WAIT_MS = 20_000
# Nothing technical reaches a person's page.
LEAKS = ("Traceback", "Exception", "problem", "detail", "invalid", "token", "null",
         "Internal Server Error", "KeyError")




async def _context(browser: Browser) -> BrowserContext:
    return await browser.new_context(locale="zh-CN", viewport={"width": 900, "height": 760})


async def _cookies(context: BrowserContext) -> dict[str, dict[str, Any]]:
    return {c["name"]: dict(c) for c in await context.cookies()}


async def _text(page: Page) -> str:
    return await page_text(page)


def _no_leak(text: str) -> None:
    assert_no_leak(text, LEAKS)


async def _shot(page: Page, name: str, shots: list[Path]) -> None:
    await screenshot(page, f"signin-{name}", shots)


async def test_local_account_sign_in_me_and_sign_out(sessions, browser, capsys) -> None:
    await set_password(sessions, PERSON, PASSWORD)
    shots: list[Path] = []
    async with running_service(sessions, None, "no-queue") as url:
        context = await _context(browser)
        try:
            page = await context.new_page()
            answer = await page.goto(f"{url}/signin")
            assert answer is not None and answer.status == 200
            text = await _text(page)
            assert "工作人员登录" in text and "人员编号" in text and "密码" in text
            # No issuer configured: no single sign-on button.
            assert "使用统一身份认证登录" not in text
            await _shot(page, "local", shots)
            await assert_accessible(page, "/signin")

            # The English switch, and back: the same page, every word translated.
            await page.get_by_role("link", name="English").click()
            await page.get_by_role("heading", name="Staff sign-in").wait_for(timeout=WAIT_MS)
            text = await _text(page)
            assert "Person id" in text and "Password" in text and "登录" not in text
            await _shot(page, "local-english", shots)
            await assert_accessible(page, "/signin in English")
            await page.get_by_role("link", name="中文").click()
            await page.get_by_role("heading", name="工作人员登录").wait_for(timeout=WAIT_MS)

            # A wrong password: a Chinese error, the id kept, no session.
            await page.get_by_label("人员编号").fill(PERSON)
            await page.get_by_label("密码").fill("not the password")
            async with page.expect_response(f"{url}/signin") as posted:
                await page.get_by_role("button", name="登录", exact=True).click()
            assert (await posted.value).status == 401
            await page.get_by_role("alert").wait_for(timeout=WAIT_MS)
            text = await _text(page)
            assert "人员编号或密码不正确" in text
            _no_leak(text)
            assert await page.get_by_label("人员编号").input_value() == PERSON
            assert SESSION_COOKIE not in await _cookies(context)
            await _shot(page, "local-wrong-password", shots)

            # The right one: /me.
            await page.get_by_label("密码").fill(PASSWORD)
            started = time.time()
            await page.get_by_role("button", name="登录", exact=True).click()
            await page.wait_for_url(f"{url}/me", timeout=WAIT_MS)
            text = await _text(page)
            assert "已登录" in text
            assert await page.inner_text("#name") == NAME
            assert await page.inner_text("#person-id") == PERSON
            assert ROLE in await page.inner_text("#role")
            assert (await page.inner_text("#unit")).startswith(UNIT_NAME)
            assert "本地账号" in text
            _no_leak(text)
            cookie = (await _cookies(context))[SESSION_COOKIE]
            assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
            assert not cookie["secure"]  # plain http here; Secure over https
            assert abs(cookie["expires"] - (started + 15 * 60)) < 30  # the token's lifetime
            await _shot(page, "me", shots)

            # The session cookie signs the browser's API calls in too: reads as they are;
            # a write only with X-Requested-With (no cross-site form can send it).
            listed = await context.request.get(f"{url}/api/v1/units/QS-HRSS/petitions")
            assert listed.status == 200, await listed.text()
            other = await context.request.get(f"{url}/api/v1/units/QS-NR/petitions")
            assert other.status == 403
            token = cookie["value"]
            async with httpx.AsyncClient(base_url=url, cookies={SESSION_COOKIE: token}) as http:
                assert (await http.get("/me")).status_code == 200
                assert (await http.post("/api/v1/petitions", json={})).status_code == 401
                written = await http.post("/api/v1/petitions", json={},
                                          headers={"X-Requested-With": "fetch"})
                assert written.status_code not in (401, 500), written.text
            async with httpx.AsyncClient(base_url=url) as http:
                assert (await http.get("/me")).status_code == 401
                assert (await http.get("/api/v1/units/QS-HRSS/petitions")).status_code == 401
                # A form without its CSRF token is refused, in Chinese.
                refused = await http.post("/signin", data={"username": PERSON,
                                                           "password": PASSWORD})
                assert refused.status_code == 400 and "页面已过期" in refused.text
                assert SESSION_COOKIE not in refused.cookies
                http.cookies.set(SESSION_COOKIE, token)
                refused = await http.post("/signout")
                assert refused.status_code == 400 and "text/html" in \
                    refused.headers["content-type"]

            # Sign out: back to /signin, no session, /me says so in Chinese.
            await page.get_by_role("button", name="退出登录").click()
            await page.wait_for_url(f"{url}/signin", timeout=WAIT_MS)
            assert SESSION_COOKIE not in await _cookies(context)
            answer = await page.goto(f"{url}/me")
            assert answer is not None and answer.status == 401
            text = await _text(page)
            assert "尚未登录" in text
            _no_leak(text)
            assert CSRF_COOKIE in await _cookies(context)

            # Lockout (the same as POST /auth/token: 3 failures in a row in these tests):
            # then even the right password is refused, in Chinese, with no session.
            await set_password(sessions, HEAD, PASSWORD)
            await page.goto(f"{url}/signin")
            for _ in range(3):
                await page.get_by_label("人员编号").fill(HEAD)
                await page.get_by_label("密码").fill("wrong, again")
                async with page.expect_response(f"{url}/signin") as posted:
                    await page.get_by_role("button", name="登录", exact=True).click()
                assert (await posted.value).status == 401
                await page.wait_for_load_state()
            await page.get_by_label("密码").fill(PASSWORD)
            async with page.expect_response(f"{url}/signin") as posted:
                await page.get_by_role("button", name="登录", exact=True).click()
            assert (await posted.value).status == 401
            text = await _text(page)
            assert "账号已暂时锁定" in text and "分钟后再试" in text
            _no_leak(text)
            assert SESSION_COOKIE not in await _cookies(context)
            await set_password(sessions, HEAD, PASSWORD)  # unlocks it for other tests
        finally:
            await context.close()
    with capsys.disabled():
        print("\n[browser sign-in] " + " ".join(str(p) for p in shots))


# --------------------------------------------------------------------------- OIDC


@pytest.fixture(scope="module")
def keycloak() -> Iterator[KeycloakServer]:
    with start_keycloak(free_port()) as server:
        yield server


async def test_oidc_sign_in_through_keycloak(sessions, browser, keycloak, capsys) -> None:
    shots: list[Path] = []
    started = time.monotonic()
    async with running_service(sessions, None, "no-queue",
                               oidc_issuer=keycloak.issuer) as url:
        context = await _context(browser)
        try:
            page = await context.new_page()
            await page.goto(f"{url}/signin")
            button = page.get_by_role("link", name="使用统一身份认证登录")
            await button.wait_for(timeout=WAIT_MS)
            await _shot(page, "with-oidc", shots)
            await button.click()
            # Keycloak's own login page.
            await page.wait_for_url(f"{keycloak.base_url}/**", timeout=WAIT_MS)
            await page.locator("#username").wait_for(timeout=WAIT_MS)
            assert "code_challenge_method=S256" in page.url and "nonce=" in page.url
            await _shot(page, "keycloak", shots)
            await page.locator("#username").fill(PERSON)
            await page.locator("#password").fill(KEYCLOAK_PASSWORD)
            await page.locator("#kc-login").click()
            await page.wait_for_url(f"{url}/me", timeout=WAIT_MS)
            text = await _text(page)
            assert await page.inner_text("#name") == NAME
            assert await page.inner_text("#person-id") == PERSON
            assert ROLE in await page.inner_text("#role")
            assert (await page.inner_text("#unit")).startswith(UNIT_NAME)
            assert "统一身份认证" in text
            _no_leak(text)
            cookies = await _cookies(context)
            assert cookies[SESSION_COOKIE]["httpOnly"]
            assert "petition_oidc" not in cookies  # the flow's cookie is spent
            await _shot(page, "oidc-me", shots)

            # A callback that this browser did not start (a forged state) is refused.
            answer = await page.goto(f"{url}/signin/oidc/callback?state=forged&code=x")
            assert answer is not None and answer.status == 400
            text = await _text(page)
            assert "统一身份认证登录未完成" in text
            _no_leak(text)
        finally:
            await context.close()
    elapsed = time.monotonic() - started
    with capsys.disabled():
        print(f"\n[browser sign-in, OIDC, {elapsed:.1f}s] "
              + " ".join(str(p) for p in shots))
    assert elapsed < 60
