"""Runtime settings, read from the environment (prefix PETITION_) or `.env`.

`DATABASE_URL` is honoured without a prefix: it is the name every operator expects.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PETITION_", env_file=".env", extra="ignore")

    # The application's connection (role `petition_app`: reads and writes rows, owns no
    # table, cannot change the schema or the audit trail's trigger).
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "PETITION_DATABASE_URL")
    )
    # Migrations (DDL) run as the schema's owner; reports read as a read-only role. Unset:
    # the embedded server's own roles (devstack/postgres.py), or DATABASE_URL.
    migration_database_url: str | None = None
    reports_database_url: str | None = None
    db_owner_role: str = "petition_owner"
    db_app_role: str = "petition_app"
    db_reports_role: str = "petition_reports"
    temporal_address: str = Field(
        default="localhost:7233",
        validation_alias=AliasChoices("TEMPORAL_ADDRESS", "PETITION_TEMPORAL_ADDRESS"),
    )
    temporal_namespace: str = "default"
    # mTLS to the Temporal frontend (PEM files): the production-shaped cluster and compose
    # require a client certificate (docs/production.md). Unset: plain gRPC (the dev server).
    temporal_tls_ca: Path | None = None
    temporal_tls_cert: Path | None = None
    temporal_tls_key: Path | None = None
    temporal_tls_server_name: str | None = None
    task_queue: str = "petitions"
    default_profile: str = "national"
    notice_outbox_dir: Path = PROJECT_ROOT / ".data" / "outbox"
    db_pool_size: int = 10
    max_concurrent_activities: int = 100
    max_concurrent_workflow_tasks: int = 100
    max_cached_workflows: int = 1000
    # Pollers per task queue kind. Half of the workflow pollers poll the shared queue
    # (the rest this worker's sticky queue): the SDK's default of five leaves ONE on the
    # shared queue, and once tasks back up there (mass starts, a worker restart, sticky
    # tasks that timed out) it drains them one poll round trip at a time -- 18 tasks/s in
    # bench/README.md's 100,000-case run. 0: the SDK's defaults.
    workflow_task_pollers: int = 20
    activity_task_pollers: int = 10
    # Payload encryption (security/codec.py). `k1:<base64 32 bytes>,k2:...`; unset in
    # development, where a key is generated once into `codec_key_file`.
    codec_keys: str | None = None
    codec_active_key: str | None = None
    codec_key_file: Path = PROJECT_ROOT / ".data" / "codec-keys"
    # Development only (`make dev`, `make test` set it): keys nobody configured are
    # generated once under .data/. Off by default, so a production host without keys
    # refuses to start instead of silently making its own (a key generated inside a
    # container dies with it, and whatever it encrypted with it).
    dev_keys: bool = False
    # Signed action assertions (security/assertion.py): `k1:<base64 32 bytes>,k2:...`; unset
    # in development, where a key is generated once into `assertion_key_file`.
    assertion_keys: str | None = None
    assertion_active_key: str | None = None
    assertion_key_file: Path = PROJECT_ROOT / ".data" / "assertion-keys"
    # Workflow ids are a keyed hash of the intake id (adapters/petition_client.py): one key
    # `id:<base64 32 bytes>`, never changed; unset in development, generated once.
    id_key: str | None = None
    id_key_file: Path = PROJECT_ROOT / ".data" / "id-key"
    # Personal-data columns (security/sealing.py): envelope encryption. Data keys are
    # wrapped by these key-encryption keys, `kek1:<base64 32 bytes>,kek2:...`; unset in
    # development, where one is generated once into `data_key_file`.
    data_keys: str | None = None
    data_active_key: str | None = None
    data_key_file: Path = PROJECT_ROOT / ".data" / "data-keys"
    # The cipher of new data keys: AES-256-GCM, or SM4-GCM where a commercial-cryptography
    # (商用密码) review requires the national algorithm. Values keep the cipher of the data
    # key that sealed them; `petition keys retire` moves them to the configured one.
    data_cipher: Literal["aes-256-gcm", "sm4-gcm"] = "aes-256-gcm"
    # The blind index (keyed HMAC) for the matter key and exact lookups by ID number and
    # phone: one key `ix:<base64 32 bytes>`, never changed without `petition keys reindex`.
    index_key: str | None = None
    index_key_file: Path = PROJECT_ROOT / ".data" / "index-key"
    # The petitioner's query code is a keyed HMAC of the registration number
    # (security/query_code.py), printed on every notice: one key `qc:<base64 32 bytes>`,
    # never changed (the codes on the notices sent would stop signing in).
    query_code_key: str | None = None
    query_code_key_file: Path = PROJECT_ROOT / ".data" / "query-code-key"
    # The codec server the Web UI decodes through (`petition codec-server`).
    codec_server_host: str = "127.0.0.1"
    codec_server_port: int = 8081
    codec_server_origins: str = "http://localhost:8233,http://127.0.0.1:8233"
    # Notice delivery (docs/delivery.md): e-mail over SMTP, SMS through a provider's HTTP
    # API, letters archived for the post room. A channel left unconfigured (no SMTP host, no
    # SMS URL) keeps its deliveries pending, retried with backoff, never lost.
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = True  # STARTTLS on a plain port; smtp_tls for implicit TLS (465)
    smtp_tls: bool = False
    smtp_from: str = "信访通知 <notices@localhost>"
    smtp_timeout_seconds: float = 30.0
    sms_url: str | None = None  # the provider's send endpoint (JSON POST, Idempotency-Key)
    sms_token: str | None = None  # sent as `Authorization: Bearer ...`
    sms_sender: str | None = None  # the provider's sender id or signature (短信签名)
    sms_timeout_seconds: float = 15.0
    letter_dir: Path = PROJECT_ROOT / ".data" / "letters"
    # Where a notice tells the petitioner to follow the case with the query code.
    track_url: str = "http://localhost:8000/track"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
