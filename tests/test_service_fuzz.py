"""Issue 12: Schemathesis against the live petition service — a real uvicorn server on the
dev Temporal server and PostgreSQL, with the worker running, so registering and acting
really reach workflows. Requests are generated from the service's own OpenAPI document
for every operation, signed in as real callers (a staff account, an intake client, a
petitioner with a query code) and as strangers (no token, garbage, a forged token).

Every answer: never a 5xx; conforms to the document (status code, content type, headers,
body schema); every 4xx is RFC 9457 `application/problem+json` with `type`, `title` and
`status`. Nothing is written by a refused request:

- the refused run: callers who may do nothing (strangers; an intake client acting; a
  petitioner on another case; staff of another unit) send only requests that must all be
  refused, and the rows of petitions, accepted audit events, assistance, notices,
  hearings, transfers and query codes are the same before and after;
- the authorized run: staff of the holding unit, the intake client and the case's own
  petitioner; afterwards (the workflows settled) the new petitions are exactly the 201
  registrations and the new accepted events by people are exactly the accepted
  registrations and actions: a refused request that had moved a case would show as one
  more event than accepted answers.

The server runs in the test's event loop; Hypothesis runs in a worker thread and calls it
over HTTP (`requests`, through `Case.call`)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import pytest
import requests
import schemathesis
import uvicorn
from hypothesis import given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode, checks
from sqlalchemy import func, select

from adapters.petition_client import PetitionClient
from adapters.tables import (
    AssistanceApplication,
    AssistancePayment,
    Hearing,
    Notice,
    Petition,
    PetitionEvent,
    QueryCode,
    TransferOrder,
)
from devstack.temporal_server import free_port, settled
from service.accounts_cmd import add_intake_client, set_password
from service.app import create_app
from service.config import ServiceSettings
from tests.conftest import make_intake

KEY = base64.b64encode(b"f" * 32).decode()
PASSWORD = "correct horse battery staple"
PROBLEM = "application/problem+json"
UNIT = "QS-XFJ"  # where the seeded cases are registered and held
STAFF = "QS-XFJ.head"  # the holding unit's head: most actions are theirs to take
STRANGER_STAFF = "QS-HRSS.h1"  # staff of another unit, with no part in the cases
SEEDED_CASES = 4
LOG = logging.getLogger(__name__)

# Examples per operation and caller are set on each `Caller` (Hypothesis may stop early on
# a small space); the requests actually sent are counted and must reach MIN_REQUESTS.
MIN_REQUESTS = 1000
FUZZ = settings(deadline=None, derandomize=True, database=None)

CASE_PATH = "/api/v1/petitions/{registration_no}"
REGISTER = ("POST", "/api/v1/petitions")
UPLOAD = ("POST", "/api/v1/documents")  # an intake client's too: an attachment's bytes


def service_settings() -> ServiceSettings:
    return ServiceSettings(_env_file=None, token_keys=f"fuzz-k1:{KEY}", lockout_failures=5,
                           lockout_minutes=5, rate_burst=100_000, rate_per_second=10_000.0)


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """The app under a real uvicorn server in this event loop, on a free port."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off",
                                           access_log=False))
    task = asyncio.create_task(server._serve())  # _serve: no signal handlers in a test
    for _ in range(200):
        if server.started or task.done():
            break
        await asyncio.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


# ------------------------------------------------------------------- the record


@dataclass
class Sent:
    phase: str
    caller: str
    method: str
    path: str  # the operation's path template
    status: int
    number: str | None  # the registration number in the path, if any
    body: Any = None


@dataclass
class Log:
    sent: list[Sent] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)  # distinct: the first example
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, item: Sent) -> None:
        with self.lock:
            self.sent.append(item)


def refusals_are_problems(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx is RFC 9457 problem+json with type, title and status."""
    if 400 <= response.status_code < 500:
        kind = (response.headers.get("content-type") or [""])[0]
        assert str(kind).startswith(PROBLEM), f"a {response.status_code} answered as {kind!r}"
        body = response.json()
        assert isinstance(body, dict) and {"type", "title", "status"} <= set(body), body
        assert body["status"] == response.status_code, body
    return None


CHECKS = [checks.not_a_server_error, checks.status_code_conformance,
          checks.content_type_conformance, checks.response_headers_conformance,
          checks.response_schema_conformance, refusals_are_problems]


# -------------------------------------------------------------------- the runs


@dataclass
class Caller:
    name: str
    headers: dict[str, str]
    # Which operations this caller is fuzzed on: (method, path template) -> bool
    picks: Callable[[str, str], bool]
    # Registration numbers to put in case paths (besides generated ones)
    numbers: list[str] = field(default_factory=list)
    units: list[str] = field(default_factory=list)  # unit codes for /units/{unit}, /reports
    unique_keys: bool = False  # a fresh Idempotency-Key per request
    force_unit: str | None = None  # the registered intake's unit
    modes: tuple[GenerationMode, ...] = (GenerationMode.POSITIVE,)
    examples: int = 6  # per operation


def operations_for(schema: Any, caller: Caller) -> list[tuple[str, Any]]:
    """Per operation the caller is fuzzed on: its label and its strategy (each generation
    mode; generated path values and the caller's real registration numbers and units)."""
    found = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if not caller.picks(operation.method.upper(), operation.path):
            continue
        parts = []
        for mode in caller.modes:
            parts.append(operation.as_strategy(generation_mode=mode))
            for name, values in (("registration_no", caller.numbers),
                                 ("unit", caller.units)):
                if f"{{{name}}}" in operation.path:
                    parts.extend(operation.as_strategy(
                        generation_mode=mode, path_parameters={name: value})
                        for value in values)
        found.append((operation.label, st.one_of(parts)))
    assert found, f"no operation for {caller.name}"
    return found


def fuzz(schema: Any, base_url: str, caller: Caller, phase: str, log: Log) -> None:
    """Hypothesis (in this thread) sends up to `caller.examples` generated requests per
    operation as `caller`."""
    session = requests.Session()
    for _, strategy in operations_for(schema, caller):

        @settings(FUZZ, max_examples=caller.examples)
        @given(case=strategy)
        def run(case: Any) -> None:
            send(case, base_url, session, caller, phase, log)

        run()


def send(case: Any, base_url: str, session: requests.Session, caller: Caller, phase: str,
         log: Log) -> None:
    if caller.force_unit and isinstance(case.body, dict):
        case.body["unit"] = caller.force_unit
    headers = dict(caller.headers)
    if caller.unique_keys:
        headers["Idempotency-Key"] = f"fuzz-{uuid.uuid4().hex}"
    response = case.call(base_url=base_url, session=session, headers=headers, timeout=60)
    number = (case.path_parameters or {}).get("registration_no")
    log.add(Sent(phase, caller.name, case.method.upper(), case.path, response.status_code,
                 number, response.json() if response.status_code in (200, 201)
                 and case.path == REGISTER[1] else None))
    try:
        case.validate_response(response, checks=CHECKS, headers=headers)
    except (Exception, BaseExceptionGroup) as err:  # collected, reported together
        titles = [getattr(e, "title", type(e).__name__)
                  for e in getattr(err, "exceptions", [err])]
        key = f"{case.method.upper()} {case.path} {response.status_code}: {titles}"
        with log.lock:
            log.failures.setdefault(key, f"[{phase}/{caller.name}] {err}"[:2500])


# ----------------------------------------------------------------------- rows


async def row_counts(sessions: Any) -> dict[str, int]:
    tables = {"petitions": Petition, "assistance_applications": AssistanceApplication,
              "assistance_payments": AssistancePayment, "notices": Notice,
              "hearings": Hearing, "transfer_orders": TransferOrder,
              "query_codes": QueryCode}
    counts: dict[str, int] = {}
    async with sessions() as session:
        for name, table in tables.items():
            counts[name] = int(await session.scalar(select(func.count()).select_from(table))
                               or 0)
        counts["accepted_events"] = int(await session.scalar(
            select(func.count()).select_from(PetitionEvent)
            .where(PetitionEvent.accepted.is_(True))) or 0)
        counts["accepted_events_by_people"] = int(await session.scalar(
            select(func.count()).select_from(PetitionEvent)
            .where(PetitionEvent.accepted.is_(True), PetitionEvent.actor_role != "system"))
            or 0)
    return counts


# ----------------------------------------------------------------------- test


async def bearer_for_staff(http: httpx.AsyncClient, sessions: Any, person: str) -> dict[
        str, str]:
    await set_password(sessions, person, PASSWORD)
    answer = await http.post("/auth/token", data={"grant_type": "password", "username": person,
                                                  "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


async def bearer_for_client(http: httpx.AsyncClient, sessions: Any) -> dict[str, str]:
    client_id = f"fuzz-intake-{uuid.uuid4().hex[:8]}"
    secret = await add_intake_client(sessions, client_id, "fuzz intake", [UNIT])
    answer = await http.post("/auth/token", data={
        "grant_type": "client_credentials", "client_id": client_id, "client_secret": secret})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def forged_bearer() -> dict[str, str]:
    """The right shape and key id, signed with a key the service does not hold."""
    token = jwt.encode({"sub": STAFF, "kind": "staff", "iss": "petition-flow-service",
                        "aud": "petition-flow-service", "exp": 4102444800}, b"x" * 32,
                       algorithm="HS256", headers={"kid": "fuzz-k1"})
    return {"Authorization": f"Bearer {token}"}


def on_case(method: str, path: str) -> bool:
    return path.startswith(CASE_PATH)


def anything(method: str, path: str) -> bool:
    return True


def signed_in(method: str, path: str) -> bool:
    return not path.startswith("/auth/")


async def test_schemathesis_against_the_live_service(sessions, dev_env, running_worker,
                                                     task_queue, petitions):
    started = time.monotonic()
    async with running_worker(dev_env.client):
        app = create_app(service_settings(), sessions=sessions,
                         petitions=PetitionClient(dev_env.client, task_queue))
        async with serve(app) as base_url, httpx.AsyncClient(base_url=base_url,
                                                              timeout=60) as http:
            client = await bearer_for_client(http, sessions)
            staff = await bearer_for_staff(http, sessions, STAFF)
            stranger = await bearer_for_staff(http, sessions, STRANGER_STAFF)
            cases: list[tuple[str, str, str]] = []
            for _ in range(SEEDED_CASES):
                answer = await http.post("/api/v1/petitions", headers=client,
                                         json=make_intake(unit=UNIT).model_dump(mode="json"))
                assert answer.status_code == 201, answer.text
                found = answer.json()
                cases.append((found["registration_no"], found["workflow_id"],
                              found["query_code"]))
                petitions.track(dev_env.client.get_workflow_handle(found["workflow_id"]))
            own, *others = cases
            answer = await http.post("/auth/petitioner", json={
                "registration_no": own[0], "query_code": own[2]})
            assert answer.status_code == 200, answer.text
            petitioner = {"Authorization": f"Bearer {answer.json()['access_token']}"}
            numbers = [number for number, _, _ in cases]
            other_numbers = [number for number, _, _ in others]

            schema = schemathesis.openapi.from_dict(app.openapi())
            log = Log()

            # 1. Callers who may do nothing: every answer a refusal, nothing written.
            refused_callers = [
                Caller("no token", {}, anything, numbers,
                       modes=(GenerationMode.POSITIVE, GenerationMode.NEGATIVE)),
                Caller("garbage token", {"Authorization": "Bearer not.a.token"}, signed_in,
                       numbers),
                Caller("forged token", forged_bearer(), signed_in, numbers),
                Caller("intake client acting", client,
                       lambda m, p: signed_in(m, p) and (m, p) not in (REGISTER, UPLOAD),
                       numbers),
                Caller("petitioner of another case", petitioner, signed_in, other_numbers),
                Caller("staff of another unit", stranger,
                       lambda m, p: on_case(m, p) or "{unit}" in p, numbers, [UNIT]),
            ]
            before = await row_counts(sessions)
            for caller in refused_callers:
                await asyncio.to_thread(fuzz, schema, base_url, caller, "refused", log)
            after = await row_counts(sessions)
            refused_phase = [s for s in log.sent if s.phase == "refused"]
            LOG.warning("refused run: %s", Counter(s.status for s in refused_phase))
            accepted_in_refused = [s for s in refused_phase if s.status < 400]

            # 2. The callers who may act: staff of the holding unit, the intake client
            # (registering at its unit), the case's own petitioner.
            authorized_callers = [
                Caller("staff of the holding unit", staff, signed_in, numbers, [UNIT],
                       unique_keys=True, examples=25,
                       modes=(GenerationMode.POSITIVE, GenerationMode.NEGATIVE)),
                Caller("intake client registering", client, lambda m, p: (m, p) == REGISTER,
                       force_unit=UNIT, examples=80,
                       modes=(GenerationMode.POSITIVE, GenerationMode.NEGATIVE)),
                Caller("the case's petitioner", petitioner, on_case, [own[0]],
                       unique_keys=True, examples=8),
            ]
            for caller in authorized_callers:
                await asyncio.to_thread(fuzz, schema, base_url, caller, "authorized", log)
            authorized = [s for s in log.sent if s.phase == "authorized"]
            registered = [s for s in authorized if (s.method, s.path) == REGISTER
                          and s.status == 201]
            for sent in registered:
                petitions.track(dev_env.client.get_workflow_handle(sent.body["workflow_id"]))
            workflow_ids = [wf for _, wf, _ in cases] + [s.body["workflow_id"]
                                                        for s in registered]
            for workflow_id in workflow_ids:
                assert await settled(dev_env.client, workflow_id, 30), workflow_id
            final = await row_counts(sessions)

    elapsed = time.monotonic() - started
    acted = [s for s in authorized if "/actions/" in s.path and s.status == 200]
    LOG.warning("authorized run: %s", Counter((s.caller, s.status) for s in authorized))
    LOG.warning("accepted actions: %s", Counter(s.path.rsplit("/", 1)[1] for s in acted))
    LOG.warning("requests: %d in %.1f s; rows %s -> %s -> %s", len(log.sent), elapsed,
                before, after, final)
    assert not log.failures, "\n".join(log.failures) + "\n\n" + "\n\n".join(
        list(log.failures.values())[:5])
    assert len(log.sent) >= MIN_REQUESTS
    assert acted and registered, "the authorized run took no action: the deltas prove nothing"
    assert not accepted_in_refused, accepted_in_refused[:5]
    assert after == before
    assert final["petitions"] - after["petitions"] == len(registered)
    assert final["accepted_events_by_people"] - after["accepted_events_by_people"] == \
        len(acted) + len(registered)


pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
