"""What every request handler shares, built once by `create_app`."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from adapters.petition_client import PetitionClient
from security.blind_index import BlindIndex
from service.auth.oidc import OidcVerifier
from service.auth.tokens import TokenIssuer
from service.config import ServiceSettings


@dataclass
class ServiceContext:
    settings: ServiceSettings
    sessions: async_sessionmaker[AsyncSession]
    client: PetitionClient | None
    tokens: TokenIssuer
    oidc: OidcVerifier | None
    # Exact lookups by ID number and phone (security/blind_index.py); None: not offered.
    index: BlindIndex | None = None

    def connect(self, petitions: PetitionClient) -> None:
        self.client = petitions

    @property
    def petitions(self) -> PetitionClient:
        if self.client is None:
            from service.problems import Problem

            raise Problem(503, "the service is not connected to Temporal yet",
                          headers={"Retry-After": "5"})
        return self.client


def context(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.ctx
    return ctx
