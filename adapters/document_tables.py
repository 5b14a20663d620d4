"""The `documents` table (migration 0008): attachments kept in PostgreSQL, outside
Temporal's payloads, sealed like the rest of the personal data (docs/documents.md)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from adapters.tables import Base


class Document(Base):
    """One uploaded file. `petition_id` is NULL until the registration binds it; the
    filename and the content are sealed, bound to `documents.<column>:<id>`."""

    __tablename__ = "documents"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    petition_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("petitions.id"))
    uploaded_by: Mapped[str] = mapped_column(String(64))
    filename_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    media_type: Mapped[str] = mapped_column(String(100))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    content_sealed: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())

    __table_args__ = (
        CheckConstraint("size_bytes >= 0", name="ck_documents_size"),
        CheckConstraint("sha256 ~ '^[0-9a-f]{64}$'", name="ck_documents_sha256"),
        Index("ix_documents_petition", "petition_id"),
        Index("ux_documents_unbound_upload", "uploaded_by", "sha256", unique=True,
              postgresql_where=text("petition_id IS NULL")),
    )


def filename_where(document_id: str) -> str:
    return f"documents.filename:{document_id}"


def content_where(document_id: str) -> str:
    return f"documents.content:{document_id}"
