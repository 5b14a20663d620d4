"""tests/cluster/ runs only under `make test-cluster` (PETITION_TEST_TEMPORAL=cluster), on the
production-shaped cluster (devstack/temporal_cluster.py): `make test` collects nothing here.
The cluster's fixtures come from tests/cluster/fixtures.py through tests/conftest.py."""

import os

if os.environ.get("PETITION_TEST_TEMPORAL") != "cluster":
    collect_ignore_glob = ["test_*.py"]
