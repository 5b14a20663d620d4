"""The petition vocabulary: stages, actions, actors, intake and action commands.

Everything here is pure data (pydantic v2) so it can cross the workflow sandbox
and the pydantic data converter unchanged.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from functools import cache
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

MAX_TEXT_CHARS = 20_000
MAX_ATTACHMENTS = 20
# Attachments are documents (docs/documents.md): uploaded to the service, stored sealed in
# PostgreSQL, and referenced by the intake with their id and SHA-256 digest -- the workflow
# input carries no file content. 20 MiB a file, 100 MiB and 20 files a petition.
MAX_ATTACHMENT_BYTES = 20 * 1024 * 1024
MAX_TOTAL_ATTACHMENT_BYTES = 100 * 1024 * 1024
MAX_INTAKE_JSON_BYTES = 1_000_000
# Dates outside this range are typos or attacks; far ones overflow deadline arithmetic.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)

# PostgreSQL cannot store NUL; other control characters and lone surrogates have no
# business in a letter and break JSON, logs and terminals. Tab and line breaks are fine.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def _printable(value: str) -> str:
    bad = _CONTROL.search(value)
    if bad is not None:
        raise ValueError(f"contains the control character U+{ord(bad.group()):04X}")
    return value


def _in_range(value: datetime) -> datetime:
    if value.tzinfo is not None and not EARLIEST <= value < LATEST:
        raise ValueError(f"must lie between {EARLIEST:%Y} and {LATEST:%Y}")
    return value


class FreeText:
    """Marks a field whose text people write (reasons, opinions, summaries): it may name
    anyone or quote anything, so the audit trail stores it sealed (`free_text_fields`)."""


FREE_TEXT = FreeText()

Code = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
ShortText = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500),
    AfterValidator(_printable), FREE_TEXT,
]
LongText = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TEXT_CHARS),
    AfterValidator(_printable), FREE_TEXT,
]


class Strict(BaseModel):
    """Unknown fields are an error: a misspelt field must never pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=False)


class Stage(StrEnum):
    REGISTERED = "registered"
    IN_HANDLING = "in_handling"
    REPLIED = "replied"
    UNDER_REVIEW = "under_review"
    REVIEW_REPLIED = "review_replied"
    UNDER_RE_REVIEW = "under_re_review"
    CLOSED = "closed"


OPEN_STAGES = frozenset(s for s in Stage if s is not Stage.CLOSED)


class Outcome(StrEnum):
    RESOLVED = "resolved"
    NOT_ACCEPTED = "not_accepted"
    DIVERTED = "diverted"
    WITHDRAWN = "withdrawn"
    CONCLUDED = "concluded"


class Action(StrEnum):
    ACCEPT = "accept"
    DECLINE = "decline"
    DIVERT = "divert"
    TRANSFER = "transfer"
    REJECT_TRANSFER = "reject_transfer"
    ASSIGN = "assign"
    CONTRACT_TO_LEADER = "contract_to_leader"
    REQUEST_EXTENSION = "request_extension"
    DECIDE_EXTENSION = "decide_extension"
    SCHEDULE_HEARING = "schedule_hearing"
    RECORD_HEARING = "record_hearing"
    REQUEST_ASSISTANCE = "request_assistance"
    DECIDE_ASSISTANCE = "decide_assistance"
    PROGRESS_REPLY = "progress_reply"
    REPLY = "reply"
    RATE = "rate"
    REQUEST_REVIEW = "request_review"
    REVIEW_OPINION = "review_opinion"
    REQUEST_RE_REVIEW = "request_re_review"
    RE_REVIEW_OPINION = "re_review_opinion"
    WITHDRAW = "withdraw"
    ADD_NOTE = "add_note"
    REPEAT_VISIT = "repeat_visit"
    # Driven by the workflow's own clocks, never by a person.
    REGISTER = "register"
    DECLINE_CONCLUDED = "decline_concluded_matter"
    REVIEW_WINDOW_LAPSED = "review_window_lapsed"
    RE_REVIEW_WINDOW_LAPSED = "re_review_window_lapsed"


class Role(StrEnum):
    INTAKE_CLERK = "intake_clerk"  # registrar at a reception window / letters office / hotline
    HANDLER = "handler"  # staff of a unit
    UNIT_HEAD = "unit_head"
    LEADER = "leader"  # supervising leader (包案领导)
    PETITIONER = "petitioner"
    SUPERVISOR = "supervisor"
    SYSTEM = "system"


class Channel(StrEnum):
    VISIT = "visit"
    LETTER = "letter"
    HOTLINE_12345 = "hotline_12345"
    HOTLINE_12309 = "hotline_12309"
    HOTLINE_12368 = "hotline_12368"
    ONLINE = "online"
    VIDEO = "video"


class Category(StrEnum):
    LAND_AND_RESOURCES = "land_and_resources"
    URBAN_CONSTRUCTION = "urban_construction"
    LABOUR_AND_SOCIAL_SECURITY = "labour_and_social_security"
    WAGE_ARREARS = "wage_arrears"
    RURAL_AFFAIRS = "rural_affairs"
    ENVIRONMENT = "environment"
    HEALTH = "health"
    EDUCATION = "education"
    PUBLIC_SECURITY = "public_security"
    LAW_AND_LITIGATION = "law_and_litigation"
    DISCIPLINE = "discipline"
    OTHER = "other"


class ClockName(StrEnum):
    ROUTING = "routing"  # petition bureau forwards or assigns (Art. 22)
    ACCEPTANCE = "acceptance"  # competent unit decides to accept (Art. 23)
    TRANSFER_OBJECTION = "transfer_objection"  # receiving unit may object (Art. 23)
    HANDLING = "handling"  # handling opinion due (Art. 34)
    REVIEW_REQUEST = "review_request"  # petitioner may ask for review (Art. 35)
    REVIEW = "review"  # review opinion due (Art. 35)
    RE_REVIEW_REQUEST = "re_review_request"  # petitioner may ask for re-review (Art. 36)
    RE_REVIEW = "re_review"  # re-review opinion due (Art. 36)
    PROCEDURAL_REPLY = "procedural_reply"  # procuratorate: reply within 7 days
    SETTLEMENT = "settlement"  # procuratorate: result within 3 months
    PROGRESS_REPLY = "progress_reply"  # procuratorate: monthly progress after 3 months


class DeclineReason(StrEnum):
    REPEATED_WITHIN_TIME_LIMIT = "repeated_within_time_limit"
    CONCLUDED_AFTER_RE_REVIEW = "concluded_after_re_review"
    CROSS_LEVEL_VISIT = "cross_level_visit"
    OUTSIDE_PETITION_SCOPE = "outside_petition_scope"


class DivertTrack(StrEnum):
    LITIGATION = "litigation"
    ARBITRATION = "arbitration"
    ADMINISTRATIVE_REVIEW = "administrative_review"
    DISCIPLINE_INSPECTION = "discipline_inspection"
    OTHER_STATUTORY_PROCEDURE = "other_statutory_procedure"


class Satisfaction(StrEnum):
    SATISFIED = "satisfied"
    BASICALLY_SATISFIED = "basically_satisfied"
    UNSATISFIED = "unsatisfied"


class HearingOutcome(StrEnum):
    SUPPORTED = "supported"
    PARTLY_SUPPORTED = "partly_supported"
    NOT_SUPPORTED = "not_supported"
    ADJOURNED = "adjourned"


class AssistanceKind(StrEnum):
    JUDICIAL = "judicial"
    HARDSHIP = "hardship"


class Actor(Strict):
    id: Code
    role: Role
    unit: Code


# --------------------------------------------------------------------------- intake


class Petitioner(Strict):
    """Personal data: never in workflow ids, search attributes or logs."""

    name: ShortText
    id_number: Annotated[str, StringConstraints(pattern=r"^[0-9]{17}[0-9Xx]$")]
    phone: Annotated[str, StringConstraints(pattern=r"^\+?[0-9-]{5,20}$")] | None = None
    address: ShortText | None = None
    # Where written notices may also go by e-mail (the petitioner's choice).
    email: Annotated[str, StringConstraints(
        pattern=r"^[^@\s\x00-\x1f]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$")] | None = None


DocumentId = Annotated[str, StringConstraints(pattern=r"^doc_[a-z2-7]{26}$")]
Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class Attachment(Strict):
    """A file handed in with the petition: a reference to a stored document (`POST
    /api/v1/documents`) and its SHA-256 digest, never the content. Without a reference
    (both None) the entry only describes a file kept elsewhere (a paper original at the
    counter), as intakes before documents did."""

    filename: ShortText
    media_type: Annotated[str, StringConstraints(pattern=r"^[a-z]+/[a-z0-9.+-]+$")]
    size_bytes: int = Field(ge=0, le=MAX_ATTACHMENT_BYTES)
    document_id: DocumentId | None = None
    sha256: Sha256Hex | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_inline_content(cls, data: Any) -> Any:
        # Inputs recorded before documents carry `content_b64: null`: they still decode.
        # Content itself is refused: files travel as documents, not in the payload.
        if isinstance(data, dict) and "content_b64" in data:
            if data["content_b64"] is not None:
                raise ValueError("content_b64 is no longer accepted: upload the file to "
                                 "POST /api/v1/documents and reference it by document_id "
                                 "and sha256")
            data = {k: v for k, v in data.items() if k != "content_b64"}
        return data

    @model_validator(mode="after")
    def _reference_whole(self) -> Attachment:
        if (self.document_id is None) != (self.sha256 is None):
            raise ValueError("document_id and sha256 go together: the document's id and "
                             "the SHA-256 digest its upload answered")
        return self


class PetitionIntake(Strict):
    """What an intake system hands over. `intake_id` is its idempotency key."""

    intake_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{3,63}$")]
    channel: Channel
    category: Category
    unit: Code  # the unit that received and registers it
    received_at: datetime
    petitioner: Petitioner
    persons: int = Field(default=1, ge=1, le=10_000)  # joint petitions (集体访)
    subject: ShortText
    content: LongText
    respondent: ShortText | None = None  # who the grievance is about
    law_related: bool = False
    profile: Code = "national"
    attachments: list[Attachment] = Field(default_factory=list, max_length=MAX_ATTACHMENTS)

    @field_validator("received_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("received_at must carry a time zone, e.g. 2026-11-02T09:30:00+08:00")
        return _in_range(value)

    @field_validator("intake_id")
    @classmethod
    def _no_personal_number(cls, value: str) -> str:
        # The intake id is stored in clear (the idempotency key): anyone's ID number or
        # mobile number in it, however spelt, would sit unencrypted in the database.
        what = personal_number_in(value)
        if what is not None:
            raise ValueError(f"intake_id must not contain {what}: use the intake system's "
                             "own reference")
        return value

    @model_validator(mode="after")
    def _safe_to_carry(self) -> PetitionIntake:
        ident = _SEPARATORS.sub("", self.intake_id.upper())  # however it is spelt
        phone = re.sub(r"\D", "", self.petitioner.phone or "")
        if self.petitioner.id_number.upper() in ident or (len(phone) >= 7 and phone in ident):
            raise ValueError("intake_id must not contain the petitioner's ID number or phone: "
                             "it is stored in clear")
        referenced = [a.document_id for a in self.attachments if a.document_id is not None]
        if len(set(referenced)) != len(referenced):
            raise ValueError("attachments: a document is referenced more than once")
        total = sum(a.size_bytes for a in self.attachments)
        if total > MAX_TOTAL_ATTACHMENT_BYTES:
            raise ValueError(f"attachments total {total} bytes, more than "
                             f"{MAX_TOTAL_ATTACHMENT_BYTES}")
        size = len(self.model_dump_json().encode())
        if size > MAX_INTAKE_JSON_BYTES:
            raise ValueError(f"the intake is {size} bytes serialised, more than "
                             f"{MAX_INTAKE_JSON_BYTES} (Temporal's payload limit is 2 MB)")
        return self


# ------------------------------------------------------------------- action commands


class Command(Strict):
    """Every action carries its actor. `request_id` makes a client retry harmless."""

    actor: Actor
    # Printable ASCII: it is the Temporal update id and part of an audit-row key.
    request_id: Annotated[str, StringConstraints(pattern=r"^[!-~]{1,64}$")] | None = None


class Accept(Command):
    note: ShortText | None = None


class Decline(Command):
    reason: DeclineReason
    explanation: ShortText
    concluded_case: ShortText | None = None  # registration number of the concluded case


class Divert(Command):
    track: DivertTrack
    organ: Code  # the political-legal or other competent organ
    explanation: ShortText


class Transfer(Command):
    to_unit: Code
    instructions: ShortText | None = None
    assigned: bool = False  # 交办 (assigned, with report-back) rather than 转送 (forwarded)


class RejectTransfer(Command):
    reason: ShortText


class Assign(Command):
    handler_id: Code


class ContractToLeader(Command):
    leader_id: Code


class RequestExtension(Command):
    days: int = Field(ge=1, le=366)
    reason: ShortText


class DecideExtension(Command):
    approved: bool
    days: int | None = Field(default=None, ge=1, le=366)
    reason_to_petitioner: ShortText


class ScheduleHearing(Command):
    venue: ShortText
    starts_at: datetime
    duration_minutes: int = Field(default=120, ge=15, le=8 * 60)
    officers: list[Code] = Field(min_length=1, max_length=9)

    @field_validator("starts_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("starts_at must carry a time zone")
        return _in_range(value)


class RecordHearing(Command):
    hearing_no: int = Field(ge=1)
    outcome: HearingOutcome
    summary: ShortText


class RequestAssistance(Command):
    kind: AssistanceKind
    amount_yuan: Decimal = Field(gt=0, max_digits=12, decimal_places=2)
    persons: int = Field(default=1, ge=1, le=1000)
    reason: ShortText


class DecideAssistance(Command):
    application_no: int = Field(ge=1)
    approved: bool
    amount_yuan: Decimal | None = Field(default=None, gt=0, max_digits=12, decimal_places=2)
    exception_approved: bool = False  # above the statutory cap, by a leader only
    reason: ShortText


class ProgressReply(Command):
    text: ShortText


class Reply(Command):
    opinion: LongText
    supported: bool = True


class Rate(Command):
    satisfaction: Satisfaction
    comment: ShortText | None = None


class RequestReview(Command):
    review_organ: Code
    reason: ShortText


class ReviewOpinion(Command):
    opinion: LongText
    upheld: bool = True


class RequestReReview(Command):
    re_review_organ: Code
    reason: ShortText


class ReReviewOpinion(Command):
    opinion: LongText
    upheld: bool = True


class Withdraw(Command):
    reason: ShortText | None = None


class AddNote(Command):
    text: LongText


class RepeatVisit(Command):
    channel: Channel
    summary: ShortText | None = None


class SystemCommand(Command):
    """A transition driven by the workflow's own clocks."""

    kind: Literal["system"] = "system"


class DeclineConcluded(SystemCommand):
    """Art. 30: the same matter, concluded after re-review, is not accepted again."""

    concluded_case: ShortText
    reason: Literal[DeclineReason.CONCLUDED_AFTER_RE_REVIEW] = \
        DeclineReason.CONCLUDED_AFTER_RE_REVIEW


SYSTEM_ACTOR = Actor(id="system", role=Role.SYSTEM, unit="system")


_SEPARATORS = re.compile(r"[-_.]")
_MOBILE = re.compile(r"(?<![0-9])1[3-9][0-9][-_.]?[0-9]{4}[-_.]?[0-9]{4}(?![0-9])")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def _is_id_number(candidate: str) -> bool:
    """GB 11643: 17 digits, a birth date at 7-14, a mod-11 check character."""
    try:
        born = datetime.strptime(candidate[6:14], "%Y%m%d")
    except ValueError:
        return False
    if not 1900 <= born.year <= 2099:
        return False
    check = "10X98765432"[sum(int(d) * w for d, w in zip(candidate, _ID_WEIGHTS,
                                                          strict=False)) % 11]
    return candidate[17].upper() == check


def reference(prefix: str, chars: int = 20) -> str:
    """A unique reference for generated intakes (tests, benchmarks, drills): base32, whose
    digits (2-7) can spell neither a mobile number nor an ID number."""
    import base64
    import uuid

    return f"{prefix}-{base64.b32encode(uuid.uuid4().bytes).decode().lower()[:chars]}"


def personal_number_in(text: str) -> str | None:
    """'an ID number' or 'a phone number' (mobile) if `text` holds one, however spelt
    (`case-110101-19900307-1234`), else None."""
    if _MOBILE.search(text):
        return "a phone number"
    joined = _SEPARATORS.sub("", text)
    for run in re.findall(r"[0-9]{17}[0-9Xx]|[0-9]{18,}", joined):
        if any(_is_id_number(run[i:i + 18]) for i in range(len(run) - 17)):
            return "an ID number"
    return None


def _marked(annotation: Any) -> bool:
    return annotation is FREE_TEXT or any(_marked(a) for a in get_args(annotation))


def _subclasses(cls: type[BaseModel]) -> list[type[BaseModel]]:
    return [cls, *(c for sub in cls.__subclasses__() for c in _subclasses(sub))]


@cache
def free_text_fields(model: type[BaseModel]) -> frozenset[str]:
    """The fields of `model` marked `FreeText`: the audit trail seals these keys of an
    action's detail (activities/records.py); an enum of the same name elsewhere (a
    decline's `reason`) stays in clear."""
    return frozenset(name for name, field in model.model_fields.items()
                     if any(m is FREE_TEXT for m in field.metadata) or _marked(field.annotation))


def free_text_keys() -> frozenset[str]:
    """Every command's free-text field names: for records of no known command."""
    return frozenset().union(*(free_text_fields(m) for m in _subclasses(Command)))
