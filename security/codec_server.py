"""The codec server: Temporal's remote codec protocol, so the Web UI (and `temporal`
CLI) can show decrypted payloads — to signed-in staff only.

    POST <endpoint>/decode   {"payloads": [<Payload as proto JSON>, ...]}
    GET  <endpoint>/login    a sign-in page (local account, or a token pasted)
    POST <endpoint>/login    sets a short-lived, HttpOnly cookie holding the staff token
    POST <endpoint>/logout   clears it

There is no /encode (405): nobody gets our key to encrypt with.

Every /decode needs the bearer token of a signed-in staff member — one the petition
service issued (`POST /auth/token`, a local account) or an OpenID Connect token of the
bureau's provider — in `Authorization: Bearer`, or in the cookie `/login` set (a browser
whose Web UI has no login of its own, like the dev server's: the UI must send
cross-origin credentials). The same verifiers as the service (service/auth) check it, and
the directory must list the person as staff: intake clients and petitioners get 403, a
missing, expired or forged token 401. The server knows no workflow context: a payload
bound to another namespace than the UI's `X-Namespace` (or another workflow than
`X-Workflow-Id`, when given) is refused (400); payloads written before encryption pass
through, so old histories still show. Each answer to /decode is appended to a JSON-lines
audit file: who, when, the namespace, the workflow id if the caller names one
(`X-Workflow-Id`), how many payloads and a fingerprint of each (sha256 of the ciphertext:
no personal data). CORS answers only the configured UI origins. The stdlib server runs in
a thread; the token checks run on an event loop of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import html
import json
import logging
import os
import threading
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import parse_qs

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payloads

from security.codec import CodecKeyError, EncryptionCodec

if TYPE_CHECKING:
    from service.config import ServiceSettings
    from service.context import ServiceContext

log = logging.getLogger("petitionflow.codec_server")

MAX_BODY_BYTES = 16 * 1024 * 1024  # a UI page of histories; the server's own blob cap is 2 MB
MAX_LOGIN_BYTES = 16 * 1024
COOKIE = "petition_codec"
COOKIE_MAX_SECONDS = 60 * 60  # never longer than the token itself either
AUTH_TIMEOUT_SECONDS = 30
T = TypeVar("T")


class CodecServerError(ValueError):
    """The codec server is misconfigured."""


class NotAuthenticated(Exception):
    """401: no token, or not a valid one (expired, forged, unknown key)."""


class NotStaff(Exception):
    """403: a valid token, but not of a staff member of the directory."""

    def __init__(self, detail: str, subject: str | None = None) -> None:
        super().__init__(detail)
        self.subject = subject


@dataclass(frozen=True)
class StaffIdentity:
    person_id: str
    role: str
    unit: str
    via: str  # "service" (a local account's token) or "oidc"
    expires_at: datetime | None = None


class Authenticator(Protocol):
    def identify(self, token: str) -> StaffIdentity: ...

    def sign_in(self, username: str, password: str) -> str: ...

    def close(self) -> None: ...


class StaffAuthenticator:
    """The petition service's own checks, run on an event loop of this object's own: its
    token verifier (service/auth/tokens.py), the OIDC verifier (service/auth/oidc.py), the
    directory (`staff_actor`) and, for the sign-in page, its token endpoint's logic
    (argon2id, lockout)."""

    def __init__(self, settings: ServiceSettings, database_url: str) -> None:
        from adapters.engine import create_engine, session_maker
        from service.auth.oidc import OidcVerifier
        from service.auth.tokens import TokenIssuer, token_ring
        from service.context import ServiceContext

        self.settings = settings
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="codec-auth",
                                        daemon=True)
        self._thread.start()
        self._engine = create_engine(database_url, pool_size=2)
        self.ctx: ServiceContext = ServiceContext(
            settings=settings, sessions=session_maker(self._engine), client=None,
            tokens=TokenIssuer(token_ring(settings)), oidc=OidcVerifier.from_settings(settings))

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(AUTH_TIMEOUT_SECONDS)

    def identify(self, token: str) -> StaffIdentity:
        return self._run(self._identify(token))

    async def _identify(self, token: str) -> StaffIdentity:
        from service.auth.principal import OIDC_SERVICE_ACCOUNT, staff_actor
        from service.auth.tokens import TokenError

        ctx = self.ctx
        try:
            if ctx.tokens.is_ours(token):
                claims = ctx.tokens.verify(token)
                if claims.kind != "staff":
                    raise NotStaff(f"a {claims.kind} token does not decode payloads",
                                   claims.kind)
                person, via, expires = claims.subject, "service", claims.expires_at
            elif ctx.oidc is not None:
                oidc = await ctx.oidc.verify(token)
                person = str(oidc.get("preferred_username") or "")
                if not person or person.startswith(OIDC_SERVICE_ACCOUNT):
                    raise NotStaff("the provider's token is not a staff member's", "client")
                via = "oidc"
                expires = datetime.fromtimestamp(int(oidc["exp"]), UTC)
            else:
                raise NotAuthenticated("invalid token")
        except TokenError as err:
            raise NotAuthenticated(str(err)) from None
        actor = await staff_actor(ctx, person)
        if actor is None:
            raise NotStaff("not staff in the organisation directory", person)
        return StaffIdentity(actor.id, actor.role.value, actor.unit or "", via, expires)

    def sign_in(self, username: str, password: str) -> str:
        """A staff token from the service's token endpoint logic (lockout included)."""
        from service.auth.routes import token
        from service.problems import Problem

        try:
            answer = self._run(token(self.ctx, "password", username=username,
                                     password=password))
        except Problem as err:
            raise NotAuthenticated(err.detail or "sign-in refused") from None
        return answer.access_token

    def close(self) -> None:
        if self._loop.is_closed():
            return
        with contextlib.suppress(Exception):
            self._run(self._engine.dispose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()


class AuditLog:
    """Append-only JSON lines (mode 0600): who decoded what, when. No payload content."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def record(self, entry: dict[str, Any]) -> None:
        line = json.dumps({"at": datetime.now(UTC).isoformat(timespec="milliseconds"),
                           **entry}, ensure_ascii=False, sort_keys=True) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as out:
                out.write(line)

    def entries(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines()
                if line.strip()]


def default_audit_path() -> Path:
    from adapters.settings import PROJECT_ROOT

    return PROJECT_ROOT / ".data" / "codec-audit.log"


class CodecServer:
    """`with CodecServer(codec, authenticator, origins) as server:` serves on `server.url`.

    The server owns the authenticator: `stop()` closes it."""

    def __init__(self, codec: EncryptionCodec, authenticator: Authenticator,
                 origins: Iterable[str] = (), *, host: str = "127.0.0.1", port: int = 0,
                 audit_path: Path | None = None):
        if isinstance(authenticator, str):  # the old static token
            raise CodecServerError("the codec server takes an authenticator of staff tokens, "
                                   "not a static token")
        self.codec = codec
        self.authenticator = authenticator
        self.origins = frozenset(o.strip().rstrip("/") for o in origins if o.strip())
        self.audit = AuditLog(audit_path or default_audit_path())
        self._httpd = ThreadingHTTPServer((host, port), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def ui_endpoint(self) -> str:
        """The endpoint for the Web UI: no secret in it (it is public in the UI's settings)."""
        return self.url

    @property
    def login_url(self) -> str:
        return f"{self.url}/login"

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
        self.authenticator.close()

    def __enter__(self) -> CodecServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _fingerprint(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


_LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Petition Flow: decrypt in the Web UI</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; max-width: 34em; margin: 3em auto">
<h1>Sign in to read payloads</h1>
<p>{message}</p>
<form method="post" action="login">
<p><label>Person id <input name="username" autocomplete="username"></label></p>
<p><label>Password <input name="password" type="password"
 autocomplete="current-password"></label></p>
<p><button type="submit">Sign in</button></p>
</form>
<form method="post" action="login">
<p><label>…or paste a staff token (single sign-on)
<input name="token" autocomplete="off"></label></p>
<p><button type="submit">Use token</button></p>
</form>
<p>The Web UI must send cross-origin credentials to this codec server: in the UI's
<em>Codec Server</em> settings, set this endpoint ({endpoint}), tick <em>Include
cross-origin credentials</em> and <em>Use my browser setting</em>. Open the UI on the same
host name as this page (127.0.0.1 or localhost, not a mix).</p>
</body></html>
"""


def _handler_for(server: CodecServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "petition-codec/2"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            log.debug("%s %s", self.command, self.address_string())

        def _origin(self) -> str:
            return (self.headers.get("Origin") or "").rstrip("/")

        def _cors(self) -> None:
            origin = self._origin()
            if origin and origin in server.origins:
                self.send_header("Access-Control-Allow-Origin", origin)
                self.send_header("Access-Control-Allow-Credentials", "true")
                self.send_header("Access-Control-Allow-Methods", "POST, OPTIONS")
                self.send_header("Access-Control-Allow-Headers",
                                 "Content-Type, X-Namespace, X-Workflow-Id, Authorization")
                self.send_header("Access-Control-Max-Age", "600")
            self.send_header("Vary", "Origin")

        def _send(self, status: HTTPStatus, data: bytes, content_type: str | None,
                  headers: dict[str, str] | None = None, cookies: Iterable[str] = ()) -> None:
            self.send_response(status)
            self._cors()
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            for cookie in cookies:
                self.send_header("Set-Cookie", cookie)
            if content_type:
                self.send_header("Content-Type", content_type)
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _reply(self, status: HTTPStatus, body: dict[str, Any] | None = None,
                   headers: dict[str, str] | None = None) -> None:
            extra = dict(headers or {})
            if status is HTTPStatus.UNAUTHORIZED:
                extra["WWW-Authenticate"] = 'Bearer realm="petition-codec"'
            data = json.dumps(body).encode() if body is not None else b""
            self._send(status, data, "application/json" if body is not None else None, extra)

        def _page(self, status: HTTPStatus, message: str, cookies: Iterable[str] = ()) -> None:
            page = _LOGIN_PAGE.format(message=html.escape(message),
                                      endpoint=html.escape(server.ui_endpoint))
            self._send(status, page.encode(), "text/html; charset=utf-8",
                       {"X-Frame-Options": "DENY",
                        "Content-Security-Policy": "default-src 'none'; form-action 'self'"},
                       cookies)

        def _path(self) -> str:
            return "/" + "/".join(p for p in self.path.split("?", 1)[0].split("/") if p)

        def _length(self, limit: int) -> int | None:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                return None
            return length if 0 <= length <= limit else None

        def _token(self) -> tuple[str | None, str]:
            """The bearer token and where it came from; the cookie only from an allowed
            origin (or none) with the UI's X-Namespace header, which a form cannot send."""
            header = self.headers.get("Authorization") or ""
            if header[:7].lower() == "bearer ":
                return header[7:].strip() or None, "header"
            cookie = self._cookie()
            if cookie is None:
                return None, "none"
            origin = self._origin()
            if (origin and origin not in server.origins) or not self.headers.get("X-Namespace"):
                return None, "cookie-refused"
            return cookie, "cookie"

        def _cookie(self) -> str | None:
            raw = self.headers.get("Cookie")
            if not raw:
                return None
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(raw)
            except CookieError:
                return None
            morsel = jar.get(COOKIE)
            return morsel.value if morsel is not None and morsel.value else None

        def do_OPTIONS(self) -> None:  # noqa: N802 - the stdlib's naming
            # A CORS preflight carries no credentials by design; it reveals nothing.
            self._reply(HTTPStatus.NO_CONTENT)

        def do_GET(self) -> None:  # noqa: N802
            if self._path() == "/login":
                self._page(HTTPStatus.OK, "Staff of the directory only. Every decode is "
                                          "recorded with your person id.")
                return
            self._reply(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "POST /decode"},
                        {"Allow": "POST"})

        def do_POST(self) -> None:  # noqa: N802
            path = self._path()
            if path == "/decode":
                self._decode()
            elif path == "/encode":
                self._reply(HTTPStatus.METHOD_NOT_ALLOWED,
                            {"error": "this codec server does not encrypt"},
                            {"Allow": "OPTIONS"})
            elif path == "/login":
                self._login()
            elif path == "/logout":
                self._send(HTTPStatus.NO_CONTENT, b"", None,
                           cookies=[f"{COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict"])
            else:
                self._reply(HTTPStatus.NOT_FOUND, {"error": "POST /decode"})

        def _decode(self) -> None:
            token, source = self._token()
            namespace = (self.headers.get("X-Namespace") or "")[:200]
            workflow = (self.headers.get("X-Workflow-Id") or "")[:300] or None
            base = {"event": "decode", "namespace": namespace, "workflow_id": workflow,
                    "token_from": source, "client": self.address_string()}
            if token is None:
                server.audit.record({**base, "outcome": "unauthenticated"})
                self._reply(HTTPStatus.UNAUTHORIZED, {"error": "unauthorized"})
                return
            try:
                who = server.authenticator.identify(token)
            except NotAuthenticated as err:
                server.audit.record({**base, "outcome": "unauthenticated",
                                     "reason": str(err)[:200]})
                self._reply(HTTPStatus.UNAUTHORIZED, {"error": "unauthorized"})
                return
            except NotStaff as err:
                server.audit.record({**base, "outcome": "forbidden", "subject": err.subject,
                                     "reason": str(err)[:200]})
                self._reply(HTTPStatus.FORBIDDEN, {"error": "staff only"})
                return
            except Exception:  # noqa: BLE001 - the directory or the provider is down
                log.exception("codec server: token check failed")
                self._reply(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "try again later"})
                return
            length = self._length(MAX_BODY_BYTES)
            if length is None:
                self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "body too large"})
                return
            entry = {**base, "person": who.person_id, "role": who.role, "unit": who.unit,
                     "via": who.via}
            try:
                payloads = json_format.Parse(self.rfile.read(length) or b"{}", Payloads())
                # No workflow context here: the namespace the UI names, and the workflow
                # when the caller names one, are checked against each payload's binding.
                result = Payloads(payloads=[
                    server.codec.decrypt(p, namespace=namespace or None, workflow_id=workflow)
                    for p in payloads.payloads])
            except (json_format.ParseError, DecodeError, CodecKeyError, UnicodeDecodeError) as err:
                server.audit.record({**entry, "outcome": "bad-request"})
                self._reply(HTTPStatus.BAD_REQUEST, {"error": str(err)[:300]})
                return
            server.audit.record({**entry, "outcome": "decoded",
                                 "payloads": len(payloads.payloads),
                                 "fingerprints": [_fingerprint(p.data)
                                                  for p in payloads.payloads][:200]})
            self._reply(HTTPStatus.OK, json_format.MessageToDict(result))

        def _login(self) -> None:
            origin = self._origin()
            if origin and origin != server.url and origin not in server.origins:
                self._reply(HTTPStatus.FORBIDDEN, {"error": "foreign origin"})
                return
            length = self._length(MAX_LOGIN_BYTES)
            if length is None:
                self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "body too large"})
                return
            form = parse_qs(self.rfile.read(length).decode("utf-8", "replace"))
            field = {k: (v[0] if v else "") for k, v in form.items()}
            token = field.get("token", "").strip()
            username = field.get("username", "").strip()
            try:
                if not token:
                    if not username or not field.get("password"):
                        raise NotAuthenticated("a person id and password, or a token")
                    token = server.authenticator.sign_in(username, field["password"])
                who = server.authenticator.identify(token)
            except NotAuthenticated as err:
                server.audit.record({"event": "login", "outcome": "unauthenticated",
                                     "subject": username[:64] or None,
                                     "client": self.address_string()})
                self._page(HTTPStatus.UNAUTHORIZED, f"Not signed in: {err}")
                return
            except NotStaff as err:
                server.audit.record({"event": "login", "outcome": "forbidden",
                                     "subject": err.subject, "client": self.address_string()})
                self._page(HTTPStatus.FORBIDDEN, f"Not signed in: {err}")
                return
            now = datetime.now(UTC)
            until = min(who.expires_at or now + timedelta(seconds=COOKIE_MAX_SECONDS),
                        now + timedelta(seconds=COOKIE_MAX_SECONDS))
            seconds = max(1, int((until - now).total_seconds()))
            server.audit.record({"event": "login", "outcome": "signed-in",
                                 "person": who.person_id, "via": who.via,
                                 "until": until.isoformat(timespec="seconds"),
                                 "client": self.address_string()})
            cookie = (f"{COOKIE}={token}; Max-Age={seconds}; Path=/; HttpOnly; "
                      "SameSite=Strict")
            self._page(HTTPStatus.OK, f"Signed in as {who.person_id} ({who.role}, {who.unit}) "
                                      f"until {until:%H:%M} UTC. Reload the Web UI.", [cookie])

    return Handler


def staff_authenticator(settings: Any, service_settings: ServiceSettings | None = None
                        ) -> StaffAuthenticator:
    """The service's checks against the directory in the settings' database."""
    from adapters.engine import resolve_database_url
    from service.config import ServiceSettings

    return StaffAuthenticator(service_settings or ServiceSettings(),
                              resolve_database_url(settings))


def run_from_settings(settings: Any, *, host: str | None = None, port: int | None = None,
                      announce: Any = print, audit_path: Path | None = None) -> None:
    """`petition codec-server`: serve until interrupted."""
    from security.codec import keyring_from_settings

    # Plaintext passes through: histories written before encryption are still shown.
    codec = EncryptionCodec(keyring_from_settings(settings), allow_plaintext=True)
    origins = settings.codec_server_origins.split(",")
    server = CodecServer(codec, staff_authenticator(settings), origins,
                         host=host or settings.codec_server_host,
                         port=settings.codec_server_port if port is None else port,
                         audit_path=audit_path)
    announce(f"codec server on {server.url} (POST /decode for signed-in staff; "
             f"sign in at {server.login_url})")
    announce(f"UI origins allowed: {', '.join(sorted(server.origins)) or 'none'}")
    announce(f"decodes recorded in {server.audit.path}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


def ui_codec_server(ui_port: int, *, keyring: Any = None, settings: Any = None,
                    authenticator: Authenticator | None = None, port: int = 0,
                    audit_path: Path | None = None) -> CodecServer:
    """A started codec server for a local Web UI on `ui_port` (tests, `petition dev`) with
    the settings' keys (or `keyring`), checking tokens against the settings' database
    unless an `authenticator` is given."""
    from adapters.settings import get_settings
    from security.codec import keyring_from_settings

    settings = settings or get_settings()
    origins = [f"http://127.0.0.1:{ui_port}", f"http://localhost:{ui_port}",
               *settings.codec_server_origins.split(",")]
    codec = EncryptionCodec(keyring or keyring_from_settings(settings), allow_plaintext=True)
    auth = authenticator or staff_authenticator(settings)
    try:
        return CodecServer(codec, auth, origins, host=settings.codec_server_host, port=port,
                           audit_path=audit_path).start()
    except BaseException:
        auth.close()
        raise
