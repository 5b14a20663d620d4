"""Letters: the notice's PDF archived for the post room, listed until it is printed.

`<letter_dir>/<yyyy-mm-dd>/<registration no>-<kind>-<short key>.pdf`, the date the
notice was written (Beijing time). Archiving the same notice again writes the same file
(atomically: a temporary file renamed over it), so a drainer that died after writing
and before marking archives it once. The files hold the petitioner's letter in clear:
the directory is created 0700 and each file 0600; protect it as the database is.
"""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.delivery.channels import LETTER, Contact, Parcel
from adapters.tables import Notice, NoticeDelivery, Petition

BEIJING = ZoneInfo("Asia/Shanghai")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def letter_path(parcel: Parcel) -> Path:
    """Relative to the letters' directory."""
    day = parcel.created_at.astimezone(BEIJING).date().isoformat()
    name = (f"{_UNSAFE.sub('_', parcel.registration_no)}-{_UNSAFE.sub('_', parcel.kind)}-"
            f"{parcel.short_key}.pdf")
    return Path(day) / name


def _write(target: Path, data: bytes) -> None:
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)
    finally:
        if temporary.exists():
            temporary.unlink()


class LetterChannel:
    name = LETTER

    def __init__(self, directory: Path):
        self._directory = directory

    def ready_for(self, contact: Contact) -> bool:
        return True  # every written notice goes by letter

    async def send(self, parcel: Parcel) -> str | None:
        relative = letter_path(parcel)
        await asyncio.to_thread(_write, self._directory / relative, parcel.rendered.pdf)
        return relative.as_posix()  # the provider's id of a letter: where it is archived


@dataclass(frozen=True)
class UnprintedLetter:
    delivery_id: int
    registration_no: str
    kind: str
    path: str  # relative to the letters' directory
    archived_at: datetime


async def unprinted_letters(sessions: async_sessionmaker[AsyncSession], *,
                            petition_ids: list[int] | None = None) -> list[UnprintedLetter]:
    """Letters archived and not yet printed, oldest first: the post room's list."""
    query = (select(NoticeDelivery, Notice.template, Petition.registration_no)
             .join(Notice, Notice.id == NoticeDelivery.notice_id)
             .join(Petition, Petition.id == Notice.petition_id)
             .where(NoticeDelivery.channel == LETTER, NoticeDelivery.state == "sent",
                    NoticeDelivery.printed_at.is_(None))
             .order_by(NoticeDelivery.sent_at, NoticeDelivery.id))
    if petition_ids is not None:
        query = query.where(Notice.petition_id.in_(petition_ids))
    async with sessions() as session:
        rows = (await session.execute(query)).all()
    return [UnprintedLetter(d.id, number, template, d.provider_message_id or "",
                            d.sent_at or d.created_at) for d, template, number in rows]


async def mark_printed(sessions: async_sessionmaker[AsyncSession], delivery_ids: list[int],
                       at: datetime) -> int:
    """Mark letters printed (once: a letter already marked keeps its time)."""
    async with sessions() as session:
        result = await session.execute(
            update(NoticeDelivery)
            .where(NoticeDelivery.id.in_(delivery_ids), NoticeDelivery.channel == LETTER,
                   NoticeDelivery.state == "sent", NoticeDelivery.printed_at.is_(None))
            .values(printed_at=at))
        await session.commit()
    return int(getattr(result, "rowcount", 0) or 0)
