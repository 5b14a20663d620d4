"""The online intake (网上信访): a petitioner registers a petition from a phone.

- `GET /petition`: the form. The unit addressed (the units the portal's intake client
  registers for, by name), the category, the petitioner (name, ID number, phone, address),
  the subject and the letter, and files. It carries the pages' CSRF token and a one-time
  form token, signed by the service.
- `POST /petition`: checked field by field, each error in words beside its field (what
  was typed is kept; files must be chosen again). Then the files are checked as the
  documents API checks them (size, type from the bytes) and stored sealed, and the
  petition is registered exactly as `POST /api/v1/petitions` registers it
  (`service.api.register_intake`), as the portal's intake client
  (`PETITION_SERVICE_PORTAL_CLIENT`, default `intake-portal`; `petition accounts
  add-intake-client`), on the channel `online`. Its intake id is derived from the form
  token (a keyed hash, base32: never personal data), so the same form submitted twice is
  one petition.
- The answer to the POST is the receipt (回执) itself, never a redirect: the registration
  number, the query code in large type with the advice to write it down, the unit, the
  date and the acceptance deadline in Beijing, a link to /track. The code is in no URL and
  no log. It is shown with the registration; a second submission of the same form (a
  double tap: the browser shows only the second answer) within `REPEAT_MINUTES` shows the
  same receipt again, code included, since only that form's holder can send that token.

Registrations are rate-limited per address (`PETITION_SERVICE_PORTAL_PER_HOUR`) besides
the service's general limit; the body limit of the route is in service/limits.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import select
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from adapters.settings import get_settings
from adapters.tables import IntakeClient, Petition, Unit
from domain.models import (
    MAX_ATTACHMENT_BYTES,
    MAX_TEXT_CHARS,
    Attachment,
    Category,
    Channel,
    PetitionIntake,
    personal_number_in,
)
from security.query_code import query_codes_from_settings
from service.api import register_intake
from service.auth.principal import client_principal
from service.context import ServiceContext, context
from service.documents import checked_type, clean_filename, document_vault, store_document
from service.limits import PORTAL_FILES_BYTES, PORTAL_FORM_BYTES, RateLimit
from service.pages import PageRoute, _csrf, _csrf_ok, _with_csrf_cookie, render
from service.pages_track import (
    CLOCK_WORDS,
    SOME_DEADLINE,
    TRACK_PATH,
    _,
    beijing_date,
    dated,
    deadline_date,
    directory_names,
    translator,
    unit_name,
)
from service.problems import Problem

INTAKE_PATH = "/petition"
FORM_HOURS = 12
REPEAT_MINUTES = 10
MAX_FILES = 5
MAX_NAME_CHARS = 50
MAX_SUBJECT_CHARS = 100
MAX_ADDRESS_CHARS = 200

router = APIRouter(route_class=PageRoute, include_in_schema=False)
Ctx = Annotated[ServiceContext, Depends(context)]


class PortalSettings(BaseSettings):
    """The online intake's settings (prefix PETITION_SERVICE_, like ServiceSettings)."""

    model_config = SettingsConfigDict(env_prefix="PETITION_SERVICE_", env_file=".env",
                                      extra="ignore")
    # The intake client the form registers as (its units are the form's choices).
    portal_client: str = "intake-portal"
    # Registrations per address and hour (a double submission counts too).
    portal_per_hour: int = Field(default=10, ge=1)


@lru_cache(maxsize=1)
def portal_settings() -> PortalSettings:
    return PortalSettings()


CATEGORY_WORDS: dict[Category, str] = {
    Category.LAND_AND_RESOURCES: _("国土资源"),
    Category.URBAN_CONSTRUCTION: _("城乡建设"),
    Category.LABOUR_AND_SOCIAL_SECURITY: _("劳动和社会保障"),
    Category.WAGE_ARREARS: _("拖欠工资"),
    Category.RURAL_AFFAIRS: _("农村农业"),
    Category.ENVIRONMENT: _("生态环境"),
    Category.HEALTH: _("卫生健康"),
    Category.EDUCATION: _("教育"),
    Category.PUBLIC_SECURITY: _("公安"),
    Category.LAW_AND_LITIGATION: _("政法（诉讼、执行等）"),
    Category.DISCIPLINE: _("纪检监察"),
    Category.OTHER: _("其他"),
}
# The fields by what the form calls them (the error summary links to them).
FIELD_WORDS = {"unit": _("受理单位"), "category": _("问题类别"), "name": _("姓名"),
               "id_number": _("身份证号码"), "phone": _("联系电话"), "address": _("通讯地址"),
               "subject": _("事项标题"), "content": _("信访内容"), "attachments": _("附件")}
TEXT_FIELDS = ("unit", "category", "name", "id_number", "phone", "address", "subject",
               "content")
ALLOWED_WORDS = _("PDF、JPG、PNG、TIFF、DOCX 文件或录音（MP3、M4A、WAV、AMR）")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_PHONE = re.compile(r"^\+?[0-9][0-9-]{4,19}$")


# ------------------------------------------------------------------- the form's checks


@dataclass
class Checked:
    """A form read: the values as typed (trimmed) and the error of each field, in words."""

    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)


def check_form(fields: dict[str, str], units: dict[str, str],
               _: Callable[[str], str] = lambda message: message) -> Checked:
    """Every field's own check, in the petitioner's words (`t` translates them)."""
    values = {name: str(fields.get(name, "")).strip() for name in TEXT_FIELDS}
    values["id_number"] = values["id_number"].replace(" ", "").upper()
    values["phone"] = re.sub(r"[\s()（）]", "", values["phone"])
    errors: dict[str, str] = {}

    def need(name: str, missing: str, most: int, too_long: str) -> None:
        value = values[name]
        if not value:
            errors[name] = missing
        elif len(value) > most:
            errors[name] = too_long
        elif _CONTROL.search(value):
            errors[name] = _("含有无法识别的字符，请删除后重新填写。")

    if not values["unit"]:
        errors["unit"] = _("请选择受理单位。")
    elif values["unit"] not in units:
        errors["unit"] = _("请从列表中选择受理单位。")
    if values["category"] not in {c.value for c in Category}:
        errors["category"] = _("请选择问题类别。")
    need("name", _("请填写姓名。"), MAX_NAME_CHARS, _("姓名不能超过50个字。"))
    ident = values["id_number"]
    if not ident:
        errors["id_number"] = _("请填写身份证号码。")
    elif not re.fullmatch(r"[0-9]{17}[0-9X]", ident):
        errors["id_number"] = _("身份证号码应为18位，最后一位是数字或字母X。")
    elif personal_number_in(ident) != "an ID number":
        errors["id_number"] = _("身份证号码有误，请核对后重新填写。")
    phone = values["phone"]
    if not phone:
        errors["phone"] = _("请填写联系电话。")
    elif not _PHONE.fullmatch(phone) or len(re.sub(r"\D", "", phone)) < 7:
        errors["phone"] = _("联系电话格式不正确，请填写手机号码或带区号的固定电话。")
    if len(values["address"]) > MAX_ADDRESS_CHARS:
        errors["address"] = _("通讯地址不能超过200个字。")
    elif _CONTROL.search(values["address"]):
        errors["address"] = _("含有无法识别的字符，请删除后重新填写。")
    need("subject", _("请填写事项标题。"), MAX_SUBJECT_CHARS, _("事项标题不能超过100个字。"))
    need("content", _("请填写信访内容。"), MAX_TEXT_CHARS, _("信访内容不能超过20000个字。"))
    return Checked(values, errors)


def to_intake(values: dict[str, str], *, intake_id: str, profile: str,
              received_at: datetime, attachments: list[Attachment]) -> PetitionIntake:
    """The checked form as the intake the API takes (channel online). Raises
    ValidationError only for what `check_form` lets through by mistake."""
    return PetitionIntake(
        intake_id=intake_id, channel=Channel.ONLINE, category=Category(values["category"]),
        unit=values["unit"], received_at=received_at, profile=profile,
        petitioner={"name": values["name"], "id_number": values["id_number"],
                    "phone": values["phone"], "address": values["address"] or None},
        subject=values["subject"], content=values["content"], attachments=attachments)


@dataclass
class File:
    name: str
    content: bytes
    declared: str | None


def check_files(files: list[File], _: Callable[[str], str] = lambda message: message
                ) -> tuple[list[tuple[File, str]], str | None]:
    """The files as the documents API takes them (each with its type from its bytes), or
    the first reason one is refused, in words."""
    chosen = [f for f in files if f.name or f.content]
    if len(chosen) > MAX_FILES:
        return [], _("最多上传5个附件。")
    if sum(len(f.content) for f in chosen) > PORTAL_FILES_BYTES:
        return [], _("附件合计不能超过30MB。")
    checked = []
    for file in chosen:
        name = clean_filename(file.name)
        if not file.content:
            return [], _("附件「{name}」是空文件。").format(name=name)
        if len(file.content) > MAX_ATTACHMENT_BYTES:
            return [], _("附件「{name}」超过20MB。").format(name=name)
        try:
            media_type = checked_type(file.content, file.declared, name)
        except Problem as refused:
            if refused.kind == "media-type-mismatch":
                return [], _("附件「{name}」的内容与文件类型不符。").format(name=name)
            return [], _("附件「{name}」的类型不能上传，请上传{allowed}。").format(
                name=name, allowed=_(ALLOWED_WORDS))
        checked.append((File(name, file.content, file.declared), media_type))
    return checked, None


# ------------------------------------------------------------------- the form token


def _b32(digest: bytes, chars: int) -> str:
    # base32's digits (2-7) can spell neither a phone number nor an ID number.
    return base64.b32encode(digest).decode().lower()[:chars]


def new_form_token(ctx: ServiceContext, now: float | None = None) -> str:
    """A one-time form token: a random nonce, its expiry, the key id, their MAC."""
    ring = ctx.tokens.ring
    body = f"{secrets.token_urlsafe(18)}.{int((now or time.time()) + FORM_HOURS * 3600)}" \
           f".{ring.active}"
    mac = hmac.new(ring.keys[ring.active], f"intake-form:{body}".encode(),
                   hashlib.sha256).digest()
    return f"{body}.{_b32(mac, 32)}"


def intake_id_of(ctx: ServiceContext, token: str, now: float | None = None) -> str | None:
    """The intake id a valid, unexpired form token stands for (the same for the same
    form, whenever it is sent), else None. Under the key that signed the form."""
    parts = token.split(".")
    if len(parts) != 4 or len(token) > 200:
        return None
    nonce, expires, kid, mac = parts
    key = ctx.tokens.ring.keys.get(kid)
    if key is None or not expires.isdigit() or int(expires) < (now or time.time()):
        return None
    body = f"{nonce}.{expires}.{kid}"
    expected = hmac.new(key, f"intake-form:{body}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(mac, _b32(expected, 32)):
        return None
    derived = hmac.new(key, f"intake-id:{nonce}".encode(), hashlib.sha256).digest()
    return f"web-{_b32(derived, 26)}"


# ------------------------------------------------------------------- the portal


@dataclass
class Portal:
    """The portal's intake client and the units it registers for (code -> name)."""

    client_id: str
    units: dict[str, str]


async def portal(ctx: ServiceContext) -> Portal | None:
    client_id = portal_settings().portal_client
    async with ctx.sessions() as session:
        client = await session.scalar(select(IntakeClient).where(
            IntakeClient.client_id == client_id, IntakeClient.active.is_(True)))
        if client is None:
            return None
        rows = (await session.execute(select(Unit.code, Unit.name)
                                      .where(Unit.code.in_(client.units)))).all()
    return Portal(client_id, {code: name for code, name in rows})


def _limiter(request: Request) -> RateLimit:
    """Registrations per address: a token bucket of the service's own kind."""
    found: RateLimit | None = getattr(request.app.state, "portal_limit", None)
    if found is None:
        per_hour = portal_settings().portal_per_hour
        # Its bucket only: it wraps no application here.
        found = RateLimit(lambda *args: None, rate=per_hour / 3600, burst=per_hour)
        request.app.state.portal_limit = found
    return found


def _unavailable(request: Request) -> Response:
    _ = translator(request)
    return render("intake_message.html", 503, {"Retry-After": "3600"}, request=request,
                  heading=_("网上信访暂不可用"),
                  message=_("网上信访暂时无法受理，请稍后再试，或到信访接待场所、通过来信反映。"),
                  link=INTAKE_PATH, link_text=_("重新打开"))


def _form_page(request: Request, ctx: ServiceContext, found: Portal, *, status: int = 200,
               values: dict[str, str] | None = None, errors: dict[str, str] | None = None,
               files_error: str = "", files_dropped: bool = False, form_token: str = "",
               problem: str = "") -> Response:
    _ = translator(request)
    token, fresh = _csrf(request, ctx)
    units = sorted(found.units, key=lambda code: found.units[code])
    wrong = [*(errors or {}), *(["attachments"] if files_error else [])]
    page = render(
        "intake.html", status, request=request, values=values or {}, errors=errors or {},
        wrong=[(name, _(FIELD_WORDS[name])) for name in FIELD_WORDS if name in wrong],
        files_error=files_error, files_dropped=files_dropped, problem=problem,
        units=[(code, unit_name(found.units, code, request)) for code in units],
        categories=[(c.value, _(words)) for c, words in CATEGORY_WORDS.items()],
        csrf_token=token, form_token=form_token or new_form_token(ctx),
        action=request.url_for("intake_post").path, track=TRACK_PATH, max_files=MAX_FILES)
    return _with_csrf_cookie(page, request, fresh)


@router.get(INTAKE_PATH, name="intake_page")
async def intake_page(request: Request, ctx: Ctx) -> Response:
    found = await portal(ctx)
    if found is None or not found.units:
        return _unavailable(request)
    return _form_page(request, ctx, found)


# ------------------------------------------------------------------- submitting


class _InMemoryForm(MultiPartParser):
    """The form's files stay in memory (never on disk unsealed) up to the route's limit."""

    spool_max_size = 2 * PORTAL_FORM_BYTES


async def _read(request: Request) -> tuple[dict[str, str], list[File]] | None:
    """The form's fields and files; None if it is not a form this page sent."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return None
    parser = _InMemoryForm(request.headers, request.stream(), max_files=MAX_FILES + 5,
                           max_fields=40, max_part_size=4 * (MAX_TEXT_CHARS + 1000))
    try:
        form: FormData = await parser.parse()
    except MultiPartException:
        return None
    try:
        fields: dict[str, str] = {}
        files: list[File] = []
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key == "attachments":
                    files.append(File(value.filename or "", await value.read(),
                                      value.content_type))
            elif key not in fields:
                fields[key] = value
        return fields, files
    finally:
        await form.close()


async def _registered(ctx: ServiceContext, intake_id: str) -> Petition | None:
    async with ctx.sessions() as session:
        found: Petition | None = await session.scalar(
            select(Petition).where(Petition.intake_id == intake_id))
        return found


def _code_again(row: Petition | None) -> str | None:
    """The code of a case this same form registered moments ago (a double submission)."""
    if row is None or datetime.now(UTC) - row.registered_at > timedelta(minutes=REPEAT_MINUTES):
        return None
    return query_codes_from_settings(get_settings()).code_for(row.registration_no)


@router.post(INTAKE_PATH, name="intake_post")
async def intake_post(request: Request, ctx: Ctx) -> Response:
    found = await portal(ctx)
    if found is None or not found.units:
        return _unavailable(request)
    _ = translator(request)
    declared = request.headers.get("content-length", "")
    too_large = declared.isdigit() and int(declared) > PORTAL_FORM_BYTES
    read = await _read(request)
    if read is None:
        return _form_page(request, ctx, found, status=400,
                          problem=_("提交的内容不完整，请重新填写后提交。"))
    fields, files = read
    checked = check_form(fields, found.units, _)
    token = fields.get("form_token", "")
    intake_id = intake_id_of(ctx, token)
    chosen = any(f.name or f.content for f in files)

    def again(status: int, *, problem: str = "", files_error: str = "",
              form_token: str = "") -> Response:
        return _form_page(request, ctx, found, status=status, values=checked.values,
                          errors=checked.errors, files_error=files_error,
                          files_dropped=chosen, form_token=form_token, problem=problem)

    if not _csrf_ok(request, ctx, fields.get("csrf_token", "")) or intake_id is None:
        return again(400, problem=_("页面已过期，请核对填写的内容后重新提交。"))
    if too_large:
        return again(413, files_error=_("附件合计不能超过30MB。"), form_token=token)
    registered = await _registered(ctx, intake_id)
    checked_files, files_error = ([], None) if registered is not None else check_files(files, _)
    if checked.errors or files_error:
        return again(400, files_error=files_error or "", form_token=token,
                     problem=_("提交未成功，请按提示修改后重新提交。"))
    if registered is None and _limiter(request).take(RateLimit.client_key(dict(request.scope))) > 0:
        return render("intake_message.html", 429, {"Retry-After": "3600"}, request=request,
                      heading=_("提交过于频繁"),
                      message=_("您提交的次数过多，请一小时后再试。"),
                      link=INTAKE_PATH, link_text=_("返回"))
    attachments = []
    uploader = f"{found.client_id[:27]}/{intake_id}"  # per form: never another's file
    for file, media_type in checked_files:
        stored, _created = await store_document(ctx, document_vault(request), uploader,
                                                file.content, file.name, media_type)
        attachments.append(Attachment(filename=file.name, media_type=media_type,
                                      size_bytes=stored.size_bytes,
                                      document_id=stored.id, sha256=stored.sha256))
    async with ctx.sessions() as session:
        profile = await session.scalar(select(Unit.profile)
                                       .where(Unit.code == checked.values["unit"]))
    try:
        intake = to_intake(checked.values, intake_id=intake_id, profile=profile or "national",
                           received_at=datetime.now(UTC), attachments=attachments)
    except ValidationError:
        return again(400, form_token=token, problem=_("提交未成功，请核对填写的内容后重新提交。"))
    who = await client_principal(ctx, found.client_id)
    if who is None:
        return _unavailable(request)
    try:
        answer = await register_intake(ctx, who, intake)
    except Problem as refused:
        if refused.status == 422:  # a document or the unit's profile: nothing registered
            return again(400, form_token=token,
                         problem=_("提交未成功，请核对填写的内容后重新提交。"))
        if refused.status in (403, 503):
            return _unavailable(request)
        raise
    row = await _registered(ctx, intake_id)
    code = answer.query_code or _code_again(row)
    return await _receipt(request, ctx, answer.registration_no, answer.workflow_id, code,
                          row.registered_unit if row else checked.values["unit"],
                          row.registered_at if row else None)


async def _receipt(request: Request, ctx: ServiceContext, number: str, workflow_id: str,
                   code: str | None, unit: str, registered_at: datetime | None) -> Response:
    """The receipt (回执), the POST's own answer: the code is in no URL."""
    _, day = translator(request), dated(request)
    status = await ctx.petitions.status(workflow_id)
    names = await directory_names(ctx)
    first = min(status.clocks, key=lambda c: c.due_at, default=None)
    return render(
        "intake_receipt.html", 201 if code else 200, request=request,
        registration_no=number, query_code=code, unit=unit_name(names, unit, request),
        date=day(beijing_date(registered_at or datetime.now(UTC))),
        deadline_what=_(CLOCK_WORDS.get(first.name, SOME_DEADLINE)) if first else "",
        deadline=day(deadline_date(first.due_at)) if first else "", track=TRACK_PATH)
