"""`petition letters`: the post room's list of notices archived as letters and not yet
printed, and marking them printed (docs/delivery.md). Prints no personal data: the
registration number, the kind of notice and the file under PETITION_LETTER_DIR."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import click


@click.group("letters")
def letters_cmd() -> None:
    """Letters for the post room (written notices to petitioners)."""


@letters_cmd.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_cmd(as_json: bool) -> None:
    """Letters archived and not yet printed, oldest first."""
    from activities.delivery.letters import unprinted_letters
    from starter.runtime import runtime

    async def work() -> None:
        async with runtime() as rt:
            letters = await unprinted_letters(rt.sessions)
            for letter in letters:
                path = rt.settings.letter_dir / letter.path
                if as_json:
                    click.echo(json.dumps({
                        "delivery_id": letter.delivery_id,
                        "registration_no": letter.registration_no, "kind": letter.kind,
                        "path": str(path), "archived_at": letter.archived_at.isoformat()},
                        ensure_ascii=False))
                else:
                    click.echo(f"{letter.delivery_id}\t{letter.registration_no}\t"
                               f"{letter.kind}\t{path}")
            if not as_json:
                click.echo(f"{len(letters)} letter(s) to print", err=True)

    asyncio.run(work())


@letters_cmd.command("printed")
@click.argument("delivery_ids", nargs=-1, type=int, required=True)
def printed_cmd(delivery_ids: tuple[int, ...]) -> None:
    """Mark letters printed (by the delivery ids `petition letters list` shows)."""
    from activities.delivery.letters import mark_printed
    from starter.runtime import runtime

    async def work() -> int:
        async with runtime() as rt:
            return await mark_printed(rt.sessions, list(delivery_ids), datetime.now(UTC))

    marked = asyncio.run(work())
    click.echo(f"{marked} letter(s) marked printed"
               + (f"; {len(delivery_ids) - marked} already printed or unknown"
                  if marked < len(delivery_ids) else ""))
