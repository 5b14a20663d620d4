"""How the drainer gets a notice's letter, SMS and e-mail: a `NoticeRenderer`.

The drainer hands it the notice's facts (the JSON of domain.notice_facts.NoticeFacts, as
sealed in `notices.facts_sealed`) and a `RenderContext`; `DocumentsRenderer` adapts
documents.render.render_notice (WeasyPrint, CPU-bound: run in a thread). Tests inject a
renderer of their own.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from activities.delivery.channels import RenderedNotice


@dataclass(frozen=True)
class RenderContext:
    """The same fields as documents.render.RenderContext."""

    unit_names: Mapping[str, str]
    query_code: str | None
    track_url: str
    addressee: str | None = field(default=None, repr=False)  # the petitioner's name


class NoticeRenderer(Protocol):
    async def render(self, facts: Mapping[str, Any], context: RenderContext) -> RenderedNotice:
        ...


class DocumentsRenderer:
    """documents.render.render_notice(NoticeFacts, RenderContext) -> RenderedNotice.
    Imported when built, so a worker without the documents package says so at start."""

    def __init__(self) -> None:
        self._render = importlib.import_module("documents.render")
        self._facts = importlib.import_module("domain.notice_facts")

    async def render(self, facts: Mapping[str, Any], context: RenderContext) -> RenderedNotice:
        model = self._facts.NoticeFacts.model_validate(dict(facts))
        theirs = self._render.RenderContext(unit_names=dict(context.unit_names),
                                            query_code=context.query_code,
                                            track_url=context.track_url,
                                            addressee=context.addressee)
        rendered: RenderedNotice = await asyncio.to_thread(self._render.render_notice,
                                                           model, theirs)
        return rendered
