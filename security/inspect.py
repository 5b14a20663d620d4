"""Looking at what Temporal actually stores: every Payload inside a history, raw."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator

from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload

from security.assertion import ActionAssertion
from security.codec import ENCODING as ENCRYPTED


def walk_payloads(message: Message, *, skip: frozenset[str] = frozenset()) -> Iterator[Payload]:
    """Every `Payload` nested anywhere in `message` (events, failures, maps, metadata),
    except under fields named in `skip` (e.g. `search_attributes`, never encrypted)."""
    for field, value in message.ListFields():
        if field.message_type is None or field.name in skip:
            continue
        if field.message_type.GetOptions().map_entry:
            entries = value.values()
            if field.message_type.fields_by_name["value"].message_type is None:
                continue
            items: list[Message] = list(entries)
        elif isinstance(value, Message):
            items = [value]
        else:  # a repeated field
            items = list(value)
        for item in items:
            if isinstance(item, Payload):
                yield item
            else:
                yield from walk_payloads(item, skip=skip)


# The SDK's own bookkeeping in a local-activity marker (`details["data"]`): ids, times and
# attempt counters written by the SDK core itself, outside any codec. No case data.
LOCAL_ACTIVITY_MARKER_KEYS = frozenset({
    "seq", "attempt", "activity_id", "activity_type", "complete_time", "backoff",
    "original_schedule_time", "activation_index"})


# A `workflow.patched` marker (`details["patch-data"]`): the patch id our code names, and
# whether it is deprecated.
PATCH_MARKER_KEYS = frozenset({"id", "deprecated"})
_BOOKKEEPING = {"data": LOCAL_ACTIVITY_MARKER_KEYS, "patch-data": PATCH_MARKER_KEYS}


def _sdk_bookkeeping(event: Message) -> list[Payload]:
    attrs = getattr(event, "marker_recorded_event_attributes", None)
    if attrs is None or not event.HasField("marker_recorded_event_attributes"):
        return []
    found = []
    for detail, allowed in _BOOKKEEPING.items():
        data = attrs.details.get(detail)
        for payload in (data.payloads if data is not None else []):
            try:
                keys = set(json.loads(payload.data))
            except (ValueError, TypeError):
                continue
            if payload.metadata.get("encoding") == b"json/plain" and keys <= allowed:
                found.append(payload)
    return found


# A signed action assertion (security/assertion.py) in a Temporal header: the acting
# staff id or channel, the action, workflow and request ids, a SHA-256 digest and an
# expiry. Plain so the worker can check it before decoding anything; no case data.
ASSERTION_KEYS = frozenset(ActionAssertion.model_fields)


def _signed_assertion(payload: Payload) -> bool:
    try:
        token = json.loads(payload.data)
        _, claims, _ = token.split(".")
        body = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    except (ValueError, TypeError, AttributeError):
        return False
    return payload.metadata.get("encoding") == b"json/plain" and set(body) == ASSERTION_KEYS


def clear_payloads(events: Iterable[Message]) -> list[tuple[Message, Payload]]:
    """Payloads stored unencrypted, besides search attributes (never encrypted, hold no
    personal data), the SDK's local-activity bookkeeping and signed assertions: should be
    none."""
    clear = []
    for event in events:
        bookkeeping = _sdk_bookkeeping(event)
        for payload in walk_payloads(event, skip=frozenset({"search_attributes"})):
            if (payload.metadata.get("encoding") != ENCRYPTED and payload not in bookkeeping
                    and not _signed_assertion(payload)):
                clear.append((event, payload))
    return clear
