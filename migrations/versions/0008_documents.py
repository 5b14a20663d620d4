"""documents: attachments stored in PostgreSQL, sealed, outside Temporal's payloads

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-09 09:00:00

Issue 14 (items 3 and 4). A file a petitioner hands in (a scanned letter, a photo, a
recording of a call) is uploaded to the service once (`POST /api/v1/documents`) and kept
here; the intake, and so the workflow, carries only its id and SHA-256 digest
(docs/documents.md). The registry binds a document to its petition at registration.

- `id` is a random public id (never sequential: it appears in URLs);
- `petition_id` is NULL until the registration binds the document;
- the filename (it can carry a name) and the content are sealed with the vault
  (security/sealing.py), bound to `documents.filename:<id>` and `documents.content:<id>`;
- `media_type` is what the bytes are (detected), `sha256` their hex digest;
- an uploader sending the same bytes again before they are bound gets the same document
  (the partial unique index), so a retried upload is stored once.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "documents",
        sa.Column("id", sa.String(length=40), primary_key=True),
        sa.Column("petition_id", sa.BigInteger(), sa.ForeignKey("petitions.id"),
                  nullable=True),
        sa.Column("uploaded_by", sa.String(length=64), nullable=False),
        sa.Column("filename_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("media_type", sa.String(length=100), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("content_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.CheckConstraint("size_bytes >= 0", name="ck_documents_size"),
        sa.CheckConstraint("sha256 ~ '^[0-9a-f]{64}$'", name="ck_documents_sha256"),
    )
    op.create_index("ix_documents_petition", "documents", ["petition_id"])
    op.create_index("ux_documents_unbound_upload", "documents", ["uploaded_by", "sha256"],
                    unique=True, postgresql_where=sa.text("petition_id IS NULL"))
    # Values up to 20 MB: stored out of line (TOAST) but not compressed -- sealed bytes
    # do not compress, and trying costs CPU on every upload.
    op.execute("ALTER TABLE documents ALTER COLUMN content_sealed SET STORAGE EXTERNAL")


def downgrade() -> None:
    op.drop_index("ux_documents_unbound_upload", table_name="documents")
    op.drop_index("ix_documents_petition", table_name="documents")
    op.drop_table("documents")
