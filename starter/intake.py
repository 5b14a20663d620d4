"""Submitting petitions: validate, reserve the registration number, start or find the case."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from activities.registry import reserve_registration_no
from domain.case import PetitionStart, PetitionStatus
from domain.models import PetitionIntake
from domain.policy import available_profiles
from starter.errors import JsonProblem, describe_validation, load_json_object
from workflows.petition import PetitionWorkflow


class IntakeError(ValueError):
    """The intake is malformed: nothing was started or written."""


def workflow_id_for(intake_id: str) -> str:
    return f"petition-{intake_id}"


def parse_intake(text: str, *, source: str = "intake") -> PetitionIntake:
    try:
        raw = load_json_object(text)
    except JsonProblem as problem:
        raise IntakeError(f"{source}: {problem}") from None
    try:
        intake = PetitionIntake.model_validate(raw)
    except ValidationError as err:
        raise IntakeError(f"{source}: {describe_validation(err)}") from None
    check_profile(intake, source)
    return intake


def check_profile(intake: PetitionIntake, source: str = "intake") -> None:
    """An unknown profile would fail registration inside the workflow, again and again."""
    profiles = available_profiles()
    if intake.profile not in profiles:
        raise IntakeError(f"{source}: invalid field profile: no deadline profile "
                          f"{intake.profile!r}; one of: {', '.join(profiles)}")


def read_intake(path: Path) -> PetitionIntake:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise IntakeError(f"{path}: {err.strerror}") from None
    return parse_intake(text, source=str(path))


def static_summary(intake: PetitionIntake, registration_no: str) -> str:
    """What supervisors see at a glance in the UI: no personal data."""
    return (f"{registration_no} · {intake.category} · {intake.channel} · "
            f"received by {intake.unit}" + (" · law-related" if intake.law_related else ""))


async def submit(client: Client, sessions: async_sessionmaker[AsyncSession],
                 intake: PetitionIntake, *, task_queue: str) -> PetitionStatus:
    """Idempotent on `intake_id`: a resubmission returns the same petition."""
    check_profile(intake)
    workflow_id = workflow_id_for(intake.intake_id)
    number = await reserve_registration_no(sessions, intake)
    handle: WorkflowHandle[PetitionWorkflow, PetitionStatus]
    try:
        handle = await client.start_workflow(
            PetitionWorkflow.run,
            PetitionStart(intake=intake, registration_no=number),
            id=workflow_id,
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            static_summary=static_summary(intake, number),
            static_details=f"Petition registered as {number}. Deadlines under profile "
                           f"`{intake.profile}`.",
        )
    except WorkflowAlreadyStartedError:
        # Closed already (REJECT_DUPLICATE): the same petition, not a new one.
        closed = client.get_workflow_handle_for(PetitionWorkflow.run, workflow_id)
        return await closed.query(PetitionWorkflow.status)
    return await handle.execute_update(PetitionWorkflow.wait_registered)
