"""Issue 14, item 2: written notices delivered through real channels -- e-mail read back
from a local SMTP server (aiosmtpd), SMS through an HTTP provider (a fake started here,
honouring idempotency ids and failing on demand), letters archived for the post room --
with every attempt recorded, backoff, and a drainer killed between the provider's
acceptance and the mark neither losing nor duplicating the message.

Real PostgreSQL as the application role (`sessions`): the new tables' grants come from
migration 0006's default privileges. Each drainer here takes only its own petition's
deliveries (`petition_ids`), the session database being shared with other tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from aiosmtpd.controller import Controller
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from activities import build_desks
from activities.contracts import NoticeInput
from activities.delivery.channels import EMAIL, LETTER, SMS, Channel
from activities.delivery.drainer import DeliveryDrainer, delivery_states, describe
from activities.delivery.letters import LetterChannel, mark_printed, unprinted_letters
from activities.delivery.rendering import RenderContext
from activities.delivery.sms import HttpSmsGateway, SmsChannel
from activities.delivery.smtp import SmtpChannel, SmtpSettings, message_id
from activities.notices import facts_where
from adapters.tables import Notice, NoticeDelivery, NoticeDeliveryAttempt
from devstack.temporal_server import free_port
from tests.conftest import make_intake
from tests.desk_helpers import register, run

PHONE = "13912345678"
EMAIL_ADDRESS = "zhang.san@example.cn"
NAME = "张三丰"
NO_REST = {"retry_after": lambda attempts: timedelta(0)}
TRACK_URL = "https://xf.example.gov.cn/track"


# ------------------------------------------------------------------------ fakes


@dataclass(frozen=True)
class Rendered:
    pdf: bytes
    sms: str
    mail_subject: str
    mail_body: str


class FakeRenderer:
    """Stands in for documents.render (WeasyPrint): the drainer's part is what it hands
    over and what it does with the result."""

    def __init__(self) -> None:
        self.contexts: list[RenderContext] = []

    async def render(self, facts: Any, context: RenderContext) -> Rendered:
        self.contexts.append(context)
        unit = context.unit_names.get(facts["unit"], facts["unit"])
        pdf = (b"%PDF-1.4\n% " + facts["kind"].encode() + b" " + unit.encode() + b"\n"
               + os.urandom(64) + b"\n%%EOF\n")
        return Rendered(pdf=pdf, sms=f"【信访】{unit}：您的信访事项{facts['registration_no']}"
                        f"已受理。查询：{context.track_url}",
                        mail_subject=f"受理告知书 {facts['registration_no']}",
                        mail_body=f"{unit}决定受理您的信访事项。\n查询：{context.track_url}")


@dataclass
class FakeSmsProvider:
    """An SMS provider's API: `POST /send` with `Idempotency-Key`. The first
    `fail_first` requests answer 503 (echoing the number, as providers do); a key seen
    before gets its first answer again and sends nothing."""

    fail_first: int = 0
    requests: int = 0
    sent: Counter[str] = field(default_factory=Counter)  # idempotency id -> messages sent
    texts: list[tuple[str, str]] = field(default_factory=list)
    answered: dict[str, str] = field(default_factory=dict)
    on_accept: Any = None

    async def send(self, request: Request) -> JSONResponse:
        self.requests += 1
        body = await request.json()
        key = request.headers.get("idempotency-key")
        if not key:
            return JSONResponse({"error": "Idempotency-Key required"}, status_code=400)
        if self.requests <= self.fail_first:
            return JSONResponse({"error": f"busy, could not send to {body['to']}"},
                                status_code=503)
        if key not in self.answered:
            self.sent[key] += 1
            self.texts.append((body["to"], body["text"]))
            self.answered[key] = f"msg-{len(self.answered) + 1}"
        return JSONResponse({"message_id": self.answered[key]})

    @property
    def deliveries(self) -> int:
        return sum(self.sent.values())


@contextlib.asynccontextmanager
async def sms_provider(provider: FakeSmsProvider) -> AsyncIterator[str]:
    port = free_port()
    app = Starlette(routes=[Route("/send", provider.send, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/send"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append((list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    mailbox, port = Mailbox(), free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield mailbox, port
    finally:
        controller.stop()


# ------------------------------------------------------------------------ helpers


@dataclass
class Case:
    petition_id: int
    registration_no: str
    notice_key: str


async def petitioner_notice(sessions, *, phone: str | None = PHONE,
                            email: str | None = EMAIL_ADDRESS, tag: str = "") -> Case:
    desks = build_desks(sessions)
    petitioner: dict[str, Any] = {"name": NAME, "id_number": "11010119900307123X"}
    if phone:
        petitioner["phone"] = phone
    if email:
        petitioner["email"] = email
    intake = make_intake(petitioner={**petitioner, "id_number": make_intake()
                                     .petitioner.id_number})
    registration = await register(desks, intake)
    key = f"{registration.registration_no}:1:notice-petitioner{tag}"
    facts = {"kind": "acceptance", "action": "accept",
             "registration_no": registration.registration_no, "unit": "QS-XFJ",
             "issued_at": datetime.now(UTC).isoformat(), "article": "第二十二条",
             "decision": "accepted"}
    await run(desks.notices.send_notice, NoticeInput(
        idempotency_key=key, petition_id=registration.petition_id,
        recipient_kind="petitioner", recipient_ref=intake.intake_id, template="accept",
        body="您的信访事项已受理。", at=datetime.now(UTC), facts=facts))
    return Case(registration.petition_id, registration.registration_no, key)


def drainer_for(sessions, case: Case, channels: list[Channel], **options: Any
                ) -> DeliveryDrainer:
    return DeliveryDrainer(sessions, build_desks(sessions).vault,
                           options.pop("renderer", None) or FakeRenderer(), channels,
                           track_url=TRACK_URL, petition_ids=[case.petition_id], **options)


async def deliveries(sessions, case: Case) -> dict[str, NoticeDelivery]:
    async with sessions() as session:
        rows = (await session.scalars(
            select(NoticeDelivery).join(Notice, Notice.id == NoticeDelivery.notice_id)
            .where(Notice.idempotency_key == case.notice_key))).all()
    return {row.channel: row for row in rows}


async def attempts(sessions, delivery_id: int) -> list[NoticeDeliveryAttempt]:
    async with sessions() as session:
        return list((await session.scalars(
            select(NoticeDeliveryAttempt).where(NoticeDeliveryAttempt.delivery_id
                                                == delivery_id)
            .order_by(NoticeDeliveryAttempt.attempt))).all())


def personal(text: str | None) -> bool:
    return text is not None and any(p in text for p in (PHONE, EMAIL_ADDRESS, NAME))


# ------------------------------------------------------------------------ tests


async def test_a_petitioners_notice_gets_a_delivery_per_channel_and_its_facts_sealed(
        sessions):
    both = await petitioner_notice(sessions)
    assert set(await deliveries(sessions, both)) == {LETTER, SMS, EMAIL}
    letter_only = await petitioner_notice(sessions, phone=None, email=None)
    assert set(await deliveries(sessions, letter_only)) == {LETTER}
    async with sessions() as session:
        notice = await session.scalar(select(Notice).where(
            Notice.idempotency_key == both.notice_key))
    assert notice is not None and notice.facts_sealed is not None
    assert b"accepted" not in notice.facts_sealed and b"QS-XFJ" not in notice.facts_sealed
    facts = json.loads(await build_desks(sessions).vault.open(
        notice.facts_sealed, facts_where(both.notice_key)))
    assert facts["decision"] == "accepted"
    # The activity retried writes nothing more.
    desks = build_desks(sessions)
    again = await run(desks.notices.send_notice, NoticeInput(
        idempotency_key=both.notice_key, petition_id=both.petition_id,
        recipient_kind="petitioner", recipient_ref="x", template="accept", body="again",
        at=datetime.now(UTC), facts=facts))
    assert again == notice.id and len(await deliveries(sessions, both)) == 3
    # A notice to staff keeps the file outbox: no deliveries.
    staff = Case(both.petition_id, both.registration_no, f"{both.notice_key}:unit")
    await run(desks.notices.send_notice, NoticeInput(
        idempotency_key=staff.notice_key, petition_id=both.petition_id,
        recipient_kind="unit", recipient_ref="QS-XFJ", template="assign", body="交办",
        at=datetime.now(UTC), facts=facts))
    assert await deliveries(sessions, staff) == {}


async def test_an_email_is_read_back_from_the_smtp_server_with_the_pdf_attached(
        sessions, smtp_server):
    mailbox, port = smtp_server
    case = await petitioner_notice(sessions)
    renderer = FakeRenderer()
    sender = "信访通知 <notices@xf.example.gov.cn>"
    smtp = SmtpChannel(SmtpSettings(host="127.0.0.1", port=port, starttls=False,
                                    from_address=sender))
    drainer = drainer_for(sessions, case, [smtp], renderer=renderer)
    assert await drainer.drain_once() == 1
    assert await drainer.drain_once() == 0  # nothing more due for e-mail
    assert len(mailbox.messages) == 1
    recipients, message = mailbox.messages[0]
    assert recipients == [EMAIL_ADDRESS]
    assert message["Subject"] == f"受理告知书 {case.registration_no}"
    assert message["Message-ID"] == message_id(case.notice_key, sender)
    body = message.get_body(preferencelist=("plain",))
    assert body is not None and "QS-XFJ" not in body.get_content()
    unit_name = renderer.contexts[0].unit_names["QS-XFJ"]  # the directory's name
    assert unit_name in body.get_content() and TRACK_URL in body.get_content()
    [pdf] = [part for part in message.iter_attachments()]
    assert pdf.get_content_type() == "application/pdf"
    assert pdf.get_filename() == f"{case.registration_no}-acceptance.pdf"
    content = pdf.get_content()
    assert content.startswith(b"%PDF") and unit_name.encode() in content
    rows = await deliveries(sessions, case)
    mail = rows[EMAIL]
    assert mail.state == "sent" and mail.attempts == 1 and mail.sent_at is not None
    assert mail.provider_message_id == message["Message-ID"]
    assert rows[LETTER].state == "pending" and rows[SMS].state == "pending"  # not configured
    [attempt] = await attempts(sessions, mail.id)
    assert attempt.result == "sent" and attempt.finished_at is not None


async def test_an_sms_gateway_failing_twice_then_succeeding_delivers_once(sessions):
    provider = FakeSmsProvider(fail_first=2)
    case = await petitioner_notice(sessions)
    async with sms_provider(provider) as url:
        sms = SmsChannel(HttpSmsGateway(url, token="t", sender="信访"))
        drainer = drainer_for(sessions, case, [sms], **NO_REST)
        assert await drainer.drain_once(batch=1) == 0
        row = (await deliveries(sessions, case))[SMS]
        assert row.state == "pending" and row.attempts == 1
        assert row.last_error == "sms: HTTP 503" and not personal(row.last_error)
        assert await drainer.drain_once(batch=1) == 0
        assert await drainer.drain_once(batch=1) == 1
        assert await drainer.drain_once() == 0
    assert provider.requests == 3
    assert provider.deliveries == 1 and len(provider.sent) == 1  # one id, one message
    [(to, text)] = provider.texts
    assert to == PHONE and case.registration_no in text
    row = (await deliveries(sessions, case))[SMS]
    assert row.state == "sent" and row.attempts == 3 and row.last_error is None
    assert row.provider_message_id == "msg-1"
    tried = await attempts(sessions, row.id)
    assert [a.result for a in tried] == ["retry", "retry", "sent"]
    assert all(not personal(a.error) for a in tried)
    assert tried[0].error == "sms: HTTP 503"


async def test_backoff_rests_a_failing_delivery_and_a_refusal_fails_it_for_good(sessions):
    provider = FakeSmsProvider(fail_first=1)
    case = await petitioner_notice(sessions)
    now = datetime.now(UTC)
    clock = {"now": now}
    async with sms_provider(provider) as url:
        drainer = drainer_for(sessions, case, [SmsChannel(HttpSmsGateway(url))],
                              clock=lambda: clock["now"])
        assert await drainer.drain_once() == 0
        row = (await deliveries(sessions, case))[SMS]
        assert row.next_attempt_at == now + timedelta(seconds=5)  # backoff(1)
        assert await drainer.drain_once() == 0 and provider.requests == 1  # resting
        clock["now"] = now + timedelta(seconds=5)
        assert await drainer.drain_once() == 1 and provider.deliveries == 1

    refused = await petitioner_notice(sessions, email=None)

    class NoSuchNumber:
        async def send(self, *, to: str, text: str, idempotency_id: str) -> str:
            from activities.delivery.channels import DeliveryFailed

            raise DeliveryFailed(f"sms: HTTP 400 ({to} is not a mobile number)",
                                 permanent=True)

    drainer = drainer_for(sessions, refused, [SmsChannel(NoSuchNumber())], **NO_REST)
    assert await drainer.drain_once() == 0
    assert await drainer.drain_once() == 0  # failed for good: not tried again
    row = (await deliveries(sessions, refused))[SMS]
    assert row.state == "failed" and row.next_attempt_at is None
    assert row.last_error is not None and not personal(row.last_error)
    assert "<number>" in row.last_error


async def test_a_drainer_killed_after_the_provider_accepted_neither_loses_nor_duplicates(
        sessions):
    provider = FakeSmsProvider()
    case = await petitioner_notice(sessions)
    async with sms_provider(provider) as url:
        gateway = HttpSmsGateway(url)

        class KilledAfterAccept:
            """The provider accepted; the drainer dies before it marks the delivery."""

            async def send(self, *, to: str, text: str, idempotency_id: str) -> str:
                await gateway.send(to=to, text=text, idempotency_id=idempotency_id)
                raise asyncio.CancelledError

        with pytest.raises(asyncio.CancelledError):
            await drainer_for(sessions, case, [SmsChannel(KilledAfterAccept())]).drain_once()
        assert provider.deliveries == 1
        row = (await deliveries(sessions, case))[SMS]
        assert row.state == "pending" and row.attempts == 1 and row.sent_at is None
        assert row.next_attempt_at is not None and row.next_attempt_at > datetime.now(UTC)
        # Another drainer leaves it alone while the dead one's lease runs ...
        assert await drainer_for(sessions, case, [SmsChannel(gateway)]).drain_once() == 0
        # ... then takes it up and sends it again, under the same idempotency id.
        later = row.next_attempt_at + timedelta(seconds=1)
        assert await drainer_for(sessions, case, [SmsChannel(gateway)],
                                 clock=lambda: later).drain_once() == 1
    assert provider.requests == 2 and provider.deliveries == 1 and len(provider.sent) == 1
    row = (await deliveries(sessions, case))[SMS]
    assert row.state == "sent" and row.attempts == 2 and row.provider_message_id == "msg-1"
    tried = await attempts(sessions, row.id)
    assert [a.result for a in tried] == ["interrupted", "sent"]


async def test_a_letter_is_archived_for_the_post_room_and_listed_until_printed(
        sessions, tmp_path):
    case = await petitioner_notice(sessions)
    renderer = FakeRenderer()
    drainer = drainer_for(sessions, case, [LetterChannel(tmp_path)], renderer=renderer)
    assert await drainer.drain_once() == 1
    [letter] = await unprinted_letters(sessions, petition_ids=[case.petition_id])
    path = tmp_path / letter.path
    day, name = Path(letter.path).parts
    assert datetime.fromisoformat(day)  # <yyyy-mm-dd>/
    assert name.startswith(f"{case.registration_no}-acceptance-") and name.endswith(".pdf")
    assert path.read_bytes().startswith(b"%PDF")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == [name]  # no temporary left behind
    assert await mark_printed(sessions, [letter.delivery_id], datetime.now(UTC)) == 1
    assert await mark_printed(sessions, [letter.delivery_id], datetime.now(UTC)) == 0
    assert await unprinted_letters(sessions, petition_ids=[case.petition_id]) == []
    # The visible state: the letter sent, the SMS and e-mail still pending.
    states = await delivery_states(sessions, case.petition_id)
    [mine] = [s for s in states if s.recipient_kind == "petitioner"]
    assert mine.kind == "accept" and mine.state == "pending" and mine.sent_at is None
    assert [(c.channel, c.state, c.attempts) for c in mine.channels] == [
        (LETTER, "sent", 1), (SMS, "pending", 0), (EMAIL, "pending", 0)]
    assert mine.channels[0].printed_at is not None
    assert json.dumps(describe(states))  # JSON-ready for the service


async def test_a_notice_is_delivered_when_every_channel_is_sent(sessions, smtp_server,
                                                                 tmp_path):
    mailbox, port = smtp_server
    provider = FakeSmsProvider()
    case = await petitioner_notice(sessions)
    async with sms_provider(provider) as url:
        channels: list[Channel] = [
            LetterChannel(tmp_path), SmsChannel(HttpSmsGateway(url)),
            SmtpChannel(SmtpSettings(host="127.0.0.1", port=port, starttls=False))]
        stop = asyncio.Event()
        task = asyncio.create_task(drainer_for(sessions, case, channels).run(
            stop, interval_seconds=0.05))
        for _ in range(100):
            states = await delivery_states(sessions, case.petition_id)
            if states and states[0].state == "sent":
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, timeout=5)
    [state] = [s for s in await delivery_states(sessions, case.petition_id)
               if s.recipient_kind == "petitioner"]
    assert state.state == "sent" and state.sent_at is not None and state.attempts == 3
    assert provider.deliveries == 1 and len(mailbox.messages) == 1
    assert len(list(tmp_path.rglob("*.pdf"))) == 1


async def test_the_workers_drainer_renders_the_real_notice_with_the_unit_name_and_code(
        sessions, smtp_server, tmp_path):
    """documents/render.py (WeasyPrint) and the derived query code, as worker.py wires
    them: the letter's text and the e-mail carry the unit's name and the query code."""
    pytest.importorskip("documents.render")
    import pypdfium2

    from activities.delivery.wiring import build_delivery_drainer, query_codes_from
    from adapters.settings import get_settings

    mailbox, port = smtp_server
    case = await petitioner_notice(sessions)
    settings = get_settings().model_copy(update={
        "letter_dir": tmp_path, "smtp_host": "127.0.0.1", "smtp_port": port,
        "smtp_starttls": False, "sms_url": None, "track_url": TRACK_URL})
    drainer = build_delivery_drainer(settings, sessions, build_desks(sessions).vault)
    drainer._petition_ids = [case.petition_id]  # this test's petition only
    assert await drainer.drain_once() == 2  # the letter and the e-mail (no SMS provider)
    code = await query_codes_from(settings).query_code(case.petition_id,
                                                       case.registration_no)
    assert code
    [letter] = await unprinted_letters(sessions, petition_ids=[case.petition_id])
    pdf = pypdfium2.PdfDocument((tmp_path / letter.path).read_bytes())
    try:
        text = "".join(page.get_textpage().get_text_range() for page in pdf)
    finally:
        pdf.close()
    assert case.registration_no in text and code in text
    async with sessions() as session:
        from adapters.tables import Unit

        unit_name = await session.scalar(select(Unit.name).where(Unit.code == "QS-XFJ"))
    # The directory's name ("青山县信访局 Qingshan County Petition Bureau"), in Chinese.
    assert unit_name and unit_name.split()[0] in text
    [(_, message)] = mailbox.messages
    body = message.get_body(preferencelist=("plain",))
    assert body is not None and code in body.get_content()
    [attachment] = list(message.iter_attachments())
    assert attachment.get_content().startswith(b"%PDF")
