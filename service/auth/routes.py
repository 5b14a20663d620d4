"""Sign-in: `POST /auth/token` (OAuth2 password grant for local staff accounts, client
credentials for intake systems) and `POST /auth/petitioner` (registration number and
query code). Failures count; after `lockout_failures` in a row the account or the query
code is locked for `lockout_minutes`, even to the right secret."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from adapters.settings import get_settings
from adapters.tables import IntakeClient, Petition, QueryCode, StaffAccount
from security.query_code import query_codes_from_settings
from service.auth.hashing import verify_secret_async
from service.auth.principal import staff_actor
from service.context import ServiceContext, context
from service.params import KEY_PATTERN
from service.problems import Problem, problem_responses

router = APIRouter(prefix="/auth", tags=["authentication"])
Ctx = Annotated[ServiceContext, Depends(context)]


class TokenAnswer(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


class PetitionerSignIn(BaseModel):
    registration_no: str = Field(min_length=1, max_length=64, pattern=KEY_PATTERN)
    query_code: str = Field(min_length=1, max_length=32)


def _bad_credentials(detail: str = "the credentials are not valid") -> Problem:
    return Problem(401, detail, kind="invalid-credentials",
                   headers={"WWW-Authenticate": 'Bearer realm="petition-flow"'})


def _locked(until: datetime, now: datetime) -> Problem:
    wait = max(1, math.ceil((until - now).total_seconds()))
    return Problem(401, f"locked after repeated failures; try again after {wait} s",
                   kind="locked", headers={"Retry-After": str(wait)},
                   locked_until=until.isoformat())


def _count_failure(row: Any, ctx: ServiceContext, now: datetime) -> None:
    row.failed_attempts += 1
    if row.failed_attempts >= ctx.settings.lockout_failures:
        row.locked_until = now + timedelta(minutes=ctx.settings.lockout_minutes)
        row.failed_attempts = 0


async def _staff_token(ctx: ServiceContext, username: str, password: str) -> TokenAnswer:
    now = datetime.now(UTC)
    async with ctx.sessions() as session, session.begin():
        account = await session.scalar(select(StaffAccount).where(
            StaffAccount.person_id == username).with_for_update())
        if account is not None and account.locked_until is not None \
                and account.locked_until > now:
            raise _locked(account.locked_until, now)
        ok = await verify_secret_async(account.password_hash if account else None, password)
        if account is None:
            raise _bad_credentials()
        if not ok:
            _count_failure(account, ctx, now)
            locked = account.locked_until is not None and account.locked_until > now
        else:
            account.failed_attempts = 0
            account.locked_until = None
            locked = False
    if not ok:
        raise _locked(account.locked_until, now) if locked and account.locked_until \
            else _bad_credentials()
    if await staff_actor(ctx, username) is None:
        raise _bad_credentials("the person is not staff in the organisation directory")
    token, lifetime = ctx.tokens.issue(
        "staff", username, timedelta(minutes=ctx.settings.staff_token_minutes))
    return TokenAnswer(access_token=token, expires_in=lifetime)


async def _client_token(ctx: ServiceContext, client_id: str, secret: str) -> TokenAnswer:
    async with ctx.sessions() as session:
        client = await session.scalar(select(IntakeClient).where(
            IntakeClient.client_id == client_id, IntakeClient.active.is_(True)))
    ok = await verify_secret_async(client.secret_hash if client else None, secret)
    if client is None or not ok:
        raise _bad_credentials()
    token, lifetime = ctx.tokens.issue(
        "client", client_id, timedelta(minutes=ctx.settings.client_token_minutes))
    return TokenAnswer(access_token=token, expires_in=lifetime)


@router.post("/token", response_model=TokenAnswer, summary="Sign in (local account or "
             "intake client)", responses=problem_responses(401))
async def token(
        ctx: Ctx,
        grant_type: Annotated[str, Form(pattern="^(password|client_credentials)$")],
        username: Annotated[str | None, Form(max_length=64, pattern=KEY_PATTERN)] = None,
        password: Annotated[str | None, Form(max_length=256)] = None,
        client_id: Annotated[str | None, Form(max_length=64, pattern=KEY_PATTERN)] = None,
        client_secret: Annotated[str | None, Form(max_length=256)] = None,
        scope: Annotated[str, Form(max_length=500)] = "") -> TokenAnswer:
    """OAuth2 token endpoint: `grant_type=password` with `username` (the directory person
    id) and `password`; `grant_type=client_credentials` with `client_id` and
    `client_secret`."""
    if grant_type == "password":
        if not username or password is None:
            raise Problem(422, "username and password are required", kind="validation",
                          field="username" if not username else "password")
        return await _staff_token(ctx, username, password)
    if not client_id or client_secret is None:
        raise Problem(422, "client_id and client_secret are required", kind="validation",
                      field="client_id" if not client_id else "client_secret")
    return await _client_token(ctx, client_id, client_secret)


@router.post("/petitioner", response_model=TokenAnswer,
             summary="A petitioner proves a case with its registration number and query code",
             responses=problem_responses(401))
async def petitioner(ctx: Ctx, body: PetitionerSignIn) -> TokenAnswer:
    return await petitioner_token(ctx, body.registration_no, body.query_code)


async def petitioner_token(ctx: ServiceContext, registration_no: str,
                           query_code: str) -> TokenAnswer:
    """The petitioner's sign-in with the case's registration number and query code (the
    API's `POST /auth/petitioner` and the page `/track`): 401 `invalid-credentials` alike
    whether the number is unknown or the code wrong; failures count toward the lockout
    (401 `locked`, with Retry-After)."""
    now = datetime.now(UTC)
    async with ctx.sessions() as session, session.begin():
        found = (await session.execute(
            select(Petition.id, Petition.workflow_id)
            .where(Petition.registration_no == registration_no))).first()
        ok = False
        if found is not None:
            # The code is derived from the registration number (security/query_code.py),
            # whoever registered the case; the row only counts failures for the lockout.
            await session.execute(insert(QueryCode).values(
                petition_id=found.id, code_hash="derived").on_conflict_do_nothing(
                index_elements=["petition_id"]))
            code = (await session.scalars(select(QueryCode).where(
                QueryCode.petition_id == found.id).with_for_update())).one()
            if code.locked_until is not None and code.locked_until > now:
                raise _locked(code.locked_until, now)
            ok = query_codes_from_settings(get_settings()).matches(
                registration_no, query_code)
            if ok:
                code.failed_attempts = 0
                code.locked_until = None
            else:
                _count_failure(code, ctx, now)
    if found is None or not ok:
        raise _bad_credentials("the registration number and query code do not match a case")
    workflow_id = found.workflow_id
    token, lifetime = ctx.tokens.issue(
        "petitioner", f"petitioner-{registration_no}",
        timedelta(minutes=ctx.settings.petitioner_token_minutes),
        wf=workflow_id, reg=registration_no)
    return TokenAnswer(access_token=token, expires_in=lifetime)
