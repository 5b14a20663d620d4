"""Judicial and hardship assistance: application, decision within the cap, payment once."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.common import (
    Clock,
    find_by_key,
    integrity_refusal,
    refusal_error,
    refuse,
    utc_now,
    write_once,
)
from activities.contracts import (
    AssistanceApplicationInput,
    AssistanceDecisionInput,
    AssistanceDecisionResult,
    DisbursementInput,
    DisbursementResult,
)
from adapters.engine import unit_of_work
from adapters.tables import AssistanceApplication, AssistancePayment, Petition
from domain.policy import load_profile
from domain.rules import assistance_amount_refusal
from security.sealing import Vault


def payment_key(workflow_id: str, application_no: int) -> str:
    return f"{workflow_id}:assistance:{application_no}:payment"


def check_decision(decision: AssistanceDecisionInput, requested: Decimal) -> Decimal | None:
    """The amount to approve, or a refusal: the domain's rule (`domain.rules`), applied
    again here because this activity is what pays."""
    if not decision.approved:
        return None
    amount = decision.amount_yuan or requested
    refusal = assistance_amount_refusal(
        amount=amount, requested=requested, role=decision.decided_by.role,
        exception_approved=decision.exception_approved, cap_yuan=decision.cap_yuan,
        leader_threshold_yuan=decision.leader_threshold_yuan)
    if refusal is not None:
        raise refusal_error(refusal)
    return amount


class AssistanceDesk:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock = utc_now,
        after_payment_written: Callable[[str], None] | None = None,
        *,
        vault: Vault,
    ):
        self._sessions = sessions
        self._vault = vault
        self._clock = clock
        # Fault-drill hook: called after the payment is committed, before the activity
        # returns, to prove a crash at the worst moment never pays twice.
        self._after_payment_written = after_payment_written

    @activity.defn
    async def file_assistance_application(self, application: AssistanceApplicationInput) -> int:
        key = f"{application.workflow_id}:{application.seq}:assistance"

        async def write(session: AsyncSession) -> int:
            session.add(AssistanceApplication(
                idempotency_key=key, petition_id=application.petition_id,
                application_no=application.application_no, kind=application.kind,
                amount_yuan=application.amount_yuan, persons=application.persons,
                reason_sealed=await self._vault.seal(
                    application.reason.encode(), f"assistance_applications.reason:{key}"),
                requested_by=application.requested_by,
                requested_at=application.requested_at,
            ))
            await session.flush()
            return application.application_no

        return await write_once(self._sessions, AssistanceApplication, key, write,
                                lambda row: row.application_no)

    @activity.defn
    async def decide_assistance(
        self, decision: AssistanceDecisionInput
    ) -> AssistanceDecisionResult:
        async with unit_of_work(self._sessions) as session:
            app = await self._application(session, decision.petition_id, decision.application_no)
            outcome = "approved" if decision.approved else "refused"
            if app.status != "requested":
                same = app.status == outcome or (outcome == "approved" and app.status == "paid")
                if same and app.decided_by == decision.decided_by.id:
                    return _result(app)  # the same decision, retried
                raise refuse("assistance",
                             f"application {app.application_no} is already {app.status}")
            amount = check_decision(decision, app.amount_yuan)
            app.status, app.approved_amount_yuan = outcome, amount
            app.exception_approved = decision.exception_approved
            app.cap_yuan = decision.cap_yuan
            app.decided_by, app.decided_at = decision.decided_by.id, decision.decided_at
            await session.commit()
            return _result(app)

    @activity.defn
    async def disburse_assistance(self, payment: DisbursementInput) -> DisbursementResult:
        """Pay an approved application once: the ledger's unique key is the guarantee.

        A retry (after a crash between the commit and the answer) finds the payment and
        returns it; a concurrent attempt waits on the application's row lock and then
        finds it too. The cap is checked again here, against the cap recorded with the
        decision: a payment above it needs the approved exception on record.
        """
        key = payment_key(payment.workflow_id, payment.application_no)
        async with unit_of_work(self._sessions) as session:
            paid = await find_by_key(session, AssistancePayment, key)
            if paid is not None:
                return _paid(paid)
            app = await self._application(session, payment.petition_id, payment.application_no)
            paid = await find_by_key(session, AssistancePayment, key)  # under the row lock
            if paid is not None:
                return _paid(paid)
            if app.status != "approved" or app.approved_amount_yuan is None:
                raise refuse("assistance", f"application {app.application_no} is {app.status}, "
                             "not approved for payment")
            cap = app.cap_yuan if app.cap_yuan is not None else await self._profile_cap(
                session, payment.petition_id)
            if app.approved_amount_yuan > cap and not app.exception_approved:
                raise refuse("assistance:cap", f"{app.approved_amount_yuan} yuan exceeds the cap "
                             f"of {cap} yuan without an approved exception: not paid")
            row = AssistancePayment(
                idempotency_key=key, application_id=app.id, petition_id=payment.petition_id,
                amount_yuan=app.approved_amount_yuan, persons=app.persons,
                payment_ref=f"PAY-{payment.petition_id}-{app.application_no}",
                paid_at=self._clock(),
            )
            session.add(row)
            app.status = "paid"
            try:
                await session.commit()
            except IntegrityError as err:
                raise integrity_refusal(err, f"payment {key}") from None
        if self._after_payment_written is not None:
            self._after_payment_written(key)
        return _paid(row)

    async def _profile_cap(self, session: AsyncSession, petition_id: int) -> Decimal:
        profile = await session.scalar(select(Petition.profile).where(Petition.id == petition_id))
        if profile is None:
            raise refuse("assistance", f"no petition {petition_id}")
        return load_profile(profile).assistance.cap_yuan

    async def _application(
        self, session: AsyncSession, petition_id: int, number: int
    ) -> AssistanceApplication:
        app = await session.scalar(
            select(AssistanceApplication)
            .where(AssistanceApplication.petition_id == petition_id,
                   AssistanceApplication.application_no == number)
            .with_for_update()
        )
        if app is None:
            raise refuse("assistance", f"no assistance application no. {number} on this case")
        return app


def _result(app: AssistanceApplication) -> AssistanceDecisionResult:
    return AssistanceDecisionResult(application_no=app.application_no, status=app.status,
                                    approved_amount_yuan=app.approved_amount_yuan)


def _paid(row: AssistancePayment) -> DisbursementResult:
    return DisbursementResult(payment_ref=row.payment_ref, amount_yuan=row.amount_yuan,
                              paid_at=row.paid_at)
