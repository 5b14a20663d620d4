"""The petition API under /api/v1: register, act, status, timeline, audit trail, a unit's
case lists, the assessment report."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import BaseModel, StringConstraints, ValidationError
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from temporalio.exceptions import ApplicationError

from activities.common import refusal_of
from activities.registry import registered_workflow_id, reserve_registration_no
from adapters.petition_client import ActionRefused, PetitionNotFound
from adapters.settings import get_settings
from adapters.tables import Petition, PetitionEvent, QueryCode
from domain.case import PetitionStatus, TimelineEntry
from domain.lifecycle import TABLE, payload_schema
from domain.models import LATEST, Action, Actor, Category, PetitionIntake, Stage
from domain.rules import Refusal
from observability import metrics
from security.query_code import query_codes_from_settings
from service.access import actor_for, case_row, staff_may_see, unit_refusal
from service.auth.hashing import hash_secret_async
from service.auth.principal import Caller, Principal, require_staff
from service.context import ServiceContext, context
from service.documents import check_intake_documents
from service.params import RegistrationNo, UnitCode
from service.problems import (
    SIGNED_IN,
    Problem,
    from_validation_error,
    problem_responses,
    refused,
)
from starter.intake import IntakeError, check_profile, static_summary
from starter.queries import MAX_LIST, PetitionFilter, audit_trail, list_petitions

router = APIRouter(prefix="/api/v1")
Ctx = Annotated[ServiceContext, Depends(context)]
PERSON_ACTIONS = [row.action for row in TABLE.values() if not row.system]
REQUEST_ID = r"^[!-~]{1,64}$"
# The dates a list or a report may ask about: no petition data before 1990 (as `petition
# report` says) and nothing past the domain's horizon. Outside, date arithmetic overflowed
# into a 500 (found probing beside the Schemathesis run: `?registered_from=0001-01-01`,
# `?period=9999`).
FIRST_DAY = date(1990, 1, 1)
LAST_DAY = date(LATEST.year - 1, 12, 31)


def _within_horizon(name: str, day: date | None) -> None:
    if day is not None and not FIRST_DAY <= day <= LAST_DAY:
        raise Problem(422, f"{name}: must lie between {FIRST_DAY} and {LAST_DAY}",
                      kind="validation", field=name)


class Registered(BaseModel):
    registration_no: str
    workflow_id: str
    stage: Stage | None
    # The petitioner's query code (查询码): in the first answer only. Derived from the
    # registration number by a keyed HMAC (security/query_code.py) and printed on every
    # notice; the database keeps only an argon2id hash of it (and the lockout counters).
    query_code: str | None = None


# ------------------------------------------------------------------------- audit


async def audit_refused(ctx: ServiceContext, workflow_id: str, action: Action | str,
                        who: Principal, actor: Actor | None, request_id: str,
                        message: str, via: str) -> None:
    """A refusal leaves no trace in the workflow history: the audit trail gets it here
    (as `starter.actions.record_refused` does for the CLI)."""
    key = f"{workflow_id}:service-refused:{request_id}"
    async with ctx.sessions() as session:
        petition_id = await session.scalar(
            select(Petition.id).where(Petition.workflow_id == workflow_id))
        await session.execute(insert(PetitionEvent).values(
            petition_id=petition_id, workflow_id=workflow_id, idempotency_key=key, seq=None,
            action=str(action)[:40], actor_id=(actor.id if actor else who.subject)[:64],
            actor_role=(actor.role.value if actor else who.kind),
            actor_unit=(actor.unit if actor else "-"), accepted=False, refusal=message,
            detail={"via": via, "principal": who.kind, "subject": who.subject},
            at=datetime.now(UTC)).on_conflict_do_nothing(index_elements=["idempotency_key"]))
        await session.commit()


# --------------------------------------------------------------------- register


@router.post("/petitions", response_model=Registered, status_code=201, tags=["intake"],
             summary="Register a petition (intake clients; idempotent on intake_id)",
             responses={200: {"model": Registered, "description": "registered before"},
                        **problem_responses(*SIGNED_IN, 503)})
async def register(intake: PetitionIntake, who: Caller, ctx: Ctx,
                   response: Response) -> Registered:
    answer = await register_intake(ctx, who, intake)
    if answer.query_code is None:
        response.status_code = 200
    return answer


async def register_intake(ctx: ServiceContext, who: Principal,
                          intake: PetitionIntake) -> Registered:
    """An intake client's registration, as the API and the online intake page take it:
    the client registers for the unit, a known profile, the documents checked, the number
    reserved, the workflow started (idempotent on the intake id), and the query code if
    this is its first answer. Raises Problem (403, 422, 503)."""
    if who.kind != "client":
        raise Problem(403, "only a registered intake client may register petitions",
                      kind="forbidden")
    if intake.unit not in who.units:
        raise Problem(403, f"intake client {who.subject} does not register for {intake.unit}",
                      kind="refused", rule="unit", field="unit")
    try:
        check_profile(intake)
    except IntakeError as err:
        raise Problem(422, str(err).removeprefix("intake: "), kind="validation",
                      field="profile") from None
    # The documents it references exist and match before any workflow starts (422).
    await check_intake_documents(ctx, intake)
    try:
        number = await reserve_registration_no(ctx.sessions, intake)
    except ApplicationError as err:
        raise refused(refusal_of(err), 422) from None
    status = await ctx.petitions.submit(
        intake, number, workflow_id=await registered_workflow_id(ctx.sessions, intake.intake_id),
        static_summary=static_summary(intake, number),
        static_details=f"Petition registered as {number}. Deadlines under profile "
                       f"`{intake.profile}`.")
    code = await _first_query_code(ctx, status.workflow_id)
    return Registered(registration_no=status.registration_no or number,
                      workflow_id=status.workflow_id, stage=status.stage, query_code=code)


async def _first_query_code(ctx: ServiceContext, workflow_id: str) -> str | None:
    """The case's query code if it was not given yet (then shown this once)."""
    async with ctx.sessions() as session:
        found = (await session.execute(
            select(Petition.id, Petition.registration_no)
            .where(Petition.workflow_id == workflow_id))).first()
        if found is None or await session.get(QueryCode, found.id) is not None:
            return None
    code = query_codes_from_settings(get_settings()).code_for(found.registration_no)
    # The sign-in (service/auth/routes.py) verifies this hash, so codes drawn at random
    # before codes were derived keep signing in.
    code_hash = await hash_secret_async(code)
    async with ctx.sessions() as session:
        created = await session.scalar(insert(QueryCode).values(
            petition_id=found.id, code_hash=code_hash)
            .on_conflict_do_nothing(index_elements=["petition_id"])
            .returning(QueryCode.petition_id))
        await session.commit()
    return code if created is not None else None


# -------------------------------------------------------------------------- act


async def _json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise Problem(422, f"the body is not JSON: {err}", kind="validation",
                      field="body") from None
    if not isinstance(value, dict):
        raise Problem(422, "the body must be a JSON object", kind="validation", field="body")
    return value


async def take_action(ctx: ServiceContext, who: Principal, registration_no: str,
                      action: Action, body: dict[str, Any], request_id: str) -> PetitionStatus:
    """One person's action on one case, as the API and the pages take it: the actor from
    the verified identity and the directory, the payload validated against the action's
    command, refusals audited. Raises Problem (404, 409 refused, 422 invalid, 503)."""
    row = await case_row(ctx, registration_no)
    actor, refusal = await actor_for(ctx, who, row, action)
    if refusal is not None:
        await audit_refused(ctx, row.workflow_id, action, who, actor, request_id,
                            str(refusal), via="service")
        metrics.action_taken(action.value, refused=True)
        raise refused(refusal)
    assert actor is not None
    for name in ("actor", "request_id"):
        if name in body:
            raise Problem(422, f"{name} is set by the service from the verified "
                          "identity and the Idempotency-Key header", kind="validation",
                          field=name)
    try:
        command = TABLE[action].command.model_validate(
            {**body, "actor": actor, "request_id": request_id})
    except ValidationError as err:
        raise from_validation_error(err) from None
    try:
        status = await ctx.petitions.act(row.workflow_id, command)
    except ActionRefused as err:
        await audit_refused(ctx, row.workflow_id, action, who, actor, request_id,
                            str(err.refusal), via="update")
        metrics.action_taken(action.value, refused=True)
        raise refused(err.refusal) from None
    except PetitionNotFound:
        raise Problem(404, f"no running petition {registration_no}",
                      kind="not-found") from None
    assert status is not None
    metrics.action_taken(action.value, refused=False)
    return status


def _action_route(action: Action) -> Callable[..., Awaitable[PetitionStatus]]:
    async def act(registration_no: RegistrationNo, request: Request, who: Caller,
                  ctx: Ctx,
                  idempotency_key: Annotated[str | None, Header(
                      alias="Idempotency-Key", pattern=REQUEST_ID)] = None) -> PetitionStatus:
        request_id = idempotency_key or uuid.uuid4().hex
        # The case and the caller's part in it first: a stranger learns nothing of the body.
        row = await case_row(ctx, registration_no)
        _, refusal = await actor_for(ctx, who, row, action)
        body = {} if refusal is not None else await _json_object(request)
        return await take_action(ctx, who, registration_no, action, body, request_id)

    act.__name__ = f"act_{action.value}"
    return act


def _add_action_routes() -> None:
    for action in PERSON_ACTIONS:
        row = TABLE[action]
        router.add_api_route(
            f"/petitions/{{registration_no}}/actions/{action.value}", _action_route(action),
            methods=["POST"], response_model=PetitionStatus, tags=["actions"],
            responses=problem_responses(*SIGNED_IN, 404, 409, 503),
            summary=f"{action.value}: {row.description}"[:120],
            description=f"{row.description} ({row.article}). Allowed to: "
                        f"{', '.join(sorted(r.value for r in row.roles))}. The body is the "
                        f"action's payload; the actor comes from the bearer token.",
            openapi_extra={"requestBody": {"required": False, "content": {
                "application/json": {"schema": payload_schema(row.command)}}}})


_add_action_routes()


# ------------------------------------------------------------------------ read


async def _readable(ctx: ServiceContext, who: Principal, registration_no: str) -> Petition:
    row = await case_row(ctx, registration_no)
    _, refusal = await actor_for(ctx, who, row, None)
    if refusal is not None:
        raise refused(refusal)
    return row


@router.get("/petitions/{registration_no}", response_model=PetitionStatus, tags=["read"],
            responses=problem_responses(*SIGNED_IN, 404, 503))
async def status(registration_no: RegistrationNo, who: Caller,
                 ctx: Ctx) -> PetitionStatus:
    row = await _readable(ctx, who, registration_no)
    try:
        return await ctx.petitions.status(row.workflow_id)
    except PetitionNotFound:
        raise Problem(404, f"no petition {registration_no}", kind="not-found") from None


@router.get("/petitions/{registration_no}/timeline", response_model=list[TimelineEntry],
            tags=["read"], responses=problem_responses(*SIGNED_IN, 404, 503))
async def timeline(registration_no: RegistrationNo, who: Caller,
                   ctx: Ctx) -> list[TimelineEntry]:
    row = await _readable(ctx, who, registration_no)
    try:
        return await ctx.petitions.timeline(row.workflow_id)
    except PetitionNotFound:
        raise Problem(404, f"no petition {registration_no}", kind="not-found") from None


@router.get("/petitions/{registration_no}/audit", tags=["read"],
            responses=problem_responses(*SIGNED_IN, 404),
            summary="The audit trail: every transition and every refused action (staff)")
async def audit(registration_no: RegistrationNo, who: Caller,
                ctx: Ctx) -> list[dict[str, Any]]:
    require_staff(who)
    row = await _readable(ctx, who, registration_no)
    return await audit_trail(ctx.sessions, row.workflow_id)


# How many of a petitioner's cases a lookup considers before visibility is applied.
LOOKUP_SCAN = 1000
audit_log = logging.getLogger("petition.audit")


class PetitionerLookup(BaseModel):
    """In the body, never the URL: a URL ends up in access logs and browser history."""

    model_config = {"extra": "forbid"}
    id_number: Annotated[str, StringConstraints(pattern=r"^[0-9]{17}[0-9Xx]$")] | None = None
    phone: Annotated[str, StringConstraints(pattern=r"^\+?[0-9 -]{5,24}$")] | None = None


class FoundCase(BaseModel):
    registration_no: str
    stage: str
    registered_at: datetime
    holding_unit: str


@router.post("/petitions/lookup", response_model=list[FoundCase], tags=["read"],
             responses=problem_responses(*SIGNED_IN, 422),
             summary="A petitioner's cases, found by ID number or phone (staff)")
async def lookup(query: PetitionerLookup, who: Caller, ctx: Ctx) -> list[FoundCase]:
    """Exact match through the blind index: the database holds neither the ID number nor
    the phone, only their keyed HMACs. Only the cases this member of staff may see."""
    actor = require_staff(who)
    if ctx.index is None:
        raise Problem(503, "lookups by ID number or phone are not configured here")
    if (query.id_number is None) == (query.phone is None):
        raise Problem(422, "give exactly one of id_number and phone", kind="validation")
    kind = "id_number" if query.id_number else "phone"
    column, value = ((Petition.petitioner_id_index, ctx.index.id_number(query.id_number))
                     if query.id_number else
                     (Petition.petitioner_phone_index, ctx.index.phone(query.phone or "")))
    async with ctx.sessions() as session:  # newest first; visibility decides what is shown
        rows = (await session.scalars(select(Petition).where(column == value)
                                      .order_by(Petition.registered_at.desc())
                                      .limit(LOOKUP_SCAN))).all()
    found = [FoundCase(registration_no=r.registration_no, stage=r.stage,
                       registered_at=r.registered_at, holding_unit=r.holding_unit)
             for r in rows if await staff_may_see(ctx, actor, r)][:MAX_LIST]
    # Who searched for a petitioner is itself recorded: never the value or its HMAC.
    audit_log.info("petitioner lookup by %s (%s, %s) on %s: %d of %d cases shown",
                   actor.id, actor.role.value, actor.unit, kind, len(found), len(rows))
    return found


@router.get("/units/{unit}/petitions", tags=["read"],
            responses=problem_responses(*SIGNED_IN),
            summary="A unit's petitions (registered at, held by or responsible for it)")
async def unit_petitions(
        unit: UnitCode, who: Caller, ctx: Ctx,
        stage: Stage | None = None, overdue: bool = False, category: Category | None = None,
        registered_from: date | None = None, registered_to: date | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 50) -> list[dict[str, Any]]:
    actor = require_staff(who)
    why = await unit_refusal(ctx, actor, unit)
    if why is not None:
        raise refused(Refusal("unit", why))
    _within_horizon("registered_from", registered_from)
    _within_horizon("registered_to", registered_to)
    try:
        where = PetitionFilter(unit=unit, stage=stage, overdue=overdue, category=category,
                               registered_from=registered_from, registered_to=registered_to,
                               limit=limit)
    except ValidationError as err:
        raise from_validation_error(err) from None
    return await list_petitions(ctx.sessions, where)


@router.get("/reports/{unit}", tags=["reports"],
            summary="The assessment report of a unit for one period (JSON or CSV)",
            responses={200: {"content": {"application/json": {}, "text/csv": {}}},
                       **problem_responses(*SIGNED_IN, 404)})
async def report(unit: UnitCode, who: Caller, ctx: Ctx,
                 period: Annotated[str | None, Query(max_length=20)] = None,
                 format: Literal["json", "csv"] = "json",
                 by: Literal["territory", "line"] = "line") -> Response:
    from reports.metrics import UnknownUnitError
    from reports.periods import PeriodError, PeriodKind, current_period, parse_period
    from reports.render import as_csv, as_json
    from reports.report import RollUp, build_report

    actor = require_staff(who)
    why = await unit_refusal(ctx, actor, unit)
    if why is not None:
        raise refused(Refusal("unit", why))
    try:
        chosen = parse_period(period) if period else current_period(PeriodKind.MONTH)
    except PeriodError as err:
        raise Problem(422, str(err), kind="validation", field="period") from None
    _within_horizon("period", chosen.first_day)
    try:
        built = await build_report(ctx.sessions, unit, chosen, by=RollUp(by))
    except UnknownUnitError as err:
        raise Problem(404, str(err), kind="not-found") from None
    if format == "csv":
        return Response(as_csv(built), media_type="text/csv; charset=utf-8")
    return Response(as_json(built), media_type="application/json")
