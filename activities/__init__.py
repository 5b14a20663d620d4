"""Activity desks, built once with their dependencies and handed to the worker."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.assistance import AssistanceDesk
from activities.common import Clock, utc_now
from activities.deadlines import DeadlineCalculator
from activities.escalation import EscalationDesk
from activities.hearings import HEARING_RULES, HearingDesk, HearingRules
from activities.holiday_notices import load_notices
from activities.notices import NoticeDesk
from activities.records import TransitionRecorder
from activities.registry import PetitionRegistry
from activities.transfers import TransferDesk
from adapters.data_keys import vault_from_settings
from adapters.settings import get_settings
from domain.calendar import WorkingCalendar
from security.blind_index import BlindIndex, index_from_settings
from security.sealing import Vault


@dataclass
class ActivityDesks:
    registry: PetitionRegistry
    deadlines: DeadlineCalculator
    transfers: TransferDesk
    hearings: HearingDesk
    assistance: AssistanceDesk
    escalation: EscalationDesk
    notices: NoticeDesk
    records: TransitionRecorder
    vault: Vault
    extra: list[Callable[..., Any]] = field(default_factory=list)

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.registry.register_petition,
            self.registry.resolve_unit,
            self.registry.record_refused_start,
            self.registry.enter_termination_registry,
            self.deadlines.calendar_snapshot,
            self.transfers.issue_transfer_order,
            self.hearings.schedule_hearing,
            self.hearings.record_hearing_outcome,
            self.assistance.file_assistance_application,
            self.assistance.decide_assistance,
            self.assistance.disburse_assistance,
            self.escalation.escalate,
            self.notices.send_notice,
            self.records.record_transitions,
            *self.extra,
        ]


def build_desks(
    sessions: async_sessionmaker[AsyncSession],
    *,
    calendar: WorkingCalendar | None = None,
    clock: Clock = utc_now,
    after_payment_written: Callable[[str], None] | None = None,
    hearing_rules: HearingRules = HEARING_RULES,
    vault: Vault | None = None,
    index: BlindIndex | None = None,
) -> ActivityDesks:
    calendar = calendar or WorkingCalendar(notices=load_notices())  # docs/holidays.md
    vault = vault or vault_from_settings(get_settings(), sessions)
    index = index or index_from_settings(get_settings())
    return ActivityDesks(
        registry=PetitionRegistry(sessions, vault, index, clock),
        deadlines=DeadlineCalculator(calendar),
        transfers=TransferDesk(sessions, vault),
        hearings=HearingDesk(sessions, calendar, hearing_rules, clock, vault=vault),
        assistance=AssistanceDesk(sessions, clock, after_payment_written, vault=vault),
        escalation=EscalationDesk(sessions, vault),
        notices=NoticeDesk(sessions, vault),
        records=TransitionRecorder(sessions, vault),
        vault=vault,
    )
