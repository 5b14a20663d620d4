"""The worker's delivery drainer, built from settings: letters always, e-mail when an
SMTP host is configured, SMS when a provider URL is; the real renderer
(documents/render.py) and the derived query code (security/query_code.py)."""

from __future__ import annotations

import importlib
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.delivery.channels import Channel
from activities.delivery.drainer import DeliveryDrainer, DerivedQueryCodes, QueryCodes
from activities.delivery.letters import LetterChannel
from activities.delivery.rendering import DocumentsRenderer, NoticeRenderer
from activities.delivery.sms import HttpSmsGateway, SmsChannel
from activities.delivery.smtp import SmtpChannel, SmtpSettings
from adapters.settings import Settings
from security.sealing import Vault

log = logging.getLogger(__name__)


def channels_from_settings(settings: Settings) -> list[Channel]:
    channels: list[Channel] = [LetterChannel(settings.letter_dir)]
    if settings.smtp_host:
        channels.append(SmtpChannel(SmtpSettings(
            host=settings.smtp_host, port=settings.smtp_port, user=settings.smtp_user,
            password=settings.smtp_password, starttls=settings.smtp_starttls,
            tls=settings.smtp_tls, from_address=settings.smtp_from,
            timeout_seconds=settings.smtp_timeout_seconds)))
    if settings.sms_url:
        channels.append(SmsChannel(HttpSmsGateway(
            settings.sms_url, token=settings.sms_token, sender=settings.sms_sender,
            timeout_seconds=settings.sms_timeout_seconds)))
    return channels


def query_codes_from(settings: Settings) -> QueryCodes:
    module = importlib.import_module("security.query_code")
    return DerivedQueryCodes(module.query_codes_from_settings(settings))


def build_delivery_drainer(settings: Settings, sessions: async_sessionmaker[AsyncSession],
                           vault: Vault, *, renderer: NoticeRenderer | None = None,
                           query_codes: QueryCodes | None = None) -> DeliveryDrainer:
    channels = channels_from_settings(settings)
    log.info("notice delivery through %s", ", ".join(c.name for c in channels))
    return DeliveryDrainer(sessions, vault, renderer or DocumentsRenderer(), channels,
                           track_url=settings.track_url,
                           query_codes=query_codes or query_codes_from(settings))
