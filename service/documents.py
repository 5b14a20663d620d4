"""Documents: the files handed in with a petition (scanned letters, photos, recordings of
calls), kept in PostgreSQL, sealed, outside Temporal's payloads (docs/documents.md).

- `POST /api/v1/documents` (intake clients and staff): one file, as the raw body or as
  multipart form data; at most 20 MiB (413); its type is what its bytes are (`filetype`),
  one of a short list, and neither the declared type nor the name's extension may say
  otherwise (415). Answers its id, SHA-256 digest, size and type: the intake references the
  file by `{document_id, sha256}` and the registration binds it to the petition.
- `GET /api/v1/petitions/{registration_no}/documents`: the case's documents: its
  attachments and its notices with their delivery state (a petitioner sees the notices
  written to them).
- `GET /api/v1/documents/{id}`: the file, for staff of the units that hold or held the case
  (and the organs above them) and for the petitioner signed in with the case's query code;
  anyone else 403.

The service seals and opens these values itself, so it holds the data keys (the decision
is in docs/documents.md).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import urllib.parse
from datetime import datetime
from typing import Annotated, Any

import filetype
from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from temporalio.exceptions import ApplicationError

from activities.common import refusal_of
from activities.delivery.drainer import delivery_states, describe
from activities.delivery.rendering import DocumentsRenderer, RenderContext
from activities.notices import facts_where
from activities.registry import check_documents
from adapters.data_keys import vault_from_settings
from adapters.directory import unit_names
from adapters.document_tables import Document, content_where, filename_where
from adapters.settings import get_settings
from adapters.tables import Notice, Petition, TransferOrder
from domain.models import MAX_ATTACHMENT_BYTES, PetitionIntake
from security.query_code import query_codes_from_settings
from security.sealing import Vault
from service.access import case_row, staff_may_see
from service.auth.principal import Caller, Principal
from service.context import ServiceContext, context
from service.limits import UPLOAD_BODY_BYTES, body_too_large
from service.params import RegistrationNo
from service.problems import SIGNED_IN, Problem, problem_responses, refused

router = APIRouter(prefix="/api/v1", tags=["documents"])
Ctx = Annotated[ServiceContext, Depends(context)]

# What a petition's files may be: media type (as stored and served) -> the extensions a
# filename of that type may have. Detected from the bytes; nothing else is stored.
ALLOWED: dict[str, tuple[str, ...]] = {
    "application/pdf": ("pdf",),
    "image/jpeg": ("jpg", "jpeg"),
    "image/png": ("png",),
    "image/tiff": ("tif", "tiff"),
    "audio/mpeg": ("mp3",),
    "audio/mp4": ("m4a", "mp4"),
    "audio/wav": ("wav",),
    "audio/amr": ("amr",),
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ("docx",),
}
# Other names of the same types (filetype's and clients').
ALIASES = {"audio/x-wav": "audio/wav", "audio/wave": "audio/wav", "audio/vnd.wave": "audio/wav",
           "audio/x-m4a": "audio/mp4", "audio/m4a": "audio/mp4", "audio/mp3": "audio/mpeg",
           "image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "audio/x-amr": "audio/amr",
           "image/tif": "image/tiff", "application/x-pdf": "application/pdf"}
# A declared type that says nothing: the bytes decide alone.
UNDECLARED = frozenset({"", "application/octet-stream", "binary/octet-stream"})
MAX_FILENAME_CHARS = 255
DOCUMENT_ID = r"^doc_[a-z2-7]{26}$"
DocumentIdPath = Annotated[str, Path(pattern=DOCUMENT_ID, description="a document's id")]
# A notice's id: a PostgreSQL bigint (a larger number is a 422, not a database error).
NoticeIdPath = Annotated[int, Path(ge=1, le=2**63 - 1, description="a notice's id")]


class StoredDocument(BaseModel):
    id: str
    sha256: str
    size_bytes: int
    media_type: str


class CaseDocument(StoredDocument):
    kind: str = "attachment"
    filename: str
    created_at: datetime
    download: str


class CaseDocuments(BaseModel):
    """A case's documents: its attachments (downloadable) and its notices with their
    delivery state per channel (activities/delivery)."""

    registration_no: str
    attachments: list[CaseDocument]
    notices: list[dict[str, Any]]


def new_document_id() -> str:
    """128 random bits, base32: never sequential, never guessable."""
    return "doc_" + base64.b32encode(secrets.token_bytes(16)).decode().lower().rstrip("=")


def canonical(media_type: str | None) -> str:
    bare = (media_type or "").split(";", 1)[0].strip().lower()
    return ALIASES.get(bare, bare)


def detect(content: bytes) -> str | None:
    """The media type of the bytes, if it is one a petition's file may be."""
    kind = filetype.guess(content[:8192] if content else b"")
    found = canonical(kind.mime) if kind is not None else None
    return found if found in ALLOWED else None


def checked_type(content: bytes, declared: str | None, filename: str) -> str:
    """The detected media type, refused (415) if it is not allowed or if the declared type
    or the filename's extension says something else."""
    detected = detect(content)
    if detected is None:
        raise Problem(415, "the file is not one of the types a petition's documents may be "
                      "(PDF, JPEG, PNG, TIFF, MP3, M4A, WAV, AMR, DOCX), judged by its bytes",
                      kind="unsupported-media-type", allowed=sorted(ALLOWED))
    said = canonical(declared)
    if said not in UNDECLARED and said != detected:
        raise Problem(415, f"the file was declared {said} but its bytes are {detected}",
                      kind="media-type-mismatch", declared=said, detected=detected)
    stem, dot, extension = filename.rpartition(".")
    if dot and stem and extension.lower() not in ALLOWED[detected]:
        raise Problem(415, f"the filename says .{extension.lower()} but the bytes are "
                      f"{detected}", kind="media-type-mismatch", detected=detected,
                      field="filename")
    return detected


def clean_filename(raw: str | None) -> str:
    """The name's last path segment, without control characters; 'document' if none."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    return name[:MAX_FILENAME_CHARS] or "document"


def document_vault(request: Request) -> Vault:
    """The service's vault (the data keys: docs/documents.md), made on first use."""
    vault: Vault | None = getattr(request.app.state, "document_vault", None)
    if vault is None:
        ctx: ServiceContext = request.app.state.ctx
        vault = vault_from_settings(get_settings(), ctx.sessions)
        request.app.state.document_vault = vault
    return vault


DocumentVault = Annotated[Vault, Depends(document_vault)]


# ----------------------------------------------------------------------- upload


class _InMemoryParts(MultiPartParser):
    """Starlette's multipart parser with files kept in memory (up to the route's limit):
    a petitioner's file never touches the disk unsealed."""

    spool_max_size = UPLOAD_BODY_BYTES


def _filename_of(request: Request) -> str | None:
    """A raw body's name: `Content-Disposition: attachment; filename*=UTF-8''...` or
    `filename="..."` (a header, not the URL: names stay out of access logs)."""
    header = request.headers.get("content-disposition", "")
    plain = None
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        key = key.strip().lower()
        if key == "filename*":
            charset, _, rest = value.strip().partition("''")
            try:
                return urllib.parse.unquote(rest, encoding=charset or "utf-8", errors="strict")
            except (LookupError, UnicodeDecodeError):
                raise Problem(400, "Content-Disposition: filename* does not decode",
                              kind="validation", field="filename") from None
        if key == "filename":
            plain = value.strip().strip('"')
    return plain


async def _read_raw(request: Request) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_ATTACHMENT_BYTES:
            raise body_too_large(MAX_ATTACHMENT_BYTES, "the file")
    return bytes(body)


async def _read_multipart(request: Request) -> tuple[bytes, str | None, str | None]:
    parser = _InMemoryParts(request.headers, request.stream(), max_files=1, max_fields=10)
    try:
        form = await parser.parse()
    except MultiPartException as err:
        raise Problem(400, f"the multipart body does not parse: {err.message}",
                      kind="validation") from None
    try:
        files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
        if len(files) != 1:
            raise Problem(422, "send exactly one file (the form field `file`)",
                          kind="validation", field="file")
        upload = files[0]
        if upload.size is not None and upload.size > MAX_ATTACHMENT_BYTES:
            raise body_too_large(MAX_ATTACHMENT_BYTES, "the file")
        content = await upload.read(MAX_ATTACHMENT_BYTES + 1)
        if len(content) > MAX_ATTACHMENT_BYTES:
            raise body_too_large(MAX_ATTACHMENT_BYTES, "the file")
        return content, upload.filename, upload.content_type
    finally:
        await form.close()


def _uploader(who: Principal) -> str:
    if who.kind not in ("client", "staff"):
        raise Problem(403, "documents are uploaded by intake clients and staff",
                      kind="forbidden")
    return who.subject


@router.post(
    "/documents", response_model=StoredDocument, status_code=201,
    summary="Upload a document (one file, at most 20 MiB; raw body or multipart)",
    responses={200: {"model": StoredDocument,
                     "description": "the same bytes, uploaded before and not yet bound"},
               **problem_responses(*SIGNED_IN, 415)},
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                           "properties": {"file": {
                                               "type": "string", "format": "binary"}}}}}}})
async def upload(request: Request, who: Caller, ctx: Ctx, vault: DocumentVault,
                 response: Response) -> StoredDocument:
    uploader = _uploader(who)
    if request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        content, raw_name, declared = await _read_multipart(request)
    else:
        content, raw_name = await _read_raw(request), _filename_of(request)
        declared = request.headers.get("content-type")
    filename = clean_filename(raw_name)
    media_type = checked_type(content, declared, filename)
    stored, created = await store_document(ctx, vault, uploader, content, filename, media_type)
    if not created:
        response.status_code = 200
    return stored


async def store_document(ctx: ServiceContext, vault: Vault, uploader: str, content: bytes,
                         filename: str, media_type: str) -> tuple[StoredDocument, bool]:
    """A checked file, sealed into the documents table; True if stored now, False if the
    same bytes from the same uploader were stored before and are not yet bound (a retried
    upload is stored once). 409 if they were bound in the meantime."""
    digest = await asyncio.to_thread(lambda: hashlib.sha256(content).hexdigest())
    document_id = new_document_id()
    async with ctx.sessions() as session:
        found = await session.scalar(select(Document).where(
            Document.uploaded_by == uploader, Document.sha256 == digest,
            Document.petition_id.is_(None)))
        if found is None:
            created = await session.scalar(insert(Document).values(
                id=document_id, petition_id=None, uploaded_by=uploader,
                filename_sealed=await vault.seal(filename.encode(),
                                                 filename_where(document_id)),
                media_type=media_type, size_bytes=len(content), sha256=digest,
                content_sealed=await vault.seal(content, content_where(document_id)),
            ).on_conflict_do_nothing(
                index_elements=["uploaded_by", "sha256"],
                index_where=Document.petition_id.is_(None)).returning(Document.id))
            await session.commit()
            if created is not None:
                return StoredDocument(id=created, sha256=digest, size_bytes=len(content),
                                      media_type=media_type), True
            found = await session.scalar(select(Document).where(  # a concurrent twin
                Document.uploaded_by == uploader, Document.sha256 == digest,
                Document.petition_id.is_(None)))
        if found is None:  # bound in the meantime: upload again
            raise Problem(409, "the same file was just bound to a petition; upload it again",
                          kind="conflict")
    return StoredDocument(id=found.id, sha256=found.sha256, size_bytes=found.size_bytes,
                          media_type=found.media_type), False


async def check_intake_documents(ctx: ServiceContext, intake: PetitionIntake) -> None:
    """Before a registration starts its workflow: the documents the intake references
    exist, are unbound (or this intake's) and match their digests; 422 naming the field."""
    async with ctx.sessions() as session:
        petition_id = await session.scalar(select(Petition.id).where(
            Petition.intake_id == intake.intake_id))
        try:
            await check_documents(session, intake, petition_id)
        except ApplicationError as err:
            raise refused(refusal_of(err), 422) from None


# ------------------------------------------------------------------------- read


async def may_read(ctx: ServiceContext, who: Principal, row: Petition) -> bool:
    """Staff of the units that hold or held the case (and the organs above them: the
    service's rule for seeing a case), or the case's petitioner (query code)."""
    if who.kind == "petitioner":
        return who.workflow_id == row.workflow_id
    if who.kind != "staff" or who.actor is None:
        return False
    if await staff_may_see(ctx, who.actor, row):
        return True
    async with ctx.sessions() as session:  # units the case passed through
        held = await session.execute(select(TransferOrder.from_unit, TransferOrder.to_unit)
                                     .where(TransferOrder.petition_id == row.id))
        return any(who.actor.unit in pair for pair in held)


def _refused_reader(who: Principal) -> Problem:
    whom = who.actor.id if who.actor is not None else who.subject
    return Problem(403, f"{whom} may not read this case's documents", kind="refused",
                   title="Action refused", rule="case", field=None)


def content_disposition(filename: str) -> str:
    fallback = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\;' else "_"
                       for ch in filename) or "document"
    return (f'attachment; filename="{fallback}"; '
            f"filename*=UTF-8''{urllib.parse.quote(filename, safe='')}")


@router.get("/petitions/{registration_no}/documents", response_model=CaseDocuments,
            summary="The case's documents: its attachments and its notices (with their "
                    "delivery state)",
            responses=problem_responses(*SIGNED_IN, 404))
async def case_documents(registration_no: RegistrationNo, who: Caller, ctx: Ctx,
                         vault: DocumentVault) -> CaseDocuments:
    row = await case_row(ctx, registration_no)
    if not await may_read(ctx, who, row):
        raise _refused_reader(who)
    async with ctx.sessions() as session:
        documents = list(await session.scalars(
            select(Document).where(Document.petition_id == row.id)
            .order_by(Document.created_at, Document.id)))
    listed: list[CaseDocument] = []
    for doc in documents:
        name = (await vault.open(doc.filename_sealed, filename_where(doc.id))).decode()
        listed.append(CaseDocument(
            id=doc.id, sha256=doc.sha256, size_bytes=doc.size_bytes,
            media_type=doc.media_type, filename=name, created_at=doc.created_at,
            download=f"/api/v1/documents/{doc.id}"))
    notices = describe(await delivery_states(ctx.sessions, row.id))
    if who.kind == "petitioner":  # the notices written to them, not the units' own
        notices = [n for n in notices if n["recipient_kind"] == "petitioner"]
    async with ctx.sessions() as session:
        written = set(await session.scalars(select(Notice.id).where(
            Notice.petition_id == row.id, Notice.facts_sealed.is_not(None))))
    for n in notices:  # a written notice (one with facts) is downloadable as its letter
        n["download"] = (f"/api/v1/petitions/{row.registration_no}/notices/"
                         f"{n['notice_id']}.pdf" if n["notice_id"] in written else None)
    return CaseDocuments(registration_no=row.registration_no, attachments=listed,
                         notices=notices)


@router.get("/petitions/{registration_no}/notices/{notice_id}.pdf",
            summary="A written notice of the case, as the letter the petitioner receives",
            response_class=Response,
            responses={200: {"description": "the letter", "content": {
                "application/pdf": {"schema": {"type": "string", "format": "binary"}}}},
                **problem_responses(*SIGNED_IN, 404)})
async def notice_letter(registration_no: RegistrationNo, notice_id: NoticeIdPath, who: Caller,
                        ctx: Ctx, vault: DocumentVault) -> Response:
    row = await case_row(ctx, registration_no)
    if not await may_read(ctx, who, row):
        raise _refused_reader(who)
    async with ctx.sessions() as session:
        notice = await session.get(Notice, notice_id)
        names = await unit_names(session)
    if (notice is None or notice.petition_id != row.id or notice.facts_sealed is None
            or (who.kind == "petitioner" and notice.recipient_kind != "petitioner")):
        raise Problem(404, f"no written notice {notice_id} on {registration_no}",
                      kind="not-found")
    facts = await vault.open_json(notice.facts_sealed, facts_where(notice.idempotency_key))
    petitioner = await vault.open_json(row.petitioner_sealed,
                                       f"petitions.petitioner:{row.intake_id}")
    settings = get_settings()
    rendered = await DocumentsRenderer().render(facts, RenderContext(
        unit_names=names, track_url=settings.track_url, addressee=petitioner.get("name"),
        query_code=query_codes_from_settings(settings).code_for(row.registration_no)))
    return Response(rendered.pdf, media_type="application/pdf", headers={
        "Content-Disposition": content_disposition(
            f"{row.registration_no}-{facts.get('kind', notice.template)}.pdf"),
        "X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store"})


@router.get("/documents/{document_id}", summary="Download a document",
            response_class=Response,
            responses={200: {"description": "the file", "content": {
                t: {"schema": {"type": "string", "format": "binary"}} for t in ALLOWED}},
                **problem_responses(*SIGNED_IN, 404)})
async def download(document_id: DocumentIdPath, who: Caller, ctx: Ctx,
                   vault: DocumentVault) -> Response:
    async with ctx.sessions() as session:
        doc = await session.get(Document, document_id)
        row = (await session.get(Petition, doc.petition_id)
               if doc is not None and doc.petition_id is not None else None)
    if doc is None:
        raise Problem(404, f"no document {document_id}", kind="not-found")
    if row is None or not await may_read(ctx, who, row):
        raise _refused_reader(who)
    async with ctx.sessions() as session:
        sealed = await session.scalar(select(Document.content_sealed)
                                      .where(Document.id == document_id))
    assert sealed is not None
    content = await vault.open(sealed, content_where(document_id))
    filename = (await vault.open(doc.filename_sealed, filename_where(document_id))).decode()
    headers: dict[str, Any] = {
        "Content-Disposition": content_disposition(filename),
        "X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store",
        "Repr-Digest": f"sha-256=:{base64.b64encode(bytes.fromhex(doc.sha256)).decode()}:",
        "ETag": f'"{doc.sha256}"'}
    return Response(content, media_type=doc.media_type, headers=headers)
