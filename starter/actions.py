"""Taking an action on a petition with an operator's credential (the assertion keys):
validate the payload, send it as an Update or a Signal.

The `petition act` command does not come this way: it sends the action to the petition
service as the person signed in (`starter.session`), and the service builds the actor. This
path is for operators' tools, the drills and tests, which name the actor themselves.

A refusal by the workflow's validator leaves no trace in the workflow history, so
the audit trail gets its refused row from here.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from adapters.petition_client import ActionRefused, PetitionClient, PetitionNotFound
from adapters.tables import Petition, PetitionEvent
from domain.case import PetitionStatus
from domain.lifecycle import TABLE
from domain.models import Action, Actor, Command
from security.identity import identity_refusal
from starter.errors import JsonProblem, describe_validation, load_json_object

PERSON_ACTIONS = tuple(t.action for t in TABLE.values() if not t.system)


class ActionError(ValueError):
    """The action was malformed or refused: nothing changed."""


def parse_actor(text: str) -> Actor:
    """`id:role:unit`, e.g. `QS-HRSS.h1:handler:QS-HRSS` (ids as in the directory). For
    operators' tools; the `petition` CLI takes no actor typed by hand."""
    parts = text.split(":")
    if len(parts) != 3:
        raise ActionError("--actor must be ID:ROLE:UNIT, e.g. QS-HRSS.h1:handler:QS-HRSS")
    try:
        return Actor.model_validate({"id": parts[0], "role": parts[1], "unit": parts[2]})
    except ValidationError as err:
        raise ActionError(f"--actor: {describe_validation(err)}") from None


def person_action(action_name: str) -> Action:
    """The action a person may take by this name, or why there is none."""
    try:
        action = Action(action_name)
    except ValueError:
        raise ActionError(f"unknown action {action_name!r}; one of: "
                          f"{', '.join(a.value for a in PERSON_ACTIONS)}") from None
    if action not in PERSON_ACTIONS:
        raise ActionError(f"{action} is taken by the workflow's clocks, not by a person")
    return action


def build_command(action_name: str, actor: Actor, data: str | None) -> tuple[Action, Command]:
    action = person_action(action_name)
    try:
        payload = load_json_object(data) if data else {}
    except JsonProblem as problem:
        raise ActionError(f"--data: {problem}") from None
    payload.setdefault("request_id", uuid.uuid4().hex)
    try:
        command = TABLE[action].command.model_validate({**payload, "actor": actor})
    except ValidationError as err:
        raise ActionError(f"{action}: {describe_validation(err)}") from None
    return action, command


async def resolve_workflow_id(sessions: async_sessionmaker[AsyncSession], ref: str) -> str:
    """A workflow id or a registration number."""
    if ref.startswith("petition-"):
        return ref
    async with sessions() as session:
        found = await session.scalar(
            select(Petition.workflow_id).where(Petition.registration_no == ref))
    if found is None:
        raise ActionError(f"no petition with registration number {ref!r}")
    return found


async def resolve_registration_no(sessions: async_sessionmaker[AsyncSession], ref: str) -> str:
    """The registration number of a workflow id (a registration number as it is)."""
    if not ref.startswith("petition-"):
        return ref
    async with sessions() as session:
        found = await session.scalar(
            select(Petition.registration_no).where(Petition.workflow_id == ref))
    if found is None:
        raise ActionError(f"no registered petition {ref!r}")
    return found


async def take_action(client: Client, sessions: async_sessionmaker[AsyncSession],
                      workflow_id: str, action: Action, command: Command,
                      *, as_signal: bool = False) -> PetitionStatus | None:
    refusal = await identity_refusal(sessions, command.actor)
    if refusal is not None:  # the directory does not bear out the claimed role or unit
        await record_refused(sessions, workflow_id, action, command, refusal, via="identity")
        raise ActionError(refusal)
    petitions = PetitionClient(client, task_queue="")  # acting needs no task queue
    try:
        return await petitions.act(workflow_id, command, as_signal=as_signal)
    except ActionRefused as refused:
        # A validator's refusal leaves no trace in the history: the audit trail gets it here.
        await record_refused(sessions, workflow_id, action, command, str(refused.refusal))
        raise ActionError(str(refused.refusal)) from None
    except PetitionNotFound:
        raise ActionError(f"no petition {workflow_id}") from None


async def record_refused(sessions: async_sessionmaker[AsyncSession], workflow_id: str,
                         action: Action, command: Command, message: str,
                         via: str = "update") -> None:
    key = f"{workflow_id}:client-refused:{command.request_id or uuid.uuid4().hex}"
    async with sessions() as session:
        petition_id = await session.scalar(
            select(Petition.id).where(Petition.workflow_id == workflow_id))
        if await session.scalar(select(PetitionEvent.id).where(
                PetitionEvent.idempotency_key == key)) is not None:
            return
        session.add(PetitionEvent(
            petition_id=petition_id, workflow_id=workflow_id, idempotency_key=key, seq=None,
            action=action.value, actor_id=command.actor.id, actor_role=command.actor.role,
            actor_unit=command.actor.unit, accepted=False, refusal=message,
            detail={"via": via}, at=datetime.now(UTC)))
        await session.commit()
