"""The sample organisation directory and the sample intakes: they load, they fit
together, and the escalation chain they describe always reaches a leader and a
bureau. A directory with a dangling reference is refused, naming it. No database."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from adapters.directory import Directory, UnitEntry, read_directory
from domain.models import PetitionIntake, Role
from domain.policy import available_profiles

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_TOML = ROOT / "domain" / "directory" / "sample.toml"
SAMPLE_INTAKES = sorted((ROOT / "starter" / "samples").glob("*.json"))
PROVINCE_BUREAU = "PROV-XFJ"
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
LEVEL_RANK = {"township": 0, "county": 1, "city": 2, "province": 3}


@pytest.fixture(scope="module")
def directory() -> Directory:
    return read_directory(SAMPLE_TOML)


@pytest.fixture(scope="module")
def units(directory: Directory) -> dict[str, UnitEntry]:
    return {u.code: u for u in directory.units}


def raw_sample() -> dict[str, Any]:
    return tomllib.loads(SAMPLE_TOML.read_text(encoding="utf-8"))


def parent_chain(units: dict[str, UnitEntry], code: str) -> list[UnitEntry]:
    """The unit, its parent, and so on, as escalation walks it (a cycle fails the test)."""
    chain = [units[code]]
    while chain[-1].parent is not None:
        chain.append(units[chain[-1].parent])
        assert len(chain) <= len(units), f"parent cycle through {code}"
    return chain


def id_check_digit(first17: str) -> str:
    return "10X98765432"[sum(int(c) * w for c, w in zip(first17, ID_WEIGHTS, strict=True)) % 11]


# ------------------------------------------------------------------ the directory


def test_sample_directory_loads_and_passes_check(directory: Directory) -> None:
    directory.check()
    codes = [u.code for u in directory.units]
    ids = [p.id for p in directory.people]
    assert len(codes) == len(set(codes)), "duplicate unit code"
    assert len(ids) == len(set(ids)), "duplicate person id"
    assert {u.kind for u in directory.units} >= {
        "petition_bureau", "court", "procuratorate", "public_security",
        "government_department", "township",
    }


def test_every_unit_but_the_province_bureau_has_a_superior_bureau(
    units: dict[str, UnitEntry],
) -> None:
    assert units[PROVINCE_BUREAU].superior_bureau is None
    assert units[PROVINCE_BUREAU].kind == "petition_bureau"
    assert units[PROVINCE_BUREAU].level == "province"
    for unit in units.values():
        if unit.code == PROVINCE_BUREAU:
            continue
        assert unit.superior_bureau is not None, f"{unit.code} has no superior bureau"
        bureau = units[unit.superior_bureau]
        assert bureau.kind == "petition_bureau", f"{unit.code}: {bureau.code} is not a bureau"
        assert LEVEL_RANK[bureau.level] >= LEVEL_RANK[unit.level], unit.code
        if unit.level != "province":
            assert LEVEL_RANK[bureau.level] == LEVEL_RANK[unit.level] + 1, (
                f"{unit.code}: superior bureau {bureau.code} is not one level up"
            )


def test_townships_inherit_their_supervising_leader_within_two_steps(
    units: dict[str, UnitEntry],
) -> None:
    townships = [u for u in units.values() if u.level == "township"]
    assert len(townships) >= 4
    for township in townships:
        assert township.kind == "township"
        assert township.supervising_leader is None, f"{township.code} names its own leader"
        chain = parent_chain(units, township.code)
        led = [u for u in chain[1:3] if u.supervising_leader is not None]
        assert led, f"no supervising leader within two steps above {township.code}"
        # two levels below the city: township -> county unit -> city unit
        assert [u.level for u in chain[:3]] == ["township", "county", "city"], township.code


def test_every_parent_chain_reaches_a_leader(units: dict[str, UnitEntry]) -> None:
    """Level-1 escalation never comes back empty-handed for any unit in the sample."""
    for code in units:
        chain = parent_chain(units, code)
        assert any(u.supervising_leader for u in chain), f"no leader above {code}"
        for child, parent in zip(chain, chain[1:], strict=False):
            assert LEVEL_RANK[parent.level] == LEVEL_RANK[child.level] + 1, (
                f"{child.code} -> {parent.code} skips or repeats a level"
            )


def test_departments_chain_to_the_same_department_above(units: dict[str, UnitEntry]) -> None:
    for unit in units.values():
        if unit.kind == "petition_bureau" or unit.parent is None:
            continue
        parent = units[unit.parent]
        if unit.kind == "township":
            assert parent.kind == "petition_bureau", unit.code
        else:
            assert parent.kind == unit.kind, f"{unit.code} -> {parent.code}"
            assert parent.code.split("-", 1)[1] == unit.code.split("-", 1)[1], unit.code


def test_every_unit_head_is_a_unit_head_of_that_unit(directory: Directory) -> None:
    people = {p.id: p for p in directory.people}
    for unit in directory.units:
        assert unit.head is not None, f"{unit.code} has no head"
        head = people[unit.head]
        assert head.role == Role.UNIT_HEAD.value, f"{unit.code}: {head.id} is {head.role}"
        assert head.unit == unit.code, f"{unit.code}: head {head.id} belongs to {head.unit}"
        staff = [p for p in directory.people if p.unit == unit.code and p.role == "handler"
                 and not p.hearing_officer]
        assert staff, f"{unit.code} has no handler"


def test_bureaus_name_a_supervising_leader_who_is_a_leader(directory: Directory) -> None:
    people = {p.id: p for p in directory.people}
    for unit in directory.units:
        if unit.kind == "petition_bureau":
            assert unit.supervising_leader, f"bureau {unit.code} names no supervising leader"
    named = {u.supervising_leader for u in directory.units if u.supervising_leader}
    for pid in named:
        assert people[pid].role == Role.LEADER.value, pid


def test_every_bureau_has_intake_clerks_and_a_supervisor(directory: Directory) -> None:
    for unit in directory.units:
        if unit.kind != "petition_bureau":
            continue
        roles = [p.role for p in directory.people if p.unit == unit.code]
        assert Role.INTAKE_CLERK.value in roles, unit.code
        assert Role.SUPERVISOR.value in roles, unit.code


def test_at_least_six_hearing_officers_at_petition_bureaus(
    directory: Directory, units: dict[str, UnitEntry]
) -> None:
    officers = [p for p in directory.people if p.hearing_officer]
    assert len(officers) >= 6
    for officer in officers:
        assert units[officer.unit].kind == "petition_bureau", officer.id
        assert officer.role in (Role.HANDLER.value, Role.SUPERVISOR.value), officer.id


def test_every_profile_named_is_a_packaged_profile(units: dict[str, UnitEntry]) -> None:
    known = set(available_profiles())
    for unit in units.values():
        assert unit.profile in known, f"{unit.code}: unknown profile {unit.profile!r}"
        assert (unit.profile == "procuratorate") == (unit.kind == "procuratorate"), unit.code


# -------------------------------------------------------------- the sample intakes


def test_there_are_eight_sample_intakes() -> None:
    assert len(SAMPLE_INTAKES) == 8, [p.name for p in SAMPLE_INTAKES]


@pytest.mark.parametrize("path", SAMPLE_INTAKES, ids=lambda p: p.name)
def test_sample_intake_is_valid_and_addressed_to_a_known_unit(
    path: Path, units: dict[str, UnitEntry]
) -> None:
    intake = PetitionIntake.model_validate(json.loads(path.read_text(encoding="utf-8")))
    assert intake.unit in units, f"{path.name}: unknown unit {intake.unit!r}"
    unit = units[intake.unit]
    assert (intake.profile == "procuratorate") == (unit.profile == "procuratorate"), (
        f"{path.name}: intake profile {intake.profile!r}, unit profile {unit.profile!r}"
    )
    assert intake.profile == unit.profile, path.name
    assert intake.received_at.utcoffset() is not None
    number = intake.petitioner.id_number.upper()
    assert number[-1] == id_check_digit(number[:17]), f"{path.name}: bad ID check digit"
    assert len(intake.content) < 1000, path.name


def test_sample_intakes_cover_channels_categories_and_unit_kinds(
    units: dict[str, UnitEntry],
) -> None:
    intakes = [PetitionIntake.model_validate_json(p.read_text(encoding="utf-8"))
               for p in SAMPLE_INTAKES]
    assert len({i.intake_id for i in intakes}) == len(intakes), "duplicate intake_id"
    assert {i.channel.value for i in intakes} >= {
        "visit", "letter", "hotline_12345", "hotline_12309", "online", "video",
    }
    assert len({i.category for i in intakes}) >= 7
    assert any(i.law_related for i in intakes)
    assert any(i.persons > 1 for i in intakes)
    received_by = {(units[i.unit].kind, units[i.unit].level) for i in intakes}
    assert received_by >= {
        ("petition_bureau", "county"), ("petition_bureau", "city"),
        ("procuratorate", "county"), ("township", "township"),
    }
    for intake in intakes:
        if intake.channel.value == "hotline_12309":
            assert units[intake.unit].kind == "procuratorate", intake.intake_id


# ------------------------------------------------------------ refusing bad files


def test_a_dangling_parent_is_refused_naming_it() -> None:
    data = raw_sample()
    township = next(u for u in data["units"] if u["code"] == "QS-T1")
    township["parent"] = "QS-XFJJ"
    with pytest.raises(ValueError, match=r"unit QS-T1: unknown unit 'QS-XFJJ'"):
        Directory.model_validate(data).check()


def test_an_unknown_head_or_leader_is_refused_naming_it() -> None:
    data = raw_sample()
    bureau = next(u for u in data["units"] if u["code"] == "BS-XFJ")
    bureau["supervising_leader"] = "BS-LDR9"
    with pytest.raises(ValueError, match=r"unit BS-XFJ: unknown person 'BS-LDR9'"):
        Directory.model_validate(data).check()

    data = raw_sample()
    data["people"] = [p for p in data["people"] if p["id"] != "YZ-EE.head"]
    with pytest.raises(ValueError, match=r"unit YZ-EE: unknown person 'YZ-EE.head'"):
        Directory.model_validate(data).check()


def test_a_person_in_an_unknown_unit_is_refused_naming_it() -> None:
    data = raw_sample()
    data["people"][0]["unit"] = "NOWHERE"
    pid = data["people"][0]["id"]
    with pytest.raises(ValueError, match=rf"person {pid}: unknown unit 'NOWHERE'"):
        Directory.model_validate(data).check()


# ------------------------------------------------- territories and lines (the report)


def test_every_unit_is_located_in_a_territory_of_its_level(directory: Directory) -> None:
    places = {t.code: t for t in directory.territories}
    assert {t.code: t.parent for t in directory.territories} == {
        "JN": None, "YZ": "JN", "LJ": "JN", "QS": "YZ", "BS": "YZ"}
    for unit in directory.units:
        assert unit.territory is not None, unit.code
        place = places[unit.territory]
        expected = "county" if unit.level == "township" else unit.level
        assert place.level == expected, f"{unit.code} located in {place.code}"
    chains = directory.territory_chains()
    assert [t["code"] for t in chains["QS"]] == ["JN", "YZ", "QS"]


def test_line_superiors_follow_same_kind_parents_unless_named(directory: Directory) -> None:
    line = directory.line_superiors()
    assert line["QS-HRSS"] == "YZ-HRSS" and line["BS-COURT"] == "YZ-COURT"
    assert line["QS-XFJ"] == "YZ-XFJ" and line["YZ-XFJ"] == "PROV-XFJ"
    # A township escalates to its county bureau but heads no line and is in none above.
    assert line["QS-T1"] is None and line["YZ-HRSS"] is None
    data = raw_sample()
    psb = next(u for u in data["units"] if u["code"] == "QS-PSB")
    psb["line_superior"] = "QS-XFJ"
    assert Directory.model_validate(data).line_superiors()["QS-PSB"] == "QS-XFJ"


def test_a_file_without_territories_still_loads() -> None:
    data = raw_sample()
    del data["territories"]
    for unit in data["units"]:
        del unit["territory"]
    directory = Directory.model_validate(data)
    directory.check()
    assert directory.territory_chains() == {}


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: _unit(d, "QS-T1").update(territory="QZ"), "unit QS-T1: unknown territory 'QZ'"),
    (lambda d: _unit(d, "QS-T1").pop("territory"),
     "unit QS-T1: no territory (the file declares territories"),
    (lambda d: _unit(d, "YZ-HRSS").update(territory="QS"),
     "unit YZ-HRSS (city) cannot be located in QS (county)"),
    (lambda d: _territory(d, "QS").update(parent="BS"),
     "territory QS (county) cannot lie inside BS (county)"),
    (lambda d: _territory(d, "QS").update(parent="NOWHERE"),
     "territory QS: unknown territory 'NOWHERE'"),
    (lambda d: _territory(d, "QS").update(code="QS-XFJ"), "territory QS-XFJ: the code of a unit"),
    (lambda d: _unit(d, "QS-PSB").update(line_superior="YZ-PSBB"),
     "unit QS-PSB: unknown unit 'YZ-PSBB'"),
    (lambda d: _unit(d, "YZ-PSB").update(line_superior="QS-PSB"),
     "unit YZ-PSB: its line of superiors (line_superior) comes back to YZ-PSB"),
])
def test_a_bad_territory_or_line_is_refused_naming_it(change: Any, message: str) -> None:
    data = raw_sample()
    change(data)
    with pytest.raises(ValueError, match=re.escape(message)):
        Directory.model_validate(data).check()


def _unit(data: dict[str, Any], code: str) -> dict[str, Any]:
    return next(u for u in data["units"] if u["code"] == code)


def _territory(data: dict[str, Any], code: str) -> dict[str, Any]:
    return next(t for t in data["territories"] if t["code"] == code)


def test_read_directory_refuses_a_bad_file(tmp_path: Path) -> None:
    text = SAMPLE_TOML.read_text(encoding="utf-8").replace(
        'parent = "YZ-HRSS"', 'parent = "YZ-HRS"', 1
    )
    bad = tmp_path / "bad.toml"
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=r"unknown unit 'YZ-HRS'"):
        read_directory(bad)
