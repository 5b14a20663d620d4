"""Provision the Temporal binaries before the test run, so their one-off cost (minutes for a
Go build of the CLI) shows up here with a timing rather than as a mysteriously slow test.

Run as `python -m devstack.prepare`; exits non-zero if provisioning fails.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from devstack.browser import ensure_chromium
from devstack.fonts import ensure_cjk_fonts
from devstack.keycloak import resolve_keycloak
from devstack.temporal_cli import ProvisioningError, resolve_temporal_cli, resolve_test_server
from devstack.temporal_cluster import server_binaries
from devstack.temporal_ui import resolve_ui_server


def _timed(label: str, step: Callable[[], str | None]) -> None:
    started = time.monotonic()
    result = step()
    elapsed = time.monotonic() - started
    where = result if result is not None else "none found: the SDK will download it"
    print(f"{label}: {where} ({elapsed:.1f}s)", flush=True)


def _embedded_postgres() -> str:
    """The embedded PostgreSQL started (initialised on a first run), unless the operator's
    DATABASE_URL replaces it."""
    from adapters.settings import get_settings

    if get_settings().database_url:
        return "DATABASE_URL is set: the embedded server is not used"
    from devstack.postgres import embedded_postgres

    return str(embedded_postgres().pgdata)


def main() -> int:
    try:
        _timed("Embedded PostgreSQL", _embedded_postgres)
        _timed("Temporal CLI", resolve_temporal_cli)
        _timed("Temporal Web UI server", resolve_ui_server)
        _timed("Time-skipping test server", resolve_test_server)
        _timed("Chromium (Web UI browser test)", ensure_chromium)
        _timed("Noto CJK fonts (written notices)", ensure_cjk_fonts)
        _timed("Keycloak (OpenID Connect)", lambda: str(resolve_keycloak()))
        # The backup drill (tests/test_backup_restore_drill.py) runs on the real server.
        _timed("temporal-server (production-shaped cluster)",
               lambda: " ".join(server_binaries()))
    except ProvisioningError as error:
        print(f"devstack.prepare: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
