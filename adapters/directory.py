"""The organisation directory: units with level and parent, people with roles, and the
territories (province, city, county) the units are located in.

Two hierarchies besides the escalation chain (`parent`) serve the assessment report:

* territory: each unit names the territory it is located in (`territory = "QS"`), and
  each territory its enclosing one (a county inside a city inside the province), so a
  county's figures are those of every unit located in it;
* line: each unit's superior in its own line (`line_superior`; a county department ->
  the city department of the same line). Left out, it is the unit's `parent` when that
  parent is of the same kind (so a township, whose parent is the county petition bureau
  for escalation, heads no line and belongs to none above it).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from adapters.tables import Person, Unit
from domain.case import UnitFacts
from domain.policy import available_profiles

UnitKind = Literal[
    "petition_bureau",
    "government_department",
    "court",
    "procuratorate",
    "public_security",
    "party_committee",
    "discipline_inspection",
    "township",
]
Level = Literal["township", "county", "city", "province"]
# The column widths of `units` and `people`: a longer value is refused before any write.
DirectoryCode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
DirectoryName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                                 max_length=200)]


class UnitEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: DirectoryCode
    name: DirectoryName
    kind: UnitKind
    level: Level
    parent: DirectoryCode | None = None
    line_superior: DirectoryCode | None = None
    territory: DirectoryCode | None = None
    superior_bureau: DirectoryCode | None = None
    supervising_leader: DirectoryCode | None = None
    head: DirectoryCode | None = None
    profile: DirectoryCode = "national"


class TerritoryEntry(BaseModel):
    """A county, city or province: the place units are located in (not a unit itself)."""

    model_config = ConfigDict(extra="forbid")
    code: DirectoryCode
    name: DirectoryName
    level: Literal["county", "city", "province"]
    parent: DirectoryCode | None = None


LEVEL_RANK = {"township": 0, "county": 1, "city": 2, "province": 3}


class PersonEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: DirectoryCode
    name: DirectoryName
    unit: DirectoryCode
    role: Literal["handler", "unit_head", "leader", "intake_clerk", "supervisor"]
    title: DirectoryName | None = None
    hearing_officer: bool = False


class Directory(BaseModel):
    model_config = ConfigDict(extra="forbid")
    territories: list[TerritoryEntry] = []
    units: list[UnitEntry]
    people: list[PersonEntry] = []

    def check(self) -> None:
        """Every reference must resolve inside the file: a dangling parent is a typo."""
        codes = {u.code for u in self.units}
        ids = {p.id for p in self.people}
        for kind, names in (("unit", [u.code for u in self.units]),
                            ("person", [p.id for p in self.people]),
                            ("territory", [t.code for t in self.territories])):
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise ValueError(f"{kind} listed twice: {', '.join(twice)}")
        for unit in self.units:
            for ref in (unit.parent, unit.line_superior, unit.superior_bureau):
                if ref is not None and ref not in codes:
                    raise ValueError(f"unit {unit.code}: unknown unit {ref!r}")
            for person in (unit.supervising_leader, unit.head):
                if person is not None and person not in ids:
                    raise ValueError(f"unit {unit.code}: unknown person {person!r}")
        for p in self.people:
            if p.unit not in codes:
                raise ValueError(f"person {p.id}: unknown unit {p.unit!r}")
        profiles = set(available_profiles())
        for unit in self.units:
            if unit.profile not in profiles:
                raise ValueError(f"unit {unit.code}: unknown deadline profile {unit.profile!r}; "
                                 f"one of {', '.join(sorted(profiles))}")
        self._check_territories(codes)
        line = self.line_superiors()
        for start in line:
            seen, current = {start}, line[start]
            while current is not None:
                if current in seen:
                    raise ValueError(f"unit {start}: its line of superiors (line_superior) "
                                     f"comes back to {current}")
                seen.add(current)
                current = line.get(current)

    def _check_territories(self, unit_codes: set[str]) -> None:
        """Territories nest (county in city in province); with any declared, every unit
        names one it may sit in. A file without territories still loads (no territory
        roll-up for its units)."""
        places = {t.code: t for t in self.territories}
        for t in self.territories:
            if t.code in unit_codes:
                raise ValueError(f"territory {t.code}: the code of a unit too; a territory "
                                 "needs a code of its own")
            if t.parent is None:
                continue
            up = places.get(t.parent)
            if up is None:
                raise ValueError(f"territory {t.code}: unknown territory {t.parent!r}")
            if LEVEL_RANK[up.level] <= LEVEL_RANK[t.level]:
                raise ValueError(f"territory {t.code} ({t.level}) cannot lie inside "
                                 f"{up.code} ({up.level})")
        for unit in self.units:
            if unit.territory is None:
                if places:
                    raise ValueError(f"unit {unit.code}: no territory (the file declares "
                                     "territories, so every unit names the one it is in)")
                continue
            place = places.get(unit.territory)
            if place is None:
                raise ValueError(f"unit {unit.code}: unknown territory {unit.territory!r}")
            if LEVEL_RANK[unit.level] > LEVEL_RANK[place.level]:
                raise ValueError(f"unit {unit.code} ({unit.level}) cannot be located in "
                                 f"{place.code} ({place.level})")

    def line_superiors(self) -> dict[str, str | None]:
        """Each unit's superior in its line: `line_superior`, else a `parent` of its kind."""
        kinds = {u.code: u.kind for u in self.units}
        return {u.code: u.line_superior if u.line_superior is not None
                else (u.parent if u.parent is not None and kinds.get(u.parent) == u.kind
                      else None)
                for u in self.units}

    def territory_chains(self) -> dict[str, list[dict[str, str]]]:
        """Each territory with the ones enclosing it, outermost first (as `units.territory`
        stores it: code, name, level)."""
        places = {t.code: t for t in self.territories}
        chains: dict[str, list[dict[str, str]]] = {}
        for t in self.territories:
            chain: list[dict[str, str]] = []
            current: TerritoryEntry | None = t
            while current is not None:
                # Levels strictly rise going out (checked), so this ends.
                chain.insert(0, {"code": current.code, "name": current.name,
                                 "level": current.level})
                current = places.get(current.parent) if current.parent else None
            chains[t.code] = chain
        return chains


def read_directory(path: Path) -> Directory:
    """Parse and check a directory file; every problem is a one-line ValueError."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read the file: {err}") from None
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"not valid TOML: {err}") from None
    try:
        directory = Directory.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = _location(raw, first["loc"])
        more = len(err.errors()) - 1
        tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        raise ValueError(f"{where}: {first['msg']}{tail}") from None
    directory.check()
    return directory


def _location(raw: dict[str, Any], loc: tuple[int | str, ...]) -> str:
    """`units[12] (QS-T1).level` rather than `units.12.level`."""
    parts: list[str] = []
    node: Any = raw
    for step in loc:
        if isinstance(step, int) and isinstance(node, list):
            parts[-1] += f"[{step}]"
            node = node[step] if step < len(node) else None
            name = node.get("code") or node.get("id") if isinstance(node, dict) else None
            if name:
                parts[-1] += f" ({name})"
        else:
            parts.append(str(step))
            node = node.get(step) if isinstance(node, dict) else None
    return ".".join(parts) or "(file)"


def _parents_first(units: list[UnitEntry]) -> list[UnitEntry]:
    placed: set[str] = set()
    ordered: list[UnitEntry] = []
    pending = list(units)
    while pending:
        ready = [
            u for u in pending
            if all(r is None or r in placed
                   for r in (u.parent, u.line_superior, u.superior_bureau))
        ]
        if not ready:
            raise ValueError("unit hierarchy has a cycle")
        ordered += ready
        placed |= {u.code for u in ready}
        pending = [u for u in pending if u.code not in placed]
    return ordered


async def load_directory(session: AsyncSession, directory: Directory) -> None:
    """Upsert the directory in one transaction (the caller commits).

    Units are merged, never deleted: transfer orders and petitions refer to them.
    A database refusal is a ValueError naming it; the caller's transaction then rolls
    back whole, so a bad file changes nothing.
    """
    try:
        await _merge(session, directory)
    except DBAPIError as err:
        first = str(err.orig).splitlines()[0] if err.orig is not None else str(err)
        raise ValueError(f"the database refused the directory: {first}") from None


async def _merge(session: AsyncSession, directory: Directory) -> None:
    line = directory.line_superiors()
    chains = directory.territory_chains()
    for u in _parents_first(directory.units):
        await session.merge(
            Unit(
                code=u.code, name=u.name, kind=u.kind, level=u.level, parent_code=u.parent,
                superior_bureau_code=u.superior_bureau, supervising_leader_id=u.supervising_leader,
                head_id=u.head, profile=u.profile, line_parent_code=line[u.code],
                territory=chains[u.territory] if u.territory is not None else None,
            )
        )
        await session.flush()
    for p in directory.people:
        await session.merge(
            Person(
                id=p.id, name=p.name, unit_code=p.unit, role=p.role, title=p.title,
                is_hearing_officer=p.hearing_officer,
            )
        )
    await session.flush()


async def unit_facts(session: AsyncSession, code: str) -> UnitFacts | None:
    unit = await session.get(Unit, code)
    if unit is None:
        return None
    return UnitFacts(
        code=unit.code, name=unit.name, kind=unit.kind, level=unit.level,
        parent=unit.parent_code, superior_bureau=unit.superior_bureau_code,
        supervising_leader=unit.supervising_leader_id, head=unit.head_id,
    )


async def unit_profile(session: AsyncSession, code: str) -> str | None:
    return await session.scalar(select(Unit.profile).where(Unit.code == code))


async def unit_names(session: AsyncSession) -> dict[str, str]:
    """Every unit's name by its code: what documents and pages print, never the code."""
    return {code: name for code, name in await session.execute(select(Unit.code, Unit.name))}
