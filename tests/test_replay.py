"""Issue 6: the determinism gate. Histories of representative petitions, recorded by
`scripts/record_histories.py` and committed under `tests/histories/`, replay with the
current workflow code. A change that would break a running petition -- a new activity, a
timer, a reordered step, without `workflow.patched` -- fails here, before it ships.
How to change workflow code safely: docs/safe-changes.md."""

from __future__ import annotations

import base64
import gzip
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

from domain.case import PetitionStart, PetitionStatus
from domain.models import Action, Stage
from domain.policy import available_profiles
from security.assertion import assertion_ring
from security.codec import KEY_ID_METADATA, EncryptionCodec, KeyRing
from security.inspect import clear_payloads
from worker import data_converter, workflow_runner
from workflows.interceptor import AssertionInterceptor
from workflows.petition import PetitionWorkflow

HISTORIES = Path(__file__).resolve().parent / "histories"
INDEX: dict[str, Any] = json.loads((HISTORIES / "index.json").read_text(encoding="utf-8"))
RECORDED: dict[str, dict[str, Any]] = INDEX["histories"]
TEST_ONLY = KeyRing.parse((HISTORIES / "TEST_ONLY_codec_key.txt").read_text(encoding="ascii"))
TEST_ONLY_ASSERTIONS = KeyRing.parse(
    (HISTORIES / "TEST_ONLY_assertion_key.txt").read_text(encoding="ascii"))
STATUTORY_PROFILES = {"national", "procuratorate", "zhejiang", "shandong", "sichuan"}
RERECORD = ("if the change is deliberate, guard it with workflow.patched (docs/safe-changes.md); "
            "re-record (scripts/record_histories.py) only for histories no running petition has")


def _history(name: str) -> WorkflowHistory:
    path = HISTORIES / RECORDED[name]["file"]
    data = path.read_bytes()
    text = (gzip.decompress(data) if path.suffix == ".gz" else data).decode("utf-8")
    return WorkflowHistory.from_json(RECORDED[name]["workflow_id"], text)


def _replayer(*workflows: type[Any]) -> Replayer:
    # The test module's own workflow class cannot be re-imported into the sandbox.
    runner = UnsandboxedWorkflowRunner() if workflows else workflow_runner()
    # The recording servers' namespace: payloads of the codec's format 2 are bound to it.
    return Replayer(workflows=list(workflows) or [PetitionWorkflow], namespace="default",
                    data_converter=data_converter(keyring=TEST_ONLY), workflow_runner=runner,
                    interceptors=[AssertionInterceptor(TEST_ONLY_ASSERTIONS)])


@pytest.mark.parametrize("name", sorted(RECORDED))
async def test_recorded_history_replays_with_the_current_code(name: str) -> None:
    result = await _replayer().replay_workflow(_history(name), raise_on_replay_failure=False)
    assert result.replay_failure is None, (
        f"{name} no longer replays: {result.replay_failure}\n{RERECORD}")


def test_the_histories_cover_every_stage_profile_and_path() -> None:
    stages = set().union(*(set(e["stages"]) for e in RECORDED.values()))
    assert stages == {s.value for s in Stage}
    profiles = {e["profile"] for e in RECORDED.values()}
    assert STATUTORY_PROFILES <= profiles <= set(available_profiles())
    actions = set().union(*(set(e["actions"]) for e in RECORDED.values()))
    assert actions == {a.value for a in Action}, {a.value for a in Action} - actions
    covers = set().union(*(set(e["covers"]) for e in RECORDED.values()))
    assert {"transfer", "reject_transfer", "extension", "hearing", "hearing_pauses_re_review",
            "assistance_paid", "assistance_refused", "review", "re_review", "withdraw",
            "review_window_lapsed", "re_review_window_lapsed", "escalation_level_1",
            "escalation_level_2", "continue_as_new", "continued_run", "refused_signal",
            "repeat_visit_attached", "decline_concluded", "settlement_handover"} <= covers


PATCH_CALL = re.compile(r"workflow\.(?:patched|deprecate_patch)\(\s*['\"]([^'\"]+)")
WORKFLOW_SOURCES = sorted((Path(__file__).resolve().parent.parent / "workflows").glob("*.py"))


def patch_ids() -> set[str]:
    """Every `workflow.patched("...")` id in the workflow code."""
    found = set()
    for source in WORKFLOW_SOURCES:
        found |= set(PATCH_CALL.findall(source.read_text(encoding="utf-8")))
    return found


def test_every_patch_is_replayed_both_ways() -> None:
    """After go-live, a patch guards a change for running petitions: then petitions
    started before it (no marker) and after it must both be in the gate."""
    assert WORKFLOW_SOURCES
    for patch in patch_ids():
        taken = {name for name, e in RECORDED.items() if patch in e.get("patches", [])}
        assert taken, f"no recorded history takes {patch}: record with --suffix"
        assert set(RECORDED) - taken, f"every history takes {patch}: none from before it"


def test_the_patch_scan_finds_patches() -> None:
    """The scan above would notice a patch (it is not vacuous)."""
    sample = 'if workflow.patched("answer-in-one-task"):'
    assert PATCH_CALL.findall(sample) == ["answer-in-one-task"]


def test_every_history_file_is_indexed() -> None:
    files = {p.name for p in HISTORIES.glob("*.json*")} - {"index.json"}
    assert files == {e["file"] for e in RECORDED.values()}


@pytest.mark.parametrize("name", sorted(RECORDED))
async def test_recorded_histories_are_encrypted_and_fictional(name: str) -> None:
    """What is committed holds no real person: encrypted with the public TEST-ONLY key,
    and the petitioner in it is fictional."""
    history = _history(name)
    assert clear_payloads(history.events) == []
    started = history.events[0].workflow_execution_started_event_attributes
    [sealed] = started.input.payloads
    assert sealed.metadata[KEY_ID_METADATA].decode().startswith("test-only")
    start = json.loads(EncryptionCodec(TEST_ONLY).decrypt(sealed).data)
    assert start["intake"]["petitioner"]["name"] == "虚构人 Fictional Person"


@workflow.defn(name="PetitionWorkflow")
class _CarelessChange(PetitionWorkflow):
    """An edit made without `workflow.patched`: a pause before registering."""

    @workflow.run
    async def run(self, start: PetitionStart) -> PetitionStatus:
        await workflow.sleep(timedelta(seconds=1))
        return await super().run(start)


async def test_the_gate_catches_a_change_that_would_break_running_petitions() -> None:
    result = await _replayer(_CarelessChange).replay_workflow(
        _history("national-divert"), raise_on_replay_failure=False)
    assert result.replay_failure is not None
    assert "nondeterminism" in type(result.replay_failure).__name__.lower() or \
        "Nondeterminism" in str(result.replay_failure), result.replay_failure


def test_the_test_only_key_is_refused_as_a_real_key() -> None:
    from adapters.settings import Settings
    from security.codec import CodecKeyError, keyring_from_settings

    with pytest.raises(CodecKeyError, match="TEST-ONLY"):
        keyring_from_settings(Settings(codec_keys=TEST_ONLY.spec()))
    # The same public bytes under an innocent-looking id: refused by their fingerprint.
    for ring, setting in ((TEST_ONLY, "codec_keys"), (TEST_ONLY_ASSERTIONS, "assertion_keys")):
        renamed = ",".join(f"prod-{n}:{base64.b64encode(key).decode()}"
                           for n, key in enumerate(ring.keys.values()))
        with pytest.raises(CodecKeyError, match="TEST-ONLY"):
            if setting == "codec_keys":
                keyring_from_settings(Settings(codec_keys=renamed))
            else:
                assertion_ring(Settings(assertion_keys=renamed))
