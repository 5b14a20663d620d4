"""The verified caller of a request, from its bearer token: the service's own (staff,
intake client, petitioner) or the identity provider's (OIDC). A staff actor's role and
unit come from the directory on every request, never from the token or the caller."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select

from adapters.tables import IntakeClient, Person, Unit
from domain.models import Actor, Role
from service.auth.tokens import TokenError
from service.context import ServiceContext, context
from service.problems import Problem

# Directory roles of people (people.role) as actor roles.
DIRECTORY_ROLES = {r.value: r for r in (Role.HANDLER, Role.UNIT_HEAD, Role.LEADER,
                                        Role.SUPERVISOR, Role.INTAKE_CLERK)}
OIDC_SERVICE_ACCOUNT = "service-account-"
# The browser's session (service/pages.py): a staff token of this service in an HttpOnly,
# SameSite=Lax cookie. Used only when no bearer token is sent; for a method that changes
# anything only with an `X-Requested-With` header, which a cross-site form cannot send and a
# cross-origin script cannot send without a CORS preflight (this service allows none).
SESSION_COOKIE = "petition_session"
COOKIE_CSRF_HEADER = "X-Requested-With"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

bearer = HTTPBearer(auto_error=False, description="A bearer token from POST /auth/token, "
                    "POST /auth/petitioner or the bureau's OpenID Connect provider")


@dataclass(frozen=True)
class Principal:
    kind: Literal["staff", "client", "petitioner"]
    subject: str  # person id, client id, or petitioner-<registration no>
    actor: Actor | None = None  # staff: from the directory
    units: tuple[str, ...] = ()  # intake client: the units it registers for
    workflow_id: str | None = None  # petitioner: the one case
    registration_no: str | None = None


def unauthenticated(detail: str) -> Problem:
    return Problem(401, detail, kind="unauthenticated",
                   headers={"WWW-Authenticate": 'Bearer realm="petition-flow"'})


async def staff_actor(ctx: ServiceContext, person_id: str) -> Actor | None:
    """The person's actor from the directory: their role and unit. A unit head only if the
    unit names them as its head."""
    async with ctx.sessions() as session:
        person = await session.get(Person, person_id)
        if person is None or person.role not in DIRECTORY_ROLES:
            return None
        role = DIRECTORY_ROLES[person.role]
        if role is Role.UNIT_HEAD:
            unit = await session.get(Unit, person.unit_code)
            if unit is None or unit.head_id != person.id:
                role = Role.HANDLER
        return Actor(id=person.id, role=role, unit=person.unit_code)


async def client_principal(ctx: ServiceContext, client_id: str) -> Principal | None:
    async with ctx.sessions() as session:
        client = await session.scalar(select(IntakeClient).where(
            IntakeClient.client_id == client_id, IntakeClient.active.is_(True)))
    if client is None:
        return None
    return Principal("client", client_id, units=tuple(client.units))


async def _from_token(ctx: ServiceContext, token: str) -> Principal:
    if ctx.tokens.is_ours(token):
        claims = ctx.tokens.verify(token)
        if claims.kind == "petitioner":
            return Principal("petitioner", claims.subject, workflow_id=claims.workflow_id,
                             registration_no=claims.registration_no)
        if claims.kind == "client":
            found = await client_principal(ctx, claims.subject)
            if found is None:
                raise TokenError("the intake client is unknown or no longer active")
            return found
        actor = await staff_actor(ctx, claims.subject)
        if actor is None:
            raise TokenError("the person is no longer in the directory")
        return Principal("staff", claims.subject, actor=actor)
    if ctx.oidc is None:
        raise TokenError("invalid token")
    oidc_claims = await ctx.oidc.verify(token)
    username = str(oidc_claims.get("preferred_username") or "")
    if username.startswith(OIDC_SERVICE_ACCOUNT):  # an intake system (client credentials)
        found = await client_principal(ctx, str(oidc_claims.get("azp") or ""))
        if found is None:
            raise TokenError("the provider's client is not a registered intake client")
        return found
    if not username:
        raise TokenError("the token names no preferred_username")
    actor = await staff_actor(ctx, username)
    if actor is None:
        raise TokenError(f"{username} is not staff in the organisation directory")
    return Principal("staff", username, actor=actor)


async def _from_session_cookie(ctx: ServiceContext, cookie: str) -> Principal:
    """A browser's signed-in staff session: only this service's own staff tokens."""
    if not ctx.tokens.is_ours(cookie):
        raise unauthenticated("the session is not valid; sign in again")
    try:
        found = await _from_token(ctx, cookie)
    except TokenError as err:
        raise unauthenticated(f"the session is not valid ({err}); sign in again") from None
    if found.kind != "staff":
        raise unauthenticated("the session is not valid; sign in again")
    return found


async def principal(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        ctx: Annotated[ServiceContext, Depends(context)]) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie and (request.method in SAFE_METHODS
                       or request.headers.get(COOKIE_CSRF_HEADER)):
            return await _from_session_cookie(ctx, cookie)
        raise unauthenticated("a bearer token is required")
    try:
        return await _from_token(ctx, credentials.credentials)
    except TokenError as err:
        raise unauthenticated(str(err)) from None


Caller = Annotated[Principal, Depends(principal)]


def require_staff(who: Principal) -> Actor:
    if who.kind != "staff" or who.actor is None:
        raise Problem(403, "only staff of the units may do this", kind="forbidden")
    return who.actor
