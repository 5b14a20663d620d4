"""supervisor query indexes: overdue lists and the monthly assessment report

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 03:20:00

Measured by `bench.query_bench` on 1,000,000 petitions (bench/README.md):

- ix_petitions_open_deadline: the province's overdue list (open cases, next deadline
  passed, most overdue first) reads only open cases -- a few percent of the table;
- ix_petitions_open_unit_deadline: the same list for the unit answerable for the case,
  `coalesce(responsible_unit, holding_unit)` (the reports' and the Web UI's unit);
- ix_petitions_registered_cohort: the assessment report's cohort (petitions registered
  in the period, reports/metrics.py `_cohort_query`) as an index-only scan: the key is
  `registered_at`, the columns the report reads are included, so a month of a
  million-row table is read from the index alone, wherever its rows lie in the heap;
- ix_petition_events_workflow, rebuilt with `action, accepted` included: the report's
  first decision / reply / result per cohort petition, again from the index alone;
- escalations (escalated_at), assistance_payments (paid_at): the report's activity
  counts by period (recommended in reports/metrics.py).

Plain CREATE INDEX: on a live table it blocks writes while it builds (seconds per
index at a million rows); run it in a quiet moment or build them CONCURRENTLY by hand.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = sa.text("stage <> 'closed'")
UNIT = sa.text("coalesce(responsible_unit, holding_unit)")
# What the report's cohort reads besides `registered_at` (reports/metrics.py). A column
# the report starts reading later only costs heap fetches, never a wrong answer.
COHORT_COLUMNS = ("id", "workflow_id", "responsible_unit", "holding_unit", "attached_to",
                  "stage", "profile", "received_at", "acceptance_due", "handling_due",
                  "replied_at", "satisfaction", "reviewed", "repeat_of", "repeat_visits")


def upgrade() -> None:
    op.create_index("ix_petitions_open_deadline", "petitions", ["next_deadline"],
                    postgresql_where=OPEN)
    op.create_index("ix_petitions_open_unit_deadline", "petitions", [UNIT, "next_deadline"],
                    postgresql_where=OPEN)
    op.create_index("ix_petitions_registered_cohort", "petitions", ["registered_at"],
                    postgresql_include=list(COHORT_COLUMNS))
    op.drop_index("ix_petition_events_workflow", table_name="petition_events")
    op.create_index("ix_petition_events_workflow", "petition_events", ["workflow_id", "at"],
                    postgresql_include=["action", "accepted"])
    op.create_index("ix_escalations_escalated_at", "escalations", ["escalated_at"])
    op.create_index("ix_assistance_payments_paid_at", "assistance_payments", ["paid_at"])


def downgrade() -> None:
    op.drop_index("ix_assistance_payments_paid_at", table_name="assistance_payments")
    op.drop_index("ix_escalations_escalated_at", table_name="escalations")
    op.drop_index("ix_petition_events_workflow", table_name="petition_events")
    op.create_index("ix_petition_events_workflow", "petition_events", ["workflow_id", "at"])
    op.drop_index("ix_petitions_registered_cohort", table_name="petitions")
    op.drop_index("ix_petitions_open_unit_deadline", table_name="petitions")
    op.drop_index("ix_petitions_open_deadline", table_name="petitions")
