"""What `petition keys` does: list the keys in use, rewrap data keys to retire a
key-encryption key, re-encrypt values to retire a data key, shred a retired data key.

It runs as the schema's owner (the migration connection): re-encrypting the audit trail
rewrites `petition_events.detail_sealed`, which the append-only trigger allows that role
alone, and only when nothing else in the row changes (migration 0007).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from adapters.data_keys import SqlDataKeyStore
from adapters.tables import DataKey
from security.sealing import KEY_ID_BYTES, KeyWrapper, SealingError, Vault


@dataclass(frozen=True)
class SealedColumn:
    table: str
    column: str
    natural_key: str  # what the value is bound to (security/sealing.py)
    where: str  # the binding's prefix
    id_type: str = "bigint"  # of the table's primary key `id`, for the batches' keyset

    def bound(self, key: str) -> str:
        return f"{self.where}:{key}"


# Every sealed column: a column added to this list is listed, re-encrypted and shredded
# with the others; tests/test_sealing.py checks the list against the tables.
SEALED_COLUMNS = (
    SealedColumn("petitions", "petitioner_sealed", "intake_id", "petitions.petitioner"),
    SealedColumn("petitions", "subject_sealed", "intake_id", "petitions.subject"),
    SealedColumn("petitions", "content_sealed", "intake_id", "petitions.content"),
    SealedColumn("petitions", "attachments_sealed", "intake_id", "petitions.attachments"),
    SealedColumn("notices", "body_sealed", "idempotency_key", "notices.body"),
    SealedColumn("notices", "facts_sealed", "idempotency_key", "notices.facts"),
    SealedColumn("petition_events", "detail_sealed", "idempotency_key",
                 "petition_events.detail"),
    SealedColumn("transfer_orders", "instructions_sealed", "idempotency_key",
                 "transfer_orders.instructions"),
    SealedColumn("hearings", "summary_sealed", "idempotency_key", "hearings.summary"),
    SealedColumn("assistance_applications", "reason_sealed", "idempotency_key",
                 "assistance_applications.reason"),
    # Up to 20 MiB each: `petition keys retire --batch` small for these.
    SealedColumn("documents", "filename_sealed", "id", "documents.filename", "text"),
    SealedColumn("documents", "content_sealed", "id", "documents.content", "text"),
)


def _key_of(column: str) -> str:
    return f"substring({column} from 2 for {KEY_ID_BYTES})"


@dataclass
class DataKeyUsage:
    id: str
    kek_id: str
    created_at: datetime
    retired_at: datetime | None
    values: dict[str, int] = field(default_factory=dict)  # "table.column" -> count

    @property
    def total(self) -> int:
        return sum(self.values.values())


async def key_usage(engine: AsyncEngine) -> list[DataKeyUsage]:
    """Every data key, with how many values of each sealed column it seals."""
    async with async_sessionmaker(engine)() as session:
        return await _usage(session)


async def _usage(session: AsyncSession) -> list[DataKeyUsage]:
    keys = {k.id: DataKeyUsage(k.id, k.kek_id, k.created_at, k.retired_at)
            for k in await session.scalars(select(DataKey).order_by(DataKey.created_at))}
    for c in SEALED_COLUMNS:
        rows = await session.execute(text(
            f"SELECT convert_from({_key_of(c.column)}, 'SQL_ASCII') AS k, count(*) "
            f"FROM {c.table} WHERE {c.column} IS NOT NULL GROUP BY 1"))
        for key_id, count in rows:
            usage = keys.setdefault(key_id, DataKeyUsage(key_id, "(missing)",
                                                         datetime.min, None))
            usage.values[f"{c.table}.{c.column}"] = count
    return list(keys.values())


async def rewrap(engine: AsyncEngine, wrapper: KeyWrapper, kek_id: str) -> int:
    """Rewrap every data key wrapped by `kek_id` with the active key-encryption key; then
    `kek_id` may leave the configuration. Returns how many data keys moved."""
    if kek_id not in wrapper.ids():
        raise ValueError(f"key-encryption key {kek_id!r} is not configured "
                         "(PETITION_DATA_KEYS): keep it listed until it is retired")
    if kek_id == wrapper.active_id:
        raise ValueError(f"{kek_id!r} is the active key-encryption key: make another one "
                         "active (PETITION_DATA_ACTIVE_KEY) before retiring it")
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    async with sessions() as session:
        rows = (await session.scalars(
            select(DataKey).where(DataKey.kek_id == kek_id).with_for_update())).all()
        for row in rows:
            key = wrapper.unwrap(row.kek_id, row.id, row.wrapped)
            row.kek_id, row.wrapped = wrapper.wrap(row.id, key)
        await session.commit()
    return len(rows)


@dataclass
class Retirement:
    key_id: str
    resealed: dict[str, int] = field(default_factory=dict)
    unopenable: dict[str, list[int | str]] = field(default_factory=dict)  # column -> ids
    remaining: int = 0
    seconds: float = 0.0


async def retire_data_key(engine: AsyncEngine, wrapper: KeyWrapper, key_id: str, *,
                          batch: int = 1000, cipher: str = "aes-256-gcm") -> Retirement:
    """Stop sealing with `key_id` and re-encrypt every value it sealed under the active
    data key, in batches of `batch` rows per transaction (the system keeps running).

    A value changed by someone else meanwhile is left alone (`WHERE col = old`) and found
    again by the next pass; `remaining` counts what is left after the last pass (workers
    that still hold the key as active stop using it within the vault's `active_for`)."""
    started = time.perf_counter()
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    async with sessions() as session:
        result = await session.execute(
            update(DataKey).where(DataKey.id == key_id)
            # Retiring again keeps the first time: shredding waits from then.
            .values(retired_at=func.coalesce(DataKey.retired_at, func.now()))
            .returning(DataKey.id))
        if result.scalar_one_or_none() is None:
            raise ValueError(f"no data key {key_id!r}")
        await session.commit()
    vault = Vault(wrapper, SqlDataKeyStore(sessions), cipher=cipher)
    retirement = Retirement(key_id)
    for column in SEALED_COLUMNS:
        name = f"{column.table}.{column.column}"
        retirement.resealed[name], failed = await _reseal_column(
            sessions, vault, column, key_id, batch)
        if failed:
            retirement.unopenable[name] = failed
    retirement.remaining = sum(u.total for u in await key_usage(engine) if u.id == key_id)
    retirement.seconds = time.perf_counter() - started
    return retirement


async def _reseal_column(sessions: async_sessionmaker[AsyncSession], vault: Vault,
                         c: SealedColumn, key_id: str, batch: int
                         ) -> tuple[int, list[int | str]]:
    """(values re-encrypted, ids of rows whose value does not open: reported, not fatal,
    so one damaged row does not hold every other value under the retired key)."""
    done = 0
    last_id: int | str = "" if c.id_type == "text" else 0
    failed: list[int | str] = []
    while True:
        async with sessions() as session:
            rows = (await session.execute(text(
                f"SELECT id, {c.natural_key} AS k, {c.column} AS v FROM {c.table} "
                f"WHERE {_key_of(c.column)} = :key AND id > :last ORDER BY id LIMIT :n"),
                {"key": key_id.encode(), "last": last_id, "n": batch})).all()
            if not rows:
                return done, failed
            changes = []
            for r in rows:
                try:
                    changes.append({"id": r.id, "old": r.v,
                                    "new": await vault.reseal(r.v, c.bound(r.k))})
                except SealingError:
                    failed.append(r.id)
            # One statement per batch; RETURNING counts what really changed.
            changed = await session.execute(text(
                f"UPDATE {c.table} t SET {c.column} = v.new "
                f"FROM unnest(CAST(:ids AS {c.id_type}[]), CAST(:olds AS bytea[]), "
                "CAST(:news AS bytea[])) AS v(id, old, new) "
                f"WHERE t.id = v.id AND t.{c.column} = v.old RETURNING t.id"),
                {"ids": [x["id"] for x in changes], "olds": [x["old"] for x in changes],
                 "news": [x["new"] for x in changes]})
            done += len(changed.all())
            await session.commit()
            last_id = rows[-1].id


# Longer than a vault keeps its active data key (security.sealing.Vault, `active_for`):
# after it, no worker can still be sealing with a retired key.
SHRED_GRACE = timedelta(minutes=2)


async def shred(engine: AsyncEngine, key_id: str, *, grace: timedelta = SHRED_GRACE) -> None:
    """Delete a retired data key that seals nothing any more. Irreversible: a value it
    still sealed could never be opened again, so that is refused -- and so is a key
    retired less than `grace` ago, which a worker may still be sealing with."""
    async with async_sessionmaker(engine)() as session:
        # Counted and deleted under SHARE locks on every sealed table: a writer still in
        # flight (a legacy import is one long transaction) is waited for and counted,
        # and none can add a value sealed with this key until the deletion commits.
        tables = ", ".join(dict.fromkeys(c.table for c in SEALED_COLUMNS))
        await session.execute(text(f"LOCK TABLE {tables} IN SHARE MODE"))
        usage = {u.id: u for u in await _usage(session)}.get(key_id)
        if usage is None:
            raise ValueError(f"no data key {key_id!r}")
        if usage.retired_at is None:
            raise ValueError(f"data key {key_id} is not retired: `petition keys retire` it "
                             "first")
        now = await session.scalar(text("SELECT now()"))
        if usage.retired_at > now - grace:
            raise ValueError(f"data key {key_id} was retired less than {grace} ago: a worker "
                             "may still seal with it; shred it after "
                             f"{usage.retired_at + grace:%H:%M:%S} UTC")
        if usage.total:
            raise ValueError(f"data key {key_id} still seals {usage.total} values: retire it "
                             "again (a worker sealed with it after the last pass)")
        await session.execute(delete(DataKey).where(DataKey.id == key_id,
                                                    DataKey.retired_at.is_not(None)))
        await session.commit()
