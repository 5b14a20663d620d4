"""Registration, the audit trail and the read model, the termination registry."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.common import (
    Clock,
    advisory_lock,
    find_by_key,
    integrity_refusal,
    refuse,
    utc_now,
)
from activities.contracts import (
    RefusedStart,
    RegisterPetitionInput,
    Registration,
    TerminationInput,
    UnitLookup,
)
from adapters.directory import unit_facts
from adapters.document_tables import Document
from adapters.engine import unit_of_work
from adapters.tables import (
    Petition,
    PetitionEvent,
    RegistrationCounter,
    RegistrationNumber,
    TerminationEntry,
)
from domain.case import UnitFacts
from domain.models import (
    MAX_ATTACHMENTS,
    MAX_TOTAL_ATTACHMENT_BYTES,
    OPEN_STAGES,
    PetitionIntake,
    Stage,
)
from domain.policy import load_profile
from observability import metrics
from security.blind_index import BlindIndex
from security.sealing import Vault

BEIJING = ZoneInfo("Asia/Shanghai")  # registration years follow Beijing time


async def allocate_registration_no(
    session: AsyncSession, intake_id: str, unit: str, received_at: datetime
) -> str:
    """One number per intake, sequential per unit and year: `<unit>-<year>-<seq>`.

    The lock on the intake makes a concurrent second call wait and then find the first
    call's number; the counter row's own lock keeps the sequence free of gaps (a rolled
    back allocation rolls its increment back too).
    """
    await advisory_lock(session, f"intake:{intake_id}")
    existing = await session.get(RegistrationNumber, intake_id)
    if existing is not None:
        return existing.registration_no
    year = received_at.astimezone(BEIJING).year
    counter = (
        insert(RegistrationCounter)
        .values(unit_code=unit, year=year, last_seq=1)
        .on_conflict_do_update(
            index_elements=["unit_code", "year"],
            set_={"last_seq": RegistrationCounter.last_seq + 1},
        )
        .returning(RegistrationCounter.last_seq)
    )
    seq = (await session.execute(counter)).scalar_one()
    number = f"{unit}-{year}-{seq:06d}"
    session.add(RegistrationNumber(intake_id=intake_id, registration_no=number, unit_code=unit))
    await session.flush()
    return number


async def reserve_registration_no(
    sessions: async_sessionmaker[AsyncSession], intake: PetitionIntake
) -> str:
    """Used by intake clients before starting the workflow; safe to call again."""
    async with sessions() as session:
        if await unit_facts(session, intake.unit) is None:
            raise refuse("directory", f"unknown unit {intake.unit!r}")
        number = await allocate_registration_no(
            session, intake.intake_id, intake.unit, intake.received_at
        )
        await session.commit()
        return number


async def registered_workflow_id(sessions: async_sessionmaker[AsyncSession],
                                 intake_id: str) -> str | None:
    """The workflow id the registry holds for an intake already registered: the record
    stands, even if ids were derived differently when it was made."""
    async with sessions() as session:
        found: str | None = await session.scalar(
            select(Petition.workflow_id).where(Petition.intake_id == intake_id))
        return found


async def sealed_intake(vault: Vault, index: BlindIndex, intake: PetitionIntake
                        ) -> dict[str, Any]:
    """The petition row's personal-data columns: sealed, bound to the intake id, and the
    blind index of the ID number and phone."""
    where = f"petitions.{{}}:{intake.intake_id}"
    petitioner = intake.petitioner
    return {
        "petitioner_sealed": await vault.seal_json(petitioner.model_dump(mode="json"),
                                                   where.format("petitioner")),
        "subject_sealed": await vault.seal(intake.subject.encode(), where.format("subject")),
        "content_sealed": await vault.seal(intake.content.encode(), where.format("content")),
        "attachments_sealed": await vault.seal_json(
            [a.model_dump(mode="json") for a in intake.attachments],
            where.format("attachments")),
        "petitioner_id_index": index.id_number(petitioner.id_number),
        "petitioner_phone_index": index.phone(petitioner.phone) if petitioner.phone else None,
    }


async def check_documents(session: AsyncSession, intake: PetitionIntake,
                          petition_id: int | None, *, lock: bool = False) -> list[str]:
    """The ids of the documents the intake references, each checked: it exists, is bound
    to no petition or to this one (`petition_id`; None: not registered yet), holds the
    bytes the intake's digest names, and is the size and type the intake says; together
    they stay within the per-petition limits. Refused otherwise (rule `attachments`)."""
    referenced = [a for a in intake.attachments if a.document_id is not None]
    if not referenced:
        return []
    query = select(Document.id, Document.petition_id, Document.sha256, Document.size_bytes,
                   Document.media_type).where(
        Document.id.in_([a.document_id for a in referenced]))
    if lock:
        query = query.with_for_update()
    stored = {row.id: row for row in await session.execute(query)}
    total = 0
    for i, attachment in enumerate(intake.attachments):
        if attachment.document_id is None:
            continue
        field = f"attachments.{i}.document_id"
        row = stored.get(attachment.document_id)
        if row is None:
            raise refuse("attachments", f"no document {attachment.document_id}: upload the "
                         "file first (POST /api/v1/documents)", field)
        if row.petition_id is not None and row.petition_id != petition_id:
            raise refuse("attachments", f"document {attachment.document_id} belongs to "
                         "another petition", field)
        if row.sha256 != attachment.sha256:
            raise refuse("attachments", f"document {attachment.document_id} does not hold "
                         "the bytes of the digest given", f"attachments.{i}.sha256")
        if row.size_bytes != attachment.size_bytes:
            raise refuse("attachments", f"document {attachment.document_id} is "
                         f"{row.size_bytes} bytes, not {attachment.size_bytes}",
                         f"attachments.{i}.size_bytes")
        if row.media_type != attachment.media_type:
            raise refuse("attachments", f"document {attachment.document_id} is "
                         f"{row.media_type}, not {attachment.media_type}",
                         f"attachments.{i}.media_type")
        total += row.size_bytes
    if len(referenced) > MAX_ATTACHMENTS or total > MAX_TOTAL_ATTACHMENT_BYTES:
        raise refuse("attachments", f"{len(referenced)} documents of {total} bytes: a "
                     f"petition holds at most {MAX_ATTACHMENTS} documents and "
                     f"{MAX_TOTAL_ATTACHMENT_BYTES} bytes", "attachments")
    return [str(a.document_id) for a in referenced]


async def bind_documents(session: AsyncSession, intake: PetitionIntake,
                         petition_id: int) -> None:
    """Bind the intake's documents to its petition, in the registration's transaction:
    from then on they are the case's (downloadable by its units and its petitioner)."""
    ids = await check_documents(session, intake, petition_id, lock=True)
    if ids:
        await session.execute(update(Document).where(Document.id.in_(ids))
                              .values(petition_id=petition_id))


class PetitionRegistry:
    """Activities over the petitions registry, its audit trail and the directory."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], vault: Vault,
                 index: BlindIndex, clock: Clock = utc_now):
        self._sessions = sessions
        self._vault = vault
        self._index = index
        self._clock = clock

    @activity.defn
    async def register_petition(self, command: RegisterPetitionInput) -> Registration:
        """Registry row, registration number and repeat check, in one transaction.

        Registrations on one matter are serialised (an advisory lock on the matter key),
        so two intakes on the same matter arriving together cannot both open a case: the
        second sees the first and attaches to it. A retry finds its own row by intake id
        and answers exactly as the first attempt did.
        """
        intake = command.intake
        profile = load_profile(intake.profile)
        key = self._index.matter_key(intake)
        async with unit_of_work(self._sessions) as session:
            unit = await unit_facts(session, intake.unit)
            if unit is None:
                raise refuse("directory", f"unknown unit {intake.unit!r}")
            await advisory_lock(session, f"matter:{key}")
            row = await session.scalar(
                select(Petition).where(Petition.intake_id == intake.intake_id)
            )
            if row is None:
                row = await self._insert(session, command, unit, key)
                open_case = await self._open_case(session, row)
                if open_case is not None:
                    # Counted on the open case, not opened again: this row is closed at once
                    # so it never shows as an open case in the read model.
                    row.attached_to, row.stage = open_case, Stage.CLOSED
                    row.closed_at = command.registered_at
                await session.commit()
                metrics.petition_registered()
            elif row.workflow_id != command.workflow_id:
                raise refuse("registry", f"intake {intake.intake_id} is already registered "
                             f"as {row.registration_no} by {row.workflow_id}")
            return Registration(
                petition_id=row.id,
                registration_no=row.registration_no,
                unit=unit,
                profile=profile,
                repeat_of=row.repeat_of,
                concluded_case=await self._concluded_case(session, row.matter_key),
                attached_to_workflow=row.attached_to,
            )

    async def _insert(
        self, session: AsyncSession, command: RegisterPetitionInput, unit: UnitFacts, key: str
    ) -> Petition:
        intake = command.intake
        # The number the intake client reserved, or a fresh one; never one it made up.
        number = await allocate_registration_no(
            session, intake.intake_id, intake.unit, intake.received_at
        )
        if command.registration_no is not None and command.registration_no != number:
            raise refuse("registry", f"registration number {command.registration_no} was not "
                         f"reserved for intake {intake.intake_id} (it holds {number})")
        earlier = await session.scalar(
            select(Petition.registration_no)
            .where(Petition.matter_key == key)
            .order_by(Petition.registered_at.desc(), Petition.id.desc())
            .limit(1)
        )
        row = Petition(
            intake_id=intake.intake_id, workflow_id=command.workflow_id, registration_no=number,
            registered_unit=unit.code, holding_unit=unit.code, channel=intake.channel,
            category=intake.category, law_related=intake.law_related, profile=intake.profile,
            persons=intake.persons, matter_key=key, stage=Stage.REGISTERED,
            **await sealed_intake(self._vault, self._index, intake),
            received_at=intake.received_at, registered_at=command.registered_at,
            repeat_of=earlier,
        )
        session.add(row)
        try:
            await session.flush()
        except IntegrityError as err:
            # The workflow id is unique: another intake already registered under it.
            raise integrity_refusal(err, f"registration of intake {intake.intake_id}") from None
        await bind_documents(session, intake, row.id)
        return row

    async def _concluded_case(self, session: AsyncSession, key: str) -> str | None:
        return await session.scalar(
            select(TerminationEntry.registration_no)
            .where(TerminationEntry.matter_key == key)
            .order_by(TerminationEntry.concluded_at.desc())
            .limit(1)
        )

    async def _open_case(self, session: AsyncSession, row: Petition) -> str | None:
        """An earlier open case on the same matter: the new intake attaches to it."""
        return await session.scalar(
            select(Petition.workflow_id)
            .where(
                Petition.matter_key == row.matter_key,
                Petition.stage.in_([s.value for s in OPEN_STAGES]),
                Petition.id < row.id,
            )
            .order_by(Petition.id)
            .limit(1)
        )

    @activity.defn
    async def record_refused_start(self, refused: RefusedStart) -> None:
        """Audit a start that skipped the petition service (no valid assertion): nothing
        is registered, and who sent it is unknown, so the row names no actor."""
        async with self._sessions() as session:
            await session.execute(insert(PetitionEvent).values(
                petition_id=None, workflow_id=refused.workflow_id,
                idempotency_key=f"{refused.workflow_id}:{refused.run_id}:refused-start",
                seq=None, action="start", actor_id="unverified", actor_role="unverified",
                actor_unit="unverified", accepted=False,
                refusal=f"refused [{refused.rule}]: {refused.message}",
                detail={"via": "assertion"}, at=refused.at,
            ).on_conflict_do_nothing(index_elements=["idempotency_key"]))
            await session.commit()

    @activity.defn
    async def resolve_unit(self, lookup: UnitLookup) -> UnitFacts:
        async with self._sessions() as session:
            facts = await unit_facts(session, lookup.code)
        if facts is None:
            raise refuse("directory", f"unknown unit {lookup.code!r}")
        return facts

    @activity.defn
    async def enter_termination_registry(self, entry: TerminationInput) -> str:
        async with self._sessions() as session:
            key = await session.scalar(
                select(Petition.matter_key).where(Petition.id == entry.petition_id)
            )
            if key is None:
                raise refuse("registry", f"no petition {entry.petition_id}")
            stmt = (
                insert(TerminationEntry)
                .values(petition_id=entry.petition_id, matter_key=key,
                        registration_no=entry.registration_no, concluded_at=entry.concluded_at,
                        concluded_by_unit=entry.unit)
                .on_conflict_do_nothing(index_elements=["petition_id"])
            )
            await session.execute(stmt)
            await session.commit()
        return entry.registration_no


__all__ = ["PetitionRegistry", "allocate_registration_no", "bind_documents",
           "check_documents", "find_by_key", "reserve_registration_no"]
