"""Issue 14 (items 3 and 4): attachments are documents, kept outside Temporal's payloads.
A 20 MiB scanned PDF uploaded through the service is stored once, sealed; the intake
references it by id and digest; the petition's workflow history stays under 100 KB with
the digest in its input; the holding unit downloads it, another unit is refused. Through
HTTP (httpx over ASGI) against the real Temporal dev server and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import struct
import urllib.parse
import uuid
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import func, insert, select, text
from temporalio.api.common.v1 import Payloads
from temporalio.converter import WorkflowSerializationContext
from temporalio.exceptions import ApplicationError

from activities.registry import check_documents
from adapters.document_tables import Document
from adapters.tables import Petition, TransferOrder
from domain.case import PetitionStart
from domain.models import MAX_ATTACHMENT_BYTES, Attachment
from tests.conftest import make_intake
from tests.test_service import (
    client_token,
    live_service,
    petitions_client,
    problem,
    staff_token,
)

HISTORY_LIMIT = 100_000
SCAN_NAME = "张三信访件扫描.pdf"  # a filename can carry a name: sealed at rest


def scanned_pdf(size: int, marker: bytes) -> bytes:
    """A valid PDF of exactly `size` bytes: one page whose content stream is padding (a
    scanner's image data stands in), with `marker` in it to look for at rest."""
    head = (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"
            b"1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
            b"2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n"
            b"3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
            b"/Contents 4 0 R >> endobj\n")
    tail = b"\nendstream endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
    stream_head = b"4 0 obj << /Length %010d >> stream\n"
    padding = size - len(head) - len(stream_head % 0) - len(tail)
    body = (marker + b" " + b"0" * padding)[:padding]
    pdf = head + stream_head % padding + body + tail
    assert len(pdf) == size
    return pdf


def tiny_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b""))


def named(filename: str, media_type: str) -> dict[str, str]:
    return {"Content-Type": media_type, "Content-Disposition":
            f"attachment; filename*=UTF-8''{urllib.parse.quote(filename)}"}


@pytest_asyncio.fixture(loop_scope="session")
async def live(sessions, dev_env, running_worker, task_queue,
               petitions) -> AsyncIterator[httpx.AsyncClient]:
    # 20 MiB bodies through the ASGI transport: a longer client timeout than the API's.
    async with live_service(sessions, dev_env, running_worker, task_queue,
                            http_timeout=120) as http:
        yield http


async def _upload(http: httpx.AsyncClient, headers: dict[str, str], content: Any,
                  filename: str, media_type: str) -> httpx.Response:
    return await http.post("/api/v1/documents", content=content,
                           headers={**headers, **named(filename, media_type)})


async def test_a_20_mib_scan_is_a_document_outside_the_workflow(live, sessions, engine,
                                                                dev_env, petitions):
    client = await client_token(live, sessions, ["QS-XFJ"])
    marker = f"PLAINTEXT-MARKER-{uuid.uuid4().hex}".encode()
    pdf = scanned_pdf(MAX_ATTACHMENT_BYTES, marker)
    digest = hashlib.sha256(pdf).hexdigest()

    first = await _upload(live, client, pdf, SCAN_NAME, "application/pdf")
    assert first.status_code == 201, first.text
    stored = first.json()
    assert stored["sha256"] == digest and stored["size_bytes"] == len(pdf)
    assert stored["media_type"] == "application/pdf"
    # The same bytes again (a retried upload): the same document, stored once.
    again = await _upload(live, client, pdf, SCAN_NAME, "application/pdf")
    assert again.status_code == 200, again.text
    assert again.json() == stored
    async with engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(Document).where(
            Document.sha256 == digest)) == 1
        # At rest: sealed (a vault value), no plaintext of the content or the name.
        raw = (await conn.execute(text(
            "SELECT content_sealed, filename_sealed, petition_id FROM documents "
            "WHERE id = :id"), {"id": stored["id"]})).one()
    assert raw.content_sealed[:1] == b"\x01" and marker not in raw.content_sealed
    assert b"%PDF" not in raw.content_sealed[:64]
    assert SCAN_NAME.encode() not in raw.filename_sealed and b"\xe5\xbc\xa0" not in \
        raw.filename_sealed
    assert raw.petition_id is None  # not bound until registered

    # The intake references it; the registration binds it.
    intake = make_intake(attachments=[{
        "filename": SCAN_NAME, "media_type": "application/pdf", "size_bytes": len(pdf),
        "document_id": stored["id"], "sha256": digest}])
    registered = await live.post("/api/v1/petitions", headers=client,
                                 json=intake.model_dump(mode="json"))
    assert registered.status_code == 201, registered.text
    number, workflow_id = registered.json()["registration_no"], registered.json()["workflow_id"]
    query_code = registered.json()["query_code"]
    handle = petitions_client(live).get_workflow_handle(workflow_id)
    petitions.track(handle)
    async with sessions() as session:
        petition_id = await session.scalar(select(Petition.id).where(
            Petition.workflow_id == workflow_id))
        assert await session.scalar(select(Document.petition_id).where(
            Document.id == stored["id"])) == petition_id

    # The workflow carries the reference and the digest, not the file.
    history = await dev_env.client.get_workflow_handle(workflow_id).fetch_history()
    size = len(history.to_json().encode())
    assert size < HISTORY_LIMIT, f"the history is {size} bytes"
    started = history.events[0].workflow_execution_started_event_attributes
    converter = dev_env.client.data_converter.with_context(WorkflowSerializationContext(
        namespace=dev_env.client.namespace, workflow_id=workflow_id))
    [start] = await converter.decode(list(Payloads(payloads=started.input.payloads).payloads),
                                     [PetitionStart])
    assert isinstance(start, PetitionStart)
    [carried] = start.intake.attachments
    assert carried.sha256 == digest and carried.document_id == stored["id"]
    assert marker not in history.to_json().encode()

    # The holding unit lists and downloads it.
    holder = await staff_token(live, sessions, "QS-XFJ.h1")
    listed = await live.get(f"/api/v1/petitions/{number}/documents", headers=holder)
    assert listed.status_code == 200, listed.text
    [entry] = listed.json()["attachments"]
    # The case's notices are listed beside it, each with its delivery state.
    notices = listed.json()["notices"]
    assert all({"kind", "state", "channels"} <= set(n) for n in notices), notices
    assert entry["id"] == stored["id"] and entry["filename"] == SCAN_NAME
    assert entry["sha256"] == digest and entry["kind"] == "attachment"
    got = await live.get(entry["download"], headers=holder)
    assert got.status_code == 200, got.text
    assert got.headers["content-type"] == "application/pdf"
    assert "filename*=UTF-8''" + urllib.parse.quote(SCAN_NAME, safe="") in \
        got.headers["content-disposition"]
    assert hashlib.sha256(got.content).hexdigest() == digest

    # Another unit's staff: refused; the intake client too.
    stranger = await staff_token(live, sessions, "BS-XFJ.h1")
    body = problem(await live.get(entry["download"], headers=stranger), 403)
    assert body["rule"] == "case"
    problem(await live.get(f"/api/v1/petitions/{number}/documents", headers=stranger), 403)
    problem(await live.get(entry["download"], headers=client), 403)

    # The petitioner, signed in with the case's query code, downloads it too.
    signed = await live.post("/auth/petitioner", json={"registration_no": number,
                                                       "query_code": query_code})
    assert signed.status_code == 200, signed.text
    petitioner = {"Authorization": f"Bearer {signed.json()['access_token']}"}
    mine = await live.get(entry["download"], headers=petitioner)
    assert mine.status_code == 200 and len(mine.content) == len(pdf)
    theirs = await live.get(f"/api/v1/petitions/{number}/documents", headers=petitioner)
    assert theirs.status_code == 200, theirs.text
    assert [d["id"] for d in theirs.json()["attachments"]] == [stored["id"]]
    assert all(n["recipient_kind"] == "petitioner" for n in theirs.json()["notices"])

    # A unit the case passed through ("held"): a transfer order to it, the case since
    # moved on (written by hand here: the holding unit stays QS-XFJ).
    async with engine.begin() as conn:
        await conn.execute(insert(TransferOrder).values(
            idempotency_key=f"{workflow_id}:test:held", order_no=f"T-{uuid.uuid4().hex[:12]}",
            petition_id=petition_id, kind="transfer", from_unit="QS-XFJ", to_unit="BS-XFJ",
            issued_at=datetime.now(UTC)))
    held = await live.get(entry["download"], headers=stranger)
    assert held.status_code == 200 and hashlib.sha256(held.content).hexdigest() == digest
    problem(await live.get(entry["download"],
                           headers=await staff_token(live, sessions, "LJ-XFJ.h1")), 403)

    # Bound now: another intake cannot take it.
    other = make_intake(attachments=[{
        "filename": "copy.pdf", "media_type": "application/pdf", "size_bytes": len(pdf),
        "document_id": stored["id"], "sha256": digest}])
    async with sessions() as session:
        with pytest.raises(ApplicationError, match="another petition"):
            await check_documents(session, other, None)


async def test_a_file_must_be_what_it_says(live, sessions):
    client = await client_token(live, sessions, ["QS-XFJ"])
    png = tiny_png()
    # A PNG named as a PDF, a PNG declared a PDF: refused, naming what the bytes are.
    body = problem(await _upload(live, client, png, "letter.pdf", "application/octet-stream"),
                   415)
    assert body["detected"] == "image/png"
    body = problem(await _upload(live, client, png, "photo.png", "application/pdf"), 415)
    assert body["declared"] == "application/pdf" and body["detected"] == "image/png"
    # Bytes that are no allowed type (an executable named .pdf).
    problem(await _upload(live, client, b"MZ\x90\x00" + b"\x00" * 200, "scan.pdf",
                          "application/pdf"), 415)
    # The same PNG, honestly named, as multipart: accepted, typed from its bytes.
    sent = await live.post("/api/v1/documents", headers=client,
                           files={"file": ("现场照片.png", png, "image/png")})
    assert sent.status_code == 201, sent.text
    assert sent.json()["media_type"] == "image/png"
    assert sent.json()["sha256"] == hashlib.sha256(png).hexdigest()
    # A petitioner or a stranger does not upload.
    problem(await live.post("/api/v1/documents", content=png), 401)


async def test_one_byte_over_20_mib_is_refused(live, sessions):
    client = await client_token(live, sessions, ["QS-XFJ"])
    over = scanned_pdf(MAX_ATTACHMENT_BYTES + 1, b"over")
    # Declared length: refused before a byte is read.
    body = problem(await _upload(live, client, over, "big.pdf", "application/pdf"), 413)
    assert body["limit_bytes"] >= MAX_ATTACHMENT_BYTES

    # Streamed without a length (chunked): refused as it passes the limit.
    async def chunks() -> AsyncIterator[bytes]:
        step = 1 << 20
        for at in range(0, len(over), step):
            yield over[at:at + step]

    problem(await _upload(live, client, chunks(), "big.pdf", "application/pdf"), 413)
    # Multipart, the file part one byte over.
    problem(await live.post("/api/v1/documents", headers=client,
                            files={"file": ("big.pdf", over, "application/pdf")}), 413)
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Document).where(
            Document.size_bytes > MAX_ATTACHMENT_BYTES)) == 0


def test_intakes_recorded_before_documents_still_decode() -> None:
    """Workflow inputs recorded before documents carry `content_b64: null`: they decode
    (a running petition replays); inline content itself is refused."""
    legacy = {"filename": "考勤记录.jpg", "media_type": "image/jpeg", "size_bytes": 184320,
              "content_b64": None}
    assert Attachment.model_validate(legacy).document_id is None
    with pytest.raises(ValueError, match="POST /api/v1/documents"):
        Attachment.model_validate({**legacy, "content_b64": "cGRm"})


async def test_a_written_notice_is_listed_and_downloadable_as_its_letter(live, sessions):
    """The registration's written notice: listed with the case's documents, downloadable
    as the Chinese letter (the unit's name, the query code), only by those who may read
    the case."""
    import pypdfium2

    intake_client = await client_token(live, sessions, ["QS-XFJ"])
    answer = await live.post("/api/v1/petitions", headers=intake_client,
                             json=make_intake().model_dump(mode="json"))
    assert answer.status_code == 201, answer.text
    number, code = answer.json()["registration_no"], answer.json()["query_code"]
    staff = await staff_token(live, sessions, "QS-XFJ.h1")

    async def letters() -> list[dict[str, Any]]:
        listed = await live.get(f"/api/v1/petitions/{number}/documents", headers=staff)
        assert listed.status_code == 200, listed.text
        return [n for n in listed.json()["notices"] if n["download"]]

    for _ in range(50):  # the registration's notice is written by an activity
        if found := await letters():
            break
        await asyncio.sleep(0.2)
    assert found, "no written notice listed"
    letter = await live.get(found[0]["download"], headers=staff)
    assert letter.status_code == 200 and letter.headers["content-type"] == "application/pdf"
    pdf = pypdfium2.PdfDocument(letter.content)
    text = pdf[0].get_textpage().get_text_range()
    assert "青山县信访局" in text.replace(" ", ""), text[:200]  # the unit's name, not its code
    assert code in text and number in text
    stranger = await staff_token(live, sessions, "BS-XFJ.h1")
    problem(await live.get(found[0]["download"], headers=stranger), 403)
    problem(await live.get(f"/api/v1/petitions/{number}/notices/999999999.pdf",
                           headers=staff), 404)
