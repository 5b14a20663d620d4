"""The codec server: Temporal's remote codec protocol, so the Web UI (and `temporal`
CLI) can show decrypted payloads to people who hold the token.

    POST <endpoint>/decode   {"payloads": [<Payload as proto JSON>, ...]}
    POST <endpoint>/encode   the same shape, the other way

Authentication: `Authorization: Bearer <token>`, or — for a Web UI that cannot send
headers, like the dev server's — the token as the first path segment, i.e. point the UI
at `http://host:port/<token>`. Both are compared in constant time. CORS answers only the
configured UI origins. The stdlib server runs in a thread: no extra dependency.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import threading
from collections.abc import Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payloads

from security.codec import CodecKeyError, EncryptionCodec

log = logging.getLogger("petitionflow.codec_server")

MAX_BODY_BYTES = 16 * 1024 * 1024  # a UI page of histories; the server's own blob cap is 2 MB
MIN_TOKEN_CHARS = 24


class CodecServerError(ValueError):
    """The codec server is misconfigured (no usable token)."""


def server_token(settings: Any) -> str:
    """The configured token, else a development token generated once into a file."""
    token: str | None = getattr(settings, "codec_server_token", None)
    if token:
        if len(token) < MIN_TOKEN_CHARS:
            raise CodecServerError(f"PETITION_CODEC_SERVER_TOKEN must be at least "
                                   f"{MIN_TOKEN_CHARS} characters")
        return token
    path = Path(settings.codec_server_token_file)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = path.open("x", encoding="ascii")
        except FileExistsError:
            pass
        else:
            with fd:
                path.chmod(0o600)
                fd.write(secrets.token_urlsafe(32) + "\n")
    return path.read_text(encoding="ascii").strip()


class CodecServer:
    """`with CodecServer(codec, token, origins) as server:` serves on `server.url`."""

    def __init__(self, codec: EncryptionCodec, token: str, origins: Iterable[str] = (),
                 *, host: str = "127.0.0.1", port: int = 0):
        if len(token) < MIN_TOKEN_CHARS:
            raise CodecServerError(f"codec server token must be at least {MIN_TOKEN_CHARS} "
                                   "characters")
        self.codec = codec
        self.token = token
        self.origins = frozenset(o.strip().rstrip("/") for o in origins if o.strip())
        self._httpd = ThreadingHTTPServer((host, port), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def ui_endpoint(self) -> str:
        """The endpoint for a UI that cannot send an Authorization header."""
        return f"{self.url}/{self.token}"

    def authorized(self, header: str | None, path_token: str | None) -> bool:
        expected = self.token.encode()
        if header and header.startswith("Bearer "):
            return hmac.compare_digest(header[len("Bearer "):].strip().encode(), expected)
        if path_token:
            return hmac.compare_digest(path_token.encode(), expected)
        return False

    def start(self) -> CodecServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="codec-server",
                                        daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def stop(self) -> None:
        """Stop the thread `start` began."""
        self._httpd.shutdown()
        self.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def close(self) -> None:
        self._httpd.server_close()

    def __enter__(self) -> CodecServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _handler_for(server: CodecServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "petition-codec/1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            # Never the path: in the token-in-path form it holds the token.
            log.debug("%s %s", self.command, self.address_string())

        def _cors(self) -> None:
            origin = (self.headers.get("Origin") or "").rstrip("/")
            if origin and origin in server.origins:
                self.send_header("Access-Control-Allow-Origin", origin)
                self.send_header("Access-Control-Allow-Credentials", "true")
                self.send_header("Access-Control-Allow-Methods", "POST, OPTIONS")
                self.send_header("Access-Control-Allow-Headers",
                                 "Content-Type, X-Namespace, Authorization")
                self.send_header("Access-Control-Max-Age", "600")
            self.send_header("Vary", "Origin")

        def _reply(self, status: HTTPStatus, body: dict[str, Any] | None = None) -> None:
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            self._cors()
            if status is HTTPStatus.UNAUTHORIZED:
                self.send_header("WWW-Authenticate", 'Bearer realm="petition-codec"')
            if body is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_OPTIONS(self) -> None:  # noqa: N802 - the stdlib's naming
            # A CORS preflight carries no credentials by design; it reveals nothing.
            self._reply(HTTPStatus.NO_CONTENT)

        def do_GET(self) -> None:  # noqa: N802
            self._reply(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "POST /encode or /decode"})

        def do_POST(self) -> None:  # noqa: N802
            parts = [unquote(p) for p in self.path.split("?", 1)[0].split("/") if p]
            operation = parts[-1] if parts else ""
            path_token = parts[0] if len(parts) == 2 else None
            if operation not in ("encode", "decode") or len(parts) > 2:
                self._reply(HTTPStatus.NOT_FOUND, {"error": "POST /encode or /decode"})
                return
            if not server.authorized(self.headers.get("Authorization"), path_token):
                self._reply(HTTPStatus.UNAUTHORIZED, {"error": "unauthorized"})
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > MAX_BODY_BYTES:
                self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "body too large"})
                return
            try:
                payloads = json_format.Parse(self.rfile.read(length) or b"{}", Payloads())
                convert = (server.codec.encrypt if operation == "encode"
                           else server.codec.decrypt)
                result = Payloads(payloads=[convert(p) for p in payloads.payloads])
            except (json_format.ParseError, DecodeError, CodecKeyError, UnicodeDecodeError) as err:
                self._reply(HTTPStatus.BAD_REQUEST, {"error": str(err)[:300]})
                return
            self._reply(HTTPStatus.OK, json_format.MessageToDict(result))

    return Handler


def run_from_settings(settings: Any, *, host: str | None = None, port: int | None = None,
                      announce: Any = print) -> None:
    """`petition codec-server`: serve until interrupted."""
    from security.codec import keyring_from_settings

    codec = EncryptionCodec(keyring_from_settings(settings))
    token = server_token(settings)
    origins = settings.codec_server_origins.split(",")
    server = CodecServer(codec, token, origins, host=host or settings.codec_server_host,
                         port=settings.codec_server_port if port is None else port)
    announce(f"codec server on {server.url} (POST /encode, /decode; Bearer token required)")
    announce(f"UI origins allowed: {', '.join(sorted(server.origins)) or 'none'}")
    source = ("PETITION_CODEC_SERVER_TOKEN" if settings.codec_server_token
              else str(settings.codec_server_token_file))
    announce(f"token: from {source}; for the dev server's UI start it with "
             f"--ui-codec-endpoint {server.url}/<token>")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


def ui_codec_server(ui_port: int, *, keyring: Any = None, settings: Any = None,
                    token: str | None = None, port: int = 0) -> CodecServer:
    """A started codec server for a local Web UI on `ui_port` (tests, `petition dev`) with
    the settings' keys (or `keyring`); a fresh random token unless one is given."""
    from adapters.settings import get_settings
    from security.codec import keyring_from_settings

    settings = settings or get_settings()
    origins = [f"http://127.0.0.1:{ui_port}", f"http://localhost:{ui_port}",
               *settings.codec_server_origins.split(",")]
    codec = EncryptionCodec(keyring or keyring_from_settings(settings))
    return CodecServer(codec, token or secrets.token_urlsafe(32), origins,
                       host=settings.codec_server_host, port=port).start()
