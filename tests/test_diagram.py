"""`petition diagram`: the lifecycle table as a Mermaid state diagram, and docs/lifecycle.md.

Run `python -m tests.test_diagram` to rewrite docs/lifecycle.md after changing the table.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from domain.lifecycle import CLOCK_TITLES, TRANSITIONS, Transition
from domain.models import Outcome, Stage
from starter.diagram import mermaid
from tests.cli import petition

DOC = Path(__file__).resolve().parent.parent / "docs" / "lifecycle.md"


def _target(row: Transition) -> str:
    if row.to_stage is Stage.CLOSED and row.outcome is not None:
        return f"closed_{row.outcome.value}"
    assert row.to_stage is not None
    return row.to_stage.value


@pytest.mark.cli
async def test_petition_diagram_prints_every_action_of_the_table():
    result = await petition("diagram", db_url="postgresql+asyncpg://unused@localhost/unused",
                            address="127.0.0.1:1", task_queue="unused")
    assert result.code == 0, result.err
    text = result.out
    assert text.startswith("stateDiagram-v2\n")
    assert "[*] --> registered : register" in text
    notes = dict(re.findall(r"note right of (\w+)\n\s+(.*?)\n\s+end note", text))
    for row in TRANSITIONS:
        assert re.search(rf"\b{row.action.value}\b", text), row.action
        for stage in row.from_stages:
            if row.to_stage is None:  # stays in the stage: listed in its note
                assert row.action.value in notes[stage.value].split("<br/>"), (row, stage)
            elif len(row.from_stages) > 3:  # from (almost) any stage: listed in each note
                assert f"{row.action.value} → {_target(row)}" in notes[stage.value]
            else:
                assert re.search(rf"^\s+{stage.value} --> {_target(row)} : "
                                 rf"{row.action.value}\b", text, re.M), (row, stage)
    for outcome in Outcome:
        assert f"closed_{outcome.value} --> [*]" in text


def lifecycle_markdown() -> str:
    """docs/lifecycle.md: the diagram and the table it is drawn from."""
    rows = ["| action | from | to | who | unit | clocks | article |",
            "|---|---|---|---|---|---|---|"]
    for t in TRANSITIONS:
        to = (f"closed: {t.outcome.value}" if t.outcome else
              t.to_stage.value if t.to_stage else "(same stage)")
        effects = (("starts", t.starts), ("stops", t.stops), ("pauses", t.pauses),
                   ("resumes", t.resumes), ("renews", t.renews), ("extends", t.extends))
        clocks = "; ".join(
            f"{verb} {'all' if len(names) > 5 else ', '.join(c.value for c in names)}"
            for verb, names in effects if names)
        stages = ", ".join(s.value for s in sorted(t.from_stages, key=list(Stage).index))
        roles = ", ".join(sorted(r.value for r in t.roles))
        rows.append(f"| `{t.action.value}` | {stages} | {to} | {roles} | {t.unit_rule.value}"
                    f" | {clocks or '—'} | {t.article} |")
    clocks = "\n".join(f"- `{name.value}`: {title}" for name, title in CLOCK_TITLES.items())
    return f"""# Lifecycle

The petition lifecycle is one table, `TRANSITIONS` in `domain/lifecycle.py`:
(stage, action) → next stage, who may take the action (role, and the unit they must
belong to), and the clocks it starts, stops, pauses, resumes, renews or extends.
`PetitionWorkflow` executes it and decides no transition anywhere else. The diagram
below is what `petition diagram` prints (`petition diagram --image lifecycle.png`
draws it where mermaid-cli is installed); `python -m tests.test_diagram` rewrites this
page, and `tests/test_diagram.py` fails while it is out of date.

```mermaid
{mermaid()}```

## The table

"acceptance" in the clocks column is the clock of the unit that receives the case: at a
petition bureau it is the routing clock (Art. 22), at a competent unit the decision on
acceptance (Art. 23). Clocks a profile lacks are not started (the procuratorate profile
replaces routing, acceptance and handling with its procedural reply, settlement and
monthly progress reply). Petitioner-side roles are not bound to a unit; a leader who
took on the case (`contract_to_leader`) or supervises its unit may act for that unit.

{chr(10).join(rows)}

## Clocks

{clocks}
"""


def test_docs_lifecycle_is_up_to_date():
    assert DOC.read_text(encoding="utf-8") == lifecycle_markdown(), (
        "docs/lifecycle.md is out of date: run `python -m tests.test_diagram`")


if __name__ == "__main__":
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(lifecycle_markdown(), encoding="utf-8")
    print(f"wrote {DOC}")
