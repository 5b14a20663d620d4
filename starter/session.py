"""`petition login` / `petition act`: the command line as a client of the petition service.

A person signs in with their local account (`POST /auth/token`, the OAuth2 password
grant); the bearer token and its expiry are kept in a file only its owner can read
(`~/.config/petition-flow/session.json`, or `$PETITION_SESSION_FILE`). Actions go to
`POST /api/v1/petitions/{registration_no}/actions/{action}` with that token: the service
builds the actor from the verified identity and the directory, and signs the assertion
the workflow checks. Nobody types an actor.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from starter.errors import JsonProblem, load_json_object, one_line

DEFAULT_SERVICE = "http://localhost:8000"
SESSION_ENV = "PETITION_SESSION_FILE"
SERVICE_ENV = "PETITION_SERVICE_URL"
TIMEOUT = httpx.Timeout(60.0, connect=5.0)
REQUEST_ID = re.compile(r"^[!-~]{1,64}$")  # as the service's Idempotency-Key header
LOGIN_HINT = "run `petition login`"


class SessionError(Exception):
    """One line for the person at the terminal; nothing was changed."""


class Refused(SessionError):
    """The service (or the workflow behind it) refused the action."""


def service_url(given: str | None = None) -> str:
    return (given or os.environ.get(SERVICE_ENV) or DEFAULT_SERVICE).rstrip("/")


def session_file() -> Path:
    configured = os.environ.get(SESSION_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".config" / "petition-flow" / "session.json"


@dataclass(frozen=True)
class Session:
    service: str
    person_id: str
    access_token: str
    expires_at: datetime

    def expired(self, now: datetime | None = None) -> bool:
        return (now or datetime.now(UTC)) >= self.expires_at


# ---------------------------------------------------------------------- the file


def save(session: Session, path: Path | None = None) -> Path:
    """Write the session readable by its owner only (0600), atomically."""
    path = path or session_file()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    body = json.dumps({**asdict(session), "expires_at": session.expires_at.isoformat()},
                      indent=2).encode()
    fd, tmp = tempfile.mkstemp(prefix=".session-", dir=path.parent)  # created 0600
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, body)
        os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(path: Path | None = None, now: datetime | None = None) -> Session:
    """The stored session, or why there is none to act with."""
    path = path or session_file()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        session = Session(service=str(raw["service"]), person_id=str(raw["person_id"]),
                          access_token=str(raw["access_token"]),
                          expires_at=datetime.fromisoformat(raw["expires_at"]))
    except FileNotFoundError:
        raise SessionError(f"not signed in: {LOGIN_HINT}") from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SessionError(f"the session file {path} is unreadable "
                           f"({type(err).__name__}): {LOGIN_HINT}") from None
    if session.expired(now):
        raise SessionError(f"the session of {session.person_id} expired at "
                           f"{session.expires_at:%Y-%m-%d %H:%M:%S %Z}: {LOGIN_HINT} again")
    return session


def remove(path: Path | None = None) -> bool:
    """Forget the session; whether there was one."""
    path = path or session_file()
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


# ----------------------------------------------------------------- the service


def problem_line(response: httpx.Response) -> str:
    """A problem+json answer (or any other error) as one line."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return one_line(f"the service answered {response.status_code} "
                        f"{response.reason_phrase}", 300)
    detail = one_line(str(body.get("detail") or body.get("title") or ""), 500)
    if body.get("rule"):
        return f"refused [{one_line(str(body['rule']), 80)}]: {detail}"
    field = one_line(str(body.get("field") or ""), 80)
    if field and field not in detail:
        return f"{field}: {detail}"
    return detail or one_line(f"the service answered {response.status_code}", 100)


def _unreachable(service: str, err: httpx.HTTPError) -> SessionError:
    why = one_line(str(err) or type(err).__name__, 200)
    return SessionError(f"the petition service at {service} is unreachable ({why})")


def sign_in(service: str, person_id: str, password: str,
            *, transport: httpx.BaseTransport | None = None) -> Session:
    """A bearer token for the person's local account."""
    now = datetime.now(UTC)
    try:
        with httpx.Client(base_url=service, timeout=TIMEOUT, transport=transport) as http:
            answer = http.post("/auth/token", data={
                "grant_type": "password", "username": person_id, "password": password})
    except httpx.HTTPError as err:
        raise _unreachable(service, err) from None
    if answer.status_code != 200:
        raise SessionError(f"sign-in refused: {problem_line(answer)}")
    try:
        body = answer.json()
        token, lifetime = str(body["access_token"]), int(body["expires_in"])
    except (ValueError, KeyError, TypeError):
        raise SessionError(f"{service} did not answer a token: is it the petition "
                           "service?") from None
    return Session(service=service, person_id=person_id, access_token=token,
                   expires_at=now + timedelta(seconds=lifetime))


def action_body(data: str | None) -> tuple[dict[str, Any], str]:
    """The payload of `--data` and the request id (its `request_id`, else a new one): the
    service takes the request id as the Idempotency-Key header, not in the body."""
    try:
        payload = load_json_object(data) if data else {}
    except JsonProblem as problem:
        raise SessionError(f"--data: {problem}") from None
    if "actor" in payload:
        raise SessionError("--data: actor is not yours to set: the service acts as the "
                           "person signed in")
    request_id = payload.pop("request_id", None)
    if request_id is None:
        request_id = uuid.uuid4().hex
    if not isinstance(request_id, str) or not REQUEST_ID.match(request_id):
        raise SessionError("--data: request_id must be 1-64 printable ASCII characters")
    return payload, request_id


def act(session: Session, registration_no: str, action: str, payload: dict[str, Any],
        request_id: str, *, transport: httpx.BaseTransport | None = None) -> Any:
    """Send the action through the service; the petition's new status."""
    path = (f"/api/v1/petitions/{quote(registration_no, safe='')}"
            f"/actions/{quote(action, safe='')}")
    headers = {"Authorization": f"Bearer {session.access_token}",
               "Idempotency-Key": request_id}
    try:
        with httpx.Client(base_url=session.service, timeout=TIMEOUT,
                          transport=transport) as http:
            answer = http.post(path, json=payload, headers=headers)
    except httpx.HTTPError as err:
        raise _unreachable(session.service, err) from None
    if answer.status_code == 200:
        return answer.json()
    if answer.status_code == 401:
        raise SessionError(f"the service does not accept the session of "
                           f"{session.person_id} ({problem_line(answer)}): {LOGIN_HINT}")
    line = problem_line(answer)
    if line.startswith("refused ["):
        raise Refused(line)
    raise SessionError(line)

