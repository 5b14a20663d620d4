"""Issue 12: the codec server decodes only for signed-in staff (the service's own tokens or
OIDC tokens, checked against the directory), records who decoded what, and no longer
encrypts for anyone who asks."""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload
from temporalio.converter import WorkflowSerializationContext

from security.codec import EncryptionCodec, KeyRing, generate_key
from security.codec_server import COOKIE, CodecServer, CodecServerError, StaffAuthenticator
from service.accounts_cmd import set_password
from service.auth.tokens import TokenIssuer
from service.config import ServiceSettings

KEY = base64.b64encode(b"c" * 32).decode()
OTHER_KEY = b"x" * 32
UI_ORIGIN = "http://127.0.0.1:8233"
HANDLER = "QS-XFJ.h1"
SUPERVISOR = "PROV-XFJ.sup"
PASSWORD = "correct horse battery staple"
NAME, ID_NUMBER, PHONE = "李四", "110101199003071234", "13800001111"
RING = KeyRing({"k1": generate_key()}, "k1")


def service_settings() -> ServiceSettings:
    return ServiceSettings(_env_file=None, token_keys=f"codec-k1:{KEY}", lockout_failures=5)


def issuer() -> TokenIssuer:
    return TokenIssuer(KeyRing.parse(f"codec-k1:{KEY}", None))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def staff_token(person: str, minutes: int = 15) -> str:
    return issuer().issue("staff", person, timedelta(minutes=minutes))[0]


def _call(url: str, body: bytes | None, headers: dict[str, str], method: str = "POST"
          ) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


async def decode(server: CodecServer, payloads: list[Payload],
                 headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    body = json.dumps({"payloads": [json_format.MessageToDict(p) for p in payloads]}).encode()
    status, got, raw = await asyncio.to_thread(
        _call, f"{server.url}/decode", body,
        {"Content-Type": "application/json", "X-Namespace": "default", **(headers or {})})
    return status, got, json.loads(raw) if raw else None


async def login(server: CodecServer, form: dict[str, str],
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    status, got, raw = await asyncio.to_thread(
        _call, f"{server.url}/login", urllib.parse.urlencode(form).encode(),
        {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})})
    return status, got, raw.decode()


@pytest.fixture
def sealed() -> Payload:
    clear = Payload(metadata={"encoding": b"json/plain"},
                    data=json.dumps({"name": NAME, "id": ID_NUMBER, "phone": PHONE}).encode())
    return EncryptionCodec(RING).with_context(
        WorkflowSerializationContext("default", "petition-intake-1")).encrypt(clear)


@pytest.fixture
def server(db_url: str, sessions: Any, tmp_path: Path) -> Iterator[CodecServer]:
    """`sessions` loads the sample directory into the test database first."""
    auth = StaffAuthenticator(service_settings(), db_url)
    with CodecServer(EncryptionCodec(RING), auth, [UI_ORIGIN],
                     audit_path=tmp_path / "codec-audit.log") as started:
        yield started


def clear_name(answer: Any) -> str:
    payload = json_format.ParseDict(answer["payloads"][0], Payload())
    return str(json.loads(payload.data)["name"])


async def test_no_token_is_401_and_nothing_is_decoded(server, sealed) -> None:
    status, headers, body = await decode(server, [sealed])
    assert status == 401 and body == {"error": "unauthorized"}
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert NAME not in json.dumps(body, ensure_ascii=False)
    # The old forms are gone: the token in the path, a static token.
    status, _, _ = await asyncio.to_thread(_call, f"{server.url}/some-token/decode", b"{}",
                                           {"X-Namespace": "default"})
    assert status == 404
    [entry] = server.audit.entries()
    assert entry["outcome"] == "unauthenticated" and "person" not in entry


async def test_a_handlers_token_decodes_and_the_decode_is_recorded(server, sealed) -> None:
    status, _, body = await decode(server, [sealed, sealed],
                                   {**bearer(staff_token(HANDLER)),
                                    "X-Workflow-Id": "petition-intake-1"})
    assert status == 200 and clear_name(body) == NAME
    [entry] = server.audit.entries()
    assert entry["outcome"] == "decoded" and entry["person"] == HANDLER
    assert entry["role"] == "handler" and entry["unit"] == "QS-XFJ"
    assert entry["workflow_id"] == "petition-intake-1" and entry["namespace"] == "default"
    assert entry["payloads"] == 2 and len(entry["fingerprints"]) == 2
    assert datetime.fromisoformat(entry["at"]) > datetime.now(UTC) - timedelta(minutes=1)
    # No personal data in the record, nor in the file.
    text = server.audit.path.read_text(encoding="utf-8")
    for secret in (NAME, ID_NUMBER, PHONE, base64.b64encode(sealed.data).decode()[:20]):
        assert secret not in text
    assert server.audit.path.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("kind", ["client", "petitioner"])
async def test_intake_clients_and_petitioners_are_refused_403(server, sealed, kind) -> None:
    if kind == "petitioner":
        token, _ = issuer().issue("petitioner", "petitioner-1", timedelta(minutes=5),
                                  wf="petition-x", reg="QS-2026-1")
    else:
        token, _ = issuer().issue("client", "client-1", timedelta(minutes=5))
    status, _, body = await decode(server, [sealed], bearer(token))
    assert status == 403 and body == {"error": "staff only"}
    [entry] = server.audit.entries()
    assert entry["outcome"] == "forbidden" and entry["subject"] == kind


async def test_someone_not_in_the_directory_is_refused_403(server, sealed) -> None:
    status, _, _ = await decode(server, [sealed], bearer(staff_token("nobody.at.all")))
    assert status == 403


async def test_expired_and_forged_tokens_are_401(server, sealed) -> None:
    expired, _ = issuer().issue("staff", HANDLER, timedelta(minutes=1),
                                now=datetime.now(UTC) - timedelta(hours=1))
    foreign = TokenIssuer(KeyRing({"codec-k1": OTHER_KEY}, "codec-k1")).issue(
        "staff", HANDLER, timedelta(minutes=5))[0]
    unsigned = jwt.encode({"sub": HANDLER, "kind": "staff"}, key="", algorithm="none")
    header, claims, signature = staff_token(HANDLER).split(".")
    body = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    body["sub"] = SUPERVISOR
    altered = ".".join([header, base64.urlsafe_b64encode(json.dumps(body).encode())
                        .decode().rstrip("="), signature])
    for token in (expired, foreign, unsigned, altered, "not-a-token"):
        status, _, answer = await decode(server, [sealed], bearer(token))
        assert status == 401, token
        assert NAME not in json.dumps(answer, ensure_ascii=False)
    assert {e["outcome"] for e in server.audit.entries()} == {"unauthenticated"}


async def test_encode_is_gone(server) -> None:
    clear = Payload(metadata={"encoding": b"json/plain"}, data=b'"x"')
    body = json.dumps({"payloads": [json_format.MessageToDict(clear)]}).encode()
    for headers in ({}, bearer(staff_token(HANDLER))):
        status, _, raw = await asyncio.to_thread(
            _call, f"{server.url}/encode", body, {"Content-Type": "application/json",
                                                  **headers})
        assert status == 405 and b"payloads" not in raw


async def test_the_login_page_sets_a_cookie_the_ui_can_decode_with(
        server, sessions, sealed) -> None:
    """A supervisor signs in with a local account on the codec server's /login; the
    browser then sends the cookie with the UI's cross-origin /decode."""
    await set_password(sessions, SUPERVISOR, PASSWORD)
    page = await asyncio.to_thread(_call, f"{server.url}/login", None, {}, "GET")
    assert page[0] == 200 and b"<form" in page[2]
    wrong = await login(server, {"username": SUPERVISOR, "password": "wrong password!!"})
    assert wrong[0] == 401 and "Set-Cookie" not in wrong[1]
    status, headers, text = await login(server, {"username": SUPERVISOR, "password": PASSWORD})
    assert status == 200, text
    assert f"Signed in as {SUPERVISOR}" in text
    cookie = headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    max_age = int(cookie.split("Max-Age=")[1].split(";")[0])
    assert 0 < max_age <= 15 * 60
    value = cookie.split(";")[0]

    ok = await decode(server, [sealed], {"Cookie": value, "Origin": UI_ORIGIN})
    assert ok[0] == 200 and clear_name(ok[2]) == NAME
    assert ok[1]["Access-Control-Allow-Origin"] == UI_ORIGIN
    assert ok[1]["Access-Control-Allow-Credentials"] == "true"
    # Not from a foreign page, nor without the UI's header (a plain form post).
    foreign = await decode(server, [sealed], {"Cookie": value, "Origin": "http://evil.example"})
    assert foreign[0] == 401 and "Access-Control-Allow-Origin" not in foreign[1]
    status, _, _ = await asyncio.to_thread(
        _call, f"{server.url}/decode", b'{"payloads": []}', {"Cookie": value})
    assert status == 401
    decoded = [e for e in server.audit.entries() if e["outcome"] == "decoded"]
    assert [(e["person"], e["token_from"]) for e in decoded] == [(SUPERVISOR, "cookie")]
    logins = [e for e in server.audit.entries() if e.get("event") == "login"]
    assert [e["outcome"] for e in logins] == ["unauthenticated", "signed-in"]


async def test_a_pasted_token_signs_in_but_not_a_petitioners(server, sealed) -> None:
    status, headers, _ = await login(server, {"token": staff_token(HANDLER)})
    assert status == 200 and headers["Set-Cookie"].startswith(f"{COOKIE}=")
    petitioner, _ = issuer().issue("petitioner", "petitioner-1", timedelta(minutes=5),
                                   wf="petition-x")
    status, headers, _ = await login(server, {"token": petitioner})
    assert status == 403 and "Set-Cookie" not in headers
    status, _, _ = await login(server, {"token": staff_token(HANDLER)},
                               {"Origin": "http://evil.example"})
    assert status == 403


async def test_cors_answers_only_the_ui_origins(server) -> None:
    preflight = await asyncio.to_thread(_call, f"{server.url}/decode", None, {
        "Origin": UI_ORIGIN, "Access-Control-Request-Method": "POST"}, "OPTIONS")
    foreign = await asyncio.to_thread(_call, f"{server.url}/decode", None, {
        "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}, "OPTIONS")
    assert preflight[0] == 204
    assert preflight[1]["Access-Control-Allow-Origin"] == UI_ORIGIN
    assert "Authorization" in preflight[1]["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Origin" not in foreign[1]


def test_a_static_token_is_no_longer_accepted() -> None:
    with pytest.raises(CodecServerError, match="authenticator"):
        CodecServer(EncryptionCodec(RING), "a-static-token-of-old-" * 2, [UI_ORIGIN])  # type: ignore[arg-type]
