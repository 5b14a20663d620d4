"""Benchmark (issue 12): an action through the petition service against the same Update
sent directly, in the same run.

On one Temporal CLI dev server, one bench worker process and one PostgreSQL database:

* DIRECT: `PetitionClient.act(accept)` from the driver: the signed Update, as an
  operator's tool sends it;
* SERVICE: `POST /api/v1/petitions/{no}/actions/accept` over loopback HTTP to the service
  (uvicorn, one process) with a staff bearer token: sign-in check, the directory lookup
  of the actor, the case check, the signed Update, the answer as JSON.

Samples alternate (direct, service, direct ...) on petitions registered beforehand, so a
machine whose load drifts favours neither. The goal (issue 12): p95 through the service
at most 1.3x the direct p95.

    python -m bench.service_bench [--samples 100]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import time

import httpx
import uvicorn

from adapters.petition_client import PetitionClient
from bench.common import Report, database, db_name, percentile
from bench.harness import Stack
from bench.throughput_bench import HANDLER, PETITIONER, intake
from devstack.temporal_server import free_port
from domain.models import Accept, Withdraw
from service.accounts_cmd import set_password
from service.app import create_app
from service.config import ServiceSettings

DATABASE = "petitionflow_bench_service"
GOAL = 1.3
PASSWORD = "bench password, not a real one"


async def run(samples: int) -> Report:
    report = Report("service_bench", {"samples": samples})
    async with Stack.up(db_name(DATABASE)) as stack, stack.worker(), \
            database(stack.db_url, pool_size=10) as (_, sessions):
        petitions = PetitionClient(stack.client, stack.task_queue)
        key = base64.b64encode(os.urandom(32)).decode()
        settings = ServiceSettings(_env_file=None, token_keys=f"bench:{key}",
                                   rate_burst=100_000, rate_per_second=100_000.0)
        app = create_app(settings, sessions=sessions, petitions=petitions)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                               log_level="warning", lifespan="off"))
        serving = asyncio.create_task(server.serve())
        try:
            direct, service = await _measure(petitions, sessions, port, samples)
        finally:
            server.should_exit = True
            await serving
    for p in (50, 95, 99):
        figure = report.add(f"accept through the service p{p}", percentile(service, p), "ms",
                            baseline=percentile(direct, p),
                            baseline_name="the same signed Update sent directly")
        if p == 95:
            figure.goal = f"<= {GOAL}x"
            figure.met = figure.ratio is not None and figure.ratio <= GOAL
    return report


async def _measure(petitions: PetitionClient, sessions, port: int,
                   samples: int) -> tuple[list[float], list[float]]:
    cases = [await petitions.submit(intake("svc")) for _ in range(2 * samples)]
    await set_password(sessions, HANDLER.id, PASSWORD)
    direct: list[float] = []
    service: list[float] = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
        await _listening(http)
        token = (await http.post("/auth/token", data={
            "grant_type": "password", "username": HANDLER.id, "password": PASSWORD})).json()
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        for n, case in enumerate(cases):
            started = time.perf_counter()
            if n % 2 == 0:
                await petitions.act(case.workflow_id, Accept(actor=HANDLER))
                direct.append((time.perf_counter() - started) * 1000)
            else:
                answer = await http.post(
                    f"/api/v1/petitions/{case.registration_no}/actions/accept",
                    headers=headers, json={})
                service.append((time.perf_counter() - started) * 1000)
                if answer.status_code != 200:
                    raise RuntimeError(f"the service refused an accept: {answer.text}")
    for case in cases:
        await petitions.act(case.workflow_id, Withdraw(actor=PETITIONER))
    return direct, service


async def _listening(http: httpx.AsyncClient) -> None:
    for _ in range(200):
        try:
            await http.get("/openapi.json")
            return
        except httpx.TransportError:
            await asyncio.sleep(0.05)  # uvicorn is still binding its port
    raise RuntimeError("the service did not come up within 10 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(run(args.samples)).finish()


if __name__ == "__main__":
    main()
