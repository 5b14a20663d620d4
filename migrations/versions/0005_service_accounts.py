"""the petition service's credentials: staff accounts, intake clients, query codes

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 09:00:00

Issue 12, the authenticated HTTP service:

- `staff_accounts`: local accounts of directory people (argon2id hash, failures, lockout);
- `intake_clients`: intake systems and the units each may register for (argon2id secret);
- `query_codes`: the petitioner's query code (查询码) per case, as an argon2id hash only.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "staff_accounts",
        sa.Column("person_id", sa.String(length=64), sa.ForeignKey("people.id"),
                  primary_key=True),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("failed_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("password_changed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "intake_clients",
        sa.Column("client_id", sa.String(length=64), primary_key=True),
        sa.Column("secret_hash", sa.Text(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("units", postgresql.ARRAY(sa.String(length=64)), nullable=False),
        sa.Column("active", sa.Boolean(), server_default="true", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
    )
    op.create_table(
        "query_codes",
        sa.Column("petition_id", sa.BigInteger(), sa.ForeignKey("petitions.id"),
                  primary_key=True),
        sa.Column("code_hash", sa.Text(), nullable=False),
        sa.Column("failed_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
    )


def downgrade() -> None:
    op.drop_table("query_codes")
    op.drop_table("intake_clients")
    op.drop_table("staff_accounts")
