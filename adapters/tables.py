"""The system of record. Alembic owns the schema; these mappings mirror it.

Every write an activity makes carries a business idempotency key
(`<workflow id>:<action sequence>:<what>`) under a unique constraint, so a
retried activity finds its earlier write instead of making a second one.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSTZRANGE, ExcludeConstraint, Range
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


def _now() -> Any:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


# ------------------------------------------------------------- organisation directory


class Unit(Base):
    __tablename__ = "units"
    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))  # petition_bureau, government_department, ...
    level: Mapped[str] = mapped_column(String(16))  # county, city, province
    parent_code: Mapped[str | None] = mapped_column(ForeignKey("units.code"))
    superior_bureau_code: Mapped[str | None] = mapped_column(ForeignKey("units.code"))
    supervising_leader_id: Mapped[str | None] = mapped_column(String(64))
    head_id: Mapped[str | None] = mapped_column(String(64))
    profile: Mapped[str] = mapped_column(String(64), server_default="national")
    # Migration 0004, for the assessment report's two roll-ups: the unit's superior in its
    # own line (a county department -> the city department of the same line), and the
    # territories it is located in, outermost first: [{"code", "name", "level"}, ...]
    # (province, city, county). NULL: the directory loaded did not say.
    line_parent_code: Mapped[str | None] = mapped_column(ForeignKey("units.code"))
    territory: Mapped[list[dict[str, str]] | None] = mapped_column(JSONB)


class Person(Base):
    __tablename__ = "people"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    unit_code: Mapped[str] = mapped_column(ForeignKey("units.code"))
    role: Mapped[str] = mapped_column(String(32))
    title: Mapped[str | None] = mapped_column(String(200))
    is_hearing_officer: Mapped[bool] = mapped_column(Boolean, server_default="false")


# ------------------------------------------------------------------------ petitions


class RegistrationCounter(Base):
    __tablename__ = "registration_counters"
    unit_code: Mapped[str] = mapped_column(String(64), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_seq: Mapped[int] = mapped_column(Integer)


class RegistrationNumber(Base):
    """Allocated before the workflow starts so the UI summary can show it; one per intake."""

    __tablename__ = "registration_numbers"
    intake_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    registration_no: Mapped[str] = mapped_column(String(64), unique=True)
    unit_code: Mapped[str] = mapped_column(String(64))
    allocated_at: Mapped[datetime] = _now()


class Petition(Base):
    """Read model: one row per petition, kept current by `activities.records`."""

    __tablename__ = "petitions"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    intake_id: Mapped[str] = mapped_column(String(64), unique=True)
    workflow_id: Mapped[str] = mapped_column(String(128), unique=True)
    registration_no: Mapped[str] = mapped_column(String(64), unique=True)
    registered_unit: Mapped[str] = mapped_column(String(64))
    holding_unit: Mapped[str] = mapped_column(String(64))
    responsible_unit: Mapped[str | None] = mapped_column(String(64))
    handler_id: Mapped[str | None] = mapped_column(String(64))
    leader_id: Mapped[str | None] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(32))
    category: Mapped[str] = mapped_column(String(64))
    law_related: Mapped[bool] = mapped_column(Boolean)
    profile: Mapped[str] = mapped_column(String(64))
    persons: Mapped[int] = mapped_column(Integer, server_default="1")
    # Personal data is sealed (security/sealing.py, migration 0007): the petitioner, the
    # subject, the letter and the attachments, each bound to this row's intake id. Equal
    # values are found through the blind index (security/blind_index.py): the matter key
    # and the ID number's and phone's keyed HMACs.
    matter_key: Mapped[str] = mapped_column(String(64))
    petitioner_id_index: Mapped[str] = mapped_column(String(64))
    petitioner_phone_index: Mapped[str | None] = mapped_column(String(64))
    petitioner_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    subject_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    content_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    attachments_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    stage: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str | None] = mapped_column(String(32))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    registered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    accepted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    replied_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    acceptance_due: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    handling_due: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    next_deadline: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    overdue: Mapped[bool] = mapped_column(Boolean, server_default="false")
    was_overdue: Mapped[bool] = mapped_column(Boolean, server_default="false")
    escalation_level: Mapped[int] = mapped_column(Integer, server_default="0")
    extension_days: Mapped[int] = mapped_column(Integer, server_default="0")
    satisfaction: Mapped[str | None] = mapped_column(String(32))
    repeat_visits: Mapped[int] = mapped_column(Integer, server_default="0")
    reviewed: Mapped[bool] = mapped_column(Boolean, server_default="false")
    repeat_of: Mapped[str | None] = mapped_column(String(64))  # registration no. of an earlier case
    # A repeat visit on a matter that already has an open case: the workflow id of that
    # case. Such a row is closed at registration; the visit is counted on the open case.
    attached_to: Mapped[str | None] = mapped_column(String(128))
    last_seq: Mapped[int] = mapped_column(Integer, server_default="0")
    updated_at: Mapped[datetime] = _now()

    __table_args__ = (
        Index("ix_petitions_unit_stage", "responsible_unit", "stage"),
        Index("ix_petitions_holding_unit", "holding_unit"),
        Index("ix_petitions_matter_open", "matter_key", "stage"),
        Index("ix_petitions_petitioner_id", "petitioner_id_index"),  # migration 0007
        Index("ix_petitions_petitioner_phone", "petitioner_phone_index"),
        Index("ix_petitions_overdue", "overdue", postgresql_where="overdue"),
        Index("ix_petitions_registered_at", "registered_at"),
        Index("ix_petitions_next_deadline", "next_deadline"),
        Index("ix_petitions_category_registered", "category", "registered_at"),
        # Migration 0003, supervisor queries (bench/query_bench.py): overdue lists, a
        # unit's cohort for the assessment report.
        Index("ix_petitions_open_deadline", "next_deadline",
              postgresql_where=text("stage <> 'closed'")),
        Index("ix_petitions_open_unit_deadline",
              text("coalesce(responsible_unit, holding_unit)"), "next_deadline",
              postgresql_where=text("stage <> 'closed'")),
        Index("ix_petitions_registered_cohort", "registered_at", postgresql_include=[
            "id", "workflow_id", "responsible_unit", "holding_unit", "attached_to", "stage",
            "profile", "received_at", "acceptance_due", "handling_due", "replied_at",
            "satisfaction", "reviewed", "repeat_of", "repeat_visits"]),
    )


class PetitionEvent(Base):
    """Append-only audit trail: every transition and every refused action."""

    __tablename__ = "petition_events"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    petition_id: Mapped[int | None] = mapped_column(ForeignKey("petitions.id"))
    workflow_id: Mapped[str] = mapped_column(String(128))
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    seq: Mapped[int | None] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(40))
    actor_id: Mapped[str] = mapped_column(String(64))
    actor_role: Mapped[str] = mapped_column(String(32))
    actor_unit: Mapped[str] = mapped_column(String(64))
    from_stage: Mapped[str | None] = mapped_column(String(32))
    to_stage: Mapped[str | None] = mapped_column(String(32))
    accepted: Mapped[bool] = mapped_column(Boolean)
    refusal: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    # The detail's free text (reasons, opinions, summaries, notes: `domain.models.FreeText`
    # fields), sealed and bound to the idempotency key. NULL: the action carried none.
    detail_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    recorded_at: Mapped[datetime] = _now()

    # Append-only is enforced in the database too (migration 0002: a trigger refuses
    # UPDATE and DELETE), so no code path can rewrite history.
    __table_args__ = (Index("ix_petition_events_workflow", "workflow_id", "at",
                            postgresql_include=["action", "accepted"]),)  # include: 0003


# ------------------------------------------------------------------ side effects


class TransferOrder(Base):
    __tablename__ = "transfer_orders"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    order_no: Mapped[str] = mapped_column(String(64), unique=True)
    petition_id: Mapped[int] = mapped_column(ForeignKey("petitions.id"))
    kind: Mapped[str] = mapped_column(String(16))  # transfer (转送), assignment (交办), diversion
    from_unit: Mapped[str] = mapped_column(String(64))
    to_unit: Mapped[str] = mapped_column(ForeignKey("units.code"))
    instructions_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)  # free text
    status: Mapped[str] = mapped_column(String(16), server_default="issued")
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Hearing(Base):
    __tablename__ = "hearings"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    petition_id: Mapped[int] = mapped_column(ForeignKey("petitions.id"))
    hearing_no: Mapped[int] = mapped_column(Integer)
    venue: Mapped[str] = mapped_column(String(500))
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    officers: Mapped[list[str]] = mapped_column(ARRAY(String(64)))
    outcome: Mapped[str | None] = mapped_column(String(32))
    summary_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)  # free text
    status: Mapped[str] = mapped_column(String(16), server_default="scheduled")

    __table_args__ = (
        UniqueConstraint("petition_id", "hearing_no"),
        Index("ix_hearings_venue_time", "venue", "starts_at"),
        Index("ix_hearings_time", "starts_at", "ends_at"),
        Index("ix_hearings_officers", "officers", postgresql_using="gin"),
        CheckConstraint("ends_at > starts_at", name="ck_hearings_ends_after_start"),
    )


class HearingSlot(Base):
    """A resource a hearing holds (`venue:<venue key>`, `officer:<person id>`) over its time:
    written by the database's trigger on `hearings` only (migration 0010); the exclusion
    constraint is what guarantees no venue or officer is booked twice at one time."""

    __tablename__ = "hearing_slots"
    hearing_id: Mapped[int] = mapped_column(
        ForeignKey("hearings.id", ondelete="CASCADE"), primary_key=True)
    resource: Mapped[str] = mapped_column(String(520), primary_key=True)
    during: Mapped[Range[datetime]] = mapped_column(TSTZRANGE)

    __table_args__ = (
        ExcludeConstraint(("resource", "="), ("during", "&&"), using="gist",
                          name="ex_hearing_slots_no_double_booking"),
    )


class AssistanceApplication(Base):
    __tablename__ = "assistance_applications"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    petition_id: Mapped[int] = mapped_column(ForeignKey("petitions.id"))
    application_no: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    amount_yuan: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    persons: Mapped[int] = mapped_column(Integer)
    reason_sealed: Mapped[bytes] = mapped_column(LargeBinary)  # free text
    requested_by: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), server_default="requested")
    approved_amount_yuan: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    exception_approved: Mapped[bool] = mapped_column(Boolean, server_default="false")
    # The cap in force when the decision was taken, kept so the payment can check it again.
    cap_yuan: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    decided_by: Mapped[str | None] = mapped_column(String(64))
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("petition_id", "application_no"),
        CheckConstraint("amount_yuan > 0", name="ck_assistance_applications_amount_positive"),
    )


class AssistancePayment(Base):
    """The payments ledger. One application is paid at most once: the unique key says so."""

    __tablename__ = "assistance_payments"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    application_id: Mapped[int] = mapped_column(
        ForeignKey("assistance_applications.id"), unique=True
    )
    petition_id: Mapped[int] = mapped_column(ForeignKey("petitions.id"))
    amount_yuan: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    persons: Mapped[int] = mapped_column(Integer)
    payment_ref: Mapped[str] = mapped_column(String(64), unique=True)
    paid_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("amount_yuan > 0", name="ck_assistance_payments_amount_positive"),
        Index("ix_assistance_payments_paid_at", "paid_at"),  # migration 0003
    )


class Escalation(Base):
    __tablename__ = "escalations"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    petition_id: Mapped[int] = mapped_column(ForeignKey("petitions.id"))
    clock: Mapped[str] = mapped_column(String(32))
    level: Mapped[int] = mapped_column(Integer)
    unit_code: Mapped[str] = mapped_column(String(64))
    escalated_to_person: Mapped[str | None] = mapped_column(String(64))
    escalated_to_unit: Mapped[str | None] = mapped_column(String(64))
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    escalated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("level IN (1, 2)", name="ck_escalations_level"),
        Index("ix_escalations_petition", "petition_id"),
        Index("ix_escalations_escalated_at", "escalated_at"),  # migration 0003
    )


class Notice(Base):
    """The outbox: written in the same transaction as the business change, drained later."""

    __tablename__ = "notices"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    petition_id: Mapped[int | None] = mapped_column(ForeignKey("petitions.id"))
    recipient_kind: Mapped[str] = mapped_column(String(16))  # petitioner, unit, person
    recipient_ref: Mapped[str] = mapped_column(String(200))
    template: Mapped[str] = mapped_column(String(64))
    body_sealed: Mapped[bytes] = mapped_column(LargeBinary)  # bound to the idempotency key
    # Migration 0009: what a petitioner's notice states (domain.notice_facts.NoticeFacts
    # as JSON), sealed and bound to `notices.facts:<idempotency key>`. Set: the notice
    # goes out through `notice_deliveries` (letter, SMS, e-mail), not the file outbox.
    facts_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    # After a failed delivery the drainer backs off: a notice that keeps failing must not
    # hold the head of the queue.
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_notices_undelivered", "id", postgresql_where="delivered_at IS NULL"),
        Index("ix_notices_due", "next_attempt_at", postgresql_where="delivered_at IS NULL"),
    )


class NoticeDelivery(Base):
    """One channel of a notice (migration 0009, docs/delivery.md): letter, SMS or e-mail.
    No contact detail here; `last_error` is the drainer's own reason, never a provider's
    text (which may quote the number or address)."""

    __tablename__ = "notice_deliveries"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    notice_id: Mapped[int] = mapped_column(ForeignKey("notices.id"))
    idempotency_key: Mapped[str] = mapped_column(String(220), unique=True)  # <notice>:<channel>
    channel: Mapped[str] = mapped_column(String(16))  # letter, sms, email
    state: Mapped[str] = mapped_column(String(16), server_default="pending")  # sent, failed
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(String(300))
    provider_message_id: Mapped[str | None] = mapped_column(String(200))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    printed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # letters
    created_at: Mapped[datetime] = _now()

    __table_args__ = (
        UniqueConstraint("notice_id", "channel", name="uq_notice_deliveries_channel"),
        CheckConstraint("channel IN ('letter', 'sms', 'email')",
                        name="ck_notice_deliveries_channel"),
        CheckConstraint("state IN ('pending', 'sent', 'failed')",
                        name="ck_notice_deliveries_state"),
        CheckConstraint("(state = 'sent') = (sent_at IS NOT NULL)",
                        name="ck_notice_deliveries_sent_at"),
        Index("ix_notice_deliveries_due", "next_attempt_at",
              postgresql_where="state = 'pending'"),
        Index("ix_notice_deliveries_notice", "notice_id"),
        Index("ix_notice_deliveries_unprinted", "sent_at",
              postgresql_where="channel = 'letter' AND state = 'sent' AND printed_at IS NULL"),
    )


class NoticeDeliveryAttempt(Base):
    """Every attempt of a delivery: written `started` before the channel is called, then
    finished (sent, retry, failed), or `interrupted` when its drainer died meanwhile."""

    __tablename__ = "notice_delivery_attempts"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("notice_deliveries.id"))
    attempt: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    result: Mapped[str] = mapped_column(String(16), server_default="started")
    error: Mapped[str | None] = mapped_column(String(300))
    provider_message_id: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (
        UniqueConstraint("delivery_id", "attempt", name="uq_notice_delivery_attempts"),
        CheckConstraint("result IN ('started', 'sent', 'retry', 'failed', 'interrupted')",
                        name="ck_notice_delivery_attempts_result"),
    )


class DataKey(Base):
    """A data key of the personal-data columns, wrapped by a key-encryption key that is
    never stored here (security/sealing.py). Retired: no longer seals new values."""

    __tablename__ = "data_keys"
    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    kek_id: Mapped[str] = mapped_column(String(64))
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    cipher: Mapped[str] = mapped_column(String(32), server_default="aes-256-gcm")
    created_at: Mapped[datetime] = _now()  # the server's clock: "newest" is the database's
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class TerminationEntry(Base):
    """Matters concluded after re-review (终结): a new petition on them is declined."""

    __tablename__ = "termination_registry"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    petition_id: Mapped[int] = mapped_column(ForeignKey("petitions.id"), unique=True)
    matter_key: Mapped[str] = mapped_column(String(64), index=True)
    registration_no: Mapped[str] = mapped_column(String(64))
    concluded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    concluded_by_unit: Mapped[str] = mapped_column(String(64))


# --------------------------------------------------- the petition service's credentials
# Migration 0005 (issue 12). Only argon2id hashes are stored: never a password, a client
# secret or a query code.


class StaffAccount(Base):
    """A local account of a person in the directory (for a bureau without an identity
    provider). Locked for a while after repeated failures."""

    __tablename__ = "staff_accounts"
    person_id: Mapped[str] = mapped_column(ForeignKey("people.id"), primary_key=True)
    password_hash: Mapped[str] = mapped_column(Text)
    failed_attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    password_changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class IntakeClient(Base):
    """An intake system (hotline platform, portal, reception window software): registers
    petitions for the units it serves, authenticating with client credentials."""

    __tablename__ = "intake_clients"
    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    secret_hash: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(String(200))
    units: Mapped[list[str]] = mapped_column(ARRAY(String(64)))
    active: Mapped[bool] = mapped_column(Boolean, server_default="true")
    created_at: Mapped[datetime] = _now()


class QueryCode(Base):
    """The petitioner's query code (查询码) for one case, given once at registration."""

    __tablename__ = "query_codes"
    petition_id: Mapped[int] = mapped_column(ForeignKey("petitions.id"), primary_key=True)
    code_hash: Mapped[str] = mapped_column(Text)
    failed_attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now()


# Mapped in a module of their own (migration 0008); imported here so `Base.metadata` --
# which Alembic and the schema checks compare -- always holds every table.
import adapters.document_tables  # noqa: E402, F401
