"""Benchmark: retiring a key on a database of 10,000 petitions (`petition keys`).

1. Generate and import 10,000 closed petitions with their histories (the legacy import,
   which seals every personal-data value as registration does): the baseline, measured in
   the same run.
2. Retire the data key they are sealed with: every sealed value (petitioner, subject,
   letter, attachments, the audit trail's free text) re-encrypted under a new data key,
   in batches, as the schema's owner.
3. Retire the key-encryption key: the data keys rewrapped under a new one.
4. Check: nothing is left under the retired data key, every value opens under the new
   key-encryption key alone, and the old data key can be shredded.

    python -m bench.keys_bench [--rows 10000] [--batch 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from adapters.data_keys import SqlDataKeyStore
from adapters.key_tool import SEALED_COLUMNS, key_usage, retire_data_key, rewrap, shred
from adapters.settings import get_settings
from adapters.tables import Petition
from bench.common import Report, Stopwatch, bench_dir, database, db_name, drop, fresh_database
from bench.legacy_data import write_csv
from security.codec import KeyRing
from security.sealing import LocalKeyWrapper, Vault, kek_ring_from_settings
from starter.legacy.importer import import_file

BENCH_DATABASE = "petitionflow_keys_bench"


async def run(rows: int, batch: int) -> Report:
    report = Report("keys_bench", {"rows": rows, "batch": batch})
    work = Path(tempfile.mkdtemp(prefix="bench-keys-", dir=bench_dir()))
    csv_path = write_csv(work / f"legacy-{rows}.csv", rows, open_share=0.0)
    name = db_name(BENCH_DATABASE)
    url = await fresh_database(name)
    try:
        async with database(url) as (engine, sessions):
            clock = Stopwatch()
            imported = await import_file(csv_path, engine, client=None, task_queue="-",
                                         progress=False)
            import_s = clock()
            assert imported.error_count == 0 and imported.imported == rows, imported.errors[:3]
            old_ring = kek_ring_from_settings(get_settings())
            wrapper = LocalKeyWrapper(old_ring)
            [old_key] = [u for u in await key_usage(engine) if u.total]
            report.note(f"{rows:,} petitions imported (sealed) in {import_s:.1f} s; "
                        f"data key {old_key.id} seals {old_key.total:,} values")

            clock = Stopwatch()
            done = await retire_data_key(engine, wrapper, old_key.id, batch=batch)
            retire_s = clock()
            resealed = sum(done.resealed.values())
            assert done.remaining == 0 and resealed == old_key.total, done
            report.add(f"retire a data key: re-encrypt {resealed:,} values of {rows:,} "
                       "petitions", retire_s, "s", baseline=import_s,
                       baseline_name=f"importing the same {rows:,} petitions")
            report.add("  re-encrypted", resealed / retire_s, "values/s")
            await shred(engine, old_key.id, grace=timedelta(0))  # no worker runs here

            new_kek = f"kek-{os.urandom(3).hex()}"
            both = KeyRing({**old_ring.keys, new_kek: os.urandom(32)}, new_kek)
            clock = Stopwatch()
            moved = await rewrap(engine, LocalKeyWrapper(both), old_ring.active)
            report.add(f"retire a key-encryption key: rewrap {moved} data key(s)", clock(), "s")

            # Everything opens with the new key-encryption key alone.
            alone = Vault(LocalKeyWrapper(KeyRing({new_kek: both.keys[new_kek]}, new_kek)),
                          SqlDataKeyStore(sessions))
            async with sessions() as session:
                petitions = (await session.scalars(select(Petition))).all()
            clock = Stopwatch()
            for p in petitions:
                for c in SEALED_COLUMNS[:4]:
                    await alone.open(getattr(p, c.column), c.bound(p.intake_id))
            report.add(f"open all {4 * len(petitions):,} petition values afterwards",
                       clock(), "s")
            # Leave the development ring in charge of the bench database's keys.
            await rewrap(engine, LocalKeyWrapper(KeyRing(both.keys, old_ring.active)), new_kek)
    finally:
        await drop(name)
        csv_path.unlink(missing_ok=True)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    asyncio.run(run(args.rows, args.batch)).finish()


if __name__ == "__main__":
    main()
