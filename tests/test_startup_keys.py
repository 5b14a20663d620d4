"""Issue 13: production (PETITION_DEV_KEYS unset or false) refuses to start without keys,
with one clear line naming the setting -- before it touches the database or Temporal
(both unreachable here: were the key check not first, the error would be theirs)."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.processes

WORKER = [sys.executable, str(ROOT / "worker.py")]
SERVICE = [sys.executable, "-m", "uvicorn", "--factory", "service.main:app_factory",
           "--host", "127.0.0.1", "--port", "0"]
CODEC_SERVER = [sys.executable, "-c",
                "from security.cli import codec_server_cmd; codec_server_cmd(['--port', '0'])"]


def _env(tmp_path: Path, dev_keys: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PETITION_") and k not in {"DATABASE_URL", "TEMPORAL_ADDRESS"}}
    if dev_keys is not None:
        env["PETITION_DEV_KEYS"] = dev_keys
    return {**env, "PYTHONPATH": str(ROOT), "XDG_RUNTIME_DIR": str(tmp_path),
            "DATABASE_URL": "postgresql+asyncpg://nobody@127.0.0.1:9/none",
            "TEMPORAL_ADDRESS": "127.0.0.1:9",
            # Key files nobody wrote: nothing generated may be picked up either.
            "PETITION_CODEC_KEY_FILE": str(tmp_path / "codec-keys"),
            "PETITION_ASSERTION_KEY_FILE": str(tmp_path / "assertion-keys"),
            "PETITION_ID_KEY_FILE": str(tmp_path / "id-key"),
            "PETITION_DATA_KEY_FILE": str(tmp_path / "data-keys"),
            "PETITION_INDEX_KEY_FILE": str(tmp_path / "index-key"),
            "PETITION_QUERY_CODE_KEY_FILE": str(tmp_path / "query-code-key"), **extra}


def _run(command: list[str], env: dict[str, str], cwd: Path) -> tuple[int, list[str]]:
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=60)
    return done.returncode, (done.stdout + done.stderr).strip().splitlines()


@pytest.mark.parametrize("dev_keys", [None, "false"], ids=["unset", "false"])
@pytest.mark.parametrize(("name", "command", "prefix"), [
    ("worker", WORKER, "worker refused to start: "),
    ("service", SERVICE, "service refused to start: "),
    ("codec-server", CODEC_SERVER, "error: "),
])
def test_without_keys_each_process_refuses_in_one_line(
        tmp_path: Path, name: str, command: list[str], prefix: str,
        dev_keys: str | None) -> None:
    code, lines = _run(command, _env(tmp_path, dev_keys), tmp_path)
    assert code != 0, f"{name} started without keys"
    assert len(lines) == 1, f"{name} said more than one line:\n" + "\n".join(lines)
    assert lines[0].startswith(prefix) and "PETITION_CODEC_KEYS" in lines[0], lines[0]
    assert not list(tmp_path.glob("*-key*")), "a key was generated"


def test_the_next_missing_key_is_named_too(tmp_path: Path) -> None:
    """Codec keys configured, assertion keys not: the worker names those."""
    key = base64.b64encode(os.urandom(32)).decode()
    code, lines = _run(WORKER, _env(tmp_path, "false", PETITION_CODEC_KEYS=f"k1:{key}"),
                       tmp_path)
    assert code != 0 and len(lines) == 1, lines
    assert "PETITION_ASSERTION_KEYS" in lines[0]


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@pytest.mark.parametrize(("configured", "named"), [
    (("CODEC_KEYS", "ASSERTION_KEYS", "ID_KEY"), "PETITION_DATA_KEYS"),
    (("CODEC_KEYS", "ASSERTION_KEYS", "ID_KEY", "DATA_KEYS"), "PETITION_INDEX_KEY"),
], ids=["data-keys", "index-key"])
def test_the_personal_data_keys_are_required_too(
        tmp_path: Path, configured: tuple[str, ...], named: str) -> None:
    keys = {f"PETITION_{name}": f"k1:{_key()}" for name in configured}
    code, lines = _run(WORKER, _env(tmp_path, "false", **keys), tmp_path)
    assert code != 0 and len(lines) == 1, lines
    assert named in lines[0], lines[0]


def test_with_dev_keys_the_worker_gets_past_the_keys(tmp_path: Path) -> None:
    """The control: development keys allowed, the worker passes the key check and fails
    later, on the unreachable database -- so the refusals above are the key check's."""
    code, lines = _run(WORKER, _env(tmp_path, "true"), tmp_path)
    assert code != 0
    assert not any("refused to start" in line and "KEYS" in line for line in lines)
    assert (tmp_path / "codec-keys").exists()


def test_the_service_requires_the_data_keys(tmp_path: Path) -> None:
    """The service seals and opens documents (docs/documents.md): without the key-
    encryption keys it refuses to start, naming them, and generates none."""
    keys = {f"PETITION_{name}": f"k1:{_key()}"
            for name in ("CODEC_KEYS", "ASSERTION_KEYS", "ID_KEY", "INDEX_KEY",
                         "SERVICE_TOKEN_KEYS", "QUERY_CODE_KEY")}
    code, lines = _run(SERVICE, _env(tmp_path, "false", **keys), tmp_path)
    assert code != 0 and len(lines) == 1, lines
    assert lines[0].startswith("service refused to start: ")
    assert "PETITION_DATA_KEYS" in lines[0], lines[0]
    assert not (tmp_path / "data-keys").exists()


def test_with_the_data_keys_the_service_gets_past_the_keys(tmp_path: Path) -> None:
    """The control: every key configured, the service passes the key check and fails
    later, on the unreachable Temporal server."""
    keys = {f"PETITION_{name}": f"k1:{_key()}"
            for name in ("CODEC_KEYS", "ASSERTION_KEYS", "ID_KEY", "INDEX_KEY",
                         "SERVICE_TOKEN_KEYS", "DATA_KEYS", "QUERY_CODE_KEY")}
    code, lines = _run(SERVICE, _env(tmp_path, "false", **keys), tmp_path)
    assert code != 0
    assert not any("refused to start" in line for line in lines), lines
