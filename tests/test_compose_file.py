"""The production docker-compose.yml: valid Compose, and consistent with the code.

`docker compose config -q` is the authority when the Compose plugin is installed; without
it the file is checked against the Compose Specification JSON schema, vendored as
devstack/compose-spec.json (compose-spec/compose-spec, schema/compose-spec.json).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from temporalio.common import SearchAttributeIndexedValueType as IndexedType

from adapters.search_attributes import ALL_KEYS

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
SCHEMA_FILE = ROOT / "devstack" / "compose-spec.json"

# `temporal operator search-attribute create --type` spells the SDK's types like this.
CLI_TYPE_NAMES = {
    IndexedType.TEXT: "Text",
    IndexedType.KEYWORD: "Keyword",
    IndexedType.INT: "Int",
    IndexedType.DOUBLE: "Double",
    IndexedType.BOOL: "Bool",
    IndexedType.DATETIME: "Datetime",
    IndexedType.KEYWORD_LIST: "KeywordList",
}


# The database roles' passwords the file requires (docs/database-roles.md).
PASSWORDS = ("POSTGRES_PASSWORD", "PETITION_OWNER_PASSWORD", "PETITION_APP_PASSWORD",
             "PETITION_REPORTS_PASSWORD", "TEMPORAL_DB_PASSWORD")


def _load_compose() -> dict[str, Any]:
    try:
        import yaml
    except ImportError:  # a hard failure, not a skip: the check must not silently vanish
        pytest.fail("PyYAML is required to check docker-compose.yml (add it to the dev extra)")
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(document, dict)
    return document


def _schema_errors(document: dict[str, Any]) -> list[str]:
    try:
        import jsonschema
    except ImportError:
        pytest.fail("jsonschema is required to check docker-compose.yml (add it to the dev extra)")
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA_FILE.read_text()))
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def _compose_plugin_available() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
    return probe.returncode == 0


def _services() -> dict[str, Any]:
    services = _load_compose()["services"]
    assert isinstance(services, dict)
    return services


@pytest.mark.cli
def test_compose_file_is_valid() -> None:
    if _compose_plugin_available():
        result = subprocess.run(
            ["docker", "compose", "-f", str(COMPOSE_FILE), "config", "-q"],
            # The file requires its passwords on purpose; any value will do for validation.
            env={**os.environ, **{name: "validation-only" for name in PASSWORDS}},
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
    else:
        assert _schema_errors(_load_compose()) == []


def test_schema_fallback_rejects_a_broken_file() -> None:
    # Guards the fallback itself: a validator that accepted anything would make the check
    # above pass vacuously.
    broken = {"services": {"worker": {"imagee": "petition-flow", "ports": "8080"}}}
    assert len(_schema_errors(broken)) >= 2


def test_search_attributes_match_the_domain_keys() -> None:
    service = _services()["temporal-search-attributes"]
    pairs = service["environment"]["PETITION_SEARCH_ATTRIBUTES"].split()
    declared = dict(pair.split("=", 1) for pair in pairs)
    expected = {key.name: CLI_TYPE_NAMES[key.indexed_value_type] for key in ALL_KEYS}
    assert declared == expected
    assert len(pairs) == len(declared), "a search attribute is listed twice"


def test_services_and_start_order() -> None:
    services = _services()
    assert set(services) == {
        "postgresql",
        "temporal",
        "temporal-search-attributes",
        "temporal-ui",
        "migrate",
        "worker",
        "service",
    }
    assert services["temporal"]["image"].startswith("temporalio/auto-setup:")
    assert services["temporal"]["environment"]["DB"] == "postgres12"
    assert services["temporal-ui"]["image"].startswith("temporalio/ui:")
    assert services["temporal-ui"]["environment"]["TEMPORAL_DISABLE_WRITE_ACTIONS"] == "true"
    assert services["migrate"]["command"] == ["alembic", "upgrade", "head"]

    service = services["service"]
    assert service["command"][:3] == ["uvicorn", "--factory", "service.main:app_factory"]
    assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    # No process generates a key of its own: every key is the operator's.
    for name in ("service", "worker", "migrate"):
        environment = services[name]["environment"]
        assert environment["PETITION_DEV_KEYS"] == "false", name
        for key in ("CODEC_KEYS", "ASSERTION_KEYS", "ID_KEY", "INDEX_KEY",
                    "QUERY_CODE_KEY"):
            assert f"PETITION_{key}" in environment, (name, key)
        # The worker opens sealed personal data, the service its documents
        # (docs/documents.md): they hold the data keys; the migration job never does.
        assert ("PETITION_DATA_KEYS" in environment) == (name in ("worker", "service")), name
    assert "PETITION_SERVICE_TOKEN_KEYS" in service["environment"]

    worker = services["worker"]
    assert worker["build"]["dockerfile"] == "Dockerfile"
    assert (ROOT / worker["build"]["dockerfile"]).is_file()
    assert worker["command"] == ["python", "worker.py"]
    assert worker["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert worker["environment"]["DATABASE_URL"].endswith("@postgresql:5432/petitionflow")
    # The worker must not start before its schema and its search attributes exist.
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert (
        worker["depends_on"]["temporal-search-attributes"]["condition"]
        == "service_completed_successfully"
    )


def test_the_image_holds_every_package_the_project_installs() -> None:
    """`pip install .` in the Dockerfile needs each package's folder copied in first."""
    import tomllib

    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    missing = sorted({p.split(".")[0] for p in packages} - {
        line.split()[1] for line in dockerfile.splitlines() if line.startswith("COPY ")})
    assert missing == [], f"the Dockerfile does not COPY {missing}"


def _login(url: str) -> str:
    from sqlalchemy.engine import make_url

    return str(make_url(url).username)


def test_each_service_connects_as_its_own_database_role() -> None:
    """docs/database-roles.md: migrations as the schema's owner, the worker and the service
    as the application (rows only), reports read-only, Temporal as a role of its own; the
    cluster superuser (POSTGRES_USER) is nobody's."""
    from adapters.settings import Settings

    settings = Settings()
    services = _services()
    superuser = services["postgresql"]["environment"]["POSTGRES_USER"]
    for name in ("migrate", "worker", "service"):
        environment = services[name]["environment"]
        assert _login(environment["DATABASE_URL"]) == settings.db_app_role, name
        assert (_login(environment["PETITION_REPORTS_DATABASE_URL"])
                == settings.db_reports_role), name
        assert "PETITION_APP_PASSWORD" in environment["DATABASE_URL"], name
    migrate = services["migrate"]["environment"]
    assert _login(migrate["PETITION_MIGRATION_DATABASE_URL"]) == settings.db_owner_role
    assert "PETITION_OWNER_PASSWORD" in migrate["PETITION_MIGRATION_DATABASE_URL"]
    for name in ("worker", "service"):
        assert "PETITION_MIGRATION_DATABASE_URL" not in services[name]["environment"], name

    temporal = services["temporal"]["environment"]
    assert temporal["POSTGRES_USER"] not in {superuser, settings.db_owner_role,
                                             settings.db_app_role, settings.db_reports_role}
    assert temporal["SKIP_DB_CREATE"] == "true"  # the init script creates its databases
    assert "TEMPORAL_DB_PASSWORD" in temporal["POSTGRES_PWD"]
    everything = COMPOSE_FILE.read_text()
    assert f"//{superuser}:" not in everything, "a service logs in as the superuser"


def test_the_postgres_init_script_creates_the_roles() -> None:
    from adapters.settings import Settings

    settings = Settings()
    postgresql = _services()["postgresql"]
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in postgresql["volumes"]
              if volume.startswith("./")}
    init_dir = ROOT / mounts["/docker-entrypoint-initdb.d"]
    script = (init_dir / "00-roles.sh").read_text()
    temporal_role = _services()["temporal"]["environment"]["POSTGRES_USER"]
    for role in (settings.db_owner_role, settings.db_app_role, settings.db_reports_role,
                 temporal_role):
        assert f"CREATE ROLE {role} LOGIN PASSWORD" in script, role
    assert f"CREATE DATABASE temporal OWNER {temporal_role}" in script
    assert f"CREATE DATABASE temporal_visibility OWNER {temporal_role}" in script
    assert f"GRANT CREATE ON SCHEMA public TO {settings.db_owner_role}" in script
    # Each password the script reads is passed to the postgresql service.
    for variable in PASSWORDS[1:]:
        assert f"${{{variable}:?" in script
        assert variable in postgresql["environment"], variable
