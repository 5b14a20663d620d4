"""`petition dev` prints where each face is and a working sign-in for each role of the
sample directory (starter/dev_accounts.py)."""

from __future__ import annotations

import stat
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from adapters.settings import get_settings
from adapters.tables import IntakeClient, Person, StaffAccount, Unit
from domain.models import Role
from security.query_code import query_codes_from_settings
from service.auth.hashing import verify_secret
from starter.dev_accounts import (
    DEV_SIGN_INS,
    addresses_and_sign_ins,
    dev_password,
    ensure_portal_client,
    provision_sign_ins,
)


def test_the_password_is_generated_once_and_private(tmp_path: Path) -> None:
    first = dev_password(tmp_path)
    assert len(first) >= 12 and dev_password(tmp_path) == first
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert dev_password(elsewhere) != first  # drawn at random, never a fixed password
    mode = stat.S_IMODE((tmp_path / "dev-staff-password").stat().st_mode)
    assert mode == 0o600


async def test_every_role_gets_a_local_account(
        sessions: async_sessionmaker[AsyncSession], tmp_path: Path) -> None:
    password = dev_password(tmp_path)
    sign_ins = await provision_sign_ins(sessions, password)
    assert [s.person_id for s in sign_ins] == [p for _, p in DEV_SIGN_INS]
    async with sessions() as session:
        roles = set()
        for sign_in in sign_ins:
            account = await session.get(StaffAccount, sign_in.person_id)
            assert account is not None and verify_secret(account.password_hash, password)
            person = await session.get(Person, sign_in.person_id)
            assert person is not None
            roles.add(person.role)
    assert roles == {r.value for r in (Role.HANDLER, Role.UNIT_HEAD, Role.LEADER,
                                       Role.SUPERVISOR, Role.INTAKE_CLERK)}
    text = addresses_and_sign_ins(
        service_url="http://127.0.0.1:8000", ui_url="http://127.0.0.1:8233",
        codec_login=None, keycloak=None, password=password, sign_ins=sign_ins,
        petition="QS-XFJ-2026-000001")
    for needed in ("/workbench", "/dashboard", "/track", "http://127.0.0.1:8233", password,
                   "青山县信访局", "QS-LDR1",
                   query_codes_from_settings(get_settings()).code_for("QS-XFJ-2026-000001")):
        assert needed in text, needed


async def test_the_online_form_has_its_portal_client(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        existing = await session.get(IntakeClient, "intake-portal-dev-test")
    assert existing is None
    assert await ensure_portal_client(sessions, "intake-portal-dev-test")
    assert not await ensure_portal_client(sessions, "intake-portal-dev-test")  # kept
    async with sessions() as session:
        client = await session.get(IntakeClient, "intake-portal-dev-test")
        units = set(await session.scalars(select(Unit.code)))
    assert client is not None and client.active and set(client.units) == units
