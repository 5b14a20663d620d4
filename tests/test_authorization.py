"""Issue 6: authorization end to end. An actor from another unit, a handler acting as the
head, a forged role or unit, a stranger, staff posing as the petitioner -- each refused
with a clear message and audited (a `petition_events` row with accepted = false), and the
petition unchanged. Real Temporal dev server, real PostgreSQL, the sample directory."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from adapters.tables import PetitionEvent
from devstack.temporal_server import settled
from domain.models import (
    Accept,
    Action,
    Actor,
    Command,
    DecideAssistance,
    DecideExtension,
    Rate,
    Reply,
    RequestAssistance,
    RequestExtension,
    Role,
    Stage,
)
from security.identity import identity_refusal
from service.accounts_cmd import set_password
from starter import session as signed
from starter.actions import ActionError, take_action
from tests.cli import CliResult, petition
from tests.conftest import make_intake
from tests.service_helpers import PASSWORD, cli_env, running_service, signed_in
from workflows.petition import PetitionWorkflow

UNIT = "QS-HRSS"
HANDLER = Actor(id="QS-HRSS.h1", role=Role.HANDLER, unit=UNIT)
HEAD = Actor(id="QS-HRSS.head", role=Role.UNIT_HEAD, unit=UNIT)
OTHER_UNIT_HANDLER = Actor(id="QS-NR.h1", role=Role.HANDLER, unit="QS-NR")
PETITIONER = Actor(id="petitioner-7", role=Role.PETITIONER, unit="public")


async def _refusals(sessions: Any, workflow_id: str) -> list[PetitionEvent]:
    async with sessions() as session:
        return list(await session.scalars(
            select(PetitionEvent).where(PetitionEvent.workflow_id == workflow_id,
                                        PetitionEvent.accepted.is_(False))
            .order_by(PetitionEvent.id)))


async def _refused(client: Any, sessions: Any, workflow_id: str, action: Action,
                   command: Command, *, match: str, as_signal: bool = False) -> PetitionEvent:
    """Take the action through the client path; it must be refused, audited, and change
    nothing in the workflow (not even its history)."""
    handle = client.get_workflow_handle_for(PetitionWorkflow.run, workflow_id)
    before = await handle.query(PetitionWorkflow.status)
    # The notices of the last action follow its answer: count once they are sent.
    assert await settled(client, workflow_id)
    events_before = len([e async for e in handle.fetch_history_events()])
    with pytest.raises(ActionError, match=match) as refused:
        await take_action(client, sessions, workflow_id, action, command, as_signal=as_signal)
    assert "\n" not in str(refused.value)
    after = await handle.query(PetitionWorkflow.status)
    assert after == before
    assert len([e async for e in handle.fetch_history_events()]) == events_before
    row = (await _refusals(sessions, workflow_id))[-1]
    assert (row.action, row.actor_id, row.actor_role, row.actor_unit) == (
        action.value, command.actor.id, command.actor.role, command.actor.unit)
    assert row.accepted is False and row.refusal == str(refused.value)
    return row


async def test_strangers_impostors_and_the_wrong_role_are_refused_and_audited(
        dev_env, running_worker, petitions, sessions) -> None:
    client = dev_env.client
    async with running_worker(client):
        handle = await petitions.start(dev_env, make_intake(unit=UNIT))
        wf = handle.id

        # An actor from another unit (a real handler, of the wrong unit): the workflow's
        # guard refuses, the client audits.
        row = await _refused(client, sessions, wf, Action.ACCEPT,
                             Accept(actor=OTHER_UNIT_HANDLER), match=r"unit:holding")
        assert row.detail == {"via": "update"}

        await take_action(client, sessions, wf, Action.ACCEPT, Accept(actor=HANDLER))
        await take_action(client, sessions, wf, Action.REQUEST_EXTENSION, RequestExtension(
            actor=HANDLER, days=10, reason="需调取档案 records needed"))

        # A handler acting as the head, openly: the role guard refuses.
        await _refused(client, sessions, wf, Action.DECIDE_EXTENSION, DecideExtension(
            actor=HANDLER, approved=True, reason_to_petitioner="x"),
            match="decide_extension may be taken by unit_head, not handler")

        # A forged role: the handler claims to be the unit head. The workflow alone would
        # believe it; the directory does not.
        forged = Actor(id=HANDLER.id, role=Role.UNIT_HEAD, unit=UNIT)
        row = await _refused(client, sessions, wf, Action.DECIDE_EXTENSION, DecideExtension(
            actor=forged, approved=True, reason_to_petitioner="x"),
            match=r"refused \[identity\]: QS-HRSS.h1 claims to head QS-HRSS, whose head in "
                  r"the directory is QS-HRSS.head")
        assert row.detail == {"via": "identity"}
        # ... also as a fire-and-forget signal: refused before it is sent.
        await _refused(client, sessions, wf, Action.DECIDE_EXTENSION, DecideExtension(
            actor=forged, approved=True, reason_to_petitioner="x"), match="claims to head",
            as_signal=True)
        # Another unit's head claiming this unit.
        await _refused(client, sessions, wf, Action.DECIDE_EXTENSION, DecideExtension(
            actor=Actor(id="QS-NR.head", role=Role.UNIT_HEAD, unit=UNIT), approved=True,
            reason_to_petitioner="x"), match="whose head in the directory is QS-HRSS.head")
        # A forged unit: a real handler of QS-NR claiming to be of QS-HRSS.
        await _refused(client, sessions, wf, Action.REPLY, Reply(
            actor=Actor(id="QS-NR.h1", role=Role.HANDLER, unit=UNIT), opinion="x"),
            match="QS-NR.h1 belongs to QS-NR, not QS-HRSS")
        # Somebody the directory has never heard of.
        await _refused(client, sessions, wf, Action.REPLY, Reply(
            actor=Actor(id="mallory", role=Role.HANDLER, unit=UNIT), opinion="x"),
            match="mallory is not in the organisation directory")
        # Staff posing as the petitioner; anybody claiming the workflow's own role.
        await _refused(client, sessions, wf, Action.WITHDRAW, _withdraw(HANDLER.id),
                       match="staff of QS-HRSS and cannot act as the petitioner")
        await _refused(client, sessions, wf, Action.WITHDRAW, _withdraw("clock", Role.SYSTEM),
                       match="system role")
        # A leader who does not supervise this unit; one who does (through YZ-HRSS) may.
        await take_action(client, sessions, wf, Action.REQUEST_ASSISTANCE, RequestAssistance(
            actor=HANDLER, kind="hardship", amount_yuan=Decimal("3000"), reason="生活困难"))
        await _refused(client, sessions, wf, Action.DECIDE_ASSISTANCE, DecideAssistance(
            actor=Actor(id="QS-LDR1", role=Role.LEADER, unit=UNIT), application_no=1,
            approved=True, reason="x"), match="leader QS-LDR1 does not supervise QS-HRSS")

        # The real head and the real leader are let through.
        status = await take_action(client, sessions, wf, Action.DECIDE_EXTENSION,
                                   DecideExtension(actor=HEAD, approved=True,
                                                   reason_to_petitioner="案情复杂"))
        assert status is not None and status.extension_days == 10
        status = await take_action(client, sessions, wf, Action.DECIDE_ASSISTANCE,
                                   DecideAssistance(actor=Actor(id="YZ-LDR1", role=Role.LEADER,
                                                                unit=UNIT),
                                                    application_no=1, approved=True,
                                                    reason="同意 approved"))
        assert status is not None and status.assistance[0].status == "paid"
        await take_action(client, sessions, wf, Action.REPLY, Reply(actor=HANDLER,
                                                                   opinion="已处理 handled"))
        status = await take_action(client, sessions, wf, Action.RATE,
                                   Rate(actor=PETITIONER, satisfaction="satisfied"))
        assert status is not None and status.stage is Stage.REPLIED

    refusals = await _refusals(sessions, wf)
    assert len(refusals) == 10  # every refusal above, once each
    assert sum(r.detail.get("via") == "identity" for r in refusals) == 8


def _withdraw(actor_id: str, role: Role = Role.PETITIONER) -> Command:
    from domain.models import Withdraw

    return Withdraw(actor=Actor(id=actor_id, role=role, unit=UNIT), reason="x")


@pytest.mark.cli
async def test_petition_act_refuses_a_forged_head_in_one_line(
        dev_env, running_worker, petitions, sessions, db_url, task_queue, tmp_path) -> None:
    """`petition act` acts as the person signed in (`petition login`), through the service:
    a handler cannot act as the head, and no actor can be typed by hand any more."""
    client = dev_env.client
    address = client.service_client.config.target_host
    async with running_worker(client), running_service(sessions, client, task_queue) as url:
        handle = await petitions.start(dev_env, make_intake(unit=UNIT))
        number = (await handle.query(PetitionWorkflow.status)).registration_no
        assert number is not None

        # Not signed in: one line saying what to do; nothing is sent.
        anonymous = await petition("act", number, "accept", db_url=db_url, address=address,
                                   task_queue=task_queue,
                                   env=cli_env(url, tmp_path / "nobody.json"))
        assert anonymous.code == 2 and anonymous.err.count("\n") == 1, anonymous.err
        assert anonymous.err == "error: not signed in: run `petition login`\n"

        handler = await signed_in(sessions, url, HANDLER.id, tmp_path / "h1.json",
                                  db_url=db_url, address=address, task_queue=task_queue)
        assert stat.S_IMODE(handler.session_file.stat().st_mode) == 0o600
        # By workflow id (its registration number from the read model) as by number.
        accepted = await handler("act", handle.id, "accept", "--data", '{"note": "受理"}')
        assert accepted.code == 0, accepted.err
        assert accepted.json()["stage"] == "in_handling"
        extension = await handler("act", number, "request_extension", "--data", json.dumps(
            {"days": 10, "reason": "需调取档案 records needed"}))
        assert extension.code == 0, extension.err

        assert await settled(client, handle.id)
        before = await handle.query(PetitionWorkflow.status)
        events_before = len([e async for e in handle.fetch_history_events()])
        decision = json.dumps({"approved": True, "reason_to_petitioner": "x"})
        # The handler, signed in, takes the head's decision: the service acts as the
        # handler the directory knows, and the workflow refuses in one line.
        as_head = await handler("act", number, "decide_extension", "--data", decision)
        assert as_head.code == 2 and as_head.err.count("\n") == 1, as_head.err
        assert as_head.err == ("error: refused [role]: decide_extension may be taken by "
                               "unit_head, not handler\n")
        # Claiming to be the head is no longer an option at all.
        forged = await handler("act", number, "decide_extension", "--actor",
                               f"{HANDLER.id}:unit_head:{UNIT}", "--data", decision)
        assert forged.code == 2 and "No such option '--actor'" in forged.err, forged.err
        assert forged.out == ""
        # Nor is the actor in the payload.
        smuggled = await handler("act", number, "decide_extension", "--data", json.dumps(
            {"approved": True, "reason_to_petitioner": "x",
             "actor": {"id": HEAD.id, "role": "unit_head", "unit": UNIT}}))
        assert smuggled.code == 2 and smuggled.err.count("\n") == 1, smuggled.err
        assert "actor is not yours to set" in smuggled.err

        assert await handle.query(PetitionWorkflow.status) == before
        assert len([e async for e in handle.fetch_history_events()]) == events_before
        [row] = await _refusals(sessions, handle.id)
        assert (row.action, row.actor_id, row.actor_role, row.actor_unit) == (
            "decide_extension", HANDLER.id, "handler", UNIT)
        assert row.detail == {"via": "update", "principal": "staff", "subject": HANDLER.id}

        # The head, signed in, decides; the same request id again does not act twice.
        head = await signed_in(sessions, url, HEAD.id, tmp_path / "head.json",
                               db_url=db_url, address=address, task_queue=task_queue)
        once = json.dumps({"approved": True, "reason_to_petitioner": "案情复杂",
                           "request_id": "decide-ext-1"})
        decided = await head("act", number, "decide_extension", "--data", once)
        assert decided.code == 0, decided.err
        assert decided.json()["extension_days"] == 10
        again = await head("act", number, "decide_extension", "--data", once)
        assert again.code == 0, again.err
        assert again.json()["extension_days"] == 10

        # Signed out: acting needs a new sign-in.
        logout = await handler("logout")
        assert logout.code == 0 and logout.out == "signed out\n"
        assert not handler.session_file.exists()
        after = await handler("act", number, "add_note", "--data", '{"text": "x"}')
        assert after.code == 2 and "run `petition login`" in after.err


@pytest.mark.cli
async def test_petition_login_fails_in_one_line(sessions, db_url, tmp_path) -> None:
    """Wrong password, a locked account, a service not there: one line each, no session."""
    await set_password(sessions, "YZ-PROC.h2", PASSWORD)
    session_file = tmp_path / "h2.json"
    async with running_service(sessions, None, "unused") as url:
        env = cli_env(url, session_file)

        async def login(password: str) -> CliResult:
            return await petition("login", db_url=db_url, address="unused", task_queue="unused",
                                  env=env, stdin=f"YZ-PROC.h2\n{password}\n")

        wrong = await login("not the password")
        assert wrong.code == 2 and wrong.err.count("\n") == 1, wrong.err
        assert wrong.err == "error: sign-in refused: the credentials are not valid\n"
        await login("not the password")
        locked = await login("not the password")  # the third failure locks the account
        assert locked.code == 2 and locked.err.count("\n") == 1, locked.err
        assert locked.err.startswith("error: sign-in refused: locked after repeated failures")
        still = await login(PASSWORD)
        assert still.code == 2 and "locked" in still.err
        assert not session_file.exists()
    gone = await petition("login", "--service", url, db_url=db_url, address="unused",
                          task_queue="unused", env=env, stdin=f"YZ-PROC.h2\n{PASSWORD}\n")
    assert gone.code == 2 and gone.err.count("\n") == 1, gone.err
    assert gone.err.startswith(f"error: the petition service at {url} is unreachable")
    assert not session_file.exists()


@pytest.mark.parametrize(("actor", "refusal"), [
    (HANDLER, None),
    (HEAD, None),
    (Actor(id="QS-HRSS.head", role=Role.HANDLER, unit=UNIT), None),  # a head may handle
    (Actor(id="YZ-LDR1", role=Role.LEADER, unit="YZ-XFJ"), None),  # their own unit
    (Actor(id="QS-XFJ.clerk1", role=Role.INTAKE_CLERK, unit="QS-XFJ"), None),
    (PETITIONER, None),
    (Actor(id="QS-HRSS.h1", role=Role.LEADER, unit=UNIT), "is a handler in the directory"),
    (Actor(id="QS-HRSS.h1", role=Role.SUPERVISOR, unit=UNIT), "not a supervisor"),
    (Actor(id="QS-HRSS.h1", role=Role.HANDLER, unit="NOWHERE"), "unknown unit"),
    (Actor(id="QS-XFJ.clerk1", role=Role.INTAKE_CLERK, unit=UNIT), "belongs to QS-XFJ"),
])
async def test_the_directory_decides_who_may_claim_what(sessions, actor, refusal) -> None:
    found = await identity_refusal(sessions, actor)
    if refusal is None:
        assert found is None
    else:
        assert found is not None and refusal in found


def test_the_session_file_is_the_owners_and_answers_in_one_line(tmp_path) -> None:
    """starter/session.py without a service: the file (0600, expiry) and the answers."""
    now = datetime.now(UTC)
    path = tmp_path / "config" / "session.json"
    kept = signed.Session("http://service", HANDLER.id, "token-1", now + timedelta(minutes=15))
    signed.save(kept, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert signed.load(path) == kept
    with pytest.raises(signed.SessionError, match=r"expired at .*: run `petition login` again"):
        signed.load(path, now=now + timedelta(minutes=16))
    path.write_text("{not json")
    with pytest.raises(signed.SessionError, match="unreadable"):
        signed.load(path)
    assert signed.remove(path) and not signed.remove(path)
    with pytest.raises(signed.SessionError, match=r"^not signed in: run `petition login`$"):
        signed.load(path)

    def answer(status: int, body: dict[str, Any]) -> httpx.MockTransport:
        return httpx.MockTransport(lambda request: httpx.Response(
            status, json=body, headers={"content-type": "application/problem+json"}))

    def act(transport: httpx.BaseTransport) -> Any:
        return signed.act(kept, "QS-HRSS-2026-000001", "reply", {"opinion": "x"}, "r-1",
                          transport=transport)

    with pytest.raises(signed.Refused, match=r"^refused \[stage\]: not in\\nhandling$"):
        act(answer(409, {"status": 409, "detail": "not in\nhandling", "rule": "stage"}))
    with pytest.raises(signed.SessionError, match=r"token expired\): run `petition login`$"):
        act(answer(401, {"status": 401, "detail": "token expired"}))
    with pytest.raises(signed.SessionError, match=r"^opinion: Field required$"):
        act(answer(422, {"status": 422, "detail": "Field required", "field": "opinion"}))

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    with pytest.raises(signed.SessionError, match=r"^the petition service at http://service "
                       r"is unreachable \(connection refused\)$"):
        act(httpx.MockTransport(down))
    # The request id travels as the Idempotency-Key; the actor is never the caller's.
    assert signed.action_body('{"opinion": "x", "request_id": "r-2"}') == (
        {"opinion": "x"}, "r-2")
    with pytest.raises(signed.SessionError, match="actor is not yours to set"):
        signed.action_body('{"actor": {"id": "QS-HRSS.head"}}')
