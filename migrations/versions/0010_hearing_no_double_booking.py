"""hearings: no double booking, enforced by the database (an exclusion constraint)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-16 09:00:00

Issue 16 (item 1). Until now only the application kept a venue or an officer from being
booked twice at one time (activities/hearings.py: advisory locks, then an overlap check).
That stays as the first line, which names the clash and the earliest free slot; this
migration makes the database the guarantee, whatever writes the row:

- `hearing_slots`: one row per resource a hearing holds -- `venue:<venue key>` and
  `officer:<person id>` -- over `during = [starts_at, ends_at)`, with
  `EXCLUDE USING gist (resource WITH =, during WITH &&)` (btree_gist gives `=` on text a
  GiST operator class). Two slots of one resource may touch (back to back) but not overlap;
  the second writer gets SQLSTATE 23P01 (exclusion_violation), a concurrent one after the
  first commits. One table for both kinds of resource, since `officers` is an array and an
  exclusion constraint takes one value per row;
- `hearing_slots_sync()`, an AFTER trigger on `hearings` (INSERT, and UPDATE of what a
  slot depends on): writes the slots of a hearing that is not released (status
  'cancelled', like activities.hearings.RELEASED) and drops those of one that is. SECURITY
  DEFINER (the owner's): the application role only reads `hearing_slots`, so it cannot
  remove a slot to make room; the slots follow the hearings and nothing else;
- the venue key is the application's `venue_key` in SQL: whitespace runs (Unicode spaces
  included) become one space, trimmed, lower-cased (`ROOM 3 ` and `room  3` are one room);
- `btree_gist` is created if missing: by the migrating role if it may (a superuser, or a
  role with CREATE on the database: btree_gist is a trusted extension), else by the
  session's superuser when migrations/env.py acts as the owner for one (the tests' and
  tools' throwaway databases). An operator's database gets it from
  `python -m devstack.roles <superuser URL>` or deploy/postgres-init; otherwise this
  migration stops with one line saying so.

Existing hearings that already overlap would break the constraint: the migration names
them (by id) and stops, rather than dropping either.

Downgrade drops the trigger, its function and the table; the extension stays (other
objects may use it, and the owner may not be allowed to drop it).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql

from adapters.settings import Settings

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Python's str.split() whitespace, as a PostgreSQL regular expression bracket.
_SPACES = r"[\s\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u001c-\u001f]+"
VENUE_KEY = f"lower(btrim(regexp_replace({{venue}}, '{_SPACES}', ' ', 'g'), ' '))"

# The resources a hearing row holds, as (resource, during) rows; {h} is the row.
_RESOURCES = f"""
    SELECT 'venue:' || {VENUE_KEY.format(venue="{h}.venue")} AS resource
    UNION
    SELECT 'officer:' || o FROM unnest({{h}}.officers) AS o WHERE o IS NOT NULL
"""

SYNC_FUNCTION = f"""
CREATE FUNCTION hearing_slots_sync() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF (OLD.status IS DISTINCT FROM 'cancelled') = (NEW.status IS DISTINCT FROM 'cancelled')
           AND OLD.venue IS NOT DISTINCT FROM NEW.venue
           AND OLD.starts_at IS NOT DISTINCT FROM NEW.starts_at
           AND OLD.ends_at IS NOT DISTINCT FROM NEW.ends_at
           AND OLD.officers IS NOT DISTINCT FROM NEW.officers THEN
            RETURN NULL;  -- e.g. scheduled -> held: the same slots
        END IF;
        DELETE FROM public.hearing_slots WHERE hearing_id = OLD.id;
    END IF;
    IF NEW.status IS DISTINCT FROM 'cancelled' THEN
        INSERT INTO public.hearing_slots (hearing_id, resource, during)
        SELECT NEW.id, r.resource, tstzrange(NEW.starts_at, NEW.ends_at, '[)')
        FROM ({_RESOURCES.format(h="NEW")}) AS r;
    END IF;
    RETURN NULL;
END
$$
"""

SYNC_TRIGGER = """
CREATE TRIGGER hearings_hold_slots
AFTER INSERT OR UPDATE OF status, venue, starts_at, ends_at, officers ON hearings
FOR EACH ROW EXECUTE FUNCTION hearing_slots_sync()
"""

# Pairs of existing hearings (not released) that hold one resource at overlapping times.
OVERLAPS = f"""
WITH slots AS (
    SELECT h.id, r.resource, tstzrange(h.starts_at, h.ends_at, '[)') AS during
    FROM hearings h CROSS JOIN LATERAL ({_RESOURCES.format(h="h")}) AS r
    WHERE h.status IS DISTINCT FROM 'cancelled'
)
SELECT a.id AS first, b.id AS second
FROM slots a JOIN slots b ON a.resource = b.resource AND a.id < b.id
                         AND a.during && b.during
ORDER BY 1, 2
LIMIT 6
"""

BACKFILL = f"""
INSERT INTO hearing_slots (hearing_id, resource, during)
SELECT h.id, r.resource, tstzrange(h.starts_at, h.ends_at, '[)')
FROM hearings h CROSS JOIN LATERAL ({_RESOURCES.format(h="h")}) AS r
WHERE h.status IS DISTINCT FROM 'cancelled'
"""

NO_BTREE_GIST = (
    "PostgreSQL here has no btree_gist extension (contrib), which migration 0010's "
    "exclusion constraint on hearings needs: install PostgreSQL's contrib modules (the "
    "official images and the embedded server have them)")
MAY_NOT_CREATE = (
    "btree_gist is not installed in database {database} and {user} may not create it: "
    "run `python -m devstack.roles <a superuser URL of this database>` (it creates it), or "
    "`CREATE EXTENSION btree_gist SCHEMA public` there as a superuser, then migrate again")
OVERLAPPING = (
    "hearings already booked twice (a venue or an officer at overlapping times), by id: "
    "{pairs}; cancel one of each pair (status 'cancelled') and migrate again")


def _quote(name: str) -> str:
    return op.get_context().dialect.identifier_preparer.quote(name)


def _ensure_btree_gist(bind: sa.Connection) -> None:
    if bind.scalar(sa.text("SELECT 1 FROM pg_extension WHERE extname = 'btree_gist'")):
        return
    if not bind.scalar(sa.text(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'btree_gist'")):
        raise RuntimeError(NO_BTREE_GIST)
    row = bind.execute(sa.text(
        "SELECT current_user AS acting, current_database() AS database, "
        "       has_database_privilege(current_database(), 'CREATE') AS may, "
        "       (SELECT rolsuper FROM pg_roles WHERE rolname = session_user) AS superuser"
    )).one()
    create = sa.text("CREATE EXTENSION IF NOT EXISTS btree_gist SCHEMA public")
    if row.may:
        bind.execute(create)
    elif row.superuser:
        # migrations/env.py acts as the owner role for a superuser's session.
        bind.execute(sa.text("RESET ROLE"))
        bind.execute(create)
        bind.execute(sa.text(f"SET ROLE {_quote(row.acting)}"))
    else:
        raise RuntimeError(MAY_NOT_CREATE.format(database=row.database, user=row.acting))


def upgrade() -> None:
    if not context.is_offline_mode():
        bind = op.get_bind()
        _ensure_btree_gist(bind)
        pairs = bind.execute(sa.text(OVERLAPS)).all()
        if pairs:
            raise RuntimeError(OVERLAPPING.format(
                pairs=", ".join(f"{p.first} and {p.second}" for p in pairs[:5])
                + (" ..." if len(pairs) > 5 else "")))
    else:
        op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist SCHEMA public")
    op.create_table(
        "hearing_slots",
        sa.Column("hearing_id", sa.BigInteger(),
                  sa.ForeignKey("hearings.id", ondelete="CASCADE"), nullable=False),
        # `venue:<venue key>` or `officer:<person id>`
        sa.Column("resource", sa.String(length=520), nullable=False),
        sa.Column("during", postgresql.TSTZRANGE(), nullable=False),
        sa.PrimaryKeyConstraint("hearing_id", "resource", name="pk_hearing_slots"),
        postgresql.ExcludeConstraint(
            ("resource", "="), ("during", "&&"),
            using="gist", name="ex_hearing_slots_no_double_booking"),
    )
    op.execute(SYNC_FUNCTION)
    op.execute(SYNC_TRIGGER)
    op.execute(BACKFILL)
    # Only the trigger (the owner's) writes slots; the application reads them.
    app = _quote(Settings().db_app_role)
    op.execute(f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON hearing_slots FROM {app}")


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS hearings_hold_slots ON hearings")
    op.execute("DROP FUNCTION IF EXISTS hearing_slots_sync()")
    op.drop_table("hearing_slots")
