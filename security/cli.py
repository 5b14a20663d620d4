"""`petition codec-server`: the authenticated codec endpoint for the Temporal Web UI."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("codec-server")
@click.option("--host", default=None, help="interface to bind (default: settings, 127.0.0.1)")
@click.option("--port", type=int, default=None, help="port (default: settings, 8081)")
@click.option("--audit-log", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="JSON-lines record of every decode (default: .data/codec-audit.log)")
def codec_server_cmd(host: str | None, port: int | None, audit_log: Path | None) -> None:
    """Serve POST /decode so the Web UI shows decrypted payloads to signed-in staff.

    Each call needs a staff member's token: the petition service's (a local account) or
    the bureau's OpenID Connect provider's, as `Authorization: Bearer`, or the cookie the
    server's own /login page sets. Intake clients and petitioners are refused; there is no
    /encode. Every decode is recorded in .data/codec-audit.log. Start the dev server with
    `temporal server start-dev --ui-codec-endpoint http://127.0.0.1:8081`.
    """
    from adapters.settings import get_settings
    from security.codec import CodecKeyError
    from security.codec_server import CodecServerError, run_from_settings

    try:
        run_from_settings(get_settings(), host=host, port=port, announce=click.echo,
                          audit_path=audit_log)
    except (CodecKeyError, CodecServerError, OSError) as err:
        click.echo(f"error: {err}", err=True)
        raise SystemExit(2) from None
