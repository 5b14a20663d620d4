"""Staff sign-in in the browser: server-rendered pages, Chinese first.

- `GET /signin`, `POST /signin`: a local account (the same argon2id check and lockout as
  `POST /auth/token`); on success the session cookie `petition_session` holds a service
  token (HttpOnly, SameSite=Lax, Secure over https, as long-lived as the token).
- `GET /signin/oidc`, `GET /signin/oidc/callback`: the bureau's OpenID Connect provider,
  authorization code + PKCE (S256) with state and nonce. The state and nonce travel in a
  short-lived signed cookie; the PKCE verifier is never stored anywhere: it is an HMAC of the
  state under the service's key. The tokens are checked against the provider's JWKS (the
  access token for this API's audience, the ID token for the browser client with the
  nonce), and `preferred_username` must be staff of the directory.
- `GET /me`: who is signed in (name, id, role, unit name); `POST /signout`.

Forms carry a CSRF token (double submit: a random cookie and its HMAC in the form). Every
error is a Chinese page; nothing technical reaches the browser.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Callable, Coroutine
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import httpx
import jwt
from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic_settings import BaseSettings, SettingsConfigDict

from adapters.tables import Person, Unit
from domain.models import Actor, Role
from service import i18n
from service.auth.oidc import OidcVerifier
from service.auth.principal import SESSION_COOKIE, staff_actor
from service.auth.routes import _staff_token
from service.auth.tokens import TokenError
from service.context import ServiceContext, context
from service.i18n import N_
from service.params import KEY_PATTERN
from service.problems import Problem

LOG = logging.getLogger("petition.service.pages")

CSRF_COOKIE = "petition_csrf"
FLOW_COOKIE = "petition_oidc"
FLOW_PATH = "/signin/oidc"
FLOW_MINUTES = 10
FLOW_AUDIENCE = "petition-flow-signin"
DISCOVERY_SECONDS = 300
HTTP_TIMEOUT = 15.0

ROLE_NAMES = {
    Role.HANDLER: ("承办人员", "Handler"),
    Role.UNIT_HEAD: ("单位负责人", "Unit head"),
    Role.LEADER: ("包案领导", "Supervising leader"),
    Role.SUPERVISOR: ("督查人员", "Supervisor"),
    Role.INTAKE_CLERK: ("登记人员", "Intake clerk"),
}
BAD_CREDENTIALS = N_("人员编号或密码不正确。")

Ctx = Annotated[ServiceContext, Depends(context)]


class PageSettings(BaseSettings):
    """Settings of the browser sign-in (environment prefix PETITION_SERVICE_, like
    ServiceSettings): the provider's browser client (public, PKCE)."""

    model_config = SettingsConfigDict(env_prefix="PETITION_SERVICE_", env_file=".env",
                                      extra="ignore")
    oidc_client_id: str = "workbench"
    oidc_scope: str = "openid"


@lru_cache(maxsize=1)
def page_settings() -> PageSettings:
    return PageSettings()


@lru_cache(maxsize=len(i18n.LANGUAGES))
def templates(language: str) -> Environment:
    """The pages' templates in `language` (`{% trans %}`, `_()`; service/i18n.py)."""
    env = Environment(
        loader=FileSystemLoader(Path(__file__).resolve().parent / "templates"),
        autoescape=select_autoescape(["html"]), auto_reload=False,
        extensions=["jinja2.ext.i18n"])
    env.install_gettext_translations(i18n.translations(language), newstyle=True)  # type: ignore[attr-defined]
    return env


def language(request: Request | None) -> str:
    return i18n.language_of(request.cookies.get(i18n.LANG_COOKIE) if request else None)

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _here(request: Request | None) -> str:
    """The page's own path and query: where the language switch comes back to."""
    if request is None:
        return "/"
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def render(template: str, status: int = 200, headers: dict[str, str] | None = None, *,
           request: Request | None = None, **values: Any) -> HTMLResponse:
    """A page in the request's language (Chinese without a request)."""
    lang = language(request)
    html = templates(lang).get_template(template).render(
        lang=lang, html_lang=i18n.HTML_LANG[lang],
        here=_here(request), **values)
    return HTMLResponse(html, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})


def form_page(template: str, request: Request, ctx: ServiceContext, status: int = 200,
              headers: dict[str, str] | None = None, **values: Any) -> Response:
    """A page with forms, in the request's language: the CSRF token of its forms in
    `csrf_token`, the CSRF cookie set if the browser had none."""
    token, fresh = _csrf(request, ctx)
    page = render(template, status, headers, request=request, csrf_token=token, **values)
    return _with_csrf_cookie(page, request, fresh)


def message_page(status: int, heading: str, message: str, *, subtitle: str = "",
                 link: str = "/signin", link_text: str = N_("返回登录页"),
                 headers: dict[str, str] | None = None,
                 request: Request | None = None) -> HTMLResponse:
    """A message in the request's language: `heading`, `message` and `link_text` are
    catalogue ids (marked with N_). `subtitle`: kept for callers, not shown."""
    return render("message.html", status, headers, request=request, heading=heading,
                  subtitle=subtitle,
                  message=message, link=link, link_text=link_text)


class PageRoute(APIRoute):
    """A page answers a Chinese page whatever happens: an invalid request, a refusal, or
    an unexpected error (logged, never shown)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError:
                return message_page(400, N_("请求无效"),
                                    N_("提交的内容不完整或格式不正确，请返回重试。"),
                                    request=request)
            except Problem as problem:
                if problem.status == 503:
                    return message_page(503, N_("服务暂不可用"),
                                        N_("系统暂时无法处理您的请求，请稍后再试。"),
                                        request=request)
                return message_page(problem.status if problem.status < 500 else 500,
                                    N_("无法完成请求"), N_("您的请求未能完成，请返回重试。"),
                                    request=request)
            except Exception:
                LOG.exception("sign-in page %s failed", request.url.path)
                return message_page(500, N_("系统错误"), N_(
                    "系统暂时出现问题，请稍后再试。如问题持续，请联系系统管理员。"),
                    request=request)

        return page


router = APIRouter(route_class=PageRoute, include_in_schema=False)


# ------------------------------------------------------------------- signing helpers


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _macs(ctx: ServiceContext, purpose: str, value: str) -> list[str]:
    """The HMAC of `value` for `purpose` under each key of the ring, the active key first."""
    ring = ctx.tokens.ring
    order = [ring.active, *(k for k in ring.keys if k != ring.active)]
    message = f"petition-flow pages/{purpose}:{value}".encode()
    return [_b64(hmac.new(ring.keys[k], message, hashlib.sha256).digest()) for k in order]


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _set_cookie(response: Response, request: Request, name: str, value: str, max_age: int,
                path: str = "/") -> None:
    response.set_cookie(name, value, max_age=max_age, path=path, httponly=True,
                        samesite="lax", secure=_secure(request))


def _csrf(request: Request, ctx: ServiceContext) -> tuple[str, str | None]:
    """The form's CSRF token, and the new cookie value to set if the browser had none."""
    cookie = request.cookies.get(CSRF_COOKIE)
    fresh = None
    if not cookie or len(cookie) > 100:
        cookie = fresh = secrets.token_urlsafe(32)
    return _macs(ctx, "csrf", cookie)[0], fresh


def _csrf_ok(request: Request, ctx: ServiceContext, token: str) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE)
    if not cookie or not token or len(cookie) > 100:
        return False
    return any(hmac.compare_digest(token, mac) for mac in _macs(ctx, "csrf", cookie))


def _with_csrf_cookie(response: Response, request: Request, fresh: str | None) -> Response:
    if fresh is not None:
        _set_cookie(response, request, CSRF_COOKIE, fresh, 12 * 3600)
    return response


def _sign_flow(ctx: ServiceContext, claims: dict[str, Any]) -> str:
    ring = ctx.tokens.ring
    now = int(time.time())
    return jwt.encode({**claims, "aud": FLOW_AUDIENCE, "iat": now,
                       "exp": now + FLOW_MINUTES * 60}, ring.keys[ring.active],
                      algorithm="HS256", headers={"kid": ring.active})


def _read_flow(ctx: ServiceContext, cookie: str | None) -> dict[str, Any] | None:
    if not cookie:
        return None
    try:
        key = ctx.tokens.ring.keys.get(str(jwt.get_unverified_header(cookie).get("kid")))
        if key is None:
            return None
        return dict(jwt.decode(cookie, key, algorithms=["HS256"], audience=FLOW_AUDIENCE,
                               options={"require": ["exp", "aud"]}))
    except jwt.PyJWTError:
        return None


# ------------------------------------------------------------------- sessions


async def _session_person(request: Request, ctx: ServiceContext) -> tuple[str, str] | None:
    """The person id and sign-in method of the session cookie, if it is a valid staff
    session of someone still on the staff of the directory."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie or not ctx.tokens.is_ours(cookie):
        return None
    try:
        claims = ctx.tokens.verify(cookie)
    except TokenError:
        return None
    if claims.kind != "staff" or await staff_actor(ctx, claims.subject) is None:
        return None
    method = jwt.decode(cookie, options={"verify_signature": False}).get("amr")
    return claims.subject, str(method or "pwd")


def safe_next(target: str | None, default: str = "/me") -> str:
    """Where to go after signing in: a path on this site only (never an open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") \
            or "\\" in target or len(target) > 512:
        return default
    return target


def _signed_in(request: Request, token: str, lifetime: int, target: str | None = None
               ) -> Response:
    response = RedirectResponse(safe_next(target), status_code=303, headers=SECURITY_HEADERS)
    _set_cookie(response, request, SESSION_COOKIE, token, lifetime)
    return response


def _split_bilingual(text: str | None) -> tuple[str, str]:
    """'青山县人力资源和社会保障局 Qingshan County ...' -> (Chinese, English)."""
    if not text:
        return "", ""
    found = re.match(r"^(.*?[^\x00-\x7f])\s+([\x00-\x7f]+)$", text)
    return (found.group(1), found.group(2)) if found else (text, "")


# ------------------------------------------------------------------- local accounts


def _signin_page(request: Request, ctx: ServiceContext, *, status: int = 200,
                 error: str = "", username: str = "", target: str | None = None,
                 headers: dict[str, str] | None = None,
                 error_args: dict[str, Any] | None = None) -> Response:
    target = safe_next(target or request.query_params.get("next"), "")
    oidc_url = request.url_for("signin_oidc").path
    return form_page("signin.html", request, ctx, status, headers, heading=N_("工作人员登录"),
                     error=error, error_args=error_args, username=username, next=target,
                     action=request.url_for("signin_post").path, oidc=ctx.oidc is not None,
                     oidc_url=f"{oidc_url}?{urlencode({'next': target})}" if target
                     else oidc_url)


@router.get("/signin", name="signin_page")
async def signin_page(request: Request, ctx: Ctx) -> Response:
    return _signin_page(request, ctx)


@router.post("/signin", name="signin_post")
async def signin_post(request: Request, ctx: Ctx,
                      username: Annotated[str, Form()] = "",
                      password: Annotated[str, Form()] = "",
                      csrf_token: Annotated[str, Form()] = "",
                      next: Annotated[str, Form()] = "") -> Response:
    username = username.strip()
    if not _csrf_ok(request, ctx, csrf_token):
        return _signin_page(request, ctx, status=400, username=username,
                            error=N_("页面已过期，请重新输入后登录。"))
    if not username or not password:
        return _signin_page(request, ctx, status=400, username=username,
                            error=N_("请输入人员编号和密码。"))
    if len(username) > 64 or not re.match(KEY_PATTERN, username) or len(password) > 256:
        return _signin_page(request, ctx, status=401, error=BAD_CREDENTIALS)
    try:
        answer = await _staff_token(ctx, username, password)
    except Problem as refused:
        if refused.kind == "locked":
            wait = int(refused.headers.get("Retry-After", "60"))
            minutes = max(1, -(-wait // 60))
            return _signin_page(
                request, ctx, status=401, username=username,
                headers={"Retry-After": str(wait)},
                error=N_("连续多次密码错误，账号已暂时锁定，请 %(minutes)s 分钟后再试。"),
                error_args={"minutes": minutes})
        if refused.status == 401:
            return _signin_page(request, ctx, status=401, username=username,
                                error=BAD_CREDENTIALS)
        raise
    return _signed_in(request, answer.access_token, answer.expires_in, next)


# ------------------------------------------------------------------- OpenID Connect

_discovery: dict[str, tuple[float, dict[str, Any]]] = {}


async def _provider(issuer: str) -> dict[str, Any]:
    """The provider's discovery document (cached for a few minutes)."""
    cached = _discovery.get(issuer)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http:
        answer = await http.get(f"{issuer}/.well-known/openid-configuration")
        answer.raise_for_status()
        document = dict(answer.json())
    if str(document.get("issuer", "")).rstrip("/") != issuer:
        raise ValueError("the discovery document names another issuer")
    for needed in ("authorization_endpoint", "token_endpoint"):
        if not document.get(needed):
            raise ValueError(f"the discovery document has no {needed}")
    _discovery[issuer] = (time.monotonic() + DISCOVERY_SECONDS, document)
    return document


@lru_cache(maxsize=8)
def _id_token_verifier(issuer: str, client_id: str, jwks_url: str) -> OidcVerifier:
    """ID tokens are for the browser client (`aud` = its client id)."""
    return OidcVerifier(issuer, client_id, jwks_url)


def _pkce(ctx: ServiceContext, state: str) -> tuple[str, str]:
    verifier = _macs(ctx, "pkce", state)[0]  # 43 characters of base64url
    challenge = _b64(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge


def _oidc_off(request: Request) -> HTMLResponse:
    return message_page(404, N_("未启用统一身份认证"),
                        N_("本系统未配置统一身份认证，请使用本地账号登录。"),
                        request=request)


def _provider_unreachable(request: Request) -> HTMLResponse:
    return message_page(503, N_("统一身份认证暂不可用"),
                        N_("暂时无法连接统一身份认证服务，请稍后再试，或使用本地账号登录。"),
                        request=request)


def _oidc_failed(request: Request, status: int = 400) -> HTMLResponse:
    return message_page(status, N_("统一身份认证登录未完成"),
                        N_("登录请求已失效或未通过验证，请重新登录。"),
                        request=request)


@router.get("/signin/oidc", name="signin_oidc")
async def signin_oidc(request: Request, ctx: Ctx, next: str = "") -> Response:
    if ctx.oidc is None:
        return _oidc_off(request)
    try:
        provider = await _provider(ctx.oidc.issuer)
    except (httpx.HTTPError, ValueError) as err:
        LOG.warning("OIDC discovery of %s failed: %s", ctx.oidc.issuer, err)
        return _provider_unreachable(request)
    state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    _, challenge = _pkce(ctx, state)
    query = urlencode({
        "response_type": "code", "client_id": page_settings().oidc_client_id,
        "redirect_uri": str(request.url_for("oidc_callback")),
        "scope": page_settings().oidc_scope, "state": state, "nonce": nonce,
        "code_challenge": challenge, "code_challenge_method": "S256"})
    endpoint = str(provider["authorization_endpoint"])
    response = RedirectResponse(f"{endpoint}{'&' if '?' in endpoint else '?'}{query}",
                                status_code=303, headers=SECURITY_HEADERS)
    _set_cookie(response, request, FLOW_COOKIE, _sign_flow(ctx, {"st": state, "n": nonce,
                                                              "nx": safe_next(next, "")}),
                FLOW_MINUTES * 60, path=FLOW_PATH)
    return response


def _forget_flow(response: Response, request: Request) -> Response:
    response.delete_cookie(FLOW_COOKIE, path=FLOW_PATH, httponly=True, samesite="lax",
                           secure=_secure(request))
    return response


@router.get("/signin/oidc/callback", name="oidc_callback")
async def oidc_callback(request: Request, ctx: Ctx, state: str = "", code: str = "",
                        error: str = "", iss: str = "") -> Response:
    if ctx.oidc is None:
        return _oidc_off(request)
    flow = _read_flow(ctx, request.cookies.get(FLOW_COOKIE))
    if flow is None or not state or not hmac.compare_digest(str(flow.get("st", "")), state):
        return _forget_flow(_oidc_failed(request), request)
    if error:
        LOG.info("the provider answered the sign-in with error %s", error[:100])
        return _forget_flow(message_page(
            401, N_("统一身份认证登录未完成"),
            N_("您已取消登录，或统一身份认证服务拒绝了本次登录。"),
            request=request), request)
    if not code or (iss and iss.rstrip("/") != ctx.oidc.issuer):
        return _forget_flow(_oidc_failed(request), request)
    settings = page_settings()
    try:
        provider = await _provider(ctx.oidc.issuer)
        verifier, _ = _pkce(ctx, state)
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http:
            answer = await http.post(str(provider["token_endpoint"]), data={
                "grant_type": "authorization_code", "code": code,
                "redirect_uri": str(request.url_for("oidc_callback")),
                "client_id": settings.oidc_client_id, "code_verifier": verifier},
                headers={"Accept": "application/json"})
    except (httpx.HTTPError, ValueError) as err:
        LOG.warning("OIDC token exchange with %s failed: %s", ctx.oidc.issuer, err)
        return _forget_flow(_provider_unreachable(request), request)
    if answer.status_code != 200:
        LOG.info("OIDC token exchange refused: %s %s", answer.status_code, answer.text[:200])
        return _forget_flow(_oidc_failed(request), request)
    try:
        tokens = dict(answer.json())
        access = await ctx.oidc.verify(str(tokens["access_token"]))
        jwks_url = ctx.oidc.jwks.uri
        identity = await _id_token_verifier(ctx.oidc.issuer, settings.oidc_client_id,
                                            jwks_url).verify(str(tokens["id_token"]))
    except (KeyError, ValueError, TokenError) as err:
        LOG.info("OIDC tokens refused: %s", err)
        return _forget_flow(_oidc_failed(request), request)
    nonce = str(identity.get("nonce", ""))
    if not nonce or not hmac.compare_digest(nonce, str(flow.get("n", ""))) \
            or identity.get("sub") != access.get("sub"):
        return _forget_flow(_oidc_failed(request), request)
    username = str(identity.get("preferred_username") or access.get("preferred_username") or "")
    if not username or await staff_actor(ctx, username) is None:
        LOG.info("OIDC sign-in of %r refused: not staff in the directory", username[:64])
        return _forget_flow(message_page(
            403, N_("无权登录"),
            N_("您的统一身份认证账号不是本系统登记的工作人员，请联系系统管理员。"),
            request=request), request)
    token, lifetime = ctx.tokens.issue(
        "staff", username, timedelta(minutes=ctx.settings.staff_token_minutes), amr="oidc")
    return _forget_flow(_signed_in(request, token, lifetime, str(flow.get("nx") or "")),
                        request)


# ------------------------------------------------------------------- who is signed in


def _not_signed_in(request: Request) -> Response:
    page = message_page(401, N_("尚未登录"), N_("您尚未登录，或登录已过期，请重新登录。"),
                        request=request)
    if request.cookies.get(SESSION_COOKIE):
        page.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax",
                           secure=_secure(request))
    return page


@router.get("/me", name="me")
async def me(request: Request, ctx: Ctx) -> Response:
    found = await _session_person(request, ctx)
    if found is None:
        return _not_signed_in(request)
    person_id, method = found
    actor = await staff_actor(ctx, person_id)
    async with ctx.sessions() as session:
        person = await session.get(Person, person_id)
        unit = await session.get(Unit, actor.unit) if actor and actor.unit else None
    if actor is None or person is None:
        return _not_signed_in(request)
    role_zh, role_en = ROLE_NAMES.get(actor.role, (str(actor.role), ""))
    unit_zh, unit_en = _split_bilingual(unit.name if unit else actor.unit)
    title_zh, _ = _split_bilingual(person.title)
    return form_page("me.html", request, ctx, heading=N_("已登录"), name=person.name,
                     person_id=person.id, role=role_zh, role_en=role_en, title=title_zh,
                     unit=unit_zh, unit_en=unit_en,
                     method=N_("统一身份认证") if method == "oidc" else N_("本地账号"),
                     signout_action=request.url_for("signout").path)


@router.post("/signout", name="signout")
async def signout(request: Request, ctx: Ctx,
                  csrf_token: Annotated[str, Form()] = "") -> Response:
    if not _csrf_ok(request, ctx, csrf_token):
        return message_page(400, N_("无法退出登录"), N_("页面已过期，请返回后重试。"),
                            request=request, link="/me", link_text=N_("返回"))
    response = RedirectResponse("/signin", status_code=303, headers=SECURITY_HEADERS)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax",
                           secure=_secure(request))
    return response



# ------------------------------------------------------------------- language switch


@router.get("/lang/{code}", name="switch_language")
async def switch_language(request: Request, code: str, next: str = "/") -> Response:
    """Sets the pages' language and goes back to the page it was asked from (a path on
    this site only: never an open redirect)."""
    if code not in i18n.LANGUAGES:
        code = i18n.DEFAULT
    if not next.startswith("/") or next.startswith("//") or "\\" in next:
        next = "/"
    response = RedirectResponse(next, status_code=303, headers=SECURITY_HEADERS)
    response.set_cookie(i18n.LANG_COOKIE, code, max_age=365 * 86400, path="/",
                        httponly=True, samesite="lax", secure=_secure(request))
    return response


# ------------------------------------------------------------------- staff pages


async def signed_in_staff(request: Request, ctx: ServiceContext) -> Actor | None:
    """The member of staff of the session cookie, as the directory has them now."""
    found = await _session_person(request, ctx)
    return None if found is None else await staff_actor(ctx, found[0])


def to_signin(request: Request) -> Response:
    """A staff page asked without a session: to the sign-in page, then back here."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/signin?{urlencode({'next': target})}", status_code=303,
                            headers=SECURITY_HEADERS)


async def staff_frame(ctx: ServiceContext, actor: Actor) -> dict[str, str]:
    """What staff_base.html shows of the signed-in person: name, role and unit by name."""
    async with ctx.sessions() as session:
        person = await session.get(Person, actor.id)
        unit = await session.get(Unit, actor.unit) if actor.unit else None
    role_zh, role_en = ROLE_NAMES.get(actor.role, (str(actor.role), ""))
    unit_zh, unit_en = _split_bilingual(unit.name if unit else actor.unit)
    return {"id": actor.id, "name": person.name if person else actor.id, "role_name": role_zh,
            "role_name_en": role_en or role_zh, "unit_name": unit_zh,
            "unit_name_en": unit_en or unit_zh}
