"""Reading petitions back: the workflow's own view and the system of record.

`petition list` reads only the read model (one row per petition, kept current by the
activities), so it answers even when no worker runs; nothing personal is listed.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field, model_validator
from rich.console import Console
from rich.table import Table
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.service import RPCError

from adapters.tables import Petition, PetitionEvent, Unit
from domain.models import Category, Stage
from workflows.petition import PetitionWorkflow

BEIJING = ZoneInfo("Asia/Shanghai")  # dates on the command line are Beijing dates
MAX_LIST = 1000
QUERY_TIMEOUT = timedelta(seconds=3)  # a healthy worker answers in milliseconds


class QueryError(ValueError):
    """A filter that cannot be right: nothing was read."""


class PetitionFilter(BaseModel):
    unit: str | None = None  # registered at, held by or responsible for it
    stage: Stage | None = None
    overdue: bool = False
    category: Category | None = None
    registered_from: date | None = None  # inclusive, Beijing dates
    registered_to: date | None = None  # inclusive
    limit: int = Field(default=50, ge=1, le=MAX_LIST)

    @model_validator(mode="after")
    def _ordered(self) -> PetitionFilter:
        if (self.registered_from and self.registered_to
                and self.registered_from > self.registered_to):
            raise ValueError(f"--from {self.registered_from} is after --to {self.registered_to}")
        return self


LIST_COLUMNS = ("registration_no", "stage", "outcome", "category", "channel", "registered_at",
                "registered_unit", "holding_unit", "responsible_unit", "handler_id",
                "next_deadline", "overdue", "escalation_level", "repeat_of", "attached_to",
                "workflow_id")


async def list_petitions(sessions: async_sessionmaker[AsyncSession],
                         where: PetitionFilter) -> list[dict[str, Any]]:
    """Newest registrations first; no personal data (no petitioner, subject or content)."""
    query = select(Petition)
    if where.unit is not None:
        query = query.where(or_(Petition.registered_unit == where.unit,
                                Petition.holding_unit == where.unit,
                                Petition.responsible_unit == where.unit))
    if where.stage is not None:
        query = query.where(Petition.stage == where.stage.value)
    if where.overdue:
        query = query.where(Petition.overdue.is_(True), Petition.stage != Stage.CLOSED.value)
    if where.category is not None:
        query = query.where(Petition.category == where.category.value)
    if where.registered_from is not None:
        query = query.where(Petition.registered_at >= _start_of(where.registered_from))
    if where.registered_to is not None:
        query = query.where(
            Petition.registered_at < _start_of(where.registered_to + timedelta(days=1)))
    query = query.order_by(Petition.registered_at.desc(), Petition.id.desc()).limit(where.limit)
    async with sessions() as session:
        if where.unit is not None and await session.get(Unit, where.unit) is None:
            raise QueryError(f"unknown unit {where.unit!r}")
        rows = (await session.scalars(query)).all()
    return [{c: _plain(getattr(r, c)) for c in LIST_COLUMNS} for r in rows]


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time(0), BEIJING)


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def petition_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{len(rows)} petition{'s' if len(rows) != 1 else ''}",
                  title_justify="left", header_style="bold")
    for header in ("registration no.", "stage", "category", "registered (Beijing)", "unit",
                   "handler", "next deadline (Beijing)", "overdue"):
        table.add_column(header, no_wrap=header in ("registration no.", "stage"))
    for r in rows:
        stage = r["stage"] + (f" ({r['outcome']})" if r["outcome"] else "")
        if r["attached_to"]:
            stage += " attached"
        unit = r["responsible_unit"] or r["holding_unit"]
        overdue = (f"[red]yes, level {r['escalation_level']}[/red]" if r["overdue"]
                   else "no")
        table.add_row(r["registration_no"], stage, r["category"], _beijing(r["registered_at"]),
                      unit, r["handler_id"] or "—", _beijing(r["next_deadline"]), overdue)
    return table


def print_table(table: Table) -> None:
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # piped: never squeeze columns into 80
    console.print(table)


def _beijing(iso: str | None) -> str:
    if iso is None:
        return "—"
    return datetime.fromisoformat(iso).astimezone(BEIJING).strftime("%Y-%m-%d %H:%M")


# ------------------------------------------------------------------------- show


async def audit_trail(sessions: async_sessionmaker[AsyncSession],
                      workflow_id: str) -> list[dict[str, Any]]:
    """Every transition and every refused action, in the order they happened."""
    async with sessions() as session:
        rows = await session.scalars(
            select(PetitionEvent).where(PetitionEvent.workflow_id == workflow_id)
            .order_by(PetitionEvent.at, PetitionEvent.id))
        return [{"at": r.at.isoformat(), "seq": r.seq, "action": r.action,
                 "actor": f"{r.actor_id}:{r.actor_role}:{r.actor_unit}",
                 "from": r.from_stage, "to": r.to_stage, "accepted": r.accepted,
                 "refusal": r.refusal} for r in rows]


async def read_model_row(sessions: async_sessionmaker[AsyncSession],
                         workflow_id: str) -> dict[str, Any] | None:
    async with sessions() as session:
        row = await session.scalar(select(Petition).where(Petition.workflow_id == workflow_id))
    return None if row is None else {c: _plain(getattr(row, c)) for c in LIST_COLUMNS}


async def show_petition(client: Client, sessions: async_sessionmaker[AsyncSession],
                        workflow_id: str) -> dict[str, Any]:
    """The workflow's status; if it cannot answer (no worker), the read model's row."""
    handle = client.get_workflow_handle_for(PetitionWorkflow.run, workflow_id)
    shown: dict[str, Any]
    try:
        status = await handle.query(PetitionWorkflow.status, rpc_timeout=QUERY_TIMEOUT)
        shown = {"status": status.model_dump(mode="json")}
    except RPCError as err:
        row = await read_model_row(sessions, workflow_id)
        if row is None:
            raise QueryError(f"no petition {workflow_id}: {err.message}") from None
        shown = {"status": None, "read_model": row,
                 "note": f"the workflow did not answer ({err.message}); the read model shows "
                         "its last recorded state"}
    return {**shown, "audit_trail": await audit_trail(sessions, workflow_id)}
