"""Issue 6: the AES-GCM payload codec, key rotation, and the authenticated codec server."""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import os
import stat
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.converter import DataConverter, WorkflowSerializationContext
from temporalio.testing import WorkflowEnvironment

from adapters.petition_client import PetitionClient, workflow_id_for
from adapters.search_attributes import ALL_KEYS
from devstack.temporal_cli import resolve_temporal_cli
from devstack.temporal_server import free_port
from domain.models import Accept, Actor, Reply, Role, Stage
from security.codec import (
    ENCODING,
    KEY_ID_METADATA,
    CodecKeyError,
    EncryptionCodec,
    KeyRing,
    dev_keyring,
    generate_key,
)
from security.codec_server import (
    CodecServer,
    CodecServerError,
    NotAuthenticated,
    StaffIdentity,
)
from security.inspect import clear_payloads, walk_payloads
from tests.conftest import make_intake
from worker import data_converter

K1, K2 = generate_key(), generate_key()
IN_DEFAULT = WorkflowSerializationContext(namespace="default", workflow_id="petition-test")
TOKEN = "t0ken-for-this-test-only-" + base64.urlsafe_b64encode(os.urandom(12)).decode()
UI_ORIGIN = "http://127.0.0.1:8233"
HANDLER = Actor(id="QS-XFJ.h1", role=Role.HANDLER, unit="QS-XFJ")


def _b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def _plain(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(text).encode())


# ------------------------------------------------------------------ key ring


def test_key_spec_parses_several_keys_with_the_named_active_one() -> None:
    ring = KeyRing.parse(f"k1:{_b64(K1)}, k2:{_b64(K2)}", "k2")
    assert ring.active == "k2" and ring.keys == {"k1": K1, "k2": K2}
    assert KeyRing.parse(ring.spec(), "k1").keys == ring.keys


@pytest.mark.parametrize(("spec", "active", "message"), [
    ("k1:not-base64!", None, "not valid base64"),
    (f"k1:{_b64(K1[:16])}", None, "must be 32 bytes"),
    (f"k1:{_b64(K1)},k1:{_b64(K2)}", None, "given twice"),
    (f"k1:{_b64(K1)},k2:{_b64(K2)}", None, "PETITION_CODEC_ACTIVE_KEY"),
    (f"k1:{_b64(K1)}", "k9", "not among the configured keys"),
    (_b64(K1), None, "ID:BASE64"),
    ("", None, "no codec keys"),
    (f"bad id:{_b64(K1)}", None, "key id"),
])
def test_misconfigured_keys_are_refused_with_a_clear_message(spec, active, message) -> None:
    with pytest.raises(CodecKeyError, match=message):
        KeyRing.parse(spec, active)


def test_dev_key_is_generated_once_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "codec-keys"
    first = dev_keyring(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert dev_keyring(path) == first
    assert len(first.keys[first.active]) == 32
    assert dev_keyring(tmp_path / "other") != first  # generated, never a constant


def test_production_without_keys_refuses_to_start(tmp_path: Path) -> None:
    from adapters.settings import Settings
    from security.codec import keyring_from_settings

    with pytest.raises(CodecKeyError, match="PETITION_CODEC_KEYS"):
        keyring_from_settings(Settings(dev_keys=False, codec_key_file=tmp_path / "k"))
    assert not (tmp_path / "k").exists()


def test_settings_keys_win_over_the_dev_key_file(tmp_path: Path) -> None:
    from adapters.settings import Settings
    from security.codec import keyring_from_settings

    settings = Settings(codec_keys=f"prod1:{_b64(K1)},prod2:{_b64(K2)}",
                        codec_active_key="prod2", codec_key_file=tmp_path / "unused")
    assert keyring_from_settings(settings).active == "prod2"
    assert not (tmp_path / "unused").exists()


# ------------------------------------------------------------------ the codec


async def test_payloads_are_encrypted_with_the_active_key_id_in_their_metadata() -> None:
    codec = EncryptionCodec(KeyRing({"k1": K1}, "k1"))
    [sealed] = await codec.encode([_plain("张三 110101199003071234")])
    assert sealed.metadata["encoding"] == ENCODING
    assert sealed.metadata[KEY_ID_METADATA] == b"k1"
    assert "张三".encode() not in sealed.SerializeToString()
    assert b"110101199003071234" not in sealed.SerializeToString()
    [again] = await codec.encode([_plain("张三 110101199003071234")])
    assert again.data != sealed.data  # a fresh nonce each time
    [opened] = await codec.decode([sealed])
    assert opened == _plain("张三 110101199003071234")


async def test_rotation_old_payloads_decode_new_ones_use_the_new_key() -> None:
    old = EncryptionCodec(KeyRing({"k1": K1}, "k1"))
    rotated = EncryptionCodec(KeyRing({"k1": K1, "k2": K2}, "k2"))
    [written_before] = await old.encode([_plain("before")])
    [written_after] = await rotated.encode([_plain("after")])
    assert written_after.metadata[KEY_ID_METADATA] == b"k2"
    assert await rotated.decode([written_before, written_after]) == [_plain("before"),
                                                                      _plain("after")]
    retired = EncryptionCodec(KeyRing({"k2": K2}, "k2"))  # k1 removed too early
    with pytest.raises(CodecKeyError, match="'k1', which is not configured"):
        await retired.decode([written_before])


async def test_tampered_payloads_and_key_ids_do_not_decrypt() -> None:
    codec = EncryptionCodec(KeyRing({"k1": K1, "k2": K2}, "k1"))
    [sealed] = await codec.encode([_plain("x")])
    flipped = Payload(metadata=dict(sealed.metadata),
                      data=sealed.data[:-1] + bytes([sealed.data[-1] ^ 1]))
    relabelled = Payload(metadata={**sealed.metadata, KEY_ID_METADATA: b"k2"}, data=sealed.data)
    for bad in (flipped, relabelled):
        with pytest.raises(CodecKeyError, match="wrong key or tampered"):
            await codec.decode([bad])


async def test_plaintext_is_refused_by_default_and_passed_only_when_asked() -> None:
    strict = EncryptionCodec(KeyRing({"k1": K1}, "k1"))
    lenient = EncryptionCodec(KeyRing({"k1": K1}, "k1"), allow_plaintext=True)
    for codec in (strict, strict.with_context(IN_DEFAULT)):
        with pytest.raises(CodecKeyError, match="not encrypted"):
            await codec.decode([_plain("legacy")])
    for codec in (lenient, lenient.with_context(IN_DEFAULT)):
        assert await codec.decode([_plain("legacy")]) == [_plain("legacy")]
    # A None carries nothing: a tool without the codec may send one.
    nothing = Payload(metadata={"encoding": b"binary/null"})
    assert await strict.with_context(IN_DEFAULT).decode([nothing]) == [nothing]
    with pytest.raises(CodecKeyError, match="not encrypted"):  # not with data smuggled in
        await strict.decode([Payload(metadata={"encoding": b"binary/null"}, data=b"x")])


def test_the_project_converter_encrypts_and_encodes_failure_messages() -> None:
    converter = data_converter()
    assert isinstance(converter.payload_codec, EncryptionCodec)
    assert not converter.payload_codec.allow_plaintext  # strict on the worker path
    assert converter.failure_converter._encode_common_attributes  # type: ignore[attr-defined]


# ------------------------------------------------- rotation on a running petition


def _client(env: WorkflowEnvironment, ring: KeyRing) -> Client:
    return Client(env.client.service_client, namespace=env.client.namespace,
                  data_converter=data_converter(keyring=ring))


async def test_rotating_keys_mid_case_keeps_the_petition_running(
        dev_env, running_worker, petitions, task_queue) -> None:
    before = KeyRing({"y2025": K1}, "y2025")
    after = KeyRing({"y2025": K1, "y2026": K2}, "y2026")
    intake = make_intake()
    old_client, new_client = _client(dev_env, before), _client(dev_env, after)
    async with running_worker(old_client):
        old = PetitionClient(old_client, task_queue)
        handle = old.handle(workflow_id_for(intake.intake_id))
        petitions.track(handle)
        await old.submit(intake)
        await old.act(handle.id, Accept(actor=HANDLER))
    # A fresh worker with the rotated ring replays the history written under the old key.
    async with running_worker(new_client):
        status = await PetitionClient(new_client, task_queue).act(
            handle.id, Reply(actor=HANDLER, opinion="已答复 replied"))
    assert status is not None and status.stage is Stage.REPLIED

    raw = Client(dev_env.client.service_client, namespace=dev_env.client.namespace)
    history = await raw.get_workflow_handle(handle.id).fetch_history()
    assert clear_payloads(history.events) == []
    key_ids = [p.metadata[KEY_ID_METADATA].decode() for e in history.events
               for p in walk_payloads(e) if p.metadata.get("encoding") == ENCODING]
    assert key_ids[0] == "y2025" and key_ids[-1] == "y2026"
    assert key_ids == sorted(key_ids)  # the switch happened once, at the rotation
    start = history.events[0].workflow_execution_started_event_attributes.input.payloads[0]
    with pytest.raises(CodecKeyError):
        EncryptionCodec(KeyRing({"y2026": K2}, "y2026")).decrypt(start)


# ------------------------------------------------------------------ codec server


def _post(url: str, body: dict[str, Any], headers: dict[str, str] | None = None,
          method: str = "POST") -> tuple[int, dict[str, str], Any]:
    data = json.dumps(body).encode() if method == "POST" else None
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Content-Type": "application/json", "X-Namespace": "default", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, dict(response.headers), json.loads(raw) if raw else None
    except urllib.error.HTTPError as err:
        raw = err.read()
        return err.code, dict(err.headers), json.loads(raw) if raw else None


def _payloads_json(*payloads: Payload) -> dict[str, Any]:
    return {"payloads": [json_format.MessageToDict(p) for p in payloads]}


async def _roundtrip_server() -> tuple[EncryptionCodec, Payload]:
    codec = EncryptionCodec(KeyRing({"k1": K1}, "k1"))
    [sealed] = await codec.with_context(IN_DEFAULT).encode([_plain("李四 13800001111")])
    return codec, sealed


class OneStaffToken:
    """Stands in for the service's verifiers (tests/test_codec_access.py runs the real
    ones against the directory): TOKEN is the handler's, anything else is refused."""

    def identify(self, token: str) -> StaffIdentity:
        if not hmac.compare_digest(token.encode(), TOKEN.encode()):
            raise NotAuthenticated("invalid token")
        return StaffIdentity(HANDLER.id, HANDLER.role.value, HANDLER.unit or "", "service")

    def sign_in(self, username: str, password: str) -> str:
        raise NotAuthenticated("no accounts here")

    def close(self) -> None:
        pass


def _server(codec: EncryptionCodec, origins: list[str], tmp_path: Path) -> CodecServer:
    return CodecServer(codec, OneStaffToken(), origins, audit_path=tmp_path / "audit.log")


async def test_codec_server_decodes_only_for_signed_in_staff_and_never_encodes(
        tmp_path: Path) -> None:
    codec, sealed = await _roundtrip_server()
    with _server(codec, [UI_ORIGIN], tmp_path) as server:
        ok = await asyncio.to_thread(_post, f"{server.url}/decode", _payloads_json(sealed),
                                     {"Authorization": f"Bearer {TOKEN}"})
        missing = await asyncio.to_thread(_post, f"{server.url}/decode", _payloads_json(sealed))
        wrong = await asyncio.to_thread(_post, f"{server.url}/decode", _payloads_json(sealed),
                                        {"Authorization": f"Bearer {TOKEN[:-1]}x"})
        in_path = await asyncio.to_thread(_post, f"{server.url}/{TOKEN}/decode",
                                          _payloads_json(sealed))
        encode = await asyncio.to_thread(_post, f"{server.url}/encode",
                                         _payloads_json(_plain("王五")),
                                         {"Authorization": f"Bearer {TOKEN}"})
    assert ok[0] == 200
    decoded = json_format.ParseDict(ok[2]["payloads"][0], Payload())
    assert decoded == _plain("李四 13800001111")
    for status, headers, body in (missing, wrong):
        assert status == 401 and body == {"error": "unauthorized"}
        assert headers["WWW-Authenticate"].startswith("Bearer")
    assert in_path[0] == 404  # the old token-in-the-path endpoint is gone
    assert encode[0] == 405 and "payloads" not in (encode[2] or {})
    records = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    assert [(r["outcome"], r.get("person")) for r in records] == [
        ("decoded", HANDLER.id), ("unauthenticated", None), ("unauthenticated", None)]


async def test_codec_server_refuses_garbage_and_answers_cors_only_for_the_ui(
        tmp_path: Path) -> None:
    codec, _ = await _roundtrip_server()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with _server(codec, [UI_ORIGIN], tmp_path) as server:
        garbage = await asyncio.to_thread(_post, f"{server.url}/decode", {"payloads": 7}, auth)
        bogus = Payload(metadata={"encoding": ENCODING, KEY_ID_METADATA: b"k1"}, data=b"x" * 40)
        tampered = await asyncio.to_thread(_post, f"{server.url}/decode",
                                           _payloads_json(bogus), auth)
        elsewhere = await asyncio.to_thread(_post, f"{server.url}/history", {}, auth)
        preflight = await asyncio.to_thread(_post, f"{server.url}/decode", {}, {
            "Origin": UI_ORIGIN, "Access-Control-Request-Method": "POST"}, "OPTIONS")
        foreign = await asyncio.to_thread(_post, f"{server.url}/decode", {}, {
            "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}, "OPTIONS")
    assert garbage[0] == 400 and tampered[0] == 400 and elsewhere[0] == 404
    assert "tampered" in tampered[2]["error"]
    assert preflight[0] == 204
    assert preflight[1]["Access-Control-Allow-Origin"] == UI_ORIGIN
    assert "Authorization" in preflight[1]["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Origin" not in foreign[1]


def test_a_static_token_is_refused() -> None:
    codec = EncryptionCodec(KeyRing({"k1": K1}, "k1"))
    with pytest.raises(CodecServerError, match="authenticator"):
        CodecServer(codec, TOKEN, [UI_ORIGIN])  # type: ignore[arg-type]


async def test_the_dev_servers_web_ui_decodes_a_real_petition_through_the_codec_server(
        task_queue, tmp_path: Path) -> None:
    """The UI learns the endpoint from `--ui-codec-endpoint` — public, and no secret in it
    any more; a browser on the UI's origin then preflights and posts to it: a signed-in
    staff member gets the petition in clear, anyone else 401 (the UI shows it encrypted)."""
    ring = KeyRing({"k1": K1}, "k1")
    converter = data_converter(keyring=ring)
    intake = make_intake()
    with _server(EncryptionCodec(ring), [], tmp_path) as server:
        ui_port = free_port()
        ui_origin = f"http://127.0.0.1:{ui_port}"
        server.origins = frozenset({ui_origin})
        env = await WorkflowEnvironment.start_local(
            data_converter=converter, ui=True, ui_port=ui_port, search_attributes=ALL_KEYS,
            dev_server_existing_path=await asyncio.to_thread(resolve_temporal_cli),
            dev_server_extra_args=["--ui-codec-endpoint", server.ui_endpoint])
        async with env:
            # Started, not submitted: no worker serves this server (the started event's
            # input is all the test reads), and submitting waits for the registration.
            handle = await PetitionClient(env.client, task_queue).start(intake)
            raw = Client(env.client.service_client, namespace=env.client.namespace,
                         data_converter=DataConverter.default)
            history = await raw.get_workflow_handle(handle.id).fetch_history()
            await handle.terminate(reason="test finished")

            def ui_settings() -> dict[str, Any]:
                with urllib.request.urlopen(f"{ui_origin}/api/v1/settings", timeout=10) as r:
                    return json.loads(r.read())

            public = await asyncio.to_thread(ui_settings)
            endpoint = public["Codec"]["Endpoint"]
            started = history.events[0]
            assert started.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED
            sealed = started.workflow_execution_started_event_attributes.input.payloads[0]
            assert intake.petitioner.name.encode() not in sealed.SerializeToString()
            preflight = await asyncio.to_thread(_post, f"{endpoint}/decode", {}, {
                "Origin": ui_origin, "Access-Control-Request-Method": "POST"}, "OPTIONS")
            anonymous = await asyncio.to_thread(_post, f"{endpoint}/decode",
                                                _payloads_json(sealed), {"Origin": ui_origin})
            decoded = await asyncio.to_thread(_post, f"{endpoint}/decode",
                                              _payloads_json(sealed),
                                              {"Origin": ui_origin,
                                               "Authorization": f"Bearer {TOKEN}"})
    assert endpoint == server.ui_endpoint == server.url
    assert TOKEN not in json.dumps(public)
    assert anonymous[0] == 401 and intake.petitioner.name not in json.dumps(anonymous[2])
    assert preflight[1]["Access-Control-Allow-Origin"] == ui_origin
    assert decoded[0] == 200 and decoded[1]["Access-Control-Allow-Origin"] == ui_origin
    clear = json_format.ParseDict(decoded[2]["payloads"][0], Payload())
    assert json.loads(clear.data)["intake"]["petitioner"]["name"] == intake.petitioner.name


@pytest.mark.cli
async def test_petition_codec_server_command_decodes_for_staff_tokens_only(
        tmp_path: Path, db_url: str, sessions: Any) -> None:
    """`sessions` loads the directory into the test database the command checks against."""
    from datetime import timedelta

    from service.auth.tokens import TokenIssuer

    port = free_port()
    audit = tmp_path / "codec-audit.log"
    service_key = _b64(os.urandom(32))
    env = {**os.environ, "PETITION_CODEC_KEYS": f"cli1:{_b64(K1)}", "DATABASE_URL": db_url,
           "PETITION_SERVICE_TOKEN_KEYS": f"cli-svc:{service_key}",
           "PETITION_CODEC_SERVER_PORT": str(port)}
    env.pop("PETITION_SERVICE_TOKEN_ACTIVE_KEY", None)
    staff = TokenIssuer(KeyRing.parse(f"cli-svc:{service_key}", None)).issue(
        "staff", HANDLER.id, timedelta(minutes=5))[0]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "starter", "codec-server", "--audit-log", str(audit), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        banner = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        assert f"127.0.0.1:{port}" in banner
        [sealed] = await EncryptionCodec(KeyRing({"cli1": K1}, "cli1")).with_context(
            IN_DEFAULT).encode([_plain("赵六")])
        url = f"http://127.0.0.1:{port}/decode"
        ok = await asyncio.to_thread(_post, url, _payloads_json(sealed),
                                     {"Authorization": f"Bearer {staff}"})
        refused = await asyncio.to_thread(_post, url, _payloads_json(sealed),
                                          {"Authorization": f"Bearer {TOKEN}"})
    finally:
        proc.terminate()
        await proc.wait()
    assert ok[0] == 200 and refused[0] == 401
    assert json_format.ParseDict(ok[2]["payloads"][0], Payload()) == _plain("赵六")
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [(r["outcome"], r.get("person")) for r in records] == [
        ("decoded", HANDLER.id), ("unauthenticated", None)]
    assert "赵六" not in audit.read_text()
