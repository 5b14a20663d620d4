"""The online intake form (service/pages_intake.py) without a browser or Temporal: the
form's own checks and their Chinese words, the form -> PetitionIntake mapping the API
takes, the files' checks (the documents API's), the one-time form token and the intake id
derived from it; then the pages on the service without Temporal (PostgreSQL only): the
form lists the portal's units by name, bad input answers inline errors and registers
nothing, an expired form is refused, the English switch, the registration rate limit."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import func, select

from adapters.tables import Petition, RegistrationNumber
from domain.models import Attachment, Channel, PetitionIntake, personal_number_in
from service import pages_intake
from service.accounts_cmd import add_intake_client
from service.app import create_app
from service.auth.tokens import TokenIssuer, token_ring
from service.context import ServiceContext
from service.pages_intake import (
    File,
    check_files,
    check_form,
    intake_id_of,
    new_form_token,
    to_intake,
)
from tests.service_helpers import service_settings
from tests.test_attachments import scanned_pdf, tiny_png

UNITS = {"QS-XFJ": "青山县信访局 Qingshan County Petition Bureau",
         "QS-HRSS": "青山县人力资源和社会保障局 Qingshan County Human Resources and Social "
                    "Security Bureau"}
# A fictional petitioner: a valid ID number (GB 11643 check character), a mobile number.
VALID = {"unit": "QS-HRSS", "category": "wage_arrears", "name": "  王小明 ",
         "id_number": "11010519491231002x", "phone": "139 1234 5678",
         "address": "青山县东街1号", "subject": "某公司拖欠工资三个月",
         "content": "本人在某公司工作，公司拖欠工资三个月。\r\n请求督促支付。"}


def test_a_valid_form_maps_to_the_intake_the_api_takes() -> None:
    checked = check_form(VALID, UNITS)
    assert checked.errors == {}
    assert checked.values["name"] == "王小明"
    assert checked.values["id_number"] == "11010519491231002X"
    assert checked.values["phone"] == "13912345678"
    attachment = Attachment(filename="欠条.png", media_type="image/png", size_bytes=3,
                            document_id="doc_" + "a" * 26, sha256="0" * 64)
    at = datetime(2026, 3, 9, 2, 30, tzinfo=UTC)
    intake = to_intake(checked.values, intake_id="web-abcdefghijklmnopqrstuvwxyz",
                       profile="zhejiang", received_at=at, attachments=[attachment])
    assert isinstance(intake, PetitionIntake)
    assert intake.channel is Channel.ONLINE
    assert intake.unit == "QS-HRSS" and intake.category.value == "wage_arrears"
    assert intake.profile == "zhejiang" and intake.received_at == at
    assert intake.petitioner.name == "王小明"
    assert intake.petitioner.id_number == "11010519491231002X"
    assert intake.petitioner.phone == "13912345678"
    assert intake.petitioner.address == "青山县东街1号"
    assert intake.subject == "某公司拖欠工资三个月"
    assert intake.content.startswith("本人在某公司工作")
    assert intake.attachments == [attachment]
    # An empty address is no address, not an empty string.
    bare = to_intake({**checked.values, "address": ""}, intake_id="web-abcdefghijklmnop",
                     profile="national", received_at=at, attachments=[])
    assert bare.petitioner.address is None


@pytest.mark.parametrize("field, value, words", [
    ("unit", "", "请选择受理单位。"),
    ("unit", "LJ-XFJ", "请从列表中选择受理单位。"),
    ("category", "wages", "请选择问题类别。"),
    ("name", "", "请填写姓名。"),
    ("name", "王" * 51, "姓名不能超过50个字。"),
    ("id_number", "", "请填写身份证号码。"),
    ("id_number", "1101051949123100", "身份证号码应为18位"),
    ("id_number", "110105194912310021", "身份证号码有误"),  # the check character is X
    ("phone", "", "请填写联系电话。"),
    ("phone", "call me", "联系电话格式不正确"),
    ("phone", "12345", "联系电话格式不正确"),
    ("address", "路" * 201, "通讯地址不能超过200个字。"),
    ("subject", " ", "请填写事项标题。"),
    ("subject", "题" * 101, "事项标题不能超过100个字。"),
    ("content", "", "请填写信访内容。"),
    ("content", "坏\x00字", "含有无法识别的字符"),
])
def test_each_field_has_its_own_chinese_error(field: str, value: str, words: str) -> None:
    checked = check_form({**VALID, field: value}, UNITS)
    assert list(checked.errors) == [field]
    assert words in checked.errors[field]
    # What was typed is kept (trimmed) to be shown again.
    assert checked.values["subject"] == VALID["subject"].strip() or field == "subject"


def test_a_blank_form_names_every_required_field() -> None:
    checked = check_form({}, UNITS)
    assert set(checked.errors) == {"unit", "category", "name", "id_number", "phone",
                                   "subject", "content"}
    assert all(re.search(r"[\u4e00-\u9fff]", words) for words in checked.errors.values())


def test_the_errors_translate() -> None:
    english = {"请填写姓名。": "Please enter your name."}
    checked = check_form({**VALID, "name": ""}, UNITS, lambda m: english.get(m, m))
    assert checked.errors == {"name": "Please enter your name."}


def test_files_are_checked_as_the_documents_api_checks_them() -> None:
    png, pdf = tiny_png(), scanned_pdf(2048, b"SCAN")
    checked, error = check_files([File("欠条.png", png, "image/png"),
                                  File("合同.pdf", pdf, "application/octet-stream"),
                                  File("", b"", None)])  # an empty file input
    assert error is None
    assert [(f.name, media) for f, media in checked] == [("欠条.png", "image/png"),
                                                         ("合同.pdf", "application/pdf")]
    _, error = check_files([File("说明.txt", "纯文本".encode(), "text/plain")])
    assert error is not None and "附件「说明.txt」的类型不能上传" in error and "PDF" in error
    _, error = check_files([File("照片.pdf", png, "application/pdf")])
    assert error == "附件「照片.pdf」的内容与文件类型不符。"
    _, error = check_files([File("空.pdf", b"", "application/pdf")])
    assert error == "附件「空.pdf」是空文件。"
    _, error = check_files([File(f"{i}.png", png, "image/png") for i in range(6)])
    assert error == "最多上传5个附件。"
    _, error = check_files([File("大.pdf", pdf + b"0" * (20 * 1024 * 1024), None)])
    assert error == "附件「大.pdf」超过20MB。"
    # A path in the name is dropped: only the file's own name is kept.
    checked, _ = check_files([File("C:\\照片\\欠条.png", png, None)])
    assert checked[0][0].name == "欠条.png"


def _ctx() -> ServiceContext:
    settings = service_settings()
    return ServiceContext(settings=settings, sessions=None, client=None,  # type: ignore[arg-type]
                          tokens=TokenIssuer(token_ring(settings)), oidc=None)


def test_the_intake_id_comes_from_the_form_token() -> None:
    ctx = _ctx()
    token = new_form_token(ctx)
    first = intake_id_of(ctx, token)
    assert first is not None and first == intake_id_of(ctx, token)  # a double submit: one id
    assert re.fullmatch(r"web-[a-z2-7]{26}", first)
    assert personal_number_in(first) is None
    other = intake_id_of(ctx, new_form_token(ctx))
    assert other is not None and other != first
    # Forged, altered or expired: no intake id.
    nonce, expires, kid, mac = token.split(".")
    assert intake_id_of(ctx, f"{nonce}x.{expires}.{kid}.{mac}") is None
    assert intake_id_of(ctx, f"{nonce}.{int(expires) + 1}.{kid}.{mac}") is None
    assert intake_id_of(ctx, "") is None and intake_id_of(ctx, "a.b.c.d") is None
    assert intake_id_of(ctx, token, now=time.time() + 13 * 3600) is None
    # The id never holds the petitioner's numbers, so the intake takes it.
    intake = to_intake(check_form(VALID, UNITS).values, intake_id=first, profile="national",
                       received_at=datetime.now(UTC), attachments=[])
    assert intake.intake_id == first


# ------------------------------------------------------------------ the pages


@pytest_asyncio.fixture(loop_scope="session")
async def portal(sessions, monkeypatch) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """The service without Temporal, its portal client registering for two units."""
    client_id = f"portal-{uuid.uuid4().hex[:8]}"
    await add_intake_client(sessions, client_id, "网上信访平台", list(UNITS))
    monkeypatch.setenv("PETITION_SERVICE_PORTAL_CLIENT", client_id)
    monkeypatch.setenv("PETITION_SERVICE_PORTAL_PER_HOUR", "1")
    pages_intake.portal_settings.cache_clear()
    app = create_app(service_settings(), sessions=sessions, petitions=None)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://service") as http:
            yield http, client_id
    finally:
        pages_intake.portal_settings.cache_clear()


def _hidden(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found is not None, name
    return found.group(1)


async def _post(http: httpx.AsyncClient, form: dict[str, str],
                files: list[tuple[str, tuple[str, bytes, str]]] | None = None
                ) -> httpx.Response:
    return await http.post("/petition", data=form,
                           files=files or [("attachments", ("", b"", "application/octet-stream"))])


async def _registered(sessions) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Petition)) or 0)


async def test_the_form_lists_the_portals_units_by_name(portal) -> None:
    http, _ = portal
    page = await http.get("/petition")
    assert page.status_code == 200
    html = page.text
    assert '<html lang="zh-CN">' in html and "网上提交信访事项" in html
    assert "青山县信访局" in html and "青山县人力资源和社会保障局" in html
    assert "Qingshan" not in html  # the Chinese name only
    assert "拖欠工资" in html and "wage_arrears" in html  # the label shown, the value sent
    assert 'enctype="multipart/form-data"' in html
    assert _hidden(html, "csrf_token") and _hidden(html, "form_token")
    assert 'href="/track"' in html
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    # /track links to the form.
    assert 'href="/petition"' in (await http.get("/track")).text


async def test_bad_input_answers_inline_errors_and_registers_nothing(portal, sessions) -> None:
    http, _ = portal
    html = (await http.get("/petition")).text
    before = await _registered(sessions)
    form = {**VALID, "id_number": "110105194912310021", "phone": "12",
            "csrf_token": _hidden(html, "csrf_token"), "form_token": _hidden(html, "form_token")}
    answer = await _post(http, form, [("attachments", ("欠条.png", tiny_png(), "image/png"))])
    assert answer.status_code == 400
    text = answer.text
    assert "提交未成功，请按提示修改后重新提交。" in text
    assert 'id="id_number-error">身份证号码有误' in text
    assert 'id="phone-error">联系电话格式不正确' in text
    assert 'aria-invalid="true"' in text
    # What was typed is kept (the petitioner's own page), the files must be chosen again.
    assert 'value="王小明"' in text and "某公司拖欠工资三个月" in text
    assert "之前选择的附件没有保留" in text
    # The same form token, to submit the corrected form as the same petition.
    assert _hidden(text, "form_token") == form["form_token"]
    assert await _registered(sessions) == before
    intake_id = pages_intake.intake_id_of(http._transport.app.state.ctx,  # type: ignore[attr-defined]
                                          form["form_token"])
    async with sessions() as session:
        assert await session.get(RegistrationNumber, intake_id) is None
    # A file of a type a petition may not carry: the attachments field says so.
    form["id_number"], form["phone"] = VALID["id_number"], VALID["phone"]
    answer = await _post(http, form, [("attachments", ("说明.exe", b"MZ\x90\x00" * 40,
                                                       "application/octet-stream"))])
    assert answer.status_code == 400
    assert 'id="attachments-error">附件「说明.exe」的类型不能上传' in answer.text
    assert await _registered(sessions) == before


async def test_a_form_without_its_tokens_is_refused(portal, sessions) -> None:
    http, _ = portal
    html = (await http.get("/petition")).text
    before = await _registered(sessions)
    answer = await _post(http, {**VALID, "csrf_token": "forged",
                                "form_token": _hidden(html, "form_token")})
    assert answer.status_code == 400 and "页面已过期" in answer.text
    answer = await _post(http, {**VALID, "csrf_token": _hidden(html, "csrf_token"),
                                "form_token": "a.1.b.c"})
    assert answer.status_code == 400 and "页面已过期" in answer.text
    assert 'value="王小明"' in answer.text  # kept, with a new form token to send it again
    assert _hidden(answer.text, "form_token") != "a.1.b.c"
    # Not a form at all: a Chinese page, not JSON.
    answer = await http.post("/petition", json={"unit": "QS-XFJ"})
    assert answer.status_code == 400 and "提交的内容不完整" in answer.text
    assert await _registered(sessions) == before


async def test_the_form_in_english(portal) -> None:
    http, _ = portal
    await http.get("/lang/en?next=/petition")
    html = (await http.get("/petition")).text
    assert '<html lang="en">' in html
    assert "Submit a petition online" in html and "ID card number" in html
    assert "Qingshan County Petition Bureau" in html and "Unpaid wages" in html
    assert 'href="/lang/zh?next=/petition"' in html
    form = {**VALID, "name": "", "csrf_token": _hidden(html, "csrf_token"),
            "form_token": _hidden(html, "form_token")}
    answer = await _post(http, form)
    assert answer.status_code == 400 and "Please enter your name." in answer.text
    assert "请填写姓名" not in answer.text and "身份证号码" not in answer.text


async def test_registrations_are_rate_limited_per_address(portal) -> None:
    """One registration an hour here (PETITION_SERVICE_PORTAL_PER_HOUR=1): the second
    valid form from the same address is refused in words. (Without Temporal the first
    cannot start its workflow: it answers that the service is unavailable.)"""
    http, _ = portal
    answers: list[Any] = []
    for _ in range(2):
        html = (await http.get("/petition")).text
        answers.append(await _post(http, {**VALID, "csrf_token": _hidden(html, "csrf_token"),
                                          "form_token": _hidden(html, "form_token")}))
    assert answers[0].status_code == 503 and "网上信访暂不可用" in answers[0].text
    assert answers[1].status_code == 429 and "提交过于频繁" in answers[1].text
    assert answers[1].headers["retry-after"] == "3600"


async def test_without_a_portal_client_the_form_says_it_is_unavailable(
        sessions, monkeypatch) -> None:
    monkeypatch.setenv("PETITION_SERVICE_PORTAL_CLIENT", f"absent-{uuid.uuid4().hex[:6]}")
    pages_intake.portal_settings.cache_clear()
    try:
        app = create_app(service_settings(), sessions=sessions, petitions=None)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://service") as http:
            page = await http.get("/petition")
    finally:
        pages_intake.portal_settings.cache_clear()
    assert page.status_code == 503 and "网上信访暂不可用" in page.text


def test_a_track_forms_request_id_comes_from_its_token() -> None:
    """/track/case's action forms: the same form sent twice is one request id (the
    workflow takes the action once); a token not signed by the service is none."""
    from service.pages_track import _request_token, request_id_of

    ctx = _ctx()
    token = _request_token(ctx)
    first = request_id_of(ctx, token)
    assert first is not None and first == request_id_of(ctx, token)
    assert re.fullmatch(r"track-[0-9a-f]{32}", first)
    assert request_id_of(ctx, _request_token(ctx)) not in (None, first)
    nonce, kid, mac = token.split(".")
    assert request_id_of(ctx, f"{nonce}x.{kid}.{mac}") is None
    assert request_id_of(ctx, f"{nonce}.nokey.{mac}") is None
    assert request_id_of(ctx, "") is None
