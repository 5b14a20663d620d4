"""Render the lifecycle table as a Mermaid state diagram."""

from __future__ import annotations

import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

from domain.lifecycle import TRANSITIONS, Transition
from domain.models import Stage


def _target(t: Transition) -> str:
    if t.to_stage is Stage.CLOSED and t.outcome is not None:
        return f"closed_{t.outcome.value}"
    assert t.to_stage is not None
    return t.to_stage.value


def mermaid() -> str:
    lines = ["stateDiagram-v2", "    [*] --> registered : register"]
    in_place: dict[str, list[str]] = defaultdict(list)
    for t in TRANSITIONS:
        label = t.action.value + (f" ({', '.join(c.value for c in t.starts)} starts)"
                                  if t.starts else "")
        for stage in sorted(t.from_stages, key=list(Stage).index):
            if t.to_stage is None:
                in_place[stage.value].append(t.action.value)
            elif t.to_stage is Stage.CLOSED and len(t.from_stages) > 3:
                in_place[stage.value].append(f"{t.action.value} → {_target(t)}")
            else:
                lines.append(f"    {stage.value} --> {_target(t)} : {label}")
    outcomes = sorted({_target(t) for t in TRANSITIONS if t.to_stage is Stage.CLOSED})
    for outcome in outcomes:
        lines.append(f"    {outcome} --> [*]")
    for name, actions in in_place.items():
        lines.append(f"    note right of {name}\n        {'<br/>'.join(actions)}\n    end note")
    return "\n".join(lines) + "\n"


def render_image(source: str, target: Path) -> bool:
    """Draw a PNG/SVG with mermaid-cli (`mmdc`) where it is installed."""
    mmdc = shutil.which("mmdc")
    if mmdc is None:
        return False
    src = target.with_suffix(".mmd")
    src.write_text(source, encoding="utf-8")
    subprocess.run([mmdc, "-i", str(src), "-o", str(target)], check=True)
    return True
