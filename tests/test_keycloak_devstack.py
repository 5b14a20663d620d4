"""The local OpenID Connect provider (devstack/keycloak.py): a real Keycloak with the realm
`petition-flow` (devstack/keycloak-realm.json), exercised the way the API will use it.

(a) discovery: the issuer, the JWKS and the grants the API relies on are advertised;
(b) an intake system gets a client-credentials token whose RS256 signature verifies against
    the JWKS (PyJWT), with `iss`, `aud` = petition-flow and a future `exp`; a wrong secret is
    refused and a tampered token fails verification;
(c) staff sign-in: the browser flow (authorization code + PKCE S256) for QS-HRSS.h1, driven
    over HTTP like a browser would, and the tests-only password grant; both tokens name the
    directory person in `preferred_username` and `person_id`;
(d) the realm's users are people of the sample directory.
"""

from __future__ import annotations

import base64
import hashlib
import html
import http.cookiejar
import json
import re
import secrets
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from email.message import Message
from typing import Any

import jwt
import pytest

from devstack.keycloak import AUDIENCE, KeycloakServer, realm_file, start_keycloak
from devstack.temporal_server import free_port
from starter.runtime import SAMPLE_DIRECTORY

pytestmark = pytest.mark.servers  # starts its own Keycloak: not in the fast tier

DEV_PASSWORD = "dev-only-password"
PERSON = "QS-HRSS.h1"
# Any port on the loopback address is accepted (RFC 8252): the realm registers no port.
CALLBACK = "http://127.0.0.1:54321/callback"


def _realm() -> dict[str, Any]:
    return dict(json.loads(realm_file().read_text(encoding="utf-8")))


def _secret(client_id: str) -> str:
    return next(str(c["secret"]) for c in _realm()["clients"] if c["clientId"] == client_id)


@pytest.fixture(scope="module")
def keycloak() -> Iterator[KeycloakServer]:
    # A temporary data directory, seeded from the cached pristine database of this realm.
    with start_keycloak(free_port()) as server:
        yield server


@pytest.fixture(scope="module")
def discovery(keycloak: KeycloakServer) -> dict[str, Any]:
    with urllib.request.urlopen(keycloak.discovery_url, timeout=10) as response:
        return dict(json.load(response))


def _post(url: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=urllib.parse.urlencode(form).encode())
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(json.load(response))
    except urllib.error.HTTPError as refused:
        return refused.code, dict(json.load(refused))


def _verify(token: str, discovery: dict[str, Any]) -> dict[str, Any]:
    """What the API will do with a bearer token: signature by the JWKS, iss, aud, exp."""
    key = jwt.PyJWKClient(discovery["jwks_uri"]).get_signing_key_from_jwt(token)
    return dict(jwt.decode(
        token,
        key.key,
        algorithms=["RS256"],
        audience=AUDIENCE,
        issuer=discovery["issuer"],
        options={"require": ["exp", "iat", "iss", "aud", "sub"]},
    ))


def test_discovery_document(keycloak: KeycloakServer, discovery: dict[str, Any]) -> None:
    assert discovery["issuer"] == keycloak.issuer
    assert discovery["issuer"] == f"http://localhost:{keycloak.port}/realms/petition-flow"
    assert discovery["jwks_uri"] == keycloak.jwks_url
    assert discovery["token_endpoint"] == keycloak.token_url
    assert "S256" in discovery["code_challenge_methods_supported"]
    assert {"authorization_code", "client_credentials"} <= set(discovery["grant_types_supported"])
    assert "RS256" in discovery["id_token_signing_alg_values_supported"]


@pytest.mark.parametrize("client_id", ["intake-12345", "intake-portal"])
def test_intake_client_credentials_token(
    keycloak: KeycloakServer, discovery: dict[str, Any], client_id: str
) -> None:
    status, body = _post(keycloak.token_url, {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_secret": _secret(client_id),
    })
    assert status == 200, body
    assert body["token_type"] == "Bearer"
    claims = _verify(body["access_token"], discovery)
    assert claims["iss"] == keycloak.issuer
    assert claims["aud"] == AUDIENCE  # only the API: no `account` audience for a system
    assert claims["azp"] == client_id
    assert claims["client_id"] == client_id
    now = time.time()
    assert now < claims["exp"] <= now + 301
    assert claims["exp"] - claims["iat"] == 300


def test_wrong_client_secret_is_refused(keycloak: KeycloakServer) -> None:
    status, body = _post(keycloak.token_url, {
        "grant_type": "client_credentials",
        "client_id": "intake-12345",
        "client_secret": _secret("intake-portal"),
    })
    assert status == 401
    assert body["error"] == "unauthorized_client"


def test_tampered_token_fails_verification(
    keycloak: KeycloakServer, discovery: dict[str, Any]
) -> None:
    _, body = _post(keycloak.token_url, {
        "grant_type": "client_credentials",
        "client_id": "intake-12345",
        "client_secret": _secret("intake-12345"),
    })
    header, payload, signature = body["access_token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["azp"] = "intake-portal"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(jwt.InvalidSignatureError):
        _verify(f"{header}.{forged}.{signature}", discovery)
    # ...and a token for another audience is refused too.
    key = jwt.PyJWKClient(discovery["jwks_uri"]).get_signing_key_from_jwt(body["access_token"])
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(body["access_token"], key.key, algorithms=["RS256"], audience="other-api")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Stop at a redirect: the callback is an address nothing listens on, as in a real test."""

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str,
                         headers: Message, newurl: str) -> None:
        return None


def _browser() -> urllib.request.OpenerDirector:
    # Keycloak's cookies are `Secure`; browsers still send them to http://localhost (a secure
    # context), and so must this cookie jar, which only ever talks to localhost here.
    policy = http.cookiejar.DefaultCookiePolicy(secure_protocols=("https", "wss", "http"))
    return urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar(policy)), _NoRedirect()
    )


def _authorize_url(discovery: dict[str, Any], challenge: str | None, state: str) -> str:
    query = {
        "response_type": "code",
        "client_id": "workbench",
        "redirect_uri": CALLBACK,
        "scope": "openid",
        "state": state,
    }
    if challenge is not None:
        query |= {"code_challenge": challenge, "code_challenge_method": "S256"}
    return f"{discovery['authorization_endpoint']}?{urllib.parse.urlencode(query)}"


def _redirect_query(error: urllib.error.HTTPError) -> dict[str, str]:
    assert error.code in (302, 303), error.code
    location = error.headers["Location"]
    assert location.startswith(CALLBACK), location
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))


def test_browser_sign_in_with_pkce(keycloak: KeycloakServer, discovery: dict[str, Any]) -> None:
    browser = _browser()
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(
        hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    state = secrets.token_urlsafe(12)
    with browser.open(_authorize_url(discovery, challenge, state), timeout=30) as page:
        login_page = page.read().decode()
    found = re.search(r'action="([^"]*login-actions/authenticate[^"]*)"', login_page)
    assert found, "no login form on the authorization page"
    form = urllib.parse.urlencode({"username": PERSON, "password": DEV_PASSWORD}).encode()
    with pytest.raises(urllib.error.HTTPError) as redirected:
        browser.open(html.unescape(found.group(1)), data=form, timeout=30)
    callback = _redirect_query(redirected.value)
    assert callback["state"] == state
    assert callback["iss"] == keycloak.issuer

    exchange = {
        "grant_type": "authorization_code",
        "client_id": "workbench",
        "redirect_uri": CALLBACK,
        "code": callback["code"],
    }
    # The code is bound to the challenge: a wrong verifier is refused.
    status, body = _post(keycloak.token_url, exchange | {"code_verifier": verifier[::-1]})
    assert status == 400 and body["error"] == "invalid_grant", body

    # Sign in again (the session cookie skips the form) and redeem with the right verifier.
    state = secrets.token_urlsafe(12)
    with pytest.raises(urllib.error.HTTPError) as redirected:
        browser.open(_authorize_url(discovery, challenge, state), timeout=30)
    callback = _redirect_query(redirected.value)
    status, body = _post(keycloak.token_url, exchange | {
        "code": callback["code"], "code_verifier": verifier})
    assert status == 200, body
    claims = _verify(body["access_token"], discovery)
    assert claims["azp"] == "workbench"
    assert claims["preferred_username"] == PERSON
    assert claims["person_id"] == PERSON
    identity = jwt.decode(body["id_token"], options={"verify_signature": False})
    assert identity["preferred_username"] == PERSON
    assert identity["aud"] == "workbench"


def test_workbench_requires_pkce(discovery: dict[str, Any]) -> None:
    with pytest.raises(urllib.error.HTTPError) as redirected:
        _browser().open(_authorize_url(discovery, None, "no-pkce"), timeout=30)
    callback = _redirect_query(redirected.value)
    assert callback["error"] == "invalid_request"
    assert "code_challenge_method" in callback["error_description"]


def test_tests_only_password_grant(keycloak: KeycloakServer, discovery: dict[str, Any]) -> None:
    login = {"grant_type": "password", "client_id": "workbench-tests", "username": PERSON,
             "scope": "openid"}
    status, body = _post(keycloak.token_url, login | {"password": DEV_PASSWORD})
    assert status == 200, body
    claims = _verify(body["access_token"], discovery)
    # Keycloak stores usernames in lower case; the claims carry the directory id as written.
    assert claims["preferred_username"] == PERSON
    assert claims["person_id"] == PERSON
    status, body = _post(keycloak.token_url, login | {"password": "wrong"})
    assert status == 400 and body["error"] == "invalid_grant", body
    # The browser client offers no password grant.
    status, body = _post(keycloak.token_url, login | {"client_id": "workbench",
                                                      "password": DEV_PASSWORD})
    assert status in (400, 401) and body["error"] == "unauthorized_client", body


def test_realm_users_are_directory_people() -> None:
    directory = tomllib.loads(SAMPLE_DIRECTORY.read_text(encoding="utf-8"))
    people = {person["id"] for person in directory["people"]}
    users = _realm()["users"]
    assert {"QS-HRSS.h1", "QS-HRSS.head", "YZ-LDR1"} <= {user["username"] for user in users}
    for user in users:
        assert user["username"] in people
        assert user["attributes"]["person_id"] == [user["username"]]
