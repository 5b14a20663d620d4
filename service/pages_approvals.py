"""Issue 15: the approvals pages (being built)."""

from __future__ import annotations

from fastapi import APIRouter

from service.pages import PageRoute

router = APIRouter(route_class=PageRoute, include_in_schema=False)
