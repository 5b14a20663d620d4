"""personal data sealed at rest: envelope-encrypted columns, a keyed blind index

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 09:00:00

Issue 13. The petitioner, subject, letter and attachments of a petition, a notice's
body and the free text of the audit trail are stored sealed (security/sealing.py): AES-
256-GCM under data keys that `data_keys` holds wrapped by a key-encryption key kept
outside the database. The matter key and the lookups by ID number and phone become keyed
HMACs (security/blind_index.py).

The plaintext columns are dropped. A database that already holds petitions cannot be
converted here (a migration has no keys, and nothing was deployed before this revision):
it refuses, naming what to do.

The application role may add data keys, never change or delete one. The audit trail
stays append-only, with one exception: its owner (the role migrations
and `petition keys` run as, never the application's) may rewrite `detail_sealed` alone,
which is how a retired data key's values are re-encrypted.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from adapters.settings import Settings

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# search_path pinned to pg_catalog: a role able to create temporary objects must not
# shadow the catalogue (a temp `pg_roles`) and pass for the owner. The table's owner is
# read from TG_RELID; the sealed value must stay a sealed value (not NULL, not erased).
APPEND_ONLY_FUNCTION = """
CREATE OR REPLACE FUNCTION petition_events_append_only() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND (current_user = pg_get_userbyid((SELECT relowner FROM pg_class
                                            WHERE oid = TG_RELID))
            OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user))
       AND OLD.detail_sealed IS NOT NULL AND NEW.detail_sealed IS NOT NULL
       AND substring(NEW.detail_sealed from 1 for 1) = '\\x01'::bytea
       AND (to_jsonb(NEW) - 'detail_sealed') = (to_jsonb(OLD) - 'detail_sealed') THEN
        RETURN NEW;  -- re-encryption by the key tool: nothing else changes
    END IF;
    RAISE EXCEPTION 'petition_events is an append-only audit trail: % refused', TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$
"""

ORIGINAL_FUNCTION = """
CREATE OR REPLACE FUNCTION petition_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'petition_events is an append-only audit trail: % refused', TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$
"""


# Free text staff write about a case, sealed like the audit trail's.
FREE_TEXT_COLUMNS = (("transfer_orders", "instructions", True), ("hearings", "summary", True),
                     ("assistance_applications", "reason", False))


def _refuse_if_holding_petitions() -> None:
    held = op.get_bind().scalar(sa.text(
        "SELECT (SELECT count(*) FROM petitions) + (SELECT count(*) FROM notices)"))
    if held:
        raise RuntimeError(
            "this database holds petitions or notices with personal data in clear; revision "
            "0007 stores them sealed and has no keys to convert them: move them with "
            "`petition legacy-import` into a fresh database (development: delete .data/pg)")


def upgrade() -> None:
    _refuse_if_holding_petitions()
    op.create_table(
        "data_keys",
        sa.Column("id", sa.String(length=16), primary_key=True),
        sa.Column("kek_id", sa.String(length=64), nullable=False),
        sa.Column("wrapped", sa.LargeBinary(), nullable=False),
        sa.Column("cipher", sa.String(length=32), server_default="aes-256-gcm",
                  nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
    )
    for column in ("petitioner", "subject", "content", "attachments"):
        op.drop_column("petitions", column)
        op.add_column("petitions", sa.Column(f"{column}_sealed", sa.LargeBinary(),
                                             nullable=False))
    op.add_column("petitions", sa.Column("petitioner_id_index", sa.String(length=64),
                                         nullable=False))
    op.add_column("petitions", sa.Column("petitioner_phone_index", sa.String(length=64),
                                         nullable=True))
    op.create_index("ix_petitions_petitioner_id", "petitions", ["petitioner_id_index"])
    op.create_index("ix_petitions_petitioner_phone", "petitions", ["petitioner_phone_index"])
    op.drop_column("notices", "body")
    op.add_column("notices", sa.Column("body_sealed", sa.LargeBinary(), nullable=False))
    op.add_column("petition_events", sa.Column("detail_sealed", sa.LargeBinary(),
                                               nullable=True))
    for table, column, nullable in FREE_TEXT_COLUMNS:
        op.drop_column(table, column)
        op.add_column(table, sa.Column(f"{column}_sealed", sa.LargeBinary(),
                                       nullable=nullable))
    op.execute(APPEND_ONLY_FUNCTION)
    # The application creates data keys and reads them; deleting one would make every
    # value it seals unreadable, so only `petition keys` (the owner) updates or shreds.
    app = Settings().db_app_role
    if op.get_bind().scalar(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": app}):
        op.execute(f'REVOKE UPDATE, DELETE, TRUNCATE ON data_keys FROM "{app}"')


def downgrade() -> None:
    _refuse_if_holding_petitions()
    op.execute(ORIGINAL_FUNCTION)
    for table, column, nullable in FREE_TEXT_COLUMNS:
        op.drop_column(table, f"{column}_sealed")
        op.add_column(table, sa.Column(column, sa.Text(), nullable=nullable))
    op.drop_column("petition_events", "detail_sealed")
    op.drop_column("notices", "body_sealed")
    op.add_column("notices", sa.Column("body", sa.Text(), nullable=False))
    op.drop_index("ix_petitions_petitioner_phone", table_name="petitions")
    op.drop_index("ix_petitions_petitioner_id", table_name="petitions")
    op.drop_column("petitions", "petitioner_phone_index")
    op.drop_column("petitions", "petitioner_id_index")
    for column, kind in (("petitioner", sa.dialects.postgresql.JSONB()), ("subject", sa.Text()),
                         ("content", sa.Text()), ("attachments", sa.dialects.postgresql.JSONB())):
        op.drop_column("petitions", f"{column}_sealed")
        op.add_column("petitions", sa.Column(column, kind, nullable=False))
    op.drop_table("data_keys")
