"""units: territory and line superior, for the report's two roll-ups

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 19:00:00

The assessment report rolls figures up two ways (DOMAIN.md, "What supervisors are judged
on"): by territory -- a county's or a city's figures include every unit located in it --
and by line -- a department with the departments of the same line below it. The
directory now records both:

- `units.line_parent_code`: the unit's superior in its line. Filled here for the units
  already loaded: their `parent` when that parent is of the same kind (what the directory
  loader derives when a file names no `line_superior`);
- `units.territory`: the territories the unit is located in, outermost first, as
  `[{"code", "name", "level"}, ...]`. It cannot be derived from what is stored: reload
  the directory file (`petition load-directory FILE`; `make dev` loads the sample) to fill it.

Territories are kept with the units located in them rather than in a table of their
own: the directory file declares each territory once, the loader writes each unit's
chain, and the report reads nothing else.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("units", sa.Column("line_parent_code", sa.String(length=64), nullable=True))
    op.create_foreign_key(None, "units", "units", ["line_parent_code"], ["code"])
    op.add_column("units", sa.Column("territory", postgresql.JSONB(astext_type=sa.Text()),
                                     nullable=True))
    op.execute(
        "UPDATE units AS u SET line_parent_code = u.parent_code FROM units AS p "
        "WHERE p.code = u.parent_code AND p.kind = u.kind"
    )


def downgrade() -> None:
    op.drop_column("units", "territory")
    op.drop_column("units", "line_parent_code")  # its foreign key goes with it
