"""Issue 12, the petition service (service/): through HTTP (httpx over ASGI) against the
real Temporal dev server and PostgreSQL. Identity comes from the verified token and the
directory; every error answers RFC 9457 problem+json."""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio
from sqlalchemy import func, select

from adapters.petition_client import PetitionClient
from adapters.tables import AssistancePayment, Petition, PetitionEvent, QueryCode
from service.accounts_cmd import add_intake_client, set_password
from service.app import create_app
from service.auth.hashing import QUERY_CODE_ALPHABET
from service.config import ServiceSettings
from tests.conftest import make_intake

KEY = base64.b64encode(b"k" * 32).decode()
PASSWORD = "correct horse battery staple"
PROBLEM = "application/problem+json"


def settings(**overrides: Any) -> ServiceSettings:
    base: dict[str, Any] = {"token_keys": f"test-k1:{KEY}", "lockout_failures": 3,
                            "lockout_minutes": 5, "rate_burst": 10_000,
                            "rate_per_second": 1000.0}
    return ServiceSettings(_env_file=None, **{**base, **overrides})


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The answer is an RFC 9457 problem with this status."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body = response.json()
    assert body["status"] == status
    assert body["title"] and body["detail"] and "type" in body
    return body


@pytest_asyncio.fixture(loop_scope="session")
async def bare(sessions) -> AsyncIterator[httpx.AsyncClient]:
    """The service without Temporal: sign-in and errors only."""
    app = create_app(settings(), sessions=sessions, petitions=None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://service") as http:
        yield http


@asynccontextmanager
async def live_service(sessions, dev_env, running_worker, task_queue, *,
                       http_timeout: float) -> AsyncIterator[httpx.AsyncClient]:
    """The service on the dev server, with a worker on this test's queue."""
    async with running_worker(dev_env.client):
        app = create_app(settings(), sessions=sessions,
                         petitions=PetitionClient(dev_env.client, task_queue))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://service", timeout=http_timeout) as http:
            yield http


@pytest_asyncio.fixture(loop_scope="session")
async def live(sessions, dev_env, running_worker, task_queue,
               petitions) -> AsyncIterator[httpx.AsyncClient]:
    async with live_service(sessions, dev_env, running_worker, task_queue,
                            http_timeout=60) as http:
        yield http


async def staff_token(http: httpx.AsyncClient, sessions, person: str) -> dict[str, str]:
    await set_password(sessions, person, PASSWORD)
    answer = await http.post("/auth/token", data={"grant_type": "password", "username": person,
                                                  "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


async def client_token(http: httpx.AsyncClient, sessions, units: list[str]) -> dict[str, str]:
    client_id = f"intake-{uuid.uuid4().hex[:8]}"
    secret = await add_intake_client(sessions, client_id, "test intake", units)
    answer = await http.post("/auth/token", data={
        "grant_type": "client_credentials", "client_id": client_id, "client_secret": secret})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def petitions_client(http: httpx.AsyncClient) -> Any:
    app = http._transport.app  # type: ignore[attr-defined]
    return app.state.ctx.petitions.client


async def act(http: httpx.AsyncClient, headers: dict[str, str], number: str, action: str,
              body: dict[str, Any] | None = None) -> httpx.Response:
    return await http.post(f"/api/v1/petitions/{number}/actions/{action}", headers=headers,
                           json=body or {})


async def refused_rows(sessions, workflow_id: str) -> list[PetitionEvent]:
    async with sessions() as session:
        return list(await session.scalars(select(PetitionEvent).where(
            PetitionEvent.workflow_id == workflow_id, PetitionEvent.accepted.is_(False))))


# ------------------------------------------------------------- without Temporal


async def test_staff_sign_in_with_a_local_account(bare, sessions):
    headers = await staff_token(bare, sessions, "QS-XFJ.h1")
    listed = await bare.get("/api/v1/units/QS-XFJ/petitions", headers=headers)
    assert listed.status_code == 200, listed.text
    assert isinstance(listed.json(), list)
    # Another unit's list (not above QS-XFJ's staff): refused, naming the rule.
    other = problem(await bare.get("/api/v1/units/LJ-XFJ/petitions", headers=headers), 403)
    assert other["rule"] == "unit"


async def test_lockout_after_repeated_failures(bare, sessions):
    await set_password(sessions, "QS-XFJ.h2", PASSWORD)
    form = {"grant_type": "password", "username": "QS-XFJ.h2"}
    for _ in range(2):
        wrong = problem(await bare.post("/auth/token", data={**form, "password": "nope"}), 401)
        assert wrong["type"].endswith("invalid-credentials")
    third = problem(await bare.post("/auth/token", data={**form, "password": "nope"}), 401)
    assert third["type"].endswith("locked")
    # Locked: even the right password is refused until the lock ends.
    locked = await bare.post("/auth/token", data={**form, "password": PASSWORD})
    assert problem(locked, 401)["type"].endswith("locked")
    assert int(locked.headers["Retry-After"]) > 0
    # An operator resetting the password unlocks the account.
    await set_password(sessions, "QS-XFJ.h2", PASSWORD)
    assert (await bare.post("/auth/token", data={**form, "password": PASSWORD})).status_code \
        == 200


async def test_the_stranger_is_refused(bare, sessions):
    body = problem(await bare.get("/api/v1/units/QS-XFJ/petitions"), 401)
    assert body["type"].endswith("unauthenticated")
    garbage = await bare.get("/api/v1/units/QS-XFJ/petitions",
                             headers={"Authorization": "Bearer not.a.token"})
    problem(garbage, 401)
    # A token of the right shape signed with a key the service does not hold.
    forged = jwt.encode({"sub": "QS-XFJ.head", "kind": "staff", "iss": "petition-flow-service",
                         "aud": "petition-flow-service", "exp": 4102444800}, b"x" * 32,
                        algorithm="HS256", headers={"kid": "test-k1"})
    problem(await bare.get("/api/v1/units/QS-XFJ/petitions",
                           headers={"Authorization": f"Bearer {forged}"}), 401)
    # Not in the directory: no account can be made, no token answered.
    problem(await bare.post("/auth/token", data={
        "grant_type": "password", "username": "nobody", "password": PASSWORD}), 401)
    # A wrong client secret.
    problem(await bare.post("/auth/token", data={
        "grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x"}), 401)


async def test_every_error_is_problem_json(bare, sessions):
    problem(await bare.get("/no/such/route"), 404)
    bad_form = problem(await bare.post("/auth/token", data={"grant_type": "implicit"}), 422)
    assert bad_form["errors"][0]["field"] == "grant_type"
    bad_json = problem(await bare.post("/auth/petitioner", json={"registration_no": "x"}), 422)
    assert bad_json["field"] == "query_code"
    huge = b"{" + b" " * 1_200_000 + b"}"
    problem(await bare.post("/api/v1/petitions", content=huge,
                            headers={"content-type": "application/json"}), 413)
    # Nothing matches: 401 without revealing whether the case exists.
    problem(await bare.post("/auth/petitioner", json={"registration_no": "QS-XFJ-2026-999999",
                                                      "query_code": "ABCDEFGH"}), 401)


async def test_control_characters_in_paths_and_sign_in_are_422(bare, sessions):
    """Found probing beside tests/test_service_fuzz.py: a NUL in a registration number,
    a unit code or a sign-in name reached PostgreSQL, which cannot store it: a 500. Now a
    422 naming the parameter, before any lookup."""
    headers = await staff_token(bare, sessions, "QS-XFJ.h1")
    for path in ("/api/v1/petitions/%00", "/api/v1/petitions/a%00b/timeline",
                 "/api/v1/petitions/%01/audit", "/api/v1/units/%00/petitions",
                 "/api/v1/reports/QS%00XFJ"):
        body = problem(await bare.get(path, headers=headers), 422)
        assert body["errors"][0]["field"] in ("registration_no", "unit"), body
    acted = problem(await bare.post("/api/v1/petitions/%00/actions/accept", headers=headers,
                                    json={}), 422)
    assert acted["field"] == "registration_no"
    for form in ({"grant_type": "password", "username": "a\x00b", "password": "x"},
                 {"grant_type": "client_credentials", "client_id": "a\x00b",
                  "client_secret": "x"}):
        body = problem(await bare.post("/auth/token", data=form), 422)
        assert body["field"] in ("username", "client_id")
    signed = problem(await bare.post("/auth/petitioner", json={
        "registration_no": "QS\u0000", "query_code": "ABCDEFGH"}), 422)
    assert signed["field"] == "registration_no"


async def test_dates_past_the_horizon_are_422(bare, sessions):
    """Found probing beside tests/test_service_fuzz.py: a list from 0001-01-01 or a report
    for 9999 overflowed the date arithmetic (OverflowError, ValueError: a 500). Now a 422
    naming the parameter."""
    headers = await staff_token(bare, sessions, "QS-XFJ.head")
    for query, name in (("registered_from=0001-01-01", "registered_from"),
                        ("registered_to=9999-12-31", "registered_to")):
        body = problem(await bare.get(f"/api/v1/units/QS-XFJ/petitions?{query}",
                                      headers=headers), 422)
        assert body["field"] == name
    for period in ("9999", "9999-12", "9999-12-31", "2100"):
        body = problem(await bare.get(f"/api/v1/reports/QS-XFJ?period={period}",
                                      headers=headers), 422)
        assert body["field"] == "period"
    assert (await bare.get("/api/v1/reports/QS-XFJ?period=2099-12",
                           headers=headers)).status_code == 200


async def test_rate_limit_per_client(sessions):
    app = create_app(settings(rate_burst=3, rate_per_second=0.5), sessions=sessions,
                     petitions=None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://service") as http:
        answers = [await http.get("/api/v1/units/QS-XFJ/petitions") for _ in range(4)]
        assert [a.status_code for a in answers] == [401, 401, 401, 429]
        limited = problem(answers[-1], 429)
        assert int(answers[-1].headers["Retry-After"]) >= 1
        assert limited["type"].endswith("rate-limited")
        # Another client (another token) has its own bucket.
        other = await http.get("/api/v1/units/QS-XFJ/petitions",
                               headers={"Authorization": "Bearer other"})
        assert other.status_code == 401


# ---------------------------------------------------------------- with Temporal


async def test_an_intake_client_registers_idempotently(live, sessions, petitions):
    headers = await client_token(live, sessions, ["QS-XFJ"])
    intake = make_intake()
    first = await live.post("/api/v1/petitions", headers=headers,
                            json=intake.model_dump(mode="json"))
    assert first.status_code == 201, first.text
    petitions.track(petitions_client(live).get_workflow_handle(first.json()["workflow_id"]))
    again = await live.post("/api/v1/petitions", headers=headers,
                            json=intake.model_dump(mode="json"))
    assert again.status_code == 200, again.text
    one, two = first.json(), again.json()
    assert one["registration_no"] == two["registration_no"]
    assert one["workflow_id"] == two["workflow_id"]
    code = one["query_code"]
    assert code and len(code) == 8 and set(code) <= set(QUERY_CODE_ALPHABET)
    assert two["query_code"] is None  # shown once
    async with sessions() as session:
        stored = await session.scalar(select(QueryCode.code_hash).join(
            Petition, Petition.id == QueryCode.petition_id).where(
            Petition.workflow_id == one["workflow_id"]))
    assert stored is not None and stored.startswith("$argon2id$") and code not in stored

    # A unit the client does not serve.
    foreign = await live.post("/api/v1/petitions", headers=headers,
                              json=make_intake(unit="BS-XFJ").model_dump(mode="json"))
    body = problem(foreign, 403)
    assert body["rule"] == "unit" and body["field"] == "unit"
    # A malformed intake names the field.
    raw = make_intake().model_dump(mode="json")
    raw["petitioner"]["id_number"] = "123"
    invalid = problem(await live.post("/api/v1/petitions", headers=headers, json=raw), 422)
    assert invalid["errors"][0]["field"] == "petitioner.id_number"
    # Staff are not an intake system.
    staff = await staff_token(live, sessions, "QS-XFJ.h1")
    problem(await live.post("/api/v1/petitions", headers=staff,
                            json=make_intake().model_dump(mode="json")), 403)


async def test_staff_find_a_petitioners_cases_by_id_number_or_phone(live, sessions,
                                                                    petitions, caplog):
    """Through the blind index: the database holds neither, only their keyed HMACs."""
    headers = await client_token(live, sessions, ["QS-XFJ"])
    intake = make_intake()
    intake.petitioner.phone = f"137{uuid.uuid4().int % 10**8:08d}"  # this case's alone
    answer = await live.post("/api/v1/petitions", headers=headers,
                             json=intake.model_dump(mode="json"))
    assert answer.status_code == 201, answer.text
    petitions.track(petitions_client(live).get_workflow_handle(answer.json()["workflow_id"]))
    number = answer.json()["registration_no"]
    staff = await staff_token(live, sessions, "QS-XFJ.h1")
    phone = intake.petitioner.phone or ""
    for query in ({"id_number": intake.petitioner.id_number.lower()},
                  {"phone": f"+86 {phone[:3]}-{phone[3:]}"}):
        with caplog.at_level(logging.INFO, logger="petition.audit"):
            found = await live.post("/api/v1/petitions/lookup", headers=staff, json=query)
        assert found.status_code == 200, found.text
        assert [c["registration_no"] for c in found.json()] == [number]
    said = [r.getMessage() for r in caplog.records if r.name == "petition.audit"]
    assert len(said) == 2 and "lookup by QS-XFJ.h1" in said[0] and "on phone" in said[1]
    assert not any(phone in line or intake.petitioner.id_number in line for line in said)
    # Staff of an unrelated unit see nothing of it; an intake system may not look up at all.
    stranger = await staff_token(live, sessions, "BS-XFJ.h1")
    elsewhere = await live.post("/api/v1/petitions/lookup", headers=stranger,
                                json={"phone": phone})
    assert elsewhere.status_code == 200 and elsewhere.json() == []
    problem(await live.post("/api/v1/petitions/lookup", headers=headers,
                            json={"phone": phone}), 403)
    for bad in ({}, {"phone": phone, "id_number": intake.petitioner.id_number},
                {"id_number": "123"}):
        body = problem(await live.post("/api/v1/petitions/lookup", headers=staff, json=bad),
                       422)
        assert phone not in str(body) and intake.petitioner.id_number not in str(body)


async def _registered(live, sessions, petitions) -> tuple[str, str, str]:
    headers = await client_token(live, sessions, ["QS-XFJ"])
    answer = await live.post("/api/v1/petitions", headers=headers,
                             json=make_intake().model_dump(mode="json"))
    assert answer.status_code == 201, answer.text
    petitions.track(petitions_client(live).get_workflow_handle(answer.json()["workflow_id"]))
    found = answer.json()
    return found["registration_no"], found["workflow_id"], found["query_code"]


async def test_staff_accept_and_the_petitioner_rates_only_their_own_case(
        live, sessions, petitions):
    number, workflow_id, code = await _registered(live, sessions, petitions)
    other_number, other_wf, _ = await _registered(live, sessions, petitions)
    staff = await staff_token(live, sessions, "QS-XFJ.h1")

    accepted = await act(live, staff, number, "accept", {"note": "受理"})
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["stage"] == "in_handling"
    replied = await act(live, {**staff, "Idempotency-Key": f"reply-{uuid.uuid4().hex}"},
                        number, "reply", {"opinion": "经核查，已督促公司支付工资。"})
    assert replied.status_code == 200, replied.text
    assert replied.json()["stage"] == "replied"
    # The actor is not the caller's to set.
    problem(await act(live, staff, number, "add_note", {
        "text": "x", "actor": {"id": "QS-XFJ.head", "role": "unit_head", "unit": "QS-XFJ"}}),
        422)

    signed_in = await live.post("/auth/petitioner",
                                json={"registration_no": number, "query_code": code.lower()})
    assert signed_in.status_code == 200, signed_in.text
    petitioner = {"Authorization": f"Bearer {signed_in.json()['access_token']}"}
    rated = await act(live, petitioner, number, "rate", {"satisfaction": "satisfied"})
    assert rated.status_code == 200, rated.text
    assert rated.json()["satisfaction"] == "satisfied"
    seen = await live.get(f"/api/v1/petitions/{number}", headers=petitioner)
    assert seen.status_code == 200 and seen.json()["registration_no"] == number
    assert (await live.get(f"/api/v1/petitions/{number}/timeline",
                           headers=petitioner)).status_code == 200
    # The audit trail is for staff.
    problem(await live.get(f"/api/v1/petitions/{number}/audit", headers=petitioner), 403)

    # Another case: refused, audited, unchanged.
    elsewhere = problem(await act(live, petitioner, other_number, "withdraw",
                                  {"reason": "不想办了"}), 403)
    assert elsewhere["rule"] == "petitioner"
    problem(await live.get(f"/api/v1/petitions/{other_number}", headers=petitioner), 403)
    other = await live.get(f"/api/v1/petitions/{other_number}", headers=staff)
    assert other.json()["stage"] == "registered"
    assert any(r.action == "withdraw" and r.actor_role == "petitioner"
               for r in await refused_rows(sessions, other_wf))
    # Not a petitioner's action on their own case either.
    problem(await act(live, petitioner, number, "accept"), 403)

    audit = await live.get(f"/api/v1/petitions/{number}/audit", headers=staff)
    assert audit.status_code == 200
    actors = [row["actor"] for row in audit.json() if row["accepted"]]
    assert "QS-XFJ.h1:handler:QS-XFJ" in actors
    assert f"petitioner-{number}:petitioner:QS-XFJ" in actors
    assert workflow_id


async def test_the_self_made_leader_pays_nothing(live, sessions, petitions):
    number, workflow_id, _ = await _registered(live, sessions, petitions)
    handler = await staff_token(live, sessions, "QS-XFJ.h1")
    head = await staff_token(live, sessions, "QS-XFJ.head")
    assert (await act(live, handler, number, "accept")).status_code == 200
    applied = await act(live, handler, number, "request_assistance", {
        "kind": "hardship", "amount_yuan": "500000", "reason": "生活困难 hardship"})
    assert applied.status_code == 200, applied.text

    # The handler's token, whatever the body says, acts as the handler the directory knows.
    self_made = problem(await act(live, handler, number, "decide_assistance", {
        "application_no": 1, "approved": True, "amount_yuan": "500000",
        "exception_approved": True, "reason": "我是领导"}), 403)
    assert self_made["rule"] == "role"
    # The unit head may decide, but not above the cap without a leader's exception.
    above_cap = await act(live, head, number, "decide_assistance", {
        "application_no": 1, "approved": True, "amount_yuan": "500000",
        "exception_approved": True, "reason": "超出上限"})
    body = problem(above_cap, 403 if above_cap.status_code == 403 else 422)
    assert body["rule"].startswith("assistance")

    async with sessions() as session:
        paid = await session.scalar(select(func.count()).select_from(AssistancePayment).join(
            Petition, Petition.id == AssistancePayment.petition_id).where(
            Petition.workflow_id == workflow_id))
    assert paid == 0
    status = (await live.get(f"/api/v1/petitions/{number}", headers=handler)).json()
    assert [a["status"] for a in status["assistance"]] == ["requested"]
    assert Decimal(status["assistance"][0]["amount_yuan"]) == Decimal("500000")
    refused = await refused_rows(sessions, workflow_id)
    assert {r.actor_id for r in refused if r.action == "decide_assistance"} == {
        "QS-XFJ.h1", "QS-XFJ.head"}


async def test_openapi_31_and_docs(bare):
    document = (await bare.get("/openapi.json")).json()
    assert document["openapi"].startswith("3.1")
    assert "/api/v1/petitions/{registration_no}/actions/rate" in document["paths"]
    assert (await bare.get("/docs")).status_code == 200


pytestmark = pytest.mark.timeout(300)
