"""Issue 13, item 1: personal data sealed at rest (envelope encryption), the blind index,
and the key tool that lists keys, rewraps them and re-encrypts to retire one."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import pytest_asyncio
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from activities import ActivityDesks, build_desks
from activities.contracts import AssistanceApplicationInput, TransitionBatch
from activities.records import open_detail, split_detail
from adapters.engine import create_engine
from adapters.key_tool import SEALED_COLUMNS, key_usage, retire_data_key, rewrap, shred
from adapters.settings import get_settings
from adapters.tables import Base, DataKey, Petition, PetitionEvent
from devstack.roles import login_url
from domain.case import TransitionRecord
from domain.models import Action, Actor, Role, Stage
from security.blind_index import BlindIndex, index_from_settings
from security.codec import KeyRing
from security.sealing import (
    LocalKeyWrapper,
    SealingError,
    StoredDataKey,
    Vault,
    kek_ring_from_settings,
)
from tests.cli import petition
from tests.conftest import fictional_personal_data, make_intake
from tests.desk_helpers import register, run

HANDLER = Actor(id="QS-HRSS.h1", role=Role.HANDLER, unit="QS-HRSS")


def ring(*ids: str, active: str | None = None) -> KeyRing:
    return KeyRing({i: os.urandom(32) for i in ids}, active or ids[0])


class MemoryStore:
    def __init__(self) -> None:
        self.keys: dict[str, StoredDataKey] = {}

    async def get(self, key_id: str) -> StoredDataKey | None:
        return self.keys.get(key_id)

    async def newest_usable(self, kek_id: str, cipher: str) -> StoredDataKey | None:
        usable = [k for k in self.keys.values()
                  if k.kek_id == kek_id and k.cipher == cipher and k.retired_at is None]
        return max(usable, key=lambda k: k.created_at, default=None)

    async def add(self, key: StoredDataKey) -> None:
        self.keys[key.id] = key


# ------------------------------------------------------------------ the vault, in memory


async def test_a_sealed_value_opens_only_in_its_own_place() -> None:
    vault = Vault(LocalKeyWrapper(ring("kek1")), MemoryStore())
    sealed = await vault.seal("身份证 110101199003071234".encode(), "petitions.petitioner:T-1")
    assert b"110101199003071234" not in sealed
    assert (await vault.open(sealed, "petitions.petitioner:T-1")).decode().endswith("1234")
    for elsewhere in ("petitions.petitioner:T-2", "petitions.content:T-1"):
        with pytest.raises(SealingError, match="moved from another row or tampered"):
            await vault.open(sealed, elsewhere)
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(SealingError):
        await vault.open(tampered, "petitions.petitioner:T-1")


async def test_sm4_data_keys_where_the_national_algorithm_is_required() -> None:
    store, keks = MemoryStore(), LocalKeyWrapper(ring("kek1"))
    aes = await Vault(keks, store).seal(b"letter", "notices.body:a")
    sm4_vault = Vault(keks, store, cipher="sm4-gcm")
    sm4 = await sm4_vault.seal("信件".encode(), "notices.body:b")
    ciphers = sorted(k.cipher for k in store.keys.values())
    assert ciphers == ["aes-256-gcm", "sm4-gcm"]  # a new data key, of the configured kind
    # An SM4 key is 128 bits: wrapped, nonce + 16 + tag.
    assert sorted(len(k.wrapped) for k in store.keys.values()) == [12 + 16 + 16, 12 + 32 + 16]
    # Both kinds open side by side; a value moved elsewhere does not.
    assert await sm4_vault.open(aes, "notices.body:a") == b"letter"
    assert (await Vault(keks, store).open(sm4, "notices.body:b")).decode() == "信件"
    with pytest.raises(SealingError):
        await sm4_vault.open(sm4, "notices.body:a")
    with pytest.raises(SealingError, match="unknown data cipher"):
        Vault(keks, store, cipher="des")


async def test_data_keys_are_stored_wrapped_and_open_only_with_their_kek() -> None:
    store, keks = MemoryStore(), ring("kek1")
    sealed = await Vault(LocalKeyWrapper(keks), store).seal(b"letter", "notices.body:k")
    [stored] = store.keys.values()
    assert stored.kek_id == "kek1" and len(stored.wrapped) == 12 + 32 + 16
    # A fresh process with the same KEK opens it; one with another KEK does not.
    assert await Vault(LocalKeyWrapper(keks), store).open(sealed, "notices.body:k") == b"letter"
    with pytest.raises(SealingError, match="not configured"):
        await Vault(LocalKeyWrapper(ring("kek2")), store).open(sealed, "notices.body:k")
    forged = KeyRing({"kek1": os.urandom(32)}, "kek1")
    with pytest.raises(SealingError, match="does not unwrap"):
        await Vault(LocalKeyWrapper(forged), store).open(sealed, "notices.body:k")


async def test_a_retired_data_key_stops_sealing_after_active_for() -> None:
    store, now = MemoryStore(), [0.0]
    vault = Vault(LocalKeyWrapper(ring("kek1")), store, active_for=60, monotonic=lambda: now[0])
    first = await vault.active_key_id()
    old = store.keys[first]
    store.keys[first] = StoredDataKey(old.id, old.kek_id, old.wrapped, old.created_at,
                                      retired_at=datetime.now(UTC))
    now[0] = 30
    assert await vault.active_key_id() == first  # cached: within its minute
    now[0] = 61
    assert await vault.active_key_id() == first  # served while it is looked up again
    for _ in range(20):
        await asyncio.sleep(0)
    assert await vault.active_key_id() != first


async def test_sealing_never_waits_for_the_key_lookup_once_a_key_is_active() -> None:
    """An activity seals inside its transaction: were it to wait for a database lookup of
    the data key, a pool whose connections all wait would starve (make dev did). Once a
    key is active, an expired one is looked up again in the background."""
    store, now = MemoryStore(), [0.0]
    vault = Vault(LocalKeyWrapper(ring("kek1")), store, active_for=60, monotonic=lambda: now[0])
    await vault.seal(b"first", "notices.body:a")
    blocked = asyncio.Event()

    async def unavailable(kek_id: str, cipher: str) -> StoredDataKey | None:
        await blocked.wait()  # the database: every connection taken
        return None

    store.newest_usable = unavailable  # type: ignore[method-assign]
    now[0] = 120
    sealed = await asyncio.wait_for(vault.seal(b"second", "notices.body:b"), timeout=1)
    assert await vault.open(sealed, "notices.body:b") == b"second"
    blocked.set()


def test_the_blind_index_is_keyed_and_normalises() -> None:
    one, two = BlindIndex(os.urandom(32)), BlindIndex(os.urandom(32))
    assert one.id_number("11010119900307123x") == one.id_number("11010119900307123X ")
    assert one.id_number("11010119900307123X") != two.id_number("11010119900307123X")
    assert one.phone("+86 138-0013-8000") == one.phone("13800138000") == \
        one.phone("0086 13800138000")
    assert one.phone("13800138000") != one.phone("13800138001")
    intake = make_intake()
    assert one.matter_key(intake) != two.matter_key(intake)
    assert intake.petitioner.id_number not in one.matter_key(intake)


def test_every_sealed_column_is_known_to_the_key_tool() -> None:
    in_tables = {(t.name, c.name) for t in Base.metadata.sorted_tables for c in t.columns
                 if c.name.endswith("_sealed")}
    assert in_tables == {(c.table, c.column) for c in SEALED_COLUMNS}


# -------------------------------------------------------------- in PostgreSQL, and the tool


@pytest_asyncio.fixture(loop_scope="session")
async def owner_engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    """The schema's owner: the role `petition keys` runs as (the migration connection)."""
    engine = create_engine(login_url(db_url, get_settings().db_owner_role,
                                     os.environ.get("PETITION_OWNER_PASSWORD") or None),
                           pool_size=2)
    yield engine
    await engine.dispose()


async def _registered_with_note(desks: ActivityDesks, secrets: dict[str, str]
                                ) -> tuple[Petition, str]:
    intake = make_intake(petitioner={"name": secrets["name"], "id_number": secrets["id_number"],
                                     "phone": secrets["phone"]}, content=secrets["content"])
    reg = await register(desks, intake)
    async with desks.registry._sessions() as session:
        row = (await session.scalars(select(Petition).where(Petition.id == reg.petition_id))
               ).one()
    record = TransitionRecord(
        workflow_id=row.workflow_id, petition_id=row.id, seq=1, action=Action.ADD_NOTE,
        actor=HANDLER, at=datetime.now(UTC), from_stage=Stage.REGISTERED,
        to_stage=Stage.REGISTERED, detail={"text": secrets["note"], "to_unit": "QS-HRSS"})
    await run(desks.records.record_transitions, TransitionBatch(records=[record]))
    return row, f"{row.workflow_id}:1:add_note"


async def test_registration_stores_no_personal_data_in_clear(
        engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> None:
    desks = build_desks(sessions)
    secrets = fictional_personal_data("note", "电话联系")
    row, key = await _registered_with_note(desks, secrets)
    async with engine.connect() as conn:  # every byte of both rows, as the server has them
        raw = b"".join([
            (await conn.execute(text("SELECT convert_to(p::text, 'UTF8') FROM petitions p "
                                     "WHERE id = :id"), {"id": row.id})).scalar_one(),
            (await conn.execute(text("SELECT convert_to(e::text, 'UTF8') FROM petition_events "
                                     "e WHERE idempotency_key = :k"), {"k": key})).scalar_one()])
    assert raw and row.intake_id.encode() in raw  # the scan sees the rows' clear columns
    for name, value in secrets.items():
        assert value.encode() not in raw and value.encode().hex().encode() not in raw, name
    # What the system needs back, it opens; what reports query stays in the clear.
    vault, index = desks.vault, index_from_settings(get_settings())
    petitioner = await vault.open_json(row.petitioner_sealed,
                                       f"petitions.petitioner:{row.intake_id}")
    assert petitioner["id_number"] == secrets["id_number"]
    async with sessions() as session:
        found = (await session.scalars(select(Petition.intake_id).where(
            Petition.petitioner_phone_index == index.phone(secrets["phone"])))).all()
        event = (await session.scalars(select(PetitionEvent).where(
            PetitionEvent.idempotency_key == key))).one()
    assert found == [row.intake_id]
    assert event.detail == {"to_unit": "QS-HRSS"}
    assert await open_detail(vault, event) == {"text": secrets["note"], "to_unit": "QS-HRSS"}


async def test_what_staff_write_about_a_case_is_sealed_too(
        engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> None:
    desks = build_desks(sessions)
    secrets = fictional_personal_data("note", "本人电话")
    row, _ = await _registered_with_note(desks, secrets)
    await run(desks.assistance.file_assistance_application, AssistanceApplicationInput(
        workflow_id=row.workflow_id, petition_id=row.id, seq=2, application_no=1,
        kind="hardship", amount_yuan=Decimal("500"), persons=1, reason=secrets["note"],
        requested_by=HANDLER.id, requested_at=datetime.now(UTC)))
    async with engine.connect() as conn:
        raw = (await conn.execute(text(
            "SELECT convert_to(a::text, 'UTF8') FROM assistance_applications a "
            "WHERE petition_id = :id"), {"id": row.id})).scalar_one()
        sealed = (await conn.execute(text(
            "SELECT idempotency_key, reason_sealed FROM assistance_applications "
            "WHERE petition_id = :id"), {"id": row.id})).one()
    assert row.workflow_id.encode() in raw and secrets["note"].encode() not in raw
    opened = await desks.vault.open(sealed.reason_sealed,
                                    f"assistance_applications.reason:{sealed.idempotency_key}")
    assert opened.decode() == secrets["note"]


async def test_retiring_a_data_key_reseals_everything_and_then_shreds_it(
        owner_engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> None:
    desks = build_desks(sessions)
    secrets = fictional_personal_data("note", "补充材料")
    row, key = await _registered_with_note(desks, secrets)
    old = await desks.vault.active_key_id()
    # The application can neither rewrite the audit trail, sealed or not, nor shred a key.
    for forbidden in ("UPDATE petition_events SET detail_sealed = NULL "
                      "WHERE idempotency_key = :k", "DELETE FROM data_keys WHERE id = :k"):
        async with sessions() as session:
            with pytest.raises(DBAPIError, match="permission denied"):
                await session.execute(text(forbidden), {"k": key if "events" in forbidden
                                                        else old})
    wrapper = desks.vault.wrapper
    with pytest.raises(ValueError, match="not retired"):
        await shred(owner_engine, old)
    done = await retire_data_key(owner_engine, wrapper, old, batch=2)
    assert done.remaining == 0 and done.resealed["petitions.petitioner_sealed"] >= 1
    assert done.resealed["petition_events.detail_sealed"] >= 1
    usage = {u.id: u for u in await key_usage(owner_engine)}
    assert usage[old].total == 0 and usage[old].retired_at is not None
    async with sessions() as session:
        fresh = (await session.scalars(select(Petition).where(Petition.id == row.id))).one()
        event = (await session.scalars(select(PetitionEvent).where(
            PetitionEvent.idempotency_key == key))).one()
    assert fresh.petitioner_sealed != row.petitioner_sealed
    reader = Vault(wrapper, desks.vault._store)  # a fresh process: no key cached
    assert (await reader.open_json(fresh.petitioner_sealed,
                                   f"petitions.petitioner:{row.intake_id}"))["phone"] == \
        secrets["phone"]
    assert (await open_detail(reader, event))["text"] == secrets["note"]
    with pytest.raises(ValueError, match="retired less than"):
        await shred(owner_engine, old)
    await shred(owner_engine, old, grace=timedelta(0))  # no other vault holds it here
    async with sessions() as session:
        assert await session.get(DataKey, old) is None


async def test_retiring_a_kek_rewraps_its_data_keys(
        owner_engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> None:
    desks = build_desks(sessions)
    row, _ = await _registered_with_note(desks, fictional_personal_data("note", "x"))
    current = kek_ring_from_settings(get_settings())  # plus a new, active one:
    new_id = f"kek-{uuid.uuid4().hex[:6]}"
    both = KeyRing({**current.keys, new_id: os.urandom(32)}, new_id)
    with pytest.raises(ValueError, match="active key-encryption key"):
        await rewrap(owner_engine, LocalKeyWrapper(both), new_id)
    moved = await rewrap(owner_engine, LocalKeyWrapper(both), current.active)
    assert moved >= 1
    only_new = LocalKeyWrapper(KeyRing({new_id: both.keys[new_id]}, new_id))
    async with sessions() as session:
        fresh = (await session.scalars(select(Petition).where(Petition.id == row.id))).one()
    reader = Vault(only_new, desks.vault._store)
    content = await reader.open(fresh.content_sealed, f"petitions.content:{row.intake_id}")
    assert content.decode().startswith("信件正文")
    # Put the development ring back in charge, for the tests that follow.
    assert await rewrap(owner_engine, LocalKeyWrapper(
        KeyRing(both.keys, current.active)), new_id) == moved


@pytest.mark.cli
async def test_the_keys_command_lists_retires_and_refuses_in_one_line(
        db_url: str, sessions: async_sessionmaker[AsyncSession]) -> None:
    desks = build_desks(sessions)
    await _registered_with_note(desks, fictional_personal_data("note", "x"))
    key = await desks.vault.active_key_id()
    listed = await petition("keys", "list", db_url=db_url, address="-", task_queue="-")
    assert listed.code == 0, listed.err
    assert "(active)" in listed.out and key in listed.out
    assert "petitions.petitioner_sealed" in listed.out
    retired = await petition("keys", "retire", key, db_url=db_url, address="-",
                             task_queue="-")
    assert retired.code == 0, retired.err
    assert f"retired {key}: re-encrypted" in retired.out and "; 0 left" in retired.out
    active_kek = kek_ring_from_settings(get_settings()).active
    for args, says in ((("keys", "retire", "no-such-key"), "no data key 'no-such-key'"),
                       (("keys", "retire-kek", "nope"), "'nope' is not configured"),
                       (("keys", "retire-kek", active_kek), "active key-encryption key"),
                       (("keys", "shred", key), "retired less than")):
        done = await petition(*args, db_url=db_url, address="-", task_queue="-")
        assert done.code == 2, (args, done.out)
        assert len(done.err.strip().splitlines()) == 1 and says in done.err, (args, done.err)


def test_only_an_actions_own_free_text_is_sealed() -> None:
    """A decline's `reason` is an enum reports may count; its explanation is free text.
    An action's absent text is not sealed as a null."""
    assert split_detail("decline", {"reason": "outside_scope", "explanation": "不属于",
                                    "concluded_case": None}) == (
        {"reason": "outside_scope"}, {"explanation": "不属于"})
    assert split_detail("accept", {"note": None}) == ({}, {})
    assert split_detail("request_extension", {"reason": "案情复杂", "days": 30}) == (
        {"days": 30}, {"reason": "案情复杂"})
