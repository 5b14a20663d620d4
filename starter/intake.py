"""Submitting petitions: validate, reserve the registration number, start or find the case."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from activities.registry import registered_workflow_id, reserve_registration_no
from adapters.petition_client import PetitionClient, workflow_id_for
from domain.case import PetitionStatus
from domain.models import PetitionIntake
from domain.policy import available_profiles
from starter.errors import JsonProblem, describe_validation, load_json_object

__all__ = ["IntakeError", "parse_intake", "read_intake", "submit", "workflow_id_for"]


class IntakeError(ValueError):
    """The intake is malformed: nothing was started or written."""


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
    number = await reserve_registration_no(sessions, intake)
    return await PetitionClient(client, task_queue).submit(
        intake, number, workflow_id=await registered_workflow_id(sessions, intake.intake_id),
        static_summary=static_summary(intake, number),
        static_details=f"Petition registered as {number}. Deadlines under profile "
                       f"`{intake.profile}`.")
