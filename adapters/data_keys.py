"""The `data_keys` table as the vault's key store, and the vault the processes share."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from adapters.settings import Settings
from adapters.tables import DataKey
from security.sealing import LocalKeyWrapper, StoredDataKey, Vault, kek_ring_from_settings


def _stored(row: DataKey) -> StoredDataKey:
    return StoredDataKey(row.id, row.kek_id, row.wrapped, row.created_at, row.retired_at,
                         row.cipher)


class SqlDataKeyStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]):
        self._sessions = sessions

    async def get(self, key_id: str) -> StoredDataKey | None:
        async with self._sessions() as session:
            row = await session.get(DataKey, key_id)
            return None if row is None else _stored(row)

    async def newest_usable(self, kek_id: str, cipher: str) -> StoredDataKey | None:
        async with self._sessions() as session:
            row = await session.scalar(
                select(DataKey).where(DataKey.kek_id == kek_id, DataKey.cipher == cipher,
                                      DataKey.retired_at.is_(None))
                .order_by(DataKey.created_at.desc()).limit(1))
            return None if row is None else _stored(row)

    async def add(self, key: StoredDataKey) -> None:
        async with self._sessions() as session:
            await session.execute(insert(DataKey).values(
                id=key.id, kek_id=key.kek_id, wrapped=key.wrapped, cipher=key.cipher))
            await session.commit()


def vault_from_settings(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> Vault:
    return Vault(LocalKeyWrapper(kek_ring_from_settings(settings)), SqlDataKeyStore(sessions),
                 cipher=settings.data_cipher)
