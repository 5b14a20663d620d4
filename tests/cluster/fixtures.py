"""The production-shaped cluster as test fixtures (devstack/temporal_cluster.py).

tests/conftest.py imports these instead of its own `dev_env` when PETITION_TEST_TEMPORAL is
`cluster` (`make test-cluster` sets it): every test written against the dev server then
runs against the cluster, over mTLS, in the cluster's namespace, with the codec.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from devstack.temporal_cluster import Cluster, running_cluster
from worker import data_converter

SELECTED = os.environ.get("PETITION_TEST_TEMPORAL") == "cluster"


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def temporal_cluster() -> AsyncIterator[Cluster]:
    """One cluster per session: PostgreSQL, history x2, matching x2, frontend, worker.
    `$PETITION_CLUSTER_DIR` keeps its configs and logs (else a temporary directory);
    `$PETITION_CLUSTER_POSTGRES=embedded` puts its stores on the project's embedded
    PostgreSQL instead of a fresh one of its own."""
    kept = os.environ.get("PETITION_CLUSTER_DIR")
    postgres = os.environ.get("PETITION_CLUSTER_POSTGRES", "own")
    async with running_cluster(Path(kept) if kept else None, postgres=postgres) as cluster:
        yield cluster


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def dev_env(temporal_cluster: Cluster, db_url: str) -> AsyncIterator[WorkflowEnvironment]:
    """The cluster in place of the dev server: a client with the client certificate and the
    worker's codec (no Web UI: `dev_ui_url` tests do not run here)."""
    client = await temporal_cluster.connect(data_converter=data_converter())
    yield WorkflowEnvironment.from_client(client)
