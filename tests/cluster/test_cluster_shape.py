"""The cluster is what it claims to be: the real temporal-server of the pinned version, its
services separate processes joined through PostgreSQL, mTLS required of clients, the
petition search attributes registered; and a history process killed with SIGKILL costs
no petition (the other takes its shards), then rejoins when restarted."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client
from temporalio.service import RPCError, TLSConfig

from adapters.petition_client import PetitionClient
from adapters.search_attributes import ALL_KEYS
from devstack.temporal_cluster import NAMESPACE, SERVER_VERSION, VALUES, Cluster
from domain.models import Accept, Actor, Reply, Role, Stage
from tests.lifecycle_helpers import eventually

pytestmark = pytest.mark.cluster

HANDLER = Actor(id="qs-xfj-h1", role=Role.HANDLER, unit="QS-XFJ")


async def refused(address: str, tls: TLSConfig | bool) -> bool:
    """Whether the frontend turns this client away (at connect or at its first call)."""
    try:
        client = await Client.connect(address, namespace=NAMESPACE, tls=tls)
        await client.workflow_service.get_system_info(GetSystemInfoRequest())
    except (RuntimeError, RPCError):
        return True
    return False


async def test_the_frontend_requires_a_client_certificate(temporal_cluster: Cluster):
    certs = temporal_cluster.certs
    address = temporal_cluster.address
    without_cert = TLSConfig(server_root_ca_cert=certs.ca_cert.read_bytes(),
                             domain=VALUES["TEMPORAL_TLS_SERVER_NAME"])
    assert await refused(address, without_cert)
    assert await refused(address, False)  # plain text
    assert not await refused(address, temporal_cluster.tls_config)


async def test_the_dev_env_of_these_tests_is_the_cluster(temporal_cluster: Cluster, dev_env):
    config = dev_env.client.service_client.config
    assert config.target_host == temporal_cluster.address and config.tls
    assert dev_env.client.namespace == NAMESPACE
    info = await dev_env.client.workflow_service.get_system_info(GetSystemInfoRequest())
    assert info.server_version == SERVER_VERSION


async def test_the_services_are_processes_joined_through_postgresql(temporal_cluster: Cluster):
    processes = temporal_cluster.processes
    assert sorted(processes) == ["frontend", "history-1", "history-2", "matching-1",
                                 "matching-2", "worker-1"]
    pids = {p.process.pid for p in processes.values() if p.running and p.process}
    assert len(pids) == len(processes)
    pg = temporal_cluster.postgres
    conn = await pg.connect(VALUES["TEMPORAL_DB"])
    try:
        ports = {r["rpc_port"] for r in await conn.fetch(
            "SELECT rpc_port FROM cluster_membership "
            "WHERE record_expiry > now() AT TIME ZONE 'UTC'")}
    finally:
        await conn.close()
    assert {p.membership_port for p in processes.values()} <= ports
    conn = await pg.connect(VALUES["TEMPORAL_VISIBILITY_DB"])
    try:
        assert await conn.fetchval("SELECT count(*) FROM pg_extension "
                                   "WHERE extname = 'btree_gin'") == 1
    finally:
        await conn.close()


async def test_the_petition_search_attributes_are_registered(temporal_cluster: Cluster):
    client = await temporal_cluster.connect()
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=temporal_cluster.namespace))
    assert {k: listed.custom_attributes.get(k.name) for k in ALL_KEYS} == {
        k: IndexedValueType.ValueType(k.indexed_value_type) for k in ALL_KEYS}


async def test_a_killed_history_process_loses_no_petition_and_rejoins(
        temporal_cluster: Cluster, dev_env, running_worker, petitions):
    cases = 8
    async with running_worker(dev_env.client):
        handles = [await petitions.start(dev_env) for _ in range(cases)]
        client = PetitionClient(dev_env.client, task_queue="")
        temporal_cluster.kill("history-1")
        try:
            # Shards of the dead process move to history-2 once its membership lapses.
            async def act(handle_id: str) -> Stage:
                await client.act(handle_id, Accept(actor=HANDLER))
                status = await client.act(handle_id, Reply(actor=HANDLER, opinion="处理意见"))
                assert status is not None
                return status.stage

            stages = await asyncio.wait_for(
                asyncio.gather(*(act(h.id) for h in handles)), timeout=120)
        finally:
            await temporal_cluster.restart("history-1")
    assert stages == [Stage.REPLIED] * cases
    assert temporal_cluster.processes["history-1"].running
    assert await eventually(lambda: _membership_has(temporal_cluster, "history-1"))


async def _membership_has(cluster: Cluster, name: str) -> bool:
    pg = cluster.postgres
    conn = await pg.connect(VALUES["TEMPORAL_DB"])
    try:
        return bool(await conn.fetchval(
            "SELECT 1 FROM cluster_membership WHERE rpc_port = $1 "
            "AND record_expiry > now() AT TIME ZONE 'UTC'",
            cluster.processes[name].membership_port))
    finally:
        await conn.close()


async def test_after_a_frontend_restart_and_a_killed_postgresql_petitions_go_on(
        temporal_cluster: Cluster, dev_env, running_worker, petitions):
    """The drills' other faults, as the cluster offers them: the frontend stopped and
    started (clients reconnect), PostgreSQL killed with SIGKILL and restarted (crash
    recovery; the services retry their stores)."""
    if temporal_cluster.own_postgres is None:
        pytest.skip("the stores are on a PostgreSQL this cluster does not own")
    async with running_worker(dev_env.client):
        handle = await petitions.start(dev_env)
        client = PetitionClient(dev_env.client, task_queue="")
        await temporal_cluster.restart("frontend")
        await client.act(handle.id, Accept(actor=HANDLER))
        await temporal_cluster.restart("postgres", kill=True)
        status = await asyncio.wait_for(
            client.act(handle.id, Reply(actor=HANDLER, opinion="处理意见")), timeout=120)
    assert status is not None and status.stage is Stage.REPLIED
    assert all(p.running for p in temporal_cluster.processes.values())
