"""docker-compose.yml's `temporal-schema` job, its script exactly as the file has it, run
with the cluster's temporal-sql-tool (the admin-tools image's version) against a fresh
PostgreSQL 18 whose databases the init script's way exist: both stores get their schema,
and a second run (every `docker compose up`) changes nothing and succeeds."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from devstack.temporal_cluster import ClusterPostgres, server_binaries

pytestmark = [pytest.mark.cluster, pytest.mark.processes]

ROOT = Path(__file__).resolve().parents[2]


def test_the_compose_schema_job_sets_up_both_stores(tmp_path: Path) -> None:
    _, tool = server_binaries()
    job = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"][
        "temporal-schema"]
    script = job["command"][0].replace("$$", "$")  # compose's escaping of `$`
    pg = ClusterPostgres(tmp_path / "pgdata", user="temporal", password="schema-job-test",
                         max_connections=100)
    pg.init()
    pg.start()
    try:
        pg.wait_ready()
        pg.create_role()
        for database in ("temporal", "temporal_visibility"):  # as 00-roles.sh creates them
            pg.psql(f"CREATE DATABASE {database} OWNER temporal")
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (bin_dir / "temporal-sql-tool").symlink_to(tool)
        env = {**os.environ, **{key: str(value) for key, value in job["environment"].items()},
               "SQL_HOST": "127.0.0.1", "SQL_PORT": str(pg.port),
               "SQL_PASSWORD": "schema-job-test", "PATH": f"{bin_dir}:{os.environ['PATH']}"}
        versions = []
        for _ in range(2):
            run = subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True,
                                 text=True, timeout=120, check=False)
            assert run.returncode == 0, run.stdout + run.stderr
            versions.append([pg.psql("SELECT curr_version FROM schema_version", database)
                             .strip() for database in ("temporal", "temporal_visibility")])
        assert versions[0] == versions[1]
        assert all(version not in ("", "0.0") for version in versions[0]), versions
    finally:
        pg.stop()
