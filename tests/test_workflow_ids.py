"""Issue 13, item 3: workflow ids are the system's, never a caller's string.

An intake id is the caller's (a hotline's case number, a portal's reference) and may
carry an ID number or a phone however it is spelled; Temporal stores workflow ids in clear.
"""

from __future__ import annotations

import re

import pytest

from adapters import petition_client
from adapters.petition_client import PetitionClient, workflow_id_for
from adapters.settings import Settings
from security.codec import CodecKeyError

SPELLINGS = ("case-110101-19900307-1234", "11010519491231002X", "tel.138-0013-8000",
             "12345-20261128-000123")


def test_a_workflow_id_keeps_nothing_of_the_intake_id() -> None:
    for intake_id in SPELLINGS:
        workflow_id = workflow_id_for(intake_id)
        assert re.fullmatch(r"petition-[a-z2-7]{24}", workflow_id), workflow_id
        digits = re.sub(r"\D", "", intake_id)
        assert not any(digits[i:i + 6] in workflow_id for i in range(len(digits) - 5))


def test_the_same_intake_gets_the_same_id_and_another_intake_another() -> None:
    assert workflow_id_for("T-abc-0001") == workflow_id_for("T-abc-0001")
    assert len({workflow_id_for(i) for i in SPELLINGS}) == len(SPELLINGS)


def test_the_id_depends_on_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    before = workflow_id_for("T-abc-0001")
    monkeypatch.setattr(petition_client, "get_settings", lambda: Settings(
        id_key="id:" + "B" * 43 + "="))
    assert workflow_id_for("T-abc-0001") != before
    monkeypatch.setattr(petition_client, "get_settings", lambda: Settings(
        id_key=None, dev_keys=False))
    with pytest.raises(CodecKeyError, match="PETITION_ID_KEY"):
        workflow_id_for("T-abc-0001")


async def test_an_intake_registered_under_an_older_id_is_found_under_it(
        dev_env, running_worker, sessions, task_queue, petitions) -> None:
    """The registry's record stands: an intake registered before the ids were derived this
    way (or under another key) is answered from its own workflow, not opened again."""
    from starter.intake import submit
    from tests.conftest import make_intake

    intake = make_intake(unit="QS-HRSS")
    older = f"petition-{intake.intake_id}"
    async with running_worker(dev_env.client):
        first = await PetitionClient(dev_env.client, task_queue).submit(intake,
                                                                         workflow_id=older)
        petitions.track(PetitionClient(dev_env.client, task_queue).handle(older))
        again = await submit(dev_env.client, sessions, intake, task_queue=task_queue)
    assert first.workflow_id == older
    assert (again.workflow_id, again.registration_no) == (older, first.registration_no)
