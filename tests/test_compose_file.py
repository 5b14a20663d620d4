"""The production docker-compose.yml: valid Compose, and consistent with the code.

`docker compose config -q` is the authority when the Compose plugin is installed; without
it the file is checked against the Compose Specification JSON schema, vendored as
devstack/compose-spec.json (compose-spec/compose-spec, schema/compose-spec.json).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from temporalio.common import SearchAttributeIndexedValueType as IndexedType

from adapters.search_attributes import ALL_KEYS
from devstack.keycloak import KEYCLOAK_VERSION
from devstack.temporal_cluster import DYNAMIC_CONFIG, SERVER_VERSION, VALUES
from devstack.temporal_ui import _READ_ONLY, UI_SERVER_VERSION

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
             "PETITION_REPORTS_PASSWORD", "TEMPORAL_DB_PASSWORD", "KEYCLOAK_DB_PASSWORD",
             "PETITION_BACKUP_PASSWORD")

# The application's containers (the image of ./Dockerfile).
APP_SERVICES = ("migrate", "worker", "service", "codec-server")
# The Temporal server's containers, one role each, and the cluster's process counts.
TEMPORAL_ROLES = {"temporal-history": "HISTORY", "temporal-matching": "MATCHING",
                  "temporal-frontend": "FRONTEND", "temporal-worker": "WORKER"}

# The UI server's docker config (ui-server v2.42.1, config/docker.yaml): the environment
# variable behind each read-only switch devstack/temporal_ui.py sets.
UI_SWITCH_VARIABLES = {
    "disableWriteActions": "TEMPORAL_DISABLE_WRITE_ACTIONS",
    "workflowTerminateDisabled": "TEMPORAL_WORKFLOW_TERMINATE_DISABLED",
    "workflowCancelDisabled": "TEMPORAL_WORKFLOW_CANCEL_DISABLED",
    "workflowSignalDisabled": "TEMPORAL_WORKFLOW_SIGNAL_DISABLED",
    "workflowUpdateDisabled": "TEMPORAL_WORKFLOW_UPDATE_DISABLED",
    "workflowResetDisabled": "TEMPORAL_WORKFLOW_RESET_DISABLED",
    "batchActionsDisabled": "TEMPORAL_BATCH_ACTIONS_DISABLED",
    "startWorkflowDisabled": "TEMPORAL_START_WORKFLOW_DISABLED",
    "activityCommandsDisabled": "TEMPORAL_ACTIVITY_COMMANDS_DISABLED",
}


def _required_variables() -> set[str]:
    """Every variable the file refuses to start without (`${NAME:?...}`)."""
    return set(re.findall(r"\$\{([A-Z0-9_]+):\?", COMPOSE_FILE.read_text()))


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
            # The file requires its keys and passwords on purpose; any value will do here.
            env={**os.environ, **{name: "validation-only" for name in _required_variables()}},
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
    service = _services()["temporal-namespace"]
    pairs = service["environment"]["PETITION_SEARCH_ATTRIBUTES"].split()
    declared = dict(pair.split("=", 1) for pair in pairs)
    expected = {key.name: CLI_TYPE_NAMES[key.indexed_value_type] for key in ALL_KEYS}
    assert declared == expected
    assert len(pairs) == len(declared), "a search attribute is listed twice"


def test_services_and_start_order() -> None:
    services = _services()
    assert set(services) == {
        "postgresql", "temporal-schema", *TEMPORAL_ROLES, "temporal-namespace", "temporal-ui",
        "keycloak", "migrate", "worker", "service", "codec-server", "prometheus", "grafana",
        "backup", "restore",
    }
    for name, role in TEMPORAL_ROLES.items():
        assert services[name]["image"].startswith("temporalio/server:"), name
        assert services[name]["environment"]["SERVICES"] == role.lower(), name
        assert services[name]["environment"]["DB"] == VALUES["TEMPORAL_DB_PLUGIN"], name
    # History starts alone, after the schemas; the other roles once it is up (services
    # started together on an empty database race on the cluster metadata).
    history = services["temporal-history"]["depends_on"]
    assert history == {"temporal-schema": {"condition": "service_completed_successfully"}}
    for name in ("temporal-matching", "temporal-frontend", "temporal-worker"):
        assert services[name]["depends_on"]["temporal-history"]["condition"] \
            == "service_healthy", name
    assert services["temporal-ui"]["image"].startswith("temporalio/ui:")
    assert services["migrate"]["command"] == ["alembic", "upgrade", "head"]

    service = services["service"]
    assert service["command"][:3] == ["uvicorn", "--factory", "service.main:app_factory"]
    assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["codec-server"]["command"][:2] == ["petition", "codec-server"]
    # No process generates a key of its own: every key is the operator's.
    for name in APP_SERVICES:
        environment = services[name]["environment"]
        assert environment["PETITION_DEV_KEYS"] == "false", name
        for key in ("CODEC_KEYS", "ASSERTION_KEYS", "ID_KEY", "INDEX_KEY",
                    "QUERY_CODE_KEY"):
            assert f"PETITION_{key}" in environment, (name, key)
        # The worker opens sealed personal data, the service its documents
        # (docs/documents.md): they hold the data keys; no other process does.
        assert ("PETITION_DATA_KEYS" in environment) == (name in ("worker", "service")), name
    for name in ("service", "codec-server"):
        assert "PETITION_SERVICE_TOKEN_KEYS" in services[name]["environment"], name
        assert services[name]["environment"]["PETITION_SERVICE_OIDC_ISSUER"].endswith(
            "/realms/petition-flow"), name

    worker = services["worker"]
    assert worker["build"]["dockerfile"] == "Dockerfile"
    assert (ROOT / worker["build"]["dockerfile"]).is_file()
    assert worker["command"] == ["python", "worker.py"]
    assert worker["environment"]["TEMPORAL_ADDRESS"] == "temporal-frontend:7233"
    assert worker["environment"]["DATABASE_URL"].endswith("@postgresql:5432/petitionflow")
    # The worker must not start before its schema, its namespace and search attributes.
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert (worker["depends_on"]["temporal-namespace"]["condition"]
            == "service_completed_successfully")


def test_no_key_is_generated_or_written_in() -> None:
    """Keys come from the environment (`${NAME:?...}`), never generated: no service turns
    development keys on, and no key or password has a value in the file."""
    text = COMPOSE_FILE.read_text()
    for match in re.finditer(r"PETITION_DEV_KEYS:\s*(\S+)", text):
        assert match.group(1) == '"false"', match.group(0)
    required = _required_variables()
    for name in ("PETITION_CODEC_KEYS", "PETITION_ASSERTION_KEYS", "PETITION_ID_KEY",
                 "PETITION_DATA_KEYS", "PETITION_INDEX_KEY", "PETITION_QUERY_CODE_KEY",
                 "PETITION_SERVICE_TOKEN_KEYS", "KEYCLOAK_ADMIN_PASSWORD",
                 "TEMPORAL_UI_CLIENT_SECRET", "TEMPORAL_TLS_DIR", *PASSWORDS):
        assert name in required, name
    for service in _services().values():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"(KEYS?|PASSWORD|PWD|SECRET)$", key) and key != "PETITION_DEV_KEYS":
                assert "${" in str(value) or str(value).startswith("/run/secrets/"), (key, value)


def test_every_image_is_pinned() -> None:
    """Each image names a version (no `latest`, no bare name); the app's is built here."""
    for name, service in _services().items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", (name, image)
        assert re.match(r"v?\d+\.\d+", tag), (name, image)


def test_the_server_is_the_clusters() -> None:
    """The version and the values `make test-cluster` runs (devstack/temporal-cluster.env)."""
    services = _services()
    for name in (*TEMPORAL_ROLES, "temporal-schema", "temporal-namespace"):
        tag = services[name]["image"].split(":", 1)[1]
        assert tag == SERVER_VERSION or tag.startswith(f"{SERVER_VERSION}-"), (name, tag)
    for name, role in TEMPORAL_ROLES.items():
        environment = services[name]["environment"]
        assert environment["NUM_HISTORY_SHARDS"] == VALUES["TEMPORAL_NUM_HISTORY_SHARDS"]
        assert environment["DBNAME"] == VALUES["TEMPORAL_DB"]
        assert environment["VISIBILITY_DBNAME"] == VALUES["TEMPORAL_VISIBILITY_DB"]
        assert environment["POSTGRES_USER"] == VALUES["TEMPORAL_DB_USER"]
        assert environment["SQL_MAX_CONNS"] == VALUES["TEMPORAL_DB_MAX_CONNS"]
        assert environment["SQL_VIS_MAX_CONNS"] == VALUES["TEMPORAL_VISIBILITY_DB_MAX_CONNS"]
        assert environment["TEMPORAL_TLS_REQUIRE_CLIENT_AUTH"] == "true"
        for variable in ("TEMPORAL_TLS_INTERNODE_SERVER_NAME",
                         "TEMPORAL_TLS_FRONTEND_SERVER_NAME"):
            assert environment[variable] == VALUES["TEMPORAL_TLS_SERVER_NAME"], variable
        replicas = services[name]["deploy"]["replicas"]
        assert replicas == int(VALUES[f"TEMPORAL_{role}_PROCESSES"]), name
        mounts = {volume.split(":")[1]: volume.split(":")[0]
                  for volume in services[name]["volumes"]}
        dynamic = mounts[environment["DYNAMIC_CONFIG_FILE_PATH"]]
        assert yaml_load(ROOT / dynamic) == yaml_load_text(DYNAMIC_CONFIG)
    schema = services["temporal-schema"]
    assert schema["environment"]["SQL_PLUGIN"] == VALUES["TEMPORAL_DB_PLUGIN"]
    script = schema["command"][0]
    assert "temporal_visibility:visibility" in script and "temporal:temporal" in script
    assert "update-schema --schema-name" in script
    namespace = services["temporal-namespace"]["environment"]
    assert namespace["TEMPORAL_NAMESPACE"] == VALUES["TEMPORAL_NAMESPACE"]
    assert namespace["TEMPORAL_NAMESPACE_RETENTION"] == \
        f"{VALUES['TEMPORAL_NAMESPACE_RETENTION_HOURS']}h"
    for name in APP_SERVICES:
        environment = services[name]["environment"]
        assert environment["PETITION_TEMPORAL_NAMESPACE"] == VALUES["TEMPORAL_NAMESPACE"]
        assert environment["PETITION_TEMPORAL_TLS_SERVER_NAME"] \
            == VALUES["TEMPORAL_TLS_SERVER_NAME"]
    postgresql = services["postgresql"]
    assert postgresql["image"].split(":")[1].split(".")[0] == "18"
    assert f"max_connections={VALUES['POSTGRES_MAX_CONNECTIONS']}" in postgresql["command"]


def test_the_ui_is_the_tested_one_and_read_only() -> None:
    ui = _services()["temporal-ui"]
    assert ui["image"] == f"temporalio/ui:{UI_SERVER_VERSION.lstrip('v')}"
    environment = ui["environment"]
    assert set(_READ_ONLY) == set(UI_SWITCH_VARIABLES)
    for switch, value in _READ_ONLY.items():
        assert environment[UI_SWITCH_VARIABLES[switch]] == str(value).lower(), switch
    assert environment["TEMPORAL_DEFAULT_NAMESPACE"] == VALUES["TEMPORAL_NAMESPACE"]
    assert environment["TEMPORAL_CODEC_ENDPOINT"].startswith("${CODEC_SERVER_URL")
    assert environment["TEMPORAL_CODEC_PASS_ACCESS_TOKEN"] == "true"
    assert environment["TEMPORAL_AUTH_ENABLED"] == "true"


def test_keycloak_is_the_one_devstack_runs() -> None:
    keycloak = _services()["keycloak"]
    assert keycloak["image"] == f"quay.io/keycloak/keycloak:{KEYCLOAK_VERSION}"
    assert "--import-realm" in keycloak["command"]
    imported = [volume.split(":")[0] for volume in keycloak["volumes"]
                if ":/opt/keycloak/data/import/" in volume]
    assert imported == ["./devstack/keycloak-realm.json"]
    assert keycloak["environment"]["KC_DB"] == "postgres"


def yaml_load(path: Path) -> Any:
    return yaml_load_text(path.read_text())


def yaml_load_text(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


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
    for name in APP_SERVICES:
        environment = services[name]["environment"]
        assert _login(environment["DATABASE_URL"]) == settings.db_app_role, name
        assert (_login(environment["PETITION_REPORTS_DATABASE_URL"])
                == settings.db_reports_role), name
        assert "PETITION_APP_PASSWORD" in environment["DATABASE_URL"], name
    migrate = services["migrate"]["environment"]
    assert _login(migrate["PETITION_MIGRATION_DATABASE_URL"]) == settings.db_owner_role
    assert "PETITION_OWNER_PASSWORD" in migrate["PETITION_MIGRATION_DATABASE_URL"]
    for name in APP_SERVICES[1:]:
        assert "PETITION_MIGRATION_DATABASE_URL" not in services[name]["environment"], name

    temporal = services["temporal-history"]["environment"]
    assert temporal["POSTGRES_USER"] not in {superuser, settings.db_owner_role,
                                             settings.db_app_role, settings.db_reports_role}
    assert "TEMPORAL_DB_PASSWORD" in temporal["POSTGRES_PWD"]
    assert services["temporal-schema"]["environment"]["SQL_USER"] == temporal["POSTGRES_USER"]
    assert "KEYCLOAK_DB_PASSWORD" in services["keycloak"]["environment"]["KC_DB_PASSWORD"]
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
    temporal_role = _services()["temporal-history"]["environment"]["POSTGRES_USER"]
    keycloak_role = _services()["keycloak"]["environment"]["KC_DB_USERNAME"]
    for role in (settings.db_owner_role, settings.db_app_role, settings.db_reports_role,
                 temporal_role, keycloak_role):
        assert f"CREATE ROLE {role} LOGIN PASSWORD" in script, role
    assert f"CREATE DATABASE temporal OWNER {temporal_role}" in script
    assert f"CREATE DATABASE temporal_visibility OWNER {temporal_role}" in script
    assert f"CREATE DATABASE keycloak OWNER {keycloak_role}" in script
    assert "CREATE EXTENSION IF NOT EXISTS btree_gist" in script
    assert f"GRANT CREATE ON SCHEMA public TO {settings.db_owner_role}" in script
    # Each password the script reads is passed to the postgresql service.
    for variable in PASSWORDS[1:]:
        assert f"${{{variable}:?" in script
        assert variable in postgresql["environment"], variable


def test_the_example_environment_names_every_required_variable() -> None:
    """deploy/env.example lists what the file requires, each without a value."""
    lines = [line for line in (ROOT / "deploy" / "env.example").read_text().splitlines()
             if line and not line.startswith("#")]
    listed = {line.split("=", 1)[0]: line.split("=", 1)[1] for line in lines}
    assert _required_variables() <= set(listed)
    assert all(value == "" for value in listed.values()), "env.example holds a value"


# ------------------------------------------------------------- metrics and traces


def _mounts(service: dict[str, Any]) -> dict[str, Path]:
    """The service's bind mounts from this repository: container path -> file here."""
    return {volume.split(":")[1]: ROOT / volume.split(":")[0]
            for volume in service.get("volumes", []) if volume.startswith("./")}


def _port(address: str) -> int:
    return int(address.rpartition(":")[2])


def _scrape_targets() -> dict[str, tuple[set[str], int, str]]:
    """Prometheus's jobs as the compose file mounts its config: job -> (the compose
    services it finds by name, their port, the metrics path)."""
    prometheus = _services()["prometheus"]
    config_flag = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    config = yaml_load(_mounts(prometheus)[config_flag.split("=", 1)[1]])
    targets: dict[str, tuple[set[str], int, str]] = {}
    for job in config["scrape_configs"]:
        [discovery] = job["dns_sd_configs"]
        assert discovery["type"] == "A", job["job_name"]
        targets[job["job_name"]] = (set(discovery["names"]), discovery["port"],
                                    job.get("metrics_path", "/metrics"))
    return targets


def test_prometheus_scrapes_every_metrics_endpoint_compose_opens() -> None:
    """Each scrape target is a compose service on the port compose sets for it: the
    service's own port (/metrics), the worker's two metrics addresses, each Temporal
    role's PROMETHEUS_ENDPOINT; the rules file is the one the repository holds."""
    services = _services()
    targets = _scrape_targets()
    service_port = int(services["service"]["command"][
        services["service"]["command"].index("--port") + 1])
    worker = services["worker"]["environment"]
    expected = {
        "petition-service": ({"service"}, service_port, "/metrics"),
        "petition-worker": ({"worker"}, _port(worker["PETITION_WORKER_APP_METRICS_ADDRESS"]),
                            "/metrics"),
        "petition-worker-sdk": ({"worker"}, _port(worker["PETITION_WORKER_METRICS_ADDRESS"]),
                                "/metrics"),
    }
    for name in TEMPORAL_ROLES:
        port = _port(services[name]["environment"]["PROMETHEUS_ENDPOINT"])
        expected.setdefault("temporal-server", (set(), port, "/metrics"))[0].add(name)
        assert expected["temporal-server"][1] == port, name
    assert targets == expected
    # The names the worker reads (observability/metrics.py), listening on every interface.
    from observability.metrics import APP_METRICS_ENV, SDK_METRICS_ENV

    assert {APP_METRICS_ENV, SDK_METRICS_ENV} <= set(worker)
    assert all(worker[name].startswith("0.0.0.0:") for name in (APP_METRICS_ENV,
                                                                SDK_METRICS_ENV))

    prometheus = services["prometheus"]
    mounts = _mounts(prometheus)
    config = yaml_load(mounts["/etc/prometheus/prometheus.yml"])
    assert [mounts[rule] for rule in config["rule_files"]] == [
        ROOT / "deploy" / "prometheus" / "petition-flow-rules.yml"]
    assert all(path.is_file() for path in mounts.values())


def test_grafana_shows_the_dashboard_on_that_prometheus() -> None:
    services = _services()
    grafana = services["grafana"]
    mounts = _mounts(grafana)
    provisioning = mounts["/etc/grafana/provisioning"]
    [source] = yaml_load(provisioning / "datasources" / "prometheus.yml")["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"] is True
    prometheus_port = int(services["prometheus"]["ports"][0].rsplit(":", 1)[1])
    assert source["url"] == f"http://prometheus:{prometheus_port}"
    [provider] = yaml_load(provisioning / "dashboards" / "petition-flow.yml")["providers"]
    folder = provider["options"]["path"]
    dashboards = {path: file for path, file in mounts.items() if path.startswith(folder + "/")}
    assert list(dashboards.values()) == [ROOT / "deploy" / "grafana" / "petition-flow.json"]
    dashboard = json.loads(dashboards[f"{folder}/petition-flow.json"].read_text())
    # Its panels ask for the `datasource` variable, which the default source answers.
    assert [v["type"] for v in dashboard["templating"]["list"] if v["name"] == "datasource"] \
        == ["datasource"]


def test_the_worker_and_the_service_get_the_otlp_settings() -> None:
    """Traces (docs/operations.md): the standard variables from .env, empty by default
    (observability/tracing.py treats empty as unset)."""
    services = _services()
    for name in ("worker", "service"):
        environment = services[name]["environment"]
        for variable in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                         "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_TRACES_SAMPLER",
                         "OTEL_TRACES_SAMPLER_ARG"):
            assert environment[variable] == f"${{{variable}:-}}", (name, variable)
    example = (ROOT / "deploy" / "env.example").read_text()
    assert "# OTEL_EXPORTER_OTLP_ENDPOINT=" in example


def test_the_backup_job_backs_up_as_the_replication_role_to_encrypted_files() -> None:
    """docs/backup.md: `docker compose run --rm backup`, never started with the stack, as a
    role that may replicate and nothing else, encrypted to the operators' recipients."""
    services = _services()
    backup = services["backup"]
    assert backup["profiles"] == ["tools"]
    assert backup["image"] == services["worker"]["image"]  # petition and pg_basebackup
    command = " ".join(backup["command"])
    assert "petition backup create --to /backups/" in command
    assert "--unencrypted" not in command
    environment = backup["environment"]
    role = re.search(r"user=(\w+)", environment["PETITION_BACKUP_DSN"]).group(1)  # type: ignore[union-attr]
    assert "PETITION_BACKUP_PASSWORD" in environment["PGPASSWORD"]
    assert "PETITION_BACKUP_RECIPIENTS:?" in environment["PETITION_BACKUP_RECIPIENTS"]
    assert "PETITION_DATA_KEYS" not in environment  # a backup needs no key of the data
    script = (ROOT / "deploy" / "postgres-init" / "00-roles.sh").read_text()
    assert f"CREATE ROLE {role} LOGIN REPLICATION PASSWORD" in script
    assert f"host replication {role} all scram-sha-256" in script
    assert backup["depends_on"]["postgresql"]["condition"] == "service_healthy"


def test_the_restore_job_writes_the_data_directory_the_server_reads() -> None:
    """`docker compose run --rm -e BACKUP=... restore` (docs/backup.md) restores into the
    postgres image's PGDATA on the server's own volume, and hands it to its user."""
    services = _services()
    restore, postgresql = services["restore"], services["postgresql"]
    assert restore["profiles"] == ["tools"] and restore["user"] == "root"
    assert postgresql["image"].startswith("postgres:18.")
    assert "PGDATA" not in postgresql["environment"]  # the image's: /var/lib/postgresql/18/docker
    [server_volume] = [v for v in postgresql["volumes"] if v.startswith("postgres-data:")]
    assert server_volume in restore["volumes"]
    command = restore["command"][-1]
    assert "petition backup restore" in command
    assert "--data-dir /var/lib/postgresql/18/docker" in command
    assert "chown -R 999:999 /var/lib/postgresql/18" in command
    identity = next(v for v in restore["volumes"] if "/run/secrets/backup-identity" in v)
    assert identity.endswith(":ro")
    assert restore["environment"] == {}  # no key of the application's
