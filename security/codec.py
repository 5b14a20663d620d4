"""AES-GCM payload codec: every payload Temporal stores is encrypted, key id alongside.

Each encrypted payload carries `encryption-key-id` in its metadata, so keys rotate
without a migration: new payloads are written with the active key, old ones decode
with whichever configured key wrote them. Keys come from settings
(`PETITION_CODEC_KEYS=k1:<base64 32 bytes>,k2:...`, `PETITION_CODEC_ACTIVE_KEY=k2`);
with none configured, a development key is generated once into `.data/codec-keys`
(git-ignored). No key is ever written into code.

Search attributes are never passed through a codec: they must hold no personal data.

Binding (format 2). Temporal gives the codec a serialization context (the namespace and
workflow a payload belongs to: `with_context`). New payloads record the namespace and
workflow id in their metadata (`encryption-namespace`, `encryption-workflow-id`; no
personal data: workflow ids are a keyed hash, `petition-<base32>`) beside
`encryption-format: 2`, and the associated data covers the format, the key id, the
namespace and the workflow id. A codec bound to a workflow refuses a payload written for
another workflow or namespace, so a ciphertext copied out of one petition's history into
a start, Signal or Update of another is never decrypted there; changing the metadata to
match breaks the authentication tag. Old payloads (format 1: no format field, the key id
alone as associated data) still decrypt, so histories written before stay replayable;
`accept_unbound_legacy=False` refuses them once no such history is needed.

Batch binding (format 3). A Temporal batch signal (bulk reassignment,
domain/reassignment.py) sends one input to every workflow its visibility query finds, so
it cannot be bound to one workflow. It is bound to the namespace and the batch job id
instead (`encryption-batch-job`; the associated data covers the format `3`, the key id,
the namespace and the job id), and whatever holds it may only be that job's order: a
bound codec decrypts a format-3 payload only in its own namespace, and only if the clear
payload is a JSON batch order (`"kind": "batch_reassign"`) naming that same job -- which
only the batch signal's handler accepts (every other handler takes a command model that
forbids its fields), and which carries its own batch-scoped signed assertion. A codec
bound to a batch encrypts nothing else.

Strict by default: a payload that is not encrypted is refused (CodecKeyError), except
`binary/null` with no data (it carries nothing). The worker and every client use the
strict codec, so a start or Signal sent by a tool without the codec fails the workflow
task and nothing runs on it. Tools that must read old plaintext payloads (the codec
server, a one-off inspection) ask for `allow_plaintext=True`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    ActivitySerializationContext,
    PayloadCodec,
    SerializationContext,
    WithSerializationContext,
    WorkflowSerializationContext,
)

ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
FORMAT_METADATA = "encryption-format"  # absent: format 1 (the key id alone is the AAD)
NAMESPACE_METADATA = "encryption-namespace"
WORKFLOW_METADATA = "encryption-workflow-id"
BOUND_FORMAT = b"2"
BATCH_FORMAT = b"3"
BATCH_JOB_METADATA = "encryption-batch-job"
BATCH_ORDER_KIND = "batch_reassign"  # domain.reassignment.KIND: the one order a batch carries
# Encodings whose payloads carry no data (None): a tool without the codec may send them.
NO_DATA_ENCODINGS = frozenset({b"binary/null"})
NONCE_BYTES = 12
KEY_BYTES = 32
TEST_ONLY_PREFIX = "test-only"  # the replay tests' key: committed, so public
# SHA-256 of the committed TEST-ONLY keys (tests/histories/TEST_ONLY_*_key.txt): refused
# whatever id an operator configures them under, since their bytes are public.
PUBLIC_KEY_FINGERPRINTS = frozenset({
    "4a9d0e1f48563617df2e8a9c32bc567525fda14a382f976945be45d20793cb08",  # codec
    "37a57b4a5c388aa051d24957c797c252a436e3c0dec2ecf60aa58f2ec857046f",  # assertions
})


def refuse_public_keys(ring: KeyRing, what: str) -> KeyRing:
    """A configured key ring, unless a key is one of the committed TEST-ONLY keys."""
    for key_id, key in ring.keys.items():
        if (key_id.startswith(TEST_ONLY_PREFIX)
                or hashlib.sha256(key).hexdigest() in PUBLIC_KEY_FINGERPRINTS):
            raise CodecKeyError(f"{what} key {key_id!r} is a TEST-ONLY key: it is public "
                                "(committed under tests/histories); never use it for real")
    return ring
_KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class CodecKeyError(ValueError):
    """The codec keys are misconfigured, or a payload names a key that is not configured."""


@dataclass(frozen=True)
class KeyRing:
    """Named 256-bit keys; `active` encrypts, all of them decrypt."""

    keys: dict[str, bytes] = field(repr=False)  # never in a log line or a traceback
    active: str

    def __post_init__(self) -> None:
        if not self.keys:
            raise CodecKeyError("no codec keys configured")
        for key_id, key in self.keys.items():
            if not _KEY_ID.match(key_id):
                raise CodecKeyError(f"codec key id {key_id!r}: use letters, digits, _ . -")
            if len(key) != KEY_BYTES:
                raise CodecKeyError(f"codec key {key_id!r} must be {KEY_BYTES} bytes, "
                                    f"not {len(key)}")
        if self.active not in self.keys:
            raise CodecKeyError(f"active codec key {self.active!r} is not among the configured "
                                f"keys ({', '.join(sorted(self.keys))})")

    @classmethod
    def parse(cls, spec: str, active: str | None = None) -> KeyRing:
        """`k1:<base64>,k2:<base64>`; the active key must be named when there are several."""
        keys: dict[str, bytes] = {}
        lines = [line for line in spec.splitlines() if not line.lstrip().startswith("#")]
        for part in (p.strip() for p in ",".join(lines).split(",")):
            if not part:
                continue
            key_id, sep, encoded = part.partition(":")
            if not sep:
                raise CodecKeyError("codec keys must be ID:BASE64 pairs separated by commas")
            try:
                key = base64.b64decode(encoded.strip(), validate=True)
            except binascii.Error:
                raise CodecKeyError(f"codec key {key_id.strip()!r} is not valid base64") from None
            if key_id.strip() in keys:
                raise CodecKeyError(f"codec key id {key_id.strip()!r} is given twice")
            keys[key_id.strip()] = key
        if active is None:
            if len(keys) > 1:
                raise CodecKeyError("several codec keys are configured: name the one that "
                                    "encrypts in PETITION_CODEC_ACTIVE_KEY")
            active = next(iter(keys), "")
        return cls(keys=keys, active=active)

    def spec(self) -> str:
        return ",".join(f"{k}:{base64.b64encode(v).decode()}" for k, v in self.keys.items())


def generate_key() -> bytes:
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


def dev_keyring(path: Path) -> KeyRing:
    """The development key in `path`, generated on first use (only this process's user can
    read it). Two processes racing to create it agree: the loser reads the winner's file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        spec = f"dev-{binascii.hexlify(os.urandom(4)).decode()}:" \
               f"{base64.b64encode(generate_key()).decode()}\n"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(spec)
        try:
            os.link(tmp, path)  # atomic, and fails if another process got there first
        except FileExistsError:
            pass
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    return KeyRing.parse(path.read_text(encoding="ascii"))


def configured_ring(settings: object, name: str, what: str, *, plural: bool = True
                    ) -> KeyRing:
    """The ring of settings `<name>s` (or `<name>`) and `<name>_active`: configured keys
    if any (never a public TEST-ONLY one), else -- only where development keys are
    allowed (`PETITION_DEV_KEYS`) -- one generated once into `<name>_file`."""
    field = f"{name}s" if plural else name
    spec = getattr(settings, field, None)
    if spec:
        active = getattr(settings, f"{name.removesuffix('_key')}_active_key", None)
        return refuse_public_keys(KeyRing.parse(spec, active), what)
    if not getattr(settings, "dev_keys", False):
        raise CodecKeyError(f"no {what} keys configured: set PETITION_{field.upper()}")
    return dev_keyring(Path(getattr(settings, f"{name}_file")))


def keyring_from_settings(settings: object) -> KeyRing:
    """The payload codec's keys (PETITION_CODEC_KEYS, PETITION_CODEC_ACTIVE_KEY)."""
    return configured_ring(settings, "codec_key", "codec")


def require_keys(settings: object, *, data_keys: bool = True) -> None:
    """Refuse to start (CodecKeyError naming the setting) unless the payload codec, action
    assertion, workflow id, data (personal-data columns), blind index and query code keys
    are configured, or development keys are allowed (`PETITION_DEV_KEYS`). Processes call it
    before touching the database or Temporal. `data_keys=False`: a process that never
    opens a sealed value (the service) must not hold the key-encryption keys."""
    from adapters.petition_client import _id_key_of
    from security.assertion import assertion_ring
    from security.blind_index import index_from_settings
    from security.query_code import query_codes_from_settings
    from security.sealing import kek_ring_from_settings

    keyring_from_settings(settings)
    assertion_ring(settings)
    if data_keys:
        kek_ring_from_settings(settings)
    index_from_settings(settings)
    query_codes_from_settings(settings)
    _id_key_of(getattr(settings, "id_key", None), str(getattr(settings, "id_key_file", "")),
               bool(getattr(settings, "dev_keys", False)))


@dataclass(frozen=True)
class Binding:
    """The namespace and workflow a payload belongs to ("" where a call has none); or,
    with `batch_job`, the namespace and the batch operation whose one input it is."""

    namespace: str = ""
    workflow_id: str = ""
    batch_job: str = ""

    @classmethod
    def batch(cls, namespace: str, job_id: str) -> Binding:
        if not namespace or not job_id:
            raise CodecKeyError("a batch binding names its namespace and its job")
        return cls(namespace=namespace, batch_job=job_id)

    @classmethod
    def of(cls, context: SerializationContext) -> Binding | None:
        """The binding of a Temporal serialization context; None for a context naming no
        workflow (Nexus: not used here), which leaves the codec unbound."""
        if isinstance(context, WorkflowSerializationContext):
            return cls(context.namespace, context.workflow_id)
        if isinstance(context, ActivitySerializationContext):
            # An activity's payloads belong to the workflow that scheduled it (none for a
            # standalone activity started by a client).
            return cls(context.namespace, context.workflow_id or "")
        return None


def _associated_data(key_id: str, binding: Binding) -> bytes:
    """Format 2: length-prefixed format, key id, namespace and workflow id (unambiguous);
    format 3 (a batch binding): the same with the batch job id for the workflow id."""
    if binding.batch_job:
        parts = [BATCH_FORMAT, key_id.encode(), binding.namespace.encode(),
                 binding.batch_job.encode()]
    else:
        parts = [BOUND_FORMAT, key_id.encode(), binding.namespace.encode(),
                 binding.workflow_id.encode()]
    return b"petition-codec" + b"".join(struct.pack(">I", len(p)) + p for p in parts)


def _batch_order_of(payload: Payload, job_id: str) -> bool:
    """The clear payload is a JSON batch order of this job (and nothing else)."""
    if payload.metadata.get("encoding") != b"json/plain":
        return False
    try:
        order = json.loads(payload.data)
    except ValueError:
        return False
    return (isinstance(order, dict) and order.get("kind") == BATCH_ORDER_KIND
            and order.get("job_id") == job_id)


class EncryptionCodec(PayloadCodec, WithSerializationContext):
    """AES-256-GCM over the whole serialised payload (metadata included, so the
    encoding and the type hints are hidden too), bound to its namespace and workflow.

    Where Temporal passes context (the SDK 1.35 does for every payload a worker or a
    client handles on a workflow's behalf):

    - a workflow's own inputs, results, Signals, Updates, queries, memo and failures, and
      its continue-as-new input (same workflow id, so the next run reads it): that
      workflow's namespace and id;
    - a child workflow's input and result, and a Signal to an external workflow: the
      target workflow's id (the child decodes its input under its own id);
    - an activity's input, result, heartbeat details and failure: the id of the workflow
      that scheduled it, on both the workflow and the activity side;
    - client calls on a workflow handle (start, signal-with-start, Signal, query, Update,
      result): the target workflow.

    Without context (a codec used directly; a few client calls such as schedules or
    describe's memo, none of which this project makes) the codec is unbound: it writes
    format 2 with namespace and workflow id empty, and decrypts any binding. That is safe
    because a bound codec — the only kind on the worker path — accepts exactly its own
    binding: an unbound payload (empty namespace and workflow) differs from every
    workflow's, so it is refused there, not treated as a wildcard. The codec server has
    no workflow context either: it checks the namespace the UI names (`X-Namespace`) and,
    when given, the workflow id (`X-Workflow-Id`), against the authenticated metadata.
    """

    def __init__(self, keyring: KeyRing, *, allow_plaintext: bool = False,
                 accept_unbound_legacy: bool = True, binding: Binding | None = None):
        self._ring = keyring
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keyring.keys.items()}
        self.allow_plaintext = allow_plaintext
        self.accept_unbound_legacy = accept_unbound_legacy
        self.binding = binding

    @property
    def active_key_id(self) -> str:
        return self._ring.active

    def bound(self, binding: Binding | None) -> EncryptionCodec:
        """This codec (same keys and options) bound to `binding` (None: unbound)."""
        return EncryptionCodec(self._ring, allow_plaintext=self.allow_plaintext,
                               accept_unbound_legacy=self.accept_unbound_legacy,
                               binding=binding)

    def with_context(self, context: SerializationContext) -> EncryptionCodec:
        binding = Binding.of(context)
        return self if binding is None else self.bound(binding)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        key_id = self._ring.active
        binding = self.binding or Binding()
        if binding.batch_job and not _batch_order_of(payload, binding.batch_job):
            raise CodecKeyError("a codec bound to a batch encrypts only that batch's order")
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[key_id].encrypt(nonce, payload.SerializeToString(),
                                               _associated_data(key_id, binding))
        metadata = {"encoding": ENCODING, KEY_ID_METADATA: key_id.encode(),
                    NAMESPACE_METADATA: binding.namespace.encode()}
        if binding.batch_job:
            metadata |= {FORMAT_METADATA: BATCH_FORMAT,
                         BATCH_JOB_METADATA: binding.batch_job.encode()}
        else:
            metadata |= {FORMAT_METADATA: BOUND_FORMAT,
                         WORKFLOW_METADATA: binding.workflow_id.encode()}
        return Payload(metadata=metadata, data=nonce + sealed)

    def decrypt(self, payload: Payload, *, namespace: str | None = None,
                workflow_id: str | None = None) -> Payload:
        """The clear payload. A bound codec checks its own binding; `namespace` and
        `workflow_id` check just those (the codec server, which knows no more)."""
        encoding = payload.metadata.get("encoding")
        if encoding != ENCODING:
            if self.allow_plaintext or (encoding in NO_DATA_ENCODINGS and not payload.data):
                return payload
            raise CodecKeyError(
                f"refused a payload that is not encrypted (encoding "
                f"{(encoding or b'none').decode(errors='replace')[:40]!r}): every payload must "
                "be written with the project's codec (worker.data_converter)")
        key_id = payload.metadata.get(KEY_ID_METADATA, b"").decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise CodecKeyError(f"payload was encrypted with codec key {key_id!r}, which is not "
                                "configured (PETITION_CODEC_KEYS)")
        version = payload.metadata.get(FORMAT_METADATA)
        written: Binding | None = None
        if version is None:  # format 1: the key id alone is the associated data
            if not self.accept_unbound_legacy:
                raise CodecKeyError("refused a payload of the old format, not bound to its "
                                    "workflow")
            aad = key_id.encode()
        elif version == BOUND_FORMAT:
            written = Binding(
                payload.metadata.get(NAMESPACE_METADATA, b"").decode(errors="replace"),
                payload.metadata.get(WORKFLOW_METADATA, b"").decode(errors="replace"))
            aad = _associated_data(key_id, written)
        elif version == BATCH_FORMAT:
            written = Binding(
                payload.metadata.get(NAMESPACE_METADATA, b"").decode(errors="replace"),
                batch_job=payload.metadata.get(BATCH_JOB_METADATA, b"").decode(
                    errors="replace"))
            aad = _associated_data(key_id, written)
        else:
            raise CodecKeyError(f"payload has unknown codec format {version[:10]!r}")
        data = payload.data
        try:
            plain = cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], aad)
        except InvalidTag:
            raise CodecKeyError(f"payload does not decrypt with codec key {key_id!r}: "
                                "wrong key or tampered data") from None
        if written is not None:
            self._check_binding(written, namespace, workflow_id)
        clear = Payload.FromString(plain)
        if written is not None and written.batch_job and not _batch_order_of(
                clear, written.batch_job):
            raise CodecKeyError("refused a batch payload that is not its batch's order")
        return clear

    def _check_binding(self, written: Binding, namespace: str | None,
                       workflow_id: str | None) -> None:
        expected: dict[str, Any] = {}
        if self.binding is not None:
            expected = {"namespace": self.binding.namespace,
                        "workflow_id": self.binding.workflow_id,
                        "batch_job": self.binding.batch_job}
        if namespace is not None:
            expected["namespace"] = namespace
        if workflow_id is not None:
            expected["workflow_id"] = workflow_id
        if written.batch_job:
            # A batch's order goes to every workflow of its namespace the batch finds:
            # bound to the job, not to a workflow. A workflow's codec (batch_job "")
            # accepts it; a codec bound to another batch does not.
            expected.pop("workflow_id", None)
            if not expected.get("batch_job"):
                expected.pop("batch_job", None)
        for name, value in expected.items():
            if getattr(written, name) != value:
                raise CodecKeyError(
                    f"refused a payload bound to another {name.replace('_', ' ')}: written "
                    f"for namespace {written.namespace!r}, workflow {written.workflow_id!r}; "
                    f"expected {value!r}")
