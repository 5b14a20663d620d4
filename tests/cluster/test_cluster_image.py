"""The image on the production-shaped cluster (`make test-cluster`): the files the
Dockerfile copies, installed into a fresh virtual environment (tests/image_helpers.py), run
with production's settings against the cluster's frontend over mTLS, in its namespace: the
migration job, the worker, the service and the codec server start; `petition submit` from
the image registers a petition the image's worker handles (tests/test_image.py has the
same proof against the dev server)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from devstack.temporal_cluster import VALUES, Cluster
from tests.image_helpers import ImageVenv, install
from tests.test_image import prove_the_image_runs

pytestmark = [pytest.mark.cluster, pytest.mark.processes]


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> ImageVenv:
    return install(tmp_path_factory.mktemp("image"))


def _cluster_settings(cluster: Cluster) -> dict[str, str]:
    certs = cluster.certs
    return {
        "TEMPORAL_ADDRESS": cluster.address,
        "PETITION_TEMPORAL_NAMESPACE": cluster.namespace,
        "PETITION_TEMPORAL_TLS_CA": str(certs.ca_cert),
        "PETITION_TEMPORAL_TLS_CERT": str(certs.client_cert),
        "PETITION_TEMPORAL_TLS_KEY": str(certs.client_key),
        "PETITION_TEMPORAL_TLS_SERVER_NAME": VALUES["TEMPORAL_TLS_SERVER_NAME"],
    }


async def test_the_image_runs_on_the_cluster(image: ImageVenv, temporal_cluster: Cluster,
                                             tmp_path: Path) -> None:
    timings = await prove_the_image_runs(image, _cluster_settings(temporal_cluster),
                                         tmp_path / "logs")
    print("image proof on the cluster: "
          + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))


async def test_without_its_client_certificate_the_image_is_refused(
        image: ImageVenv, temporal_cluster: Cluster, tmp_path: Path) -> None:
    """The same settings minus the client certificate: the frontend refuses the worker
    (mTLS is required), so the proof above did run over mTLS."""
    import subprocess

    settings = _cluster_settings(temporal_cluster)
    del settings["PETITION_TEMPORAL_TLS_CERT"], settings["PETITION_TEMPORAL_TLS_KEY"]
    env = image.environment(**settings, PETITION_DEV_KEYS="false")
    probe = await asyncio.to_thread(
        subprocess.run,
        [str(image.python), "-c",
         "import asyncio; from adapters.settings import Settings; from worker import connect;"
         "asyncio.run(asyncio.wait_for(connect(Settings()), 20))"],
        cwd=image.app, env={**env, "PETITION_CODEC_KEYS": "k:" + "A" * 43 + "="},
        capture_output=True, text=True, timeout=60, check=False)
    assert probe.returncode != 0
    assert "CertificateRequired" in probe.stderr, probe.stderr[-2000:]
