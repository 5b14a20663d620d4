"""What `petition dev` prints once the stack is up: where each face is, and how each role
of the sample directory signs in.

Local accounts for one person of each role, all with one development password generated
once into `.data/dev-staff-password` (never a fixed password: a development stack left
reachable must not open to a guessed one). Single sign-on users of the local Keycloak keep
the realm's own password. The petitioner's line is the first sample petition's
registration number with its query code (development data: the code is derived from the
number under the development query-code key).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from adapters.settings import get_settings
from adapters.tables import IntakeClient, Person, Unit
from security.query_code import query_codes_from_settings
from service.accounts_cmd import add_intake_client, set_password

# One member of staff per role, around the county petition bureau the first sample
# petition is registered at (QS-XFJ) and a unit it is transferred to (QS-HRSS).
DEV_SIGN_INS = (
    ("承办人员 handler", "QS-XFJ.h1"),
    ("单位负责人 unit head", "QS-XFJ.head"),
    ("包案领导 leader", "QS-LDR1"),
    ("督查人员 supervisor", "QS-XFJ.sup"),
    ("登记人员 intake clerk", "QS-XFJ.clerk1"),
    ("承办人员 handler (receiving unit)", "QS-HRSS.h1"),
    ("单位负责人 unit head (receiving unit)", "QS-HRSS.head"),
)


@dataclass(frozen=True)
class SignIn:
    role: str
    person_id: str
    name: str
    unit: str


def dev_password(data_dir: Path) -> str:
    """The development staff password, generated once (readable by its owner only)."""
    path = data_dir / "dev-staff-password"
    if path.exists():
        return path.read_text().strip()
    password = secrets.token_urlsafe(12)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    return password


async def provision_sign_ins(sessions: async_sessionmaker[AsyncSession],
                             password: str) -> list[SignIn]:
    """Local accounts for the sample roles that are in the directory loaded."""
    found: list[SignIn] = []
    for role, person_id in DEV_SIGN_INS:
        async with sessions() as session:
            row = (await session.execute(
                select(Person.name, Unit.name).join(Unit, Unit.code == Person.unit_code)
                .where(Person.id == person_id))).first()
        if row is None:
            continue
        await set_password(sessions, person_id, password)
        found.append(SignIn(role, person_id, row[0], row[1].split(" ")[0]))
    return found


async def ensure_portal_client(sessions: async_sessionmaker[AsyncSession],
                               client_id: str = "intake-portal") -> bool:
    """The online petition form (/petition) registers as the portal's intake client: in
    development, one for every unit of the directory (its secret is not needed: the
    service acts for it in-process). Answers whether it was created now."""
    async with sessions() as session:
        if await session.get(IntakeClient, client_id) is not None:
            return False
        units = list(await session.scalars(select(Unit.code)))
    await add_intake_client(sessions, client_id, "网上信访平台 Online petition portal", units)
    return True


def addresses_and_sign_ins(*, service_url: str, ui_url: str, codec_login: str | None,
                           keycloak: str | None, password: str, sign_ins: list[SignIn],
                           petition: str | None) -> str:
    lines = [
        "",
        "Petition Flow is running (Ctrl-C stops everything):",
        f"  工作台 staff workbench      {service_url}/workbench   (sign in: {service_url}/signin)",
        f"  考核统计 supervisor dashboard {service_url}/dashboard",
        f"  进度查询 petitioners          {service_url}/track   (online petition: "
        f"{service_url}/petition)",
        f"  Temporal Web UI (read-only) {ui_url}"
        + (f"   (to decrypt payloads sign in at {codec_login})" if codec_login else ""),
        f"  API                         {service_url}/docs",
        "",
        f"Sign-ins (local accounts; password {password}, kept in .data/dev-staff-password):",
    ]
    lines += [f"  {s.role:<34} {s.person_id:<16} {s.name} · {s.unit}" for s in sign_ins]
    if keycloak:
        lines.append(f"  single sign-on ({keycloak}): QS-HRSS.h1, QS-HRSS.head, QS-XFJ.h1, "
                     "QS-XFJ.head, QS-XFJ.clerk1, YZ-LDR1 with password dev-only-password")
    if petition:
        code = query_codes_from_settings(get_settings()).code_for(petition)
        lines.append(f"  信访人 petitioner                   registration number {petition}, "
                     f"query code {code}")
    return "\n".join(lines)
