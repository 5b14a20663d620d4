"""notice delivery: a notice's facts sealed, one delivery per channel, every attempt recorded

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-09 09:00:00

Issue 14 (item 2, docs/delivery.md). A written notice to the petitioner goes out as a
letter (its PDF archived for the post room), and by SMS and e-mail when the petitioner
gave a phone or an address:

- `notices.facts_sealed`: what the notice states (domain.notice_facts.NoticeFacts as
  JSON), sealed like the body and bound to `notices.facts:<idempotency key>`; the drainer
  renders the letter, SMS and e-mail from it at delivery time;
- `notice_deliveries`: one row per (notice, channel) -- `letter`, `sms`, `email` -- with
  its state (pending, sent, failed), attempts, when it is next due, the last error (never
  personal data: the drainer writes a reason of its own, not a provider's text), the
  provider's message id, when it was sent, and for letters when the post room printed it.
  No contact detail is stored here: the drainer opens the petitioner's at send time;
- `notice_delivery_attempts`: every attempt, started before the channel is called and
  finished with its result (sent, failed, retry; `interrupted` when a drainer died
  meanwhile and the delivery was taken up again).

The application role gets its grants on the new tables and sequences from the default
privileges migration 0006 set for the owner role (tests/test_delivery.py uses them as
that role).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("notices", sa.Column("facts_sealed", sa.LargeBinary(), nullable=True))
    op.create_table(
        "notice_deliveries",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("notice_id", sa.BigInteger(), sa.ForeignKey("notices.id"), nullable=False),
        # `<notice key>:<channel>`: what the provider's idempotency id and the e-mail's
        # Message-ID are derived from.
        sa.Column("idempotency_key", sa.String(length=220), nullable=False, unique=True),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=300), nullable=True),
        sa.Column("provider_message_id", sa.String(length=200), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("printed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.UniqueConstraint("notice_id", "channel", name="uq_notice_deliveries_channel"),
        sa.CheckConstraint("channel IN ('letter', 'sms', 'email')",
                           name="ck_notice_deliveries_channel"),
        sa.CheckConstraint("state IN ('pending', 'sent', 'failed')",
                           name="ck_notice_deliveries_state"),
        sa.CheckConstraint("(state = 'sent') = (sent_at IS NOT NULL)",
                           name="ck_notice_deliveries_sent_at"),
    )
    op.create_index("ix_notice_deliveries_due", "notice_deliveries", ["next_attempt_at"],
                    postgresql_where=sa.text("state = 'pending'"))
    op.create_index("ix_notice_deliveries_notice", "notice_deliveries", ["notice_id"])
    op.create_index("ix_notice_deliveries_unprinted", "notice_deliveries", ["sent_at"],
                    postgresql_where=sa.text(
                        "channel = 'letter' AND state = 'sent' AND printed_at IS NULL"))
    op.create_table(
        "notice_delivery_attempts",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("delivery_id", sa.BigInteger(), sa.ForeignKey("notice_deliveries.id"),
                  nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result", sa.String(length=16), server_default="started", nullable=False),
        sa.Column("error", sa.String(length=300), nullable=True),
        sa.Column("provider_message_id", sa.String(length=200), nullable=True),
        sa.UniqueConstraint("delivery_id", "attempt", name="uq_notice_delivery_attempts"),
        sa.CheckConstraint(
            "result IN ('started', 'sent', 'retry', 'failed', 'interrupted')",
            name="ck_notice_delivery_attempts_result"),
    )


def downgrade() -> None:
    op.drop_table("notice_delivery_attempts")
    op.drop_index("ix_notice_deliveries_unprinted", table_name="notice_deliveries")
    op.drop_index("ix_notice_deliveries_notice", table_name="notice_deliveries")
    op.drop_index("ix_notice_deliveries_due", table_name="notice_deliveries")
    op.drop_table("notice_deliveries")
    op.drop_column("notices", "facts_sealed")
