"""Issue 4: escalation finds its leader in the organisation directory (walking up parents for
units two levels down), and `petition load-directory FILE` loads a directory, or refuses a bad
file and changes nothing (real PostgreSQL; a throwaway database for the loader)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities import build_desks
from activities.contracts import (
    EscalationInput,
)
from activities.escalation import escalation_target
from adapters.directory import Directory, load_directory, read_directory
from adapters.tables import Escalation, Notice, Person, Petition, Unit
from domain.calendar import WorkingCalendar
from domain.models import ClockName
from domain.policy import load_profile
from starter.runtime import SAMPLE_DIRECTORY, load_directory_file
from tests.cli import petition
from tests.conftest import make_intake
from tests.desk_helpers import register, run, scratch_database
from workflows.petition import PetitionWorkflow

NATIONAL = load_profile("national")
# (unit, level) -> (person, unit) per the sample directory's own description: a township's
# parent is its county bureau; a county department's parent is the same city department.
EXPECTED = {
    ("QS-T1", 1): ("QS-LDR1", "QS-XFJ"),  # township -> the deputy county head
    ("QS-T1", 2): ("QS-XFJ.head", "QS-XFJ"),  # -> the county bureau (督办)
    ("QS-NR", 1): ("YZ-LDR2", "YZ-NR"),  # county department -> the deputy mayor over YZ-NR
    ("QS-NR", 2): ("YZ-XFJ.head", "YZ-XFJ"),  # -> the city bureau
    ("QS-HRSS", 1): ("YZ-LDR1", "YZ-HRSS"),
    ("QS-HRSS", 2): ("YZ-XFJ.head", "YZ-XFJ"),
    ("QS-COURT", 1): ("YZ-LDR3", "YZ-COURT"),  # -> the political-legal secretary
    ("QS-XFJ", 1): ("QS-LDR1", "QS-XFJ"),  # a unit with its own leader keeps it
    ("YZ-XFJ", 2): ("PROV-XFJ.head", "PROV-XFJ"),
}


@pytest.mark.parametrize(("unit", "level"), sorted(EXPECTED))
async def test_escalation_target_walks_up_the_directory(sessions, unit, level):
    async with sessions() as session:
        assert await escalation_target(session, unit, level) == EXPECTED[unit, level]


async def test_escalation_targets_are_people_of_the_directory(sessions):
    async with sessions() as session:
        for (unit, level), (person, _) in EXPECTED.items():
            row = await session.get(Person, person)
            assert row is not None, (unit, level, person)
            assert row.role == ("leader" if level == 1 else "unit_head")


async def test_overdue_cases_two_levels_down_reach_the_right_leader_then_bureau(
        ts_env, running_worker, petitions, sessions):
    units = ("QS-T1", "QS-NR")
    async with running_worker(ts_env.client):
        handles = {u: await petitions.start(ts_env, make_intake(unit=u)) for u in units}
        status = await handles["QS-T1"].query(PetitionWorkflow.status)
        due = max([c.due_at for c in status.clocks]
                  + [c.due_at for c in (await handles["QS-NR"].query(
                      PetitionWorkflow.status)).clocks])
        await ts_env.sleep(due - await ts_env.get_current_time() + timedelta(hours=1))
        for unit, handle in handles.items():
            assert (await handle.query(PetitionWorkflow.status)).escalation_level == 1, unit
        # National policy: the superior bureau 10 days after expiry (rolled to a working day).
        level2 = []
        for handle in handles.values():
            for c in (await handle.query(PetitionWorkflow.status)).clocks:
                if c.name is ClockName.ACCEPTANCE:
                    level2.append(NATIONAL.level2_at(c.name, c.due_at, WorkingCalendar()))
        assert len(level2) == 2 and None not in level2
        await ts_env.sleep(max(level2) - await ts_env.get_current_time() + timedelta(hours=1))
        for unit, handle in handles.items():
            assert (await handle.query(PetitionWorkflow.status)).escalation_level == 2, unit
    async with sessions() as session:
        for unit, handle in handles.items():
            petition_id = await session.scalar(
                select(Petition.id).where(Petition.workflow_id == handle.id))
            rows = (await session.scalars(select(Escalation).where(
                Escalation.petition_id == petition_id).order_by(Escalation.level))).all()
            assert [(r.level, r.clock, r.unit_code) for r in rows] == [
                (1, "acceptance", unit), (2, "acceptance", unit)]
            for row in rows:
                assert (row.escalated_to_person, row.escalated_to_unit) == \
                    EXPECTED[unit, row.level]
            told = set(await session.scalars(select(Notice.recipient_ref).where(
                Notice.petition_id == petition_id, Notice.template == "escalation")))
            assert told == {EXPECTED[unit, 1][0], EXPECTED[unit, 2][0]}
            overdue = await session.scalar(
                select(Petition.overdue).where(Petition.id == petition_id))
            assert overdue, "the read model shows the case overdue"


# ----------------------------------------------------------------- a scratch database


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def scratch() -> AsyncIterator[tuple[str, async_sessionmaker[AsyncSession]]]:
    """An empty, migrated database of its own: what a bad file must not change."""
    async with scratch_database("directory") as db:
        yield db


async def snapshot(sessions: async_sessionmaker[AsyncSession]) -> list[tuple]:
    async with sessions() as session:
        units = (await session.execute(select(Unit.__table__).order_by(Unit.code))).all()
        people = (await session.execute(select(Person.__table__).order_by(Person.id))).all()
    return [tuple(r) for r in units] + [tuple(r) for r in people]


async def load(url: str, path: Path):
    return await petition("load-directory", str(path), db_url=url, address="localhost:1",
                          task_queue="unused")


SAMPLE = SAMPLE_DIRECTORY.read_text(encoding="utf-8")
BAD_FILES = {
    "dangling parent": (SAMPLE.replace('parent = "YZ-HRSS"', 'parent = "YZ-HRS"', 1),
                        "unknown unit 'YZ-HRS'"),
    "not TOML": (SAMPLE + "\n[[units]\n", "not valid TOML"),
    "bad level": (SAMPLE.replace('level = "township"', 'level = "village"', 1),
                  "units[27] (QS-T1).level: Input should be"),
    "unit twice": (SAMPLE + '\n[[units]]\ncode = "QS-T1"\nname = "x"\nkind = "township"\n'
                   'level = "township"\n', "unit listed twice: QS-T1"),
    "unknown profile": (SAMPLE.replace('profile = "procuratorate"', 'profile = "prosecutor"', 1),
                        "unknown deadline profile 'prosecutor'"),
    "code too long": (SAMPLE.replace('code = "QS-T2"', f'code = "QS-T2{"X" * 80}"', 1),
                      "String should match pattern"),
}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def loaded(scratch) -> tuple[str, async_sessionmaker[AsyncSession]]:
    url, sessions = scratch
    result = await load(url, SAMPLE_DIRECTORY)
    assert result.code == 0, result.err
    assert f"loaded 38 units from {SAMPLE_DIRECTORY}" in result.out
    return scratch


@pytest.mark.cli
async def test_load_directory_command_loads_the_sample(loaded):
    url, sessions = loaded
    snap = await snapshot(sessions)
    assert len(snap) == 38 + 124
    async with sessions() as session:
        township = await session.get(Unit, "QS-T1")
        assert township is not None and township.parent_code == "QS-XFJ"
    # An upsert: loading the same file again changes nothing.
    await load_directory_file(sessions, SAMPLE_DIRECTORY)
    assert await snapshot(sessions) == snap


def bad_file(tmp_path: Path, case: str) -> tuple[Path, str]:
    text, expected = BAD_FILES[case]
    # The province bureau is renamed in every bad file: had anything been written, it shows.
    renamed = text.replace('name = "江南省信访局 Jiangnan Provincial Petition Bureau"',
                           'name = "RENAMED"', 1)
    assert renamed != text
    path = tmp_path / "directory.toml"
    path.write_text(renamed, encoding="utf-8")
    return path, expected


@pytest.mark.parametrize("case", sorted(BAD_FILES))
async def test_a_bad_directory_file_is_refused_and_changes_nothing(loaded, tmp_path, case):
    url, sessions = loaded
    before = await snapshot(sessions)
    path, expected = bad_file(tmp_path, case)
    with pytest.raises(ValueError) as refused:
        await load_directory_file(sessions, path)
    assert expected in str(refused.value) and "\n" not in str(refused.value)
    assert await snapshot(sessions) == before


@pytest.mark.cli
@pytest.mark.parametrize("case", ["dangling parent", "bad level"])
async def test_the_command_refuses_a_bad_file_in_one_line(loaded, tmp_path, case):
    url, sessions = loaded
    before = await snapshot(sessions)
    path, expected = bad_file(tmp_path, case)
    result = await load(url, path)
    assert result.code == 2, result.out
    assert result.err.startswith(f"error: {path}: ") and result.err.count("\n") == 1, result.err
    assert expected in result.err
    assert await snapshot(sessions) == before


async def test_a_directory_the_database_refuses_is_rolled_back_whole(loaded):
    """Past the file's own checks (built unchecked here), a database refusal midway leaves
    nothing behind: the units merged before it are rolled back with it."""
    url, sessions = loaded
    before = await snapshot(sessions)
    data = read_directory(SAMPLE_DIRECTORY).model_dump()
    data["units"][0]["name"] = "RENAMED"
    data["people"][-1]["unit"] = "NO-SUCH-UNIT"  # a foreign key the database refuses
    directory = Directory.model_validate(data)
    with pytest.raises(ValueError, match="the database refused the directory"):
        async with sessions() as session:
            await load_directory(session, directory)
            await session.commit()
    assert await snapshot(sessions) == before


async def test_a_gap_in_the_directory_still_escalates_to_someone(loaded):
    """An overdue case must reach a person even when the directory names no leader above
    its unit: level 1 falls back to the superior bureau, then to the unit's own head."""
    url, sessions = loaded
    directory = Directory.model_validate({
        "units": [
            {"code": "GAP-XFJ", "name": "Gap bureau", "kind": "petition_bureau",
             "level": "county", "head": "GAP-XFJ.head"},
            {"code": "GAP-T1", "name": "Gap township", "kind": "township", "level": "township",
             "parent": "GAP-XFJ", "superior_bureau": "GAP-XFJ", "head": "GAP-T1.head"},
        ],
        "people": [
            {"id": "GAP-XFJ.head", "name": "甲", "unit": "GAP-XFJ", "role": "unit_head"},
            {"id": "GAP-T1.head", "name": "乙", "unit": "GAP-T1", "role": "unit_head"},
        ]})
    directory.check()
    async with sessions() as session:
        await load_directory(session, directory)
        await session.commit()
    desks = build_desks(sessions)
    now = datetime.now(UTC)
    for unit, expected in (("GAP-T1", ("GAP-XFJ.head", "GAP-XFJ")),
                           ("GAP-XFJ", ("GAP-XFJ.head", "GAP-XFJ"))):
        reg = await register(desks, unit=unit)
        result = await run(desks.escalation.escalate, EscalationInput(
            workflow_id=f"petition-{uuid.uuid4().hex[:8]}", petition_id=reg.petition_id,
            registration_no=reg.registration_no, clock=ClockName.ACCEPTANCE, level=1,
            unit=unit, due_at=now, at=now))
        assert (result.escalated_to_person, result.escalated_to_unit) == expected, unit
