"""Issue 6: hostile intake. Property-based fuzzing (hypothesis) of `parse_intake`: every
input is either a valid intake or refused with one clear line, never a crash; a sample of
the refused ones goes down the real submit path and starts nothing, writes nothing; the
largest valid intake fits well under Temporal's 2 MB payload limit."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.contracts import (
    RegisterPetitionInput,
)
from adapters.data_keys import vault_from_settings
from adapters.petition_client import workflow_id_for
from adapters.settings import get_settings
from adapters.tables import Petition, RegistrationCounter, RegistrationNumber
from domain.case import (
    PetitionStart,
)
from domain.models import (
    MAX_ATTACHMENT_BYTES,
    MAX_ATTACHMENTS,
    MAX_INTAKE_JSON_BYTES,
    MAX_TEXT_CHARS,
    MAX_TOTAL_ATTACHMENT_BYTES,
    PetitionIntake,
    reference,
)
from starter.intake import IntakeError, parse_intake, submit
from tests.cli import petition
from tests.conftest import make_intake
from worker import data_converter

TEMPORAL_BLOB_LIMIT = 2 * 1024 * 1024
FUZZ = settings(max_examples=400, deadline=None, derandomize=True, database=None)
WIDE = "\U00020000"  # 𠀀: four bytes in UTF-8, the worst case for size

json_scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
                | st.sampled_from(["\x00", "\ud800", "\u202e", "9" * 5000, "", " ", "\n"]))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=8)
FIELDS = ["intake_id", "channel", "category", "unit", "received_at", "petitioner", "persons",
          "subject", "content", "respondent", "law_related", "profile", "attachments",
          "petitioner.name", "petitioner.id_number", "petitioner.phone", "petitioner.address",
          "attachments.0.size_bytes", "attachments.0.document_id", "attachments.0.sha256",
          "attachments.0.media_type"]
DOCUMENT = {"document_id": "doc_" + "a" * 26, "sha256": "0" * 64}


def _base() -> dict[str, Any]:
    intake = make_intake().model_dump(mode="json")
    intake["attachments"] = [{"filename": "scan.pdf", "media_type": "application/pdf",
                              "size_bytes": 3, **DOCUMENT}]
    return intake


def _set(doc: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    target: Any = doc
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value


def _outcome(text: str) -> PetitionIntake | IntakeError:
    """Parse; anything but an intake or an IntakeError fails the test right here."""
    try:
        return parse_intake(text)
    except IntakeError as err:
        message = str(err)
        assert message and "\n" not in message and "\r" not in message, repr(message)
        assert len(message) < 600, message[:200]
        return err


def _assert_storable(intake: PetitionIntake) -> None:
    """What validation lets through must fit PostgreSQL and Temporal."""
    dumped = intake.model_dump_json()
    assert "\\u0000" not in dumped
    dumped.encode("utf-8")  # no lone surrogates
    assert len(dumped.encode()) <= MAX_INTAKE_JSON_BYTES


def _run(strategy: Any, check: Callable[..., None], name: str, examples: int = 400) -> None:
    count = 0

    @settings(FUZZ, max_examples=examples)
    @given(strategy)
    def run(args: Any) -> None:
        nonlocal count
        count += 1
        check(*args) if isinstance(args, tuple) else check(args)

    run()
    assert count >= examples // 2, (name, count)  # hypothesis ran the examples


# ------------------------------------------------------------------ properties


def test_any_text_at_all_is_an_intake_or_one_clear_line() -> None:
    def check(text: str) -> None:
        result = _outcome(text)
        if isinstance(result, PetitionIntake):
            _assert_storable(result)

    _run(st.text(max_size=300) | json_values.map(json.dumps), check, "raw text")


def test_every_field_of_the_intake_fuzzed_is_refused_or_storable() -> None:
    def check(field: str, value: Any) -> None:
        doc = _base()
        _set(doc, field, value)
        try:
            text = json.dumps(doc, ensure_ascii=False)
        except ValueError:  # a 5,000-digit integer: json.dumps itself refuses it
            return
        result = _outcome(text)
        if isinstance(result, PetitionIntake):
            _assert_storable(result)
        else:
            assert field.split(".")[0] in str(result) or "(input)" in str(result), str(result)

    _run(st.tuples(st.sampled_from(FIELDS), json_values), check, "field mutations", 800)


def test_missing_and_unknown_fields_are_refused_by_name() -> None:
    required = ["intake_id", "channel", "category", "unit", "received_at", "petitioner",
                "subject", "content"]

    def check(drop: str, extra: str) -> None:
        doc = _base()
        doc.pop(drop)
        result = _outcome(json.dumps(doc))
        assert isinstance(result, IntakeError) and drop in str(result)
        doc = _base()
        doc["x_" + extra] = 1
        result = _outcome(json.dumps(doc))
        assert isinstance(result, IntakeError) and "Extra inputs" in str(result)

    _run(st.tuples(st.sampled_from(required), st.text(max_size=40)), check, "missing/unknown",
         100)


# ------------------------------------------------------------------ hostile cases

HOSTILE: dict[str, tuple[Callable[[dict[str, Any]], Any], str]] = {
    "nested 100,000 deep": (lambda d: "[" * 100_000 + "]" * 100_000, "not acceptable JSON"),
    "a 5,000-digit number": (lambda d: json.dumps(d).replace('"persons": 1', '"persons": '
                                                             + "9" * 5000), "not acceptable"),
    "NUL in the letter": (lambda d: d.update(content="工资\x00拖欠"), "content"),
    "escape char in the name": (lambda d: d["petitioner"].update(name="张\x1b[31m三"), "name"),
    "lone surrogate": (lambda d: json.dumps(d).replace('"subject": "',
                                                       '"subject": "\\ud800'), "subject"),
    "line break in a key": (lambda d: d.update({"evil\nkey": 1}), "evil\\nkey"),
    "a megabyte-long key": (lambda d: d.update({"k" * 1_000_000: 1}), "Extra inputs"),
    "year 9999": (lambda d: d.update(received_at="9999-12-31T23:59:59+14:00"), "received_at"),
    "year 1": (lambda d: d.update(received_at="0001-01-01T00:00:00-12:00"), "received_at"),
    "no time zone": (lambda d: d.update(received_at="2026-11-02T09:30:00"), "received_at"),
    "letter too long": (lambda d: d.update(content="字" * (MAX_TEXT_CHARS + 1)), "content"),
    "too many attachments": (lambda d: d.update(attachments=[
        {**d["attachments"][0], "document_id": None, "sha256": None}] * (
        MAX_ATTACHMENTS + 1)), "attachments"),
    "attachments too big in total": (lambda d: d.update(attachments=[
        {"filename": f"f{i}", "media_type": "image/png", "size_bytes": MAX_ATTACHMENT_BYTES}
        for i in range(MAX_TOTAL_ATTACHMENT_BYTES // MAX_ATTACHMENT_BYTES + 1)]),
        "attachments total"),
    "a file larger than a document may be": (lambda d: d["attachments"][0].update(
        size_bytes=MAX_ATTACHMENT_BYTES + 1), "size_bytes"),
    # Files travel as documents (docs/documents.md), never inside the workflow's input.
    "inline content": (lambda d: d["attachments"][0].update(content_b64="cGRm"),
                       "content_b64 is no longer accepted"),
    "a digest that is not one": (lambda d: d["attachments"][0].update(sha256="!!!!"),
                                 "sha256"),
    "a reference without its digest": (lambda d: d["attachments"][0].update(sha256=None),
                                       "go together"),
    "a document referenced twice": (lambda d: d.update(attachments=d["attachments"] * 2),
                                    "more than once"),
    "ID number in the intake id": (lambda d: d.update(
        intake_id="T-" + d["petitioner"]["id_number"]), "intake_id must not contain"),
    "phone in the intake id": (lambda d: d.update(intake_id="T-13800000000"), "phone"),
    # However spelt, and anyone's: the intake id is stored in clear.
    "the petitioner's ID number, dashed": (lambda d: d.update(intake_id="case-" + "-".join(
        (d["petitioner"]["id_number"][:6], d["petitioner"]["id_number"][6:14],
         d["petitioner"]["id_number"][14:]))), "intake_id must not contain"),
    "someone's ID number": (lambda d: d.update(intake_id="case-110105-19491231-002X"),
                            "an ID number"),
    "a phone, dashed": (lambda d: d.update(intake_id="hotline-139-1234-5678"), "phone number"),
    "unknown profile": (lambda d: d.update(profile="atlantis"), "profile"),
    "negative persons": (lambda d: d.update(persons=-3), "persons"),
    "SQL in the unit code": (lambda d: d.update(unit="QS'; DROP TABLE petitions;--"), "unit"),
    "a list, not an object": (lambda d: json.dumps([d]), "expected a JSON object"),
    "byte-order mark": (lambda d: "\ufeff" + json.dumps(d), "not valid JSON"),
}


def _hostile_text(name: str) -> str:
    doc = _base()
    mutate, _ = HOSTILE[name]
    result = mutate(doc)
    return result if isinstance(result, str) else json.dumps(doc, ensure_ascii=False)


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_intakes_are_refused_naming_the_problem(name: str) -> None:
    result = _outcome(_hostile_text(name))
    assert isinstance(result, IntakeError), f"{name} was accepted"
    assert HOSTILE[name][1] in str(result), str(result)


async def test_the_largest_valid_intake_fits_well_under_temporals_payload_limit() -> None:
    per_file = MAX_TOTAL_ATTACHMENT_BYTES // MAX_ATTACHMENTS
    doc = _base()
    doc.update(content=WIDE * MAX_TEXT_CHARS, subject=WIDE * 500, respondent=WIDE * 500,
               attachments=[{"filename": WIDE * 500, "media_type": "application/pdf",
                             "size_bytes": per_file, "document_id": "doc_" + chr(ord("a") + i) * 26,
                             "sha256": "f" * 64}
                            for i in range(MAX_ATTACHMENTS)])
    doc["petitioner"].update(name=WIDE * 500, address=WIDE * 500)
    largest = parse_intake(json.dumps(doc, ensure_ascii=False))
    converter = data_converter()
    for carrier in (PetitionStart(intake=largest, registration_no="QS-XFJ-2026-000001"),
                    RegisterPetitionInput(workflow_id="petition-x", intake=largest,
                                          registration_no=None,
                                          registered_at=largest.received_at)):
        [payload] = await converter.encode([carrier])
        assert payload.ByteSize() < TEMPORAL_BLOB_LIMIT * 0.55, payload.ByteSize()
    doc["attachments"][0]["size_bytes"] += 1  # one byte more is refused, before Temporal
    assert isinstance(_outcome(json.dumps(doc, ensure_ascii=False)), IntakeError)


# -------------------------------------------------------- the real submit path


def _refused_samples(count: int) -> list[str]:
    samples: list[str] = []

    @settings(FUZZ, max_examples=count * 4)
    @given(st.sampled_from(FIELDS), json_values)
    def collect(field: str, value: Any) -> None:
        doc = _base()
        doc["intake_id"] = reference("FZ", 16)
        _set(doc, field, value)
        try:
            text = json.dumps(doc, ensure_ascii=False)
        except ValueError:
            return
        if len(samples) < count and isinstance(_outcome(text), IntakeError):
            samples.append(text)

    collect()
    return samples


async def _footprint(sessions: Any) -> tuple[int, int, int]:
    async with sessions() as session:
        return (await session.scalar(select(func.count()).select_from(Petition)) or 0,
                await session.scalar(select(func.count()).select_from(RegistrationNumber)) or 0,
                await session.scalar(select(func.coalesce(func.sum(RegistrationCounter.last_seq),
                                                          0))) or 0)


def _intake_id(text: str) -> str | None:
    try:
        value = json.loads(text).get("intake_id")
    except (ValueError, RecursionError, AttributeError):
        return None
    return value if isinstance(value, str) else None


@pytest.mark.cli
async def test_refused_intakes_start_no_workflow_and_write_no_row(
        dev_env, running_worker, sessions, task_queue, db_url, tmp_path: Path) -> None:
    texts = _refused_samples(40)
    texts += [_hostile_text(name) for name in HOSTILE]
    # Schema-valid, but naming a unit the directory does not know: refused at submit.
    unknown_unit = _base()
    unknown_unit.update(intake_id=reference("FZ", 16), unit="NO-SUCH-UNIT")
    texts.append(json.dumps(unknown_unit))
    before = await _footprint(sessions)
    async with running_worker(dev_env.client):
        for text in texts:
            with pytest.raises((IntakeError, ApplicationError)) as refused:
                await submit(dev_env.client, sessions, parse_intake(text), task_queue=task_queue)
            if isinstance(refused.value, ApplicationError):
                assert refused.value.non_retryable
                assert refused.value.message.startswith("refused [directory]")
        # Three through the `petition submit` command itself.
        address = dev_env.client.service_client.config.target_host
        for i, text in enumerate(texts[-3:]):
            path = tmp_path / f"hostile-{i}.json"
            path.write_text(text, encoding="utf-8")
            result = await petition("submit", str(path), db_url=db_url, address=address,
                                    task_queue=task_queue)
            assert result.code == 2 and result.out == "", result.err
            assert result.err.startswith("error: ") and result.err.count("\n") == 1, result.err
    assert await _footprint(sessions) == before
    for text in texts:
        intake_id = _intake_id(text)
        if intake_id is None:
            continue
        with pytest.raises(RPCError) as missing:
            await dev_env.client.get_workflow_handle(workflow_id_for(intake_id)).describe()
        assert missing.value.status is RPCStatusCode.NOT_FOUND
    started = [w.id async for w in dev_env.client.list_workflows(f'TaskQueue = "{task_queue}"')]
    assert started == []


async def test_odd_but_valid_intakes_register_exactly_as_given(
        dev_env, running_worker, sessions, task_queue, petitions) -> None:
    """The other side of the coin: what validation accepts, the system stores whole."""
    odd = [
        {"subject": "Robert'); DROP TABLE petitions;--", "content": "' OR 1=1 --"},
        {"subject": "‮ reversed ‭", "content": "emoji 🧧🏠 and 𠀀𪚥 in the letter\n\ttabbed"},
        {"content": "很" * MAX_TEXT_CHARS, "respondent": "某某建筑劳务有限公司"},
    ]
    vault = vault_from_settings(get_settings(), sessions)
    async with running_worker(dev_env.client):
        for overrides in odd:
            intake = make_intake(**overrides)
            status = await submit(dev_env.client, sessions, intake, task_queue=task_queue)
            petitions.track(dev_env.client.get_workflow_handle(status.workflow_id))
            assert status.stage is not None and status.registration_no
            async with sessions() as session:
                row = await session.scalar(
                    select(Petition).where(Petition.intake_id == intake.intake_id))
            assert row is not None
            where = f"petitions.{{}}:{intake.intake_id}"  # sealed, and opened exactly
            subject = await vault.open(row.subject_sealed, where.format("subject"))
            content = await vault.open(row.content_sealed, where.format("content"))
            assert (subject.decode(), content.decode()) == (intake.subject, intake.content)

