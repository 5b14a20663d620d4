"""Issue 13: a ciphertext is bound to its namespace and workflow (format 2 of the codec),
old payloads still decrypt, and the worker refuses payloads that are not encrypted."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    ActivitySerializationContext,
    NexusSerializationContext,
    WorkflowSerializationContext,
)
from temporalio.worker import Replayer

from adapters.petition_client import PetitionClient, workflow_id_for
from adapters.settings import get_settings
from adapters.tables import Petition
from security.assertion import assertion_ring
from security.codec import (
    ENCODING,
    FORMAT_METADATA,
    KEY_ID_METADATA,
    NAMESPACE_METADATA,
    WORKFLOW_METADATA,
    Binding,
    CodecKeyError,
    EncryptionCodec,
    KeyRing,
    generate_key,
)
from security.codec_server import NotAuthenticated, StaffIdentity, ui_codec_server
from tests.conftest import make_intake
from worker import data_converter, workflow_runner
from workflows.interceptor import AssertionInterceptor
from workflows.petition import PetitionWorkflow

RING = KeyRing({"k1": generate_key()}, "k1")
CODEC = EncryptionCodec(RING)
HERE = WorkflowSerializationContext(namespace="default", workflow_id="petition-aaaa")
OTHER_WORKFLOW = WorkflowSerializationContext(namespace="default", workflow_id="petition-bbbb")
OTHER_NAMESPACE = WorkflowSerializationContext(namespace="other", workflow_id="petition-aaaa")
HISTORIES = Path(__file__).resolve().parent / "histories"


def _plain(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(text).encode())


def _sealed(context: Any = HERE, text: str = "虚构人 110101199003071234") -> Payload:
    return CODEC.with_context(context).encrypt(_plain(text))


def _old_format(ring: KeyRing, payload: Payload) -> Payload:
    """A payload as the codec wrote it before binding: the key id alone as the AAD."""
    nonce = os.urandom(12)
    key_id = ring.active
    sealed = AESGCM(ring.keys[key_id]).encrypt(nonce, payload.SerializeToString(),
                                               key_id.encode())
    return Payload(metadata={"encoding": ENCODING, KEY_ID_METADATA: key_id.encode()},
                   data=nonce + sealed)


# ------------------------------------------------------------------ the binding


async def test_a_payload_opens_in_its_own_workflow_and_records_its_binding() -> None:
    sealed = _sealed()
    assert sealed.metadata[FORMAT_METADATA] == b"2"
    assert sealed.metadata[NAMESPACE_METADATA] == b"default"
    assert sealed.metadata[WORKFLOW_METADATA] == b"petition-aaaa"
    assert await CODEC.with_context(HERE).decode([sealed]) == [_plain("虚构人 110101199003071234")]
    assert "虚构人".encode() not in sealed.SerializeToString()


@pytest.mark.parametrize("elsewhere", [OTHER_WORKFLOW, OTHER_NAMESPACE],
                         ids=["other-workflow", "other-namespace"])
async def test_a_ciphertext_copied_to_another_workflow_or_namespace_is_refused(
        elsewhere: WorkflowSerializationContext) -> None:
    with pytest.raises(CodecKeyError, match="bound to another"):
        await CODEC.with_context(elsewhere).decode([_sealed()])


@pytest.mark.parametrize("field", [NAMESPACE_METADATA, WORKFLOW_METADATA])
async def test_metadata_rewritten_to_match_the_target_does_not_decrypt(field: str) -> None:
    """Copying the ciphertext AND editing its metadata to the target's: the tag fails."""
    sealed = _sealed()
    target = OTHER_NAMESPACE if field == NAMESPACE_METADATA else OTHER_WORKFLOW
    forged = Payload(metadata={**sealed.metadata, field: _target_value(target, field)},
                     data=sealed.data)
    assert forged.metadata[field] != sealed.metadata[field]
    with pytest.raises(CodecKeyError, match="tampered"):
        await CODEC.with_context(target).decode([forged])


def _target_value(target: WorkflowSerializationContext, field: str) -> bytes:
    return (target.namespace if field == NAMESPACE_METADATA else target.workflow_id).encode()


async def test_a_bound_payload_cannot_be_downgraded_to_the_old_format() -> None:
    sealed = _sealed()
    old_looking = Payload(metadata={"encoding": ENCODING,
                                    KEY_ID_METADATA: sealed.metadata[KEY_ID_METADATA]},
                          data=sealed.data)
    unknown = Payload(metadata={**sealed.metadata, FORMAT_METADATA: b"9"}, data=sealed.data)
    # Format 3 is a batch's (bound to a batch job, not a workflow): relabelled, it fails.
    as_batch = Payload(metadata={**sealed.metadata, FORMAT_METADATA: b"3"}, data=sealed.data)
    with pytest.raises(CodecKeyError, match="tampered"):
        await CODEC.with_context(OTHER_WORKFLOW).decode([old_looking])
    with pytest.raises(CodecKeyError, match="unknown codec format"):
        await CODEC.with_context(HERE).decode([unknown])
    with pytest.raises(CodecKeyError, match="tampered"):
        await CODEC.with_context(OTHER_WORKFLOW).decode([as_batch])


async def test_an_unbound_payload_is_no_wildcard_for_a_bound_codec() -> None:
    unbound = CODEC.encrypt(_plain("x"))  # no context: namespace and workflow empty
    assert unbound.metadata[WORKFLOW_METADATA] == b""
    assert await CODEC.decode([unbound]) == [_plain("x")]
    with pytest.raises(CodecKeyError, match="bound to another"):
        await CODEC.with_context(HERE).decode([unbound])


async def test_old_format_payloads_still_decrypt_unless_refused() -> None:
    old = _old_format(RING, _plain("before binding"))
    for codec in (CODEC, CODEC.with_context(HERE), CODEC.with_context(OTHER_NAMESPACE)):
        assert await codec.decode([old]) == [_plain("before binding")]
    strict = EncryptionCodec(RING, accept_unbound_legacy=False).with_context(HERE)
    with pytest.raises(CodecKeyError, match="old format"):
        await strict.decode([old])


async def test_a_committed_history_payload_of_the_old_format_decrypts_bound() -> None:
    """The replayed histories (tests/test_replay.py) were written before the binding."""
    ring = KeyRing.parse((HISTORIES / "TEST_ONLY_codec_key.txt").read_text(encoding="ascii"))
    index = json.loads((HISTORIES / "index.json").read_text(encoding="utf-8"))["histories"]
    entry = index["national-divert"]
    history = json.loads((HISTORIES / entry["file"]).read_text(encoding="utf-8"))
    started = history["events"][0]["workflowExecutionStartedEventAttributes"]
    raw = started["input"]["payloads"][0]
    payload = Payload(metadata={k: base64.b64decode(v) for k, v in raw["metadata"].items()},
                      data=base64.b64decode(raw["data"]))
    assert FORMAT_METADATA not in payload.metadata
    bound = EncryptionCodec(ring).with_context(
        WorkflowSerializationContext("default", entry["workflow_id"]))
    [clear] = await bound.decode([payload])
    assert json.loads(clear.data)["intake"]["petitioner"]["name"] == "虚构人 Fictional Person"


def test_contexts_bind_to_the_workflow_the_payload_belongs_to() -> None:
    activity = ActivitySerializationContext(
        namespace="default", activity_id="1", activity_type="register",
        activity_task_queue="petitions", workflow_id="petition-aaaa",
        workflow_type="PetitionWorkflow", is_local=False)
    standalone = ActivitySerializationContext(
        namespace="default", activity_id="1", activity_type="x", activity_task_queue="q",
        workflow_id=None, workflow_type=None, is_local=False)
    assert CODEC.with_context(HERE).binding == Binding("default", "petition-aaaa")
    # An activity's payloads belong to its workflow: they open there.
    assert CODEC.with_context(activity).binding == Binding("default", "petition-aaaa")
    CODEC.with_context(HERE).decrypt(_sealed(activity))
    assert CODEC.with_context(standalone).binding == Binding("default", "")
    nexus = NexusSerializationContext(endpoint="e", service="s", operation="o")
    assert CODEC.with_context(nexus) is CODEC  # no workflow named: unbound


# ------------------------------------------------------------------ the codec server


class _Staff:
    def identify(self, token: str) -> StaffIdentity:
        if token != "staff":
            raise NotAuthenticated("invalid token")
        return StaffIdentity("QS-XFJ.h1", "handler", "QS-XFJ", "service")

    def sign_in(self, username: str, password: str) -> str:
        raise NotAuthenticated("no accounts")

    def close(self) -> None:
        pass


def _decode_call(url: str, payloads: list[Payload], headers: dict[str, str]
                 ) -> tuple[int, Any]:
    import urllib.error
    import urllib.request

    from google.protobuf import json_format

    body = json.dumps({"payloads": [json_format.MessageToDict(p) for p in payloads]}).encode()
    request = urllib.request.Request(f"{url}/decode", data=body, method="POST", headers={
        "Content-Type": "application/json", "Authorization": "Bearer staff", **headers})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


async def test_the_codec_server_checks_the_namespace_and_named_workflow(tmp_path) -> None:
    """No workflow context there: the UI's X-Namespace and, when given, X-Workflow-Id are
    checked against the payload's authenticated binding; old plaintext is still shown."""
    server = ui_codec_server(0, keyring=RING, authenticator=_Staff(),
                             audit_path=tmp_path / "audit.log")
    try:
        sealed, plain = _sealed(), _plain("written before encryption")

        def call(payloads: list[Payload], headers: dict[str, str]) -> Any:
            return asyncio.to_thread(_decode_call, server.url, payloads, headers)

        ok = await call([sealed, plain], {"X-Namespace": "default"})
        named = await call([sealed], {"X-Namespace": "default",
                                      "X-Workflow-Id": "petition-aaaa"})
        other_ns = await call([sealed], {"X-Namespace": "other"})
        other_wf = await call([sealed], {"X-Namespace": "default",
                                         "X-Workflow-Id": "petition-bbbb"})
    finally:
        server.stop()
    assert ok[0] == 200 and len(ok[1]["payloads"]) == 2
    assert named[0] == 200
    assert other_ns[0] == 400 and "namespace" in other_ns[1]["error"]
    assert other_wf[0] == 400 and "workflow" in other_wf[1]["error"]


# ------------------------------------------------------------------ on a real worker


async def _task_failures(client: Client, workflow_id: str, within: float = 30.0
                         ) -> list[Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        failed = [e for e in history.events
                  if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]
        if failed or loop.time() > deadline:
            return failed
        await asyncio.sleep(0.2)


async def test_a_petition_started_without_the_codec_is_not_run(
        dev_env, running_worker, petitions, task_queue, sessions) -> None:
    """A tool without the codec starts a petition (signed, so only the codec can object):
    its first workflow task fails with the codec's refusal and nothing is registered. The
    same worker registers a petition started with the codec (the control), and its
    history -- format 2, bound to the dev server's namespace -- replays there only."""
    plain_client = Client(dev_env.client.service_client, namespace=dev_env.client.namespace,
                          data_converter=pydantic_data_converter)
    smuggled, control = make_intake(), make_intake()
    async with running_worker(dev_env.client):
        handle = await PetitionClient(plain_client, task_queue).start(smuggled)
        petitions.track(handle)
        failures = await _task_failures(dev_env.client, handle.id)
        await petitions.start(dev_env, control)
    assert handle.id == workflow_id_for(smuggled.intake_id)
    assert failures, "the worker ran a petition whose start was not encrypted"
    error = await data_converter().decode_failure(
        failures[0].workflow_task_failed_event_attributes.failure)
    assert "not encrypted" in str(error)
    history = await dev_env.client.get_workflow_handle(handle.id).fetch_history()
    assert not [e for e in history.events
                if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]
    async with sessions() as session:
        registered = set(await session.scalars(select(Petition.intake_id).where(
            Petition.intake_id.in_([smuggled.intake_id, control.intake_id]))))
    assert registered == {control.intake_id}

    control_history = await dev_env.client.get_workflow_handle(
        workflow_id_for(control.intake_id)).fetch_history()
    def replayer(namespace: str) -> Replayer:
        return Replayer(workflows=[PetitionWorkflow], namespace=namespace,
                        data_converter=data_converter(), workflow_runner=workflow_runner(),
                        interceptors=[AssertionInterceptor(assertion_ring(get_settings()))])

    same = await replayer(dev_env.client.namespace).replay_workflow(
        control_history, raise_on_replay_failure=False)
    assert same.replay_failure is None, same.replay_failure
    elsewhere = await replayer("another-namespace").replay_workflow(
        control_history, raise_on_replay_failure=False)
    # Replayed under another namespace, every payload is refused (the SDK reports the
    # failed activation with its message encrypted: it is the codec's refusal).
    assert elsewhere.replay_failure is not None
    assert "activation completion failed" in str(elsewhere.replay_failure)

