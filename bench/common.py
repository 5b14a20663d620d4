"""What every benchmark shares: throwaway databases, the dev server, figures as ratios.

Each benchmark measures its own baseline in the same run and prints every figure next
to that baseline, as a ratio, with the goal the issue sets. Results are also written as
JSON to `.data/bench/<name>.json` so the README's table can be refreshed from them.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from adapters.engine import create_engine, session_maker
from devstack.postgres import database_url, drop_database, ensure_database, project_data_dir
from starter.runtime import SAMPLE_DIRECTORY, load_directory_file, migrate_async

BENCH_DIR_NAME = "bench"


def bench_dir() -> Path:
    path = project_data_dir() / BENCH_DIR_NAME
    path.mkdir(parents=True, exist_ok=True)
    return path


def db_name(base: str) -> str:
    """`base` plus `$PETITION_BENCH_DB_SUFFIX`: smoke tests run the benchmarks on databases
    of their own, never on (or dropping) the ones a benchmark run is filling."""
    return base + os.environ.get("PETITION_BENCH_DB_SUFFIX", "")


def server_url() -> str:
    """DATABASE_URL's server, or the embedded PostgreSQL."""
    return database_url(os.environ.get("DATABASE_URL"))


async def fresh_database(name: str, *, directory: bool = True) -> str:
    """A newly created, migrated database `name` (dropped first), with the sample directory."""
    url = await ensure_database(server_url(), name, recreate=True)
    await migrate_async(url)
    if directory:
        engine = create_engine(url, pool_size=2)
        try:
            await load_directory_file(session_maker(engine), SAMPLE_DIRECTORY)
        finally:
            await engine.dispose()
    return url


async def existing_database(name: str) -> str:
    return await ensure_database(server_url(), name, recreate=False)


async def drop(name: str) -> None:
    await drop_database(server_url(), name)


@asynccontextmanager
async def database(url: str, pool_size: int = 10) -> AsyncIterator[
        tuple[AsyncEngine, async_sessionmaker[AsyncSession]]]:
    engine = create_engine(url, pool_size=pool_size)
    try:
        yield engine, session_maker(engine)
    finally:
        await engine.dispose()


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    goal: str = ""  # e.g. ">= 10x", "<= 1.5x", "<= 100 ms"
    met: bool | None = None

    @property
    def ratio(self) -> float | None:
        base = self.baseline
        if base is None or base == 0 or base != base:  # none, zero or NaN
            return None
        return self.value / base


@dataclass
class Report:
    name: str
    params: dict[str, Any] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    def add(self, name: str, value: float, unit: str, *, baseline: float | None = None,
            baseline_name: str = "", goal: str = "", met: bool | None = None) -> Figure:
        figure = Figure(name, value, unit, baseline, baseline_name, goal, met)
        self.figures.append(figure)
        return figure

    def note(self, text: str) -> None:
        self.notes.append(text)

    def render(self) -> str:
        lines = [f"== {self.name} ==",
                 "   " + ", ".join(f"{k}={v}" for k, v in self.params.items())]
        for f in self.figures:
            ratio = f.ratio
            base = (f"  baseline {_num(f.baseline)} {f.unit} ({f.baseline_name})"
                    if f.baseline is not None else "")
            ratio_text = f"  ratio {ratio:.2f}x" if ratio is not None else ""
            goal = (f"  goal {f.goal}: {'MET' if f.met else 'NOT MET'}" if f.goal and
                    f.met is not None else (f"  goal {f.goal}" if f.goal else ""))
            lines.append(f"{f.name:<44} {_num(f.value):>12} {f.unit:<8}{base}{ratio_text}{goal}")
        lines += [f"   note: {n}" for n in self.notes]
        lines.append(f"   ({time.time() - self.started:.0f} s wall)")
        return "\n".join(lines)

    def save(self) -> Path:
        path = bench_dir() / f"{self.name}.json"
        payload = {"name": self.name, "params": self.params, "notes": self.notes,
                   "figures": [asdict(f) | {"ratio": f.ratio} for f in self.figures],
                   "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        path.write_text(json.dumps(payload, indent=2, ensure_ascii=False, default=str))
        return path

    def finish(self) -> None:
        print(self.render(), flush=True)
        self.save()


def _num(value: float | None) -> str:
    if value is None or value != value:
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


class Stopwatch:
    def __init__(self) -> None:
        self.started = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.started
