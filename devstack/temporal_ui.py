"""The standalone Temporal Web UI server, read-only for supervisors.

The Web UI embedded in the Temporal CLI dev server has no switch for its write actions
(Cancel, Terminate, Signal, Update, Reset, batch actions, Start Workflow): every visitor
gets the buttons. The UI server the CLI embeds is published on its own as the Go module
`github.com/temporalio/ui-server/v2`; its configuration has `disableWriteActions`, which
both hides the buttons in the browser and makes the server's HTTP API refuse every
non-GET request except workflow queries (405 Method Not Allowed,
`server/route/api.go: DisableWriteMiddleware`).

`resolve_ui_server()` builds that server once with Go from the module proxy (about a
minute; cached beside the CLI, see devstack/temporal_cli.py), `start_ui_server()` runs it
against a Temporal frontend with a generated config file. The version is the one the CLI
v1.5.1 embeds, so the UI looks and behaves exactly as the embedded one did.

Only the UI is read-only: the frontend's gRPC port stays open to anyone who can reach it
(the `temporal` CLI, an SDK). That is what the signed assertions of security/ guard.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from devstack.processes import ManagedServer, tail
from devstack.temporal_cli import (
    ProvisioningError,
    _is_executable,
    _require_executable,
    cache_dir,
    go_install,
)

# The UI server Temporal CLI v1.5.1 embeds (its go.mod); the module proxy has newer ones.
UI_SERVER_VERSION = "v2.42.1"
UI_SERVER_PACKAGE = "github.com/temporalio/ui-server/v2/cmd/server"
START_TIMEOUT_SECONDS = 60.0
_ENV_NAME = "petition-flow"  # the server reads <root>/<config>/<env>.yaml
_LOG_NAME = "ui-server.log"

# Every write action the UI offers, off: `disableWriteActions` alone already hides them all
# and makes the API refuse writes; the discrete switches say the same to any UI version that
# looks only at them.
_READ_ONLY = {
    "disableWriteActions": True,
    "workflowTerminateDisabled": True,
    "workflowCancelDisabled": True,
    "workflowSignalDisabled": True,
    "workflowUpdateDisabled": True,
    "workflowResetDisabled": True,
    "batchActionsDisabled": True,
    "startWorkflowDisabled": True,
    "activityCommandsDisabled": True,
}


class UiServerStartError(ProvisioningError):
    """The UI server exited, or did not answer on its HTTP port, in time."""


@dataclass(frozen=True)
class OidcSettings:
    """Sign-in to the Web UI against an OpenID Connect provider (Keycloak in devstack).

    The UI server does the authorization-code flow itself, as a confidential client without
    PKCE (v2.42.1 sends no code challenge), with its callback at `/auth/sso/callback`.
    """

    issuer: str
    client_id: str = "workbench"
    client_secret: str = ""
    callback_url: str | None = None  # default: http://localhost:<port>/auth/sso/callback
    scopes: tuple[str, ...] = ("openid", "profile", "email")
    label: str = "Keycloak"
    options: dict[str, str] = field(default_factory=dict)


def resolve_ui_server() -> str:
    """Path of the Temporal UI server binary, built with Go the first time.

    Order: $TEMPORAL_UI_SERVER, the cached build, a fresh build with Go (about a minute).
    """
    explicit = os.environ.get("TEMPORAL_UI_SERVER")
    if explicit:
        return _require_executable(Path(explicit), "$TEMPORAL_UI_SERVER")
    cached = cache_dir() / "bin" / f"temporal-ui-server-{UI_SERVER_VERSION}"
    if _is_executable(cached):
        return str(cached)
    go = shutil.which("go")
    if go is None:
        raise ProvisioningError(
            "The read-only Temporal Web UI needs the Temporal UI server; building it needs Go "
            f"(`go`) on PATH to install {UI_SERVER_PACKAGE}@{UI_SERVER_VERSION}, and none was "
            "found (or point $TEMPORAL_UI_SERVER at a built `server` binary)."
        )
    return go_install(go, f"{UI_SERVER_PACKAGE}@{UI_SERVER_VERSION}", "server", cached,
                      f"Temporal UI server {UI_SERVER_VERSION}", "about a minute")


def ui_config(temporal_address: str, port: int, *, host: str = "127.0.0.1",
              codec_endpoint: str | None = None, oidc: OidcSettings | None = None,
              codec_include_credentials: bool = False) -> dict:
    """The UI server's configuration (the keys of its `server/config/config.go`)."""
    config: dict = {
        "temporalGrpcAddress": temporal_address,
        "host": host,
        "port": port,
        "enableUi": True,
        "defaultNamespace": "default",
        "notifyOnNewVersion": False,
        # The CSRF cookie without `Secure`, as the CLI's embedded UI has it: plain http.
        "cors": {"cookieInsecure": True},
        **_READ_ONLY,
    }
    if codec_endpoint:
        # With sign-in on, the UI hands the codec server the signed-in person's access token.
        # `includeCredentials`: the browser sends the codec server's own sign-in cookie.
        config["codec"] = {"endpoint": codec_endpoint, "passAccessToken": oidc is not None,
                           "includeCredentials": codec_include_credentials}
    if oidc is not None:
        config["auth"] = {
            "enabled": True,
            "providers": [{
                "label": oidc.label,
                "type": "oidc",
                "providerUrl": oidc.issuer,
                "issuerUrl": oidc.issuer,
                "clientId": oidc.client_id,
                "clientSecret": oidc.client_secret,
                "scopes": list(oidc.scopes),
                "callbackUrl": oidc.callback_url or f"http://localhost:{port}/auth/sso/callback",
                "options": dict(oidc.options),
            }],
        }
    return config


def start_ui_server(
    temporal_address: str,
    port: int,
    codec_endpoint: str | None = None,
    oidc: OidcSettings | None = None,
    *,
    host: str = "127.0.0.1",
    data_dir: Path | None = None,
    codec_include_credentials: bool = False,
    timeout: float = START_TIMEOUT_SECONDS,
) -> UiServer:
    """Start the read-only Web UI on `host:port` for the frontend at `temporal_address`.

    The config file and the log go to `data_dir` (default: a new temporary directory,
    removed again on a clean stop). Blocks until the HTTP port answers (a second or two;
    with `oidc`, the provider must be up: the server fetches its discovery document at
    start). Call it through `asyncio.to_thread` from async code.
    """
    binary = resolve_ui_server()
    if _listening(host, port):
        raise UiServerStartError(
            f"Temporal UI server cannot start: something already listens on {host}:{port}.")
    owned = data_dir is None
    data = Path(tempfile.mkdtemp(prefix="temporal-ui-")) if data_dir is None else Path(data_dir)
    config_dir = data / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    config_file = config_dir / f"{_ENV_NAME}.yaml"
    config = ui_config(temporal_address, port, host=host, codec_endpoint=codec_endpoint,
                       oidc=oidc, codec_include_credentials=codec_include_credentials)
    # JSON is YAML; 0600: it may hold a client secret.
    fd = os.open(config_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(config, handle, indent=2)
    os.chmod(config_file, 0o600)
    command = [binary, "--root", str(data), "--config", "config", "--env", _ENV_NAME, "start"]
    log_path = data / _LOG_NAME
    started = time.monotonic()
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    server = UiServer(process, host, port, data, config)
    server.remove_data_on_stop = owned
    try:
        _wait_until_answering(server, timeout)
    except BaseException:
        server.remove_data_on_stop = False  # keep the log that says why
        server.stop()
        raise
    server.started_in = time.monotonic() - started
    return server


class UiServer(ManagedServer):
    """A running Temporal UI server; `stop()` (or leaving `with` / `async with`) ends it."""

    def __init__(self, process: subprocess.Popen[bytes], host: str, port: int, data_dir: Path,
                 config: dict) -> None:
        super().__init__(process, data_dir)
        self.host = host
        self.port = port
        self.config = config
        self.started_in = 0.0

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / _LOG_NAME


def _wait_until_answering(server: UiServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    url = f"http://{_connect_host(server.host)}:{server.port}/healthz"
    while True:
        code = server.process.poll()
        if code is not None:
            raise UiServerStartError(
                f"Temporal UI server exited with status {code} before answering on port "
                f"{server.port}; last lines of {server.log_path}: {tail(server.log_path, 5)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise UiServerStartError(
                f"Temporal UI server did not answer on port {server.port} within "
                f"{timeout:.0f}s; last lines of {server.log_path}: {tail(server.log_path, 5)}")
        time.sleep(0.2)


def _connect_host(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0") else host  # noqa: S104 - a client address


def _listening(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        return probe.connect_ex((_connect_host(host), port)) == 0


