"""Serverless deployments end to end, with the deterministic echo backend in real Docker
containers started by a REAL agent (host network), our proxy under uvicorn, Postgres and Redis:

- at min_replicas=0 a request is held, a replica starts, the official `openai` SDK gets the
  right answer, and the wait is recorded as a cold start;
- a burst of 200 concurrent requests scales the deployment to max_replicas with none lost;
- after scale_down_delay_s of quiet it is back at 0, and the streams running on a replica
  chosen for removal finish first;
- with no capacity, queue_timeout_s gives 503 + Retry-After, never a hang.

What beat runs every few seconds (autoscale, pod sync, health checks) runs here in a thread
every half second; nothing else is driven by the test."""

import asyncio
import json
import random
import socket
import sys
import threading
from datetime import timedelta
from pathlib import Path

import httpx
import openai
import pytest
from django.db import connections
from django.utils import timezone
from rest_framework.test import APIClient

from apps.catalog.load import queue_length
from apps.catalog.models import ColdStart, Deployment, DeploymentStatus, Replica, ReplicaStatus
from apps.catalog.services import autoscale, health, provisioning
from apps.catalog.services.templates import templates_seed
from apps.proxy.hold import cold_starts
from tests.factories import fund
from tests.support import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.django_db(transaction=True)]
R = ReplicaStatus
MAX_REPLICAS = 2


def free_port_range(count: int) -> tuple[int, int]:
    """`count` consecutive free TCP ports (the host ports of host-network replicas)."""
    for _ in range(200):
        base = random.randint(30000, 60000 - count)  # noqa: S311 - not a secret
        try:
            for port in range(base, base + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base, base + count - 1
    raise AssertionError("no free port range")


class Beat(threading.Thread):
    """The periodic catalog work, as beat would run it, every half second."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.halt = threading.Event()
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                provisioning.deployments_sync_status()
                provisioning.deployments_provision_pending()
                autoscale.deployments_autoscale()
                health.replicas_health_check()
            except Exception as exc:  # noqa: BLE001 - reported by the test
                self.errors.append(repr(exc))
            finally:
                connections.close_all()
            self.halt.wait(0.5)

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=30)


@pytest.fixture
def beat():
    thread = Beat()
    thread.start()
    yield thread
    thread.stop()


def live(deployment_id) -> list[Replica]:
    return list(
        Replica.objects.filter(
            deployment_id=deployment_id, status__in=(R.PENDING, R.LOADING, R.READY, R.DRAINING)
        )
    )


def ready_count(deployment_id) -> int:
    return Replica.objects.filter(deployment_id=deployment_id, status=R.READY).count()


async def burst(url: str, key: str, count: int) -> list[tuple[int, str, str]]:
    """`count` concurrent chat requests; (status, answer, replica id) each."""
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:

        async def one(i: int) -> tuple[int, str, str]:
            response = await client.post(
                url + "/v1/chat/completions",
                headers={"Authorization": f"Bearer {key}"},
                json={
                    "model": "local-echo-test",
                    "messages": [{"role": "user", "content": f"n{i}"}],
                },
            )
            body = response.json()
            answer = body["choices"][0]["message"]["content"] if response.status_code == 200 else ""
            return response.status_code, answer, response.headers.get("X-Replica-Id", "")

        return await asyncio.gather(*(one(i) for i in range(count)))


def gated_stream(url: str, key: str, gate: str, out: dict) -> None:
    """A stream that sends its first word and waits for `gate` before the rest."""
    client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
    stream = client.chat.completions.create(
        model="local-echo-test",
        messages=[{"role": "user", "content": f"stream {gate} to the end"}],
        stream=True,
        extra_body={"x_test_gate": gate},
    )
    out[gate] = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def watched_stream(url: str, key: str, gate: str, replicas: dict, texts: dict) -> None:
    """A gated stream over plain HTTP: which replica serves it (known as soon as its headers
    arrive) and, once released, its whole answer."""
    words = []
    with httpx.stream(
        "POST",
        url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={
            "model": "local-echo-test",
            "messages": [{"role": "user", "content": f"stream {gate} to the end"}],
            "stream": True,
            "x_test_gate": gate,
        },
        timeout=120,
    ) as response:
        replicas[gate] = response.headers.get("X-Replica-Id")
        for line in response.iter_lines():
            if line.startswith("data: {"):
                event = json.loads(line[6:])
                if "error" in event:  # the stream was cut: the test fails on its text
                    words.append(f"[{event['error']['code']}]")
                    continue
                choices = event["choices"]
                words.append(choices[0]["delta"].get("content") or "" if choices else "")
    texts[gate] = "".join(words)


def release(deployment_id, gate: str) -> None:
    """Let a gated stream go on, on whichever replica holds it."""
    for base_url in Replica.objects.filter(
        deployment_id=deployment_id, base_url__gt=""
    ).values_list("base_url", flat=True):
        for _ in range(8):  # one release per word still to come
            try:
                httpx.post(base_url + "/test/release", json={"id": gate}, timeout=5)
            except httpx.ConnectError:
                break  # that replica has been drained and stopped since: nothing held there


def test_scale_from_zero_burst_scale_down_and_timeout(
    proxy_server,  # noqa: F811 - the fixture
    local_agent,  # noqa: F811 - the fixture
    cleanup_containers,
    user,
    settings,
    beat,  # noqa: F811
):
    settings.CATALOG_HOST_PORT_RANGE = free_port_range(MAX_REPLICAS + 1)
    settings.PROXY_HOLD_POLL_S = 0.1
    templates_seed()
    fund(user, 100_000_000)
    local_agent(Path(sys.prefix))
    api = APIClient()
    api.force_authenticate(user)
    made = api.post(
        "/api/v1/models/local-echo-test/deploy",
        {
            "min_replicas": 0,
            "max_replicas": MAX_REPLICAS,
            "target_concurrency": 4,
            "scale_down_delay_s": 3,
            "max_queue": 500,
            "queue_timeout_s": 120,
        },
        format="json",
    )
    assert made.status_code == 201, made.json()
    deployment_id, key = made.json()["id"], made.json()["api_key"]
    assert made.json()["status"] == "IDLE" and made.json()["replica_set"] == []

    # 1. Scale from zero: held, a replica starts, the SDK gets the right answer.
    client = openai.OpenAI(base_url=proxy_server.url + "/v1", api_key=key, max_retries=0)
    reply = client.chat.completions.create(
        model="local-echo-test", messages=[{"role": "user", "content": "wake up"}]
    )
    assert reply.choices[0].message.content == "echo: wake up"
    wait_for(lambda: ColdStart.objects.filter(deployment_id=deployment_id).exists(), "cold start")
    cold = ColdStart.objects.get(deployment_id=deployment_id)
    assert cold.first_byte_ms >= cold.held_ms > 0
    events = list(Deployment.objects.get(pk=deployment_id).events.values_list("reason", flat=True))
    assert any(r.startswith("scale up 0 → 1") for r in events)
    first_replica = str(Replica.objects.get(deployment_id=deployment_id, status=R.READY).pk)

    # 2. A burst of 200: held in-flight load scales it to max_replicas; none lost.
    gated: dict[str, str] = {}
    holders = [
        threading.Thread(target=gated_stream, args=(proxy_server.url, key, f"g{i}", gated))
        for i in range(12)
    ]
    for thread in holders:
        thread.start()
    wait_for(lambda: ready_count(deployment_id) == MAX_REPLICAS, "max_replicas READY", 180)
    # The proxy serves its cached routes while it re-reads them (stale-while-revalidate): the
    # new replica gets traffic once a request has been routed after it turned READY.
    wait_for(
        lambda: asyncio.run(burst(proxy_server.url, key, 1))[0][2] != first_replica,
        "the proxy routing to the new replica",
        30,
    )
    results = asyncio.run(burst(proxy_server.url, key, 188))
    for i in range(12):
        release(deployment_id, f"g{i}")
    for thread in holders:
        thread.join(timeout=60)
    assert [status for status, _, _ in results] == [200] * 188
    assert sorted(a for _, a, _ in results) == sorted(f"echo: n{i}" for i in range(188))
    assert len({replica for _, _, replica in results}) == MAX_REPLICAS  # both served
    assert sorted(gated.values()) == sorted(f"echo: stream g{i} to the end" for i in range(12))
    reasons = list(Deployment.objects.get(pk=deployment_id).events.values_list("reason", flat=True))
    assert any(r.startswith(f"scale up 1 → {MAX_REPLICAS}") for r in reasons)

    # 3. Streams running on a replica chosen for removal finish; then back to 0.
    url = f"/api/v1/models/deployments/{deployment_id}"
    assert api.patch(url, {"min_replicas": 2}, format="json").status_code == 200
    wait_for(lambda: ready_count(deployment_id) == MAX_REPLICAS, "2 replicas READY", 180)
    on: dict[str, str] = {}
    streams: dict[str, str] = {}
    pair = [
        threading.Thread(target=watched_stream, args=(proxy_server.url, key, f"s{i}", on, streams))
        for i in range(2)
    ]
    pair[0].start()
    wait_for(lambda: on.get("s0"), "the first stream under way")
    wait_for(  # least outstanding: the proxy sends others to the replica without the stream
        lambda: asyncio.run(burst(proxy_server.url, key, 1))[0][2] != on["s0"],
        "the proxy routing to both replicas",
        30,
    )
    pair[1].start()
    wait_for(lambda: on.get("s1"), "the second stream under way")
    assert on["s0"] != on["s1"]  # one stream on each replica
    # target 4: 2 streams want 1 replica; after the delay one of them (a stream on it) drains
    assert api.patch(url, {"min_replicas": 0}, format="json").status_code == 200
    with_stream = Replica.objects.filter(pk__in=[int(on["s0"]), int(on["s1"])])
    wait_for(lambda: with_stream.filter(status=R.DRAINING).exists(), "a replica draining", 60)
    draining = with_stream.get(status=R.DRAINING)
    # it stays while its stream is open, well past the drain grace
    grace = timedelta(seconds=autoscale.drain_grace_s() + 2)
    wait_for(lambda: timezone.now() > draining.draining_at + grace, "the grace to pass", 60)
    assert Replica.objects.get(pk=draining.pk).status == R.DRAINING
    for i in range(2):
        release(deployment_id, f"s{i}")
    for thread in pair:
        thread.join(timeout=60)
    assert sorted(streams.values()) == ["echo: stream s0 to the end", "echo: stream s1 to the end"]
    wait_for(
        lambda: (
            Deployment.objects.get(pk=deployment_id).status == DeploymentStatus.IDLE
            and not live(deployment_id)
        ),
        "back at 0",
        120,
    )
    reasons = list(Deployment.objects.get(pk=deployment_id).events.values_list("reason", flat=True))
    assert any(r.startswith(f"scale down {MAX_REPLICAS} → 1") for r in reasons)
    assert any(r.startswith("scale down 1 → 0") for r in reasons)

    # 4. No capacity (no host port left for a replica): 503 + Retry-After within the bound.
    settings.CATALOG_HOST_PORT_RANGE = (1, 0)
    Deployment.objects.filter(pk=deployment_id).update(queue_timeout_s=2)
    response = httpx.post(
        proxy_server.url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "local-echo-test", "messages": [{"role": "user", "content": "nobody"}]},
        timeout=60,
    )
    assert response.status_code == 503 and int(response.headers["Retry-After"]) >= 1
    assert response.json()["error"]["code"] == "no_ready_replica"
    wait_for(lambda: queue_length(deployment_id) == 0, "the queue empty")
    assert not beat.errors, beat.errors
    cold_starts.take()
