"""exactly-once guards: repeat attachment, assistance cap, outbox backoff, checks, indexes

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 09:00:00

- petitions.attached_to: a repeat visit on an open matter is closed at registration and
  points at the open case (it must never count as an open case of its own);
- assistance_applications.cap_yuan: the cap in force at the decision, re-checked at payment;
- notices.next_attempt_at: a failing notice backs off instead of blocking the outbox;
- check constraints on amounts, hearing times and escalation levels;
- indexes for the hearing overlap search, escalations by petition and `petition list`;
- petition_events is append-only in the database itself (a trigger refuses UPDATE/DELETE).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY_FUNCTION = """
CREATE FUNCTION petition_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'petition_events is an append-only audit trail: % refused', TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$
"""


def upgrade() -> None:
    op.add_column("petitions", sa.Column("attached_to", sa.String(length=128), nullable=True))
    op.create_index("ix_petitions_category_registered", "petitions",
                    ["category", "registered_at"])

    op.add_column("assistance_applications",
                  sa.Column("cap_yuan", sa.Numeric(precision=14, scale=2), nullable=True))
    op.create_check_constraint("ck_assistance_applications_amount_positive",
                               "assistance_applications", "amount_yuan > 0")
    op.create_check_constraint("ck_assistance_payments_amount_positive",
                               "assistance_payments", "amount_yuan > 0")

    op.add_column("notices",
                  sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_notices_due", "notices", ["next_attempt_at"],
                    postgresql_where=sa.text("delivered_at IS NULL"))

    op.create_check_constraint("ck_hearings_ends_after_start", "hearings",
                               "ends_at > starts_at")
    op.create_index("ix_hearings_time", "hearings", ["starts_at", "ends_at"])
    op.create_index("ix_hearings_officers", "hearings", ["officers"], postgresql_using="gin")

    op.create_check_constraint("ck_escalations_level", "escalations", "level IN (1, 2)")
    op.create_index("ix_escalations_petition", "escalations", ["petition_id"])

    op.execute(APPEND_ONLY_FUNCTION)
    op.execute("CREATE TRIGGER petition_events_append_only BEFORE UPDATE OR DELETE "
               "ON petition_events FOR EACH ROW EXECUTE FUNCTION petition_events_append_only()")
    op.execute("CREATE TRIGGER petition_events_no_truncate BEFORE TRUNCATE "
               "ON petition_events FOR EACH STATEMENT "
               "EXECUTE FUNCTION petition_events_append_only()")


def downgrade() -> None:
    op.execute("DROP TRIGGER petition_events_no_truncate ON petition_events")
    op.execute("DROP TRIGGER petition_events_append_only ON petition_events")
    op.execute("DROP FUNCTION petition_events_append_only()")

    op.drop_index("ix_escalations_petition", table_name="escalations")
    op.drop_constraint("ck_escalations_level", "escalations", type_="check")

    op.drop_index("ix_hearings_officers", table_name="hearings", postgresql_using="gin")
    op.drop_index("ix_hearings_time", table_name="hearings")
    op.drop_constraint("ck_hearings_ends_after_start", "hearings", type_="check")

    op.drop_index("ix_notices_due", table_name="notices",
                  postgresql_where=sa.text("delivered_at IS NULL"))
    op.drop_column("notices", "next_attempt_at")

    op.drop_constraint("ck_assistance_payments_amount_positive", "assistance_payments",
                       type_="check")
    op.drop_constraint("ck_assistance_applications_amount_positive", "assistance_applications",
                       type_="check")
    op.drop_column("assistance_applications", "cap_yuan")

    op.drop_index("ix_petitions_category_registered", table_name="petitions")
    op.drop_column("petitions", "attached_to")
