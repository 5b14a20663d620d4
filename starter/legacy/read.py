"""Reading a legacy CSV export: the record model, the header, chunks of rows, field errors.

CSV columns (UTF-8, header row required, column order free, empty cell = not given;
times ISO 8601 WITH a time zone, e.g. `2024-03-05T09:30:00+08:00`):

| column | required | meaning |
|---|---|---|
| registration_no | yes | the legacy registration number (unique) |
| intake_id | yes | the intake system's id (unique); workflow id `petition-<intake_id>` |
| unit | yes | unit code that registered it (must be in the directory) |
| holding_unit | no | unit holding it now (default: responsible_unit, else `unit`) (*) |
| responsible_unit | no | unit that accepted it (from in_handling on; it is the holding unit) |
| handler_id | no | handler person id |
| channel | yes | visit, letter, hotline_12345, hotline_12309, hotline_12368, online, video |
| category | yes | one of domain.models.Category (wage_arrears, ...) |
| received_at | yes | when the intake received it |
| registered_at | no | registration time (default: received_at) |
| transferred_at | no | when `holding_unit` received the transfer (default: registered_at) |
| stage | yes | registered, in_handling, replied, under_review, review_replied, ... closed |
| outcome | closed only | resolved, not_accepted, diverted, withdrawn, concluded |
| accepted_at | from in_handling on | acceptance decision |
| replied_at | from replied on | delivery of the handling opinion |
| review_organ, review_requested_at | from under_review on | review request |
| review_replied_at | from review_replied on | delivery of the review opinion |
| re_review_organ, re_review_requested_at | under_re_review / concluded | re-review request |
| closed_at | closed only | when it closed |
| extension_days | no | approved extension of the handling period (default 0) |
| satisfaction | no | satisfied, basically_satisfied, unsatisfied (after a reply) |
| decline_reason | no | not_accepted only: a DeclineReason (default outside_petition_scope) |
| divert_track, divert_organ | no | diverted only: the track (default: other statutory procedure) |
| petitioner_name, petitioner_id_number | yes | personal data (18-character ID number) |
| petitioner_phone, petitioner_address | no | personal data |
| persons | no | joint petition size (default 1) |
| subject | yes | short subject |
| content | no | letter text (default: the subject) |
| respondent | no | whom the grievance is about (part of the repeat-matter key) |
| law_related | no | true/false (default false) |
| profile | no | deadline profile (default: the registering unit's profile) |

(*) A case held by another unit than the one that registered it was transferred there
(at `transferred_at`, or at registration when the record does not say). Every record is
replayed through the lifecycle (`starter.legacy.replay`): what a live case would have
been refused (a review organ that is not a superior one, an extension beyond the
profile's limit) is a bad row too.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from domain.models import (
    Category,
    Channel,
    Code,
    DeclineReason,
    DivertTrack,
    LongText,
    Outcome,
    Satisfaction,
    ShortText,
    Stage,
    personal_number_in,
)
from starter.legacy.validate import inconsistencies


def _no_personal_number(value: str) -> str:
    what = personal_number_in(value)
    if what is not None:  # the intake id is stored in clear, as for a live intake
        raise ValueError(f"intake_id must not contain {what}")
    return value


IntakeId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{3,63}$"),
                     AfterValidator(_no_personal_number)]
IdNumber = Annotated[str, StringConstraints(pattern=r"^[0-9]{17}[0-9Xx]$")]
Phone = Annotated[str, StringConstraints(pattern=r"^\+?[0-9-]{5,20}$")]


class LegacyRecord(BaseModel):
    """One CSV row. Unknown columns are refused at the header, before any row is read."""

    model_config = ConfigDict(extra="forbid")

    registration_no: Code
    intake_id: IntakeId
    unit: Code
    holding_unit: Code | None = None
    responsible_unit: Code | None = None
    handler_id: Code | None = None
    channel: Channel
    category: Category
    received_at: AwareDatetime
    registered_at: AwareDatetime | None = None
    transferred_at: AwareDatetime | None = None
    stage: Stage
    outcome: Outcome | None = None
    accepted_at: AwareDatetime | None = None
    replied_at: AwareDatetime | None = None
    review_organ: Code | None = None
    review_requested_at: AwareDatetime | None = None
    review_replied_at: AwareDatetime | None = None
    re_review_organ: Code | None = None
    re_review_requested_at: AwareDatetime | None = None
    closed_at: AwareDatetime | None = None
    extension_days: int = Field(default=0, ge=0, le=366)
    satisfaction: Satisfaction | None = None
    decline_reason: DeclineReason | None = None
    divert_track: DivertTrack | None = None
    divert_organ: Code | None = None
    petitioner_name: ShortText
    petitioner_id_number: IdNumber
    petitioner_phone: Phone | None = None
    petitioner_address: ShortText | None = None
    persons: int = Field(default=1, ge=1, le=10_000)
    subject: ShortText
    content: LongText | None = None
    respondent: ShortText | None = None
    law_related: bool = False
    profile: Code | None = None

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> LegacyRecord:
        problems = inconsistencies(self, info.context or {})
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def registered(self) -> datetime:
        return self.registered_at or self.received_at

    @property
    def holding(self) -> str:
        return self.holding_unit or self.responsible_unit or self.unit


COLUMNS: tuple[str, ...] = tuple(LegacyRecord.model_fields)
REQUIRED_COLUMNS = frozenset(n for n, f in LegacyRecord.model_fields.items() if f.is_required())

_ROWS = TypeAdapter(list[LegacyRecord])
_SURPLUS = "cells beyond the header"

Chunk = list[tuple[int, dict[str, str]]]  # (line, cells) of each record


@dataclass
class RowError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class ImportFileError(ValueError):
    """The file as a whole cannot be read (missing, not CSV, bad header): nothing imported."""


def describe_columns() -> str:
    return ", ".join(f"{c}{'*' if c in REQUIRED_COLUMNS else ''}" for c in COLUMNS)


def read_chunks(path: Path, chunk_rows: int) -> Iterator[Chunk]:
    """The file's records, `chunk_rows` at a time, each with the line it starts on."""
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as err:
        raise ImportFileError(f"{path}: {err.strerror}") from None
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise ImportFileError(f"{path}: empty file (a header row is required)") from None
        except (csv.Error, UnicodeDecodeError) as err:
            raise ImportFileError(f"{path}: line 1: {err}") from None
        header = [h.strip() for h in header]
        _check_header(path, header)
        chunk: Chunk = []
        width = len(header)
        line = reader.line_num + 1  # where the next record starts (records may span lines)
        try:
            for values in reader:
                if any(v.strip() for v in values):
                    # Empty cells are absent, so the model's defaults apply; a surplus cell
                    # becomes a field the model refuses, reported on its line.
                    cells = {k: v for k, v in zip(header, values, strict=False) if v != ""}
                    if len(values) > width:
                        cells[_SURPLUS] = ",".join(values[width:])
                    chunk.append((line, cells))
                    if len(chunk) >= chunk_rows:
                        yield chunk
                        chunk = []
                line = reader.line_num + 1
        except (csv.Error, UnicodeDecodeError) as err:
            raise ImportFileError(f"{path}: line {line}: {err}") from None
        if chunk:
            yield chunk


def _check_header(path: Path, header: list[str]) -> None:
    unknown = [h for h in header if h not in COLUMNS]
    missing = sorted(REQUIRED_COLUMNS - set(header))
    duplicated = sorted({h for h in header if header.count(h) > 1})
    if unknown or missing or duplicated:
        parts = ([f"unknown column(s) {', '.join(unknown)}"] if unknown else []) + (
            [f"missing required column(s) {', '.join(missing)}"] if missing else []) + (
            [f"repeated column(s) {', '.join(duplicated)}"] if duplicated else [])
        raise ImportFileError(f"{path}: header (line 1): {'; '.join(parts)}")


def _field_errors(err: ValidationError, lines: Sequence[int]) -> list[RowError]:
    found = []
    for e in err.errors(include_url=False):
        loc = e["loc"]
        index = loc[0] if loc and isinstance(loc[0], int) else 0
        where = ".".join(str(p) for p in loc[1:])
        message = e["msg"].removeprefix("Value error, ")
        if where == _SURPLUS:
            message, where = "more cells than header columns", ""
        found.append(RowError(lines[index], f"{where}: {message}" if where else message))
    return found


def validate_chunk(chunk: Chunk, context: dict[str, Any]
                   ) -> tuple[list[tuple[int, LegacyRecord]], list[RowError]]:
    """Validate a chunk in one call into pydantic-core; on errors, the valid rows are still
    returned (validated one by one) so later cross-row checks see them."""
    lines = [line for line, _ in chunk]
    try:
        records = _ROWS.validate_python([cells for _, cells in chunk], context=context)
        return list(zip(lines, records, strict=True)), []
    except ValidationError as err:
        errors = _field_errors(err, lines)
    bad = {e.line for e in errors}
    good = [(line, LegacyRecord.model_validate(cells, context=context))
            for line, cells in chunk if line not in bad]
    return good, errors
