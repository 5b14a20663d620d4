"""A synthetic but realistic legacy export for `petition import`: N rows over several years.

Mostly closed cases (resolved after the review window, some declined, diverted,
withdrawn, a few concluded after re-review), a small share still open in every open
stage, arrivals weighted to working days, some acceptances and replies late so the
reports have overdue cases to find. Deterministic for a given seed.

    python -m bench.legacy_data OUT.csv --rows 1000000 [--open-share 0.01] [--seed 7]
"""

from __future__ import annotations

import argparse
import csv
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from adapters.directory import read_directory
from starter.legacy_import import COLUMNS
from starter.runtime import SAMPLE_DIRECTORY

HISTORY_START = datetime(2019, 1, 1, tzinfo=UTC)
CHANNELS = ("visit", "letter", "hotline_12345", "online", "online", "hotline_12345", "video")
CATEGORIES = ("land_and_resources", "urban_construction", "labour_and_social_security",
              "wage_arrears", "rural_affairs", "environment", "health", "education",
              "public_security", "law_and_litigation", "other")
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
OPEN_STAGES = ("registered", "in_handling", "in_handling", "in_handling", "replied",
               "under_review", "review_replied", "under_re_review")


# Who re-reviews what the top of the directory reviewed: no organ sits above it, and the
# lifecycle only requires another organ than the reviewer and the responsible unit.
TOP_RE_REVIEWER = "PROV-COURT"


def _units() -> tuple[list[str], dict[str, list[str]], dict[str, str]]:
    """Registering units (county/city bureaus), their departments, each unit's reviewer:
    the superior organ the lifecycle lets review it (its parent, else its superior
    petition bureau)."""
    directory = read_directory(SAMPLE_DIRECTORY)
    bureaus = [u.code for u in directory.units
               if u.kind == "petition_bureau" and u.level in ("county", "city")]
    departments: dict[str, list[str]] = {}
    reviewer: dict[str, str] = {}
    for u in directory.units:
        prefix = u.code.split("-")[0]
        if u.kind in ("government_department", "public_security") and u.level != "township":
            departments.setdefault(prefix, []).append(u.code)
        above = u.parent or u.superior_bureau
        if above:
            reviewer[u.code] = above
    return bureaus, departments, reviewer


def rows(count: int, *, open_share: float = 0.01, seed: int = 7,
         now: datetime | None = None, tag: str = "H") -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    bureaus, departments, reviewer = _units()
    span = (now - timedelta(days=150) - HISTORY_START).total_seconds()
    counters: dict[tuple[str, int], int] = {}
    for i in range(count):
        is_open = rng.random() < open_share
        unit = rng.choice(bureaus)
        prefix = unit.split("-")[0]
        dept = rng.choice(departments.get(prefix) or [unit])
        if is_open:
            received = now - timedelta(days=rng.uniform(1, 120))
        else:
            received = HISTORY_START + timedelta(seconds=rng.uniform(0, span))
        if received.weekday() >= 5 and rng.random() < 0.7:  # fewer arrivals at weekends
            received -= timedelta(days=received.weekday() - 4)
        year = (received + timedelta(hours=8)).year
        seq = counters[(unit, year)] = counters.get((unit, year), 0) + 1
        person = rng.randrange(10**16, 10**17)
        row: dict[str, Any] = {
            "registration_no": f"{unit}-{year}-{seq:06d}", "intake_id": f"{tag}{i:09d}",
            "unit": unit, "channel": rng.choice(CHANNELS),
            "category": rng.choice(CATEGORIES), "received_at": received.isoformat(),
            "petitioner_name": rng.choice(SURNAMES) + "某", "petitioner_id_number":
            f"{person}X", "subject": f"历史信访事项 legacy matter {i}",
            "persons": 1 if rng.random() < 0.95 else rng.randint(2, 40),
        }
        accepted = received + timedelta(days=rng.choice((1, 2, 3, 5, 8, 12, 14, 18, 25)),
                                        hours=rng.uniform(0, 8))
        replied = accepted + timedelta(days=rng.choice((7, 15, 25, 40, 55, 58, 65, 80)),
                                       hours=rng.uniform(0, 8))
        if is_open:
            stage = rng.choice(OPEN_STAGES)
            _open(row, stage, received, dept, reviewer, now, rng)
        else:
            _closed(row, received, accepted, replied, dept, reviewer, rng)
        yield row


def _open(row: dict[str, Any], stage: str, received: datetime, dept: str,
          reviewer: dict[str, str], now: datetime, rng: random.Random) -> None:
    row["stage"] = stage
    if stage == "registered":
        return
    # Spread the milestones between intake and now, keeping their order.
    marks = sorted(received + (now - received) * rng.random() for _ in range(4))
    row.update(holding_unit=dept, responsible_unit=dept, accepted_at=marks[0].isoformat())
    if rng.random() < 0.1:
        row["extension_days"] = rng.choice((10, 20, 30))
    if stage == "in_handling":
        return
    row["replied_at"] = marks[1].isoformat()
    if stage == "replied":
        return
    row.update(review_organ=reviewer.get(dept, dept), review_requested_at=marks[2].isoformat())
    if stage == "under_review":
        return
    row["review_replied_at"] = marks[3].isoformat()
    if stage == "review_replied":
        return
    organ = reviewer.get(row["review_organ"], TOP_RE_REVIEWER)
    row.update(re_review_organ=organ,
               re_review_requested_at=(marks[3] + (now - marks[3]) / 2).isoformat())


def _closed(row: dict[str, Any], received: datetime, accepted: datetime, replied: datetime,
            dept: str, reviewer: dict[str, str], rng: random.Random) -> None:
    roll = rng.random()
    row["stage"] = "closed"
    if roll < 0.08:
        row.update(outcome="not_accepted", closed_at=accepted.isoformat())
    elif roll < 0.13:
        row.update(outcome="diverted", closed_at=accepted.isoformat())
    elif roll < 0.16:
        row.update(outcome="withdrawn", closed_at=(received + timedelta(days=3)).isoformat())
    else:
        row.update(holding_unit=dept, responsible_unit=dept, accepted_at=accepted.isoformat(),
                   replied_at=replied.isoformat())
        if rng.random() < 0.08:
            row["extension_days"] = rng.choice((10, 20, 30))
        if rng.random() < 0.7:
            row["satisfaction"] = rng.choices(
                ("satisfied", "basically_satisfied", "unsatisfied"), (70, 20, 10))[0]
        if roll < 0.98:
            row.update(outcome="resolved", closed_at=(replied + timedelta(days=31)).isoformat())
        else:  # reviewed, re-reviewed and concluded (终结)
            organ = reviewer.get(dept, dept)
            row.update(outcome="concluded", review_organ=organ,
                       review_requested_at=(replied + timedelta(days=10)).isoformat(),
                       review_replied_at=(replied + timedelta(days=35)).isoformat(),
                       re_review_organ=reviewer.get(organ, TOP_RE_REVIEWER),
                       re_review_requested_at=(replied + timedelta(days=45)).isoformat(),
                       closed_at=(replied + timedelta(days=70)).isoformat())


def write_csv(path: Path, count: int, **options: Any) -> Path:
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows(rows(count, **options))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--open-share", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    write_csv(args.out, args.rows, open_share=args.open_share, seed=args.seed)
    print(f"wrote {args.rows} rows to {args.out}")


if __name__ == "__main__":
    main()
