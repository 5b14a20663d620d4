"""The image on the production-shaped cluster (`make test-cluster`): the files the
Dockerfile copies, installed into a fresh virtual environment (tests/image_helpers.py), run
with production's settings against the cluster's frontend over mTLS, in its namespace: the
migration job, the worker, the service and the codec server start; `petition submit` from
the image registers a petition the image's worker handles (tests/test_image.py has the
same proof against the dev server)."""

from __future__ import annotations

import asyncio
import subprocess
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


async def _connects(image: ImageVenv, settings: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The image's `worker.connect` with these settings, in a process of its own."""
    env = image.environment(**settings, PETITION_DEV_KEYS="false",
                            PETITION_CODEC_KEYS="k:" + "A" * 43 + "=")
    return await asyncio.to_thread(
        subprocess.run,
        [str(image.python), "-c",
         "import asyncio; from adapters.settings import Settings; from worker import connect;"
         "asyncio.run(asyncio.wait_for(connect(Settings()), 20))"],
        cwd=image.app, env=env, capture_output=True, text=True, timeout=60, check=False)


async def test_without_its_client_certificate_the_image_is_refused(
        image: ImageVenv, temporal_cluster: Cluster) -> None:
    """The same settings minus the client certificate: the frontend refuses the client
    (mTLS is required), so the proof above did run over mTLS."""
    settings = _cluster_settings(temporal_cluster)
    with_certificate = await _connects(image, settings)
    assert with_certificate.returncode == 0, with_certificate.stderr[-2000:]
    del settings["PETITION_TEMPORAL_TLS_CERT"], settings["PETITION_TEMPORAL_TLS_KEY"]
    without = await _connects(image, settings)
    assert without.returncode != 0
    assert "Failed client connect" in without.stderr, without.stderr[-2000:]
