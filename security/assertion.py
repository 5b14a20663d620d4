"""Signed action assertions: the service vouches for who acts, and the workflow checks it.

The service verifies a person's or a system's identity, builds the actor from the
directory, and signs an assertion — actor, action, workflow id, request id, expiry —
with HMAC-SHA256 under a named key. It travels in a Temporal header. The workflow's
inbound interceptor (`workflows/interceptor.py`) checks it before the validators: an
HMAC is deterministic, so checking it in workflow code replays the same way. Anything
sent to Temporal without a valid assertion — the raw `temporal` CLI, the Web UI's Signal
button, a start that skips registration — is refused.

Keys rotate like the codec's (`PETITION_ASSERTION_KEYS=k2:<base64>,k1:<base64>`,
`PETITION_ASSERTION_ACTIVE_KEY=k2`): the active key signs, every configured key verifies.
A key may leave the configuration only once no open petition holds a signal signed with
it in its current run (a replay checks that signal again).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from domain.models import Actor
from security.codec import KeyRing, configured_ring

HEADER = "petition-assertion"
LIFETIME = timedelta(minutes=5)
# A batch signal reaches its cases over minutes (the batcher's rate), not one call.
BATCH_LIFETIME = timedelta(minutes=30)
# Domain separation: a batch assertion's MAC covers this prefix, so no batch token can
# ever verify as an action's assertion (or the reverse), whatever its claims say.
BATCH_CONTEXT = b"petition-batch."


class AssertionRefused(ValueError):
    """No valid assertion: `rule` names why (for the audit trail), the message says it."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


class ActionAssertion(BaseModel):
    """What the service vouches for. `action` is the Update/Signal name, or `start`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    actor: Actor
    action: str
    workflow_id: str
    request_id: str
    digest: str  # SHA-256 of the command's (or the start's) JSON: nothing else is vouched for
    expires_at: datetime


class BatchAssertion(BaseModel):
    """What the service vouches for when one signal goes to many cases (a Temporal batch
    operation): not a workflow, but the batch job in a namespace, the order's parties
    (the unit, the handler whose cases move, the one who takes them, the unit head who
    ordered it) and the order's digest, until `expires_at`. Each case then checks for
    itself that it is the unit's and held by `from_handler` (domain/reassignment.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str = "batch"
    action: str  # the signal's name
    namespace: str
    job_id: str
    unit: str
    from_handler: str
    to_handler: str
    actor: Actor
    digest: str  # SHA-256 of the order without its assertion
    expires_at: datetime


def _canonical(claims: BaseModel) -> bytes:
    return json.dumps(claims.model_dump(mode="json"), sort_keys=True,
                      separators=(",", ":")).encode()


def _mac(key: bytes, key_id: str, body: bytes, context: bytes = b"") -> str:
    digest = hmac.new(key, context + key_id.encode() + b"." + body, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def sign(ring: KeyRing, claims: ActionAssertion | BatchAssertion) -> str:
    """`<key id>.<claims, base64url>.<mac>`: compact, and ASCII for a header payload."""
    body = _canonical(claims)
    context = BATCH_CONTEXT if isinstance(claims, BatchAssertion) else b""
    encoded = base64.urlsafe_b64encode(body).decode().rstrip("=")
    return f"{ring.active}.{encoded}.{_mac(ring.keys[ring.active], ring.active, body, context)}"


def _opened(ring: KeyRing, token: str, context: bytes) -> bytes:
    """The claims' JSON of a token whose MAC is valid under a configured key."""
    key_id, _, rest = token.partition(".")
    encoded, _, mac = rest.partition(".")
    key = ring.keys.get(key_id)
    if key is None or not encoded or not mac:
        raise AssertionRefused("assertion:key", "the assertion is malformed or signed with "
                               "a key that is not configured")
    try:
        body = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except ValueError:
        raise AssertionRefused("assertion:malformed", "the assertion is malformed") from None
    if not hmac.compare_digest(_mac(key, key_id, body, context), mac):
        raise AssertionRefused("assertion:signature", "the assertion's signature is invalid")
    return body


def verify(ring: KeyRing, token: str | None, *, action: str, workflow_id: str,
           digest: str | frozenset[str], now: datetime) -> ActionAssertion:
    """The assertion if `token` is valid for this payload of this action on this workflow
    at `now`. `digest`: the payload's, or every form it may have been signed in."""
    if not token:
        raise AssertionRefused("assertion:missing", f"{action} on {workflow_id} carries no "
                               "signed assertion: act through the petition service")
    body = _opened(ring, token, b"")
    try:
        claims = ActionAssertion.model_validate_json(body)
    except ValidationError:
        raise AssertionRefused("assertion:malformed", "the assertion is malformed") from None
    if claims.workflow_id != workflow_id or claims.action != action:
        raise AssertionRefused("assertion:scope", f"the assertion is for {claims.action} on "
                               f"{claims.workflow_id}, not {action} on {workflow_id}")
    if claims.digest not in ({digest} if isinstance(digest, str) else digest):
        raise AssertionRefused("assertion:payload", "the assertion was signed for another "
                               "payload")
    if now >= claims.expires_at:
        raise AssertionRefused("assertion:expired", "the assertion has expired")
    return claims


def verify_batch(ring: KeyRing, token: str | None, *, action: str, namespace: str,
                 digest: str, now: datetime) -> BatchAssertion:
    """The batch assertion if `token` is valid for this order (its digest) of this signal
    in this namespace at `now`. The caller compares the claims' parties with the order's."""
    if not token:
        raise AssertionRefused("assertion:missing", f"{action} carries no signed batch "
                               "assertion: start it through the petition service")
    body = _opened(ring, token, BATCH_CONTEXT)
    try:
        claims = BatchAssertion.model_validate_json(body)
    except ValidationError:
        raise AssertionRefused("assertion:malformed", "the assertion is malformed") from None
    if claims.kind != "batch" or claims.action != action or claims.namespace != namespace:
        raise AssertionRefused("assertion:scope", f"the batch assertion is for "
                               f"{claims.action} in {claims.namespace}, not {action} in "
                               f"{namespace}")
    if claims.digest != digest:
        raise AssertionRefused("assertion:payload", "the batch assertion was signed for "
                               "another order")
    if now >= claims.expires_at:
        raise AssertionRefused("assertion:expired", "the batch assertion has expired")
    return claims


def assertion_ring(settings: Any) -> KeyRing:
    """The action assertions' keys (PETITION_ASSERTION_KEYS, _ACTIVE_KEY)."""
    return configured_ring(settings, "assertion_key", "assertion")
