"""Serverless deployments (issue 14): cold starts, a load step, and a day-shaped load.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/gco_serverless_bench \\
    REDIS_URL=redis://127.0.0.1:6379/7 .venv/bin/python bench/autoscale.py --max-replicas 3

Everything real and on this machine: one web process (daphne, the Procfile's), one agent
(host network, the local backends image with this venv mounted) running the deterministic echo
backend in Docker, Postgres, Redis; the periodic catalog work (pod sync, autoscale, health
checks) runs in this script every half second, as beat would. Every request goes to 127.0.0.1.

1. Cold start, request held → first byte: the first one on a fresh node (the image already in
   the engine), then again after scaling back to zero (image and files cached). Also timed:
   importing the image (what getting an image onto a host costs here, there is no registry).
2. Step: from 1 to 50 closed-loop clients; seconds until the deployment has enough READY
   replicas (ceil(50 / target_concurrency), capped at max_replicas) and the p99 latency of
   the requests sent meanwhile.
3. A scripted day, compressed (one "hour" = --hour-s seconds): clients follow a day's shape;
   replica-seconds used by the autoscaled deployment vs a fixed one sized for the peak
   (max_replicas all day), and each one's p99 (the autoscaled one's without the requests that
   waited for a cold start).

The machine is shared (2 cores, other work running): the load average is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BOOTSTRAP = "bt_bench-autoscale"
# Clients per "hour" of the scripted day (night, morning ramp, midday peak, evening, night).
DAY = [0, 0, 0, 0, 0, 1, 2, 4, 8, 12, 16, 20, 20, 16, 12, 8, 6, 4, 2, 1, 0, 0, 0, 0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port_range(count: int) -> tuple[int, int]:
    for base in range(41000, 60000, 97):
        try:
            for port in range(base, base + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base, base + count - 1
    raise SystemExit("no free port range")


def wait(check, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


class Beat(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.halt = threading.Event()

    def run(self) -> None:
        from django.db import connections

        from apps.catalog.services import autoscale, health, provisioning

        while not self.halt.is_set():
            try:
                provisioning.deployments_sync_status()
                autoscale.deployments_autoscale()
                health.replicas_health_check()
            except Exception as exc:  # noqa: BLE001 - a benchmark reports and goes on
                print("beat:", exc, file=sys.stderr)
            finally:
                connections.close_all()
            self.halt.wait(0.5)


async def client_loop(url: str, key: str, stop: asyncio.Event, out: list) -> None:
    import httpx

    async with httpx.AsyncClient(timeout=180) as http:
        while not stop.is_set():
            started = time.monotonic()
            response = await http.post(
                url + "/v1/chat/completions",
                headers={"Authorization": f"Bearer {key}"},
                json={"model": "local-echo-test", "messages": [{"role": "user", "content": "hi"}]},
            )
            out.append((started, time.monotonic() - started, response.status_code))


def live_replicas(deployment_id) -> int:
    from apps.catalog.models import Replica

    return Replica.objects.filter(
        deployment_id=deployment_id, status__in=("LOADING", "READY", "DRAINING", "UNHEALTHY")
    ).count()


def ready_replicas(deployment_id) -> int:
    from apps.catalog.models import Replica

    return Replica.objects.filter(deployment_id=deployment_id, status="READY").count()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-replicas", type=int, default=3)
    parser.add_argument("--target", type=int, default=16, help="target_concurrency")
    parser.add_argument("--hour-s", type=float, default=3.0, help="seconds per scripted hour")
    parser.add_argument("--skip-day", action="store_true")
    args = parser.parse_args()

    from bench._django import setup

    setup()
    import docker
    import httpx
    from django.db import connections
    from django.utils import timezone

    from apps.accounts.models import User
    from apps.catalog.models import ColdStart, Deployment, ModelTemplate
    from apps.catalog.services.deploy import deployment_create
    from apps.catalog.services.templates import templates_seed
    from apps.nodes.models import Node, NodeStatus
    from apps.nodes.services import nodes_mark_silent_offline
    from backends.localimage import IMAGE, agent_mounts, ensure_image, rootfs_tar
    from tests.pods.conftest import fund

    client = docker.from_env()
    started = time.monotonic()
    probe_tag = f"gco-bench-autoscale-probe:{os.getpid()}"
    repository, _, tag = probe_tag.partition(":")
    client.api.import_image_from_data(rootfs_tar(), repository=repository, tag=tag)
    import_s = time.monotonic() - started
    client.images.remove(probe_tag, force=True)
    ensure_image(client, IMAGE)

    templates_seed()
    user, _ = User.objects.get_or_create(email="bench-autoscale@example.com")
    fund(user, 1_000_000_000)
    low, high = free_port_range(args.max_replicas + 2)
    port = free_port()
    env = {
        **os.environ,
        "NODE_BOOTSTRAP_TOKEN": BOOTSTRAP,
        "NODE_HEARTBEAT_INTERVAL": "1",
        "CATALOG_HOST_PORT_MIN": str(low),
        "CATALOG_HOST_PORT_MAX": str(high),
        "PROXY_HOLD_POLL_S": "0.1",
        "LOG_LEVEL": "WARNING",
    }
    os.environ["CATALOG_HOST_PORT_MIN"], os.environ["CATALOG_HOST_PORT_MAX"] = str(low), str(high)
    from django.conf import settings

    settings.CATALOG_HOST_PORT_RANGE = (low, high)
    web = subprocess.Popen(  # noqa: S603 - our own server
        [
            sys.executable,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "config.asgi:application",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    state = tempfile.mkdtemp(prefix="gco-bench-agent-")
    agent_args = [sys.executable, "-m", "agent", "--server", url, "--bootstrap-token", BOOTSTRAP]
    agent_args += ["--state-dir", state, "--network-mode", "host"]
    for mount in agent_mounts(Path(sys.prefix)):
        agent_args += ["--mount", mount]
    beat = Beat()
    agent = None
    # Agents of earlier runs are gone: their nodes go offline (as beat's silence check would
    # do after 3 heartbeats), so replicas land on this run's agent only.
    nodes_mark_silent_offline(now=timezone.now() + timedelta(hours=1))
    node_ids_before = set(Node.objects.values_list("pk", flat=True))
    try:
        wait(lambda: _answers(url + "/healthz"), "the web process", 60)
        agent = subprocess.Popen(
            agent_args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )  # noqa: S603
        wait(
            lambda: (
                Node.objects.exclude(pk__in=node_ids_before)
                .filter(status=NodeStatus.ONLINE)
                .exists()
            ),
            "the agent online",
            60,
        )
        beat.start()
        template = ModelTemplate.objects.get(slug="local-echo-test")
        created = deployment_create(
            owner=user,
            template=template,
            name=f"bench-{os.getpid()}",
            rate_limit_per_minute=1_000_000,  # the figures are about scaling, not the limiter
            scaling={
                "min_replicas": 0,
                "max_replicas": args.max_replicas,
                "target_concurrency": args.target,
                "scale_down_delay_s": 3,
                "max_queue": 1000,
                "queue_timeout_s": 180,
            },
        )
        deployment, key = created.deployment, created.key.raw

        # 1. cold starts
        cold: list[float] = []
        for _ in range(2):
            wait(
                lambda: (
                    Deployment.objects.get(pk=deployment.pk).status == "IDLE"
                    and live_replicas(deployment.pk) == 0
                ),
                "back at zero",
                120,
            )
            before = ColdStart.objects.filter(deployment=deployment).count()
            response = httpx.post(
                url + "/v1/chat/completions",
                headers={"Authorization": f"Bearer {key}"},
                json={"model": "local-echo-test", "messages": [{"role": "user", "content": "x"}]},
                timeout=180,
            )
            assert response.status_code == 200, response.text
            wait(
                lambda n=before: ColdStart.objects.filter(deployment=deployment).count() > n,
                "the cold start row",
                10,
            )
            cold.append(
                ColdStart.objects.filter(deployment=deployment).order_by("-at")[0].first_byte_ms
            )
        print(f"image import (no registry: getting the image onto a host): {import_s:.2f} s")
        print(
            f"cold start, request held -> first byte: first {cold[0] / 1000:.2f} s, "
            f"cached {cold[1] / 1000:.2f} s"
        )

        # 2. step from 1 to 50 clients
        wait(lambda: ready_replicas(deployment.pk) >= 1, "one replica", 60)
        enough = min(args.max_replicas, math.ceil(50 / args.target))
        results: list = []

        async def step() -> float:
            stop = asyncio.Event()
            one = asyncio.create_task(client_loop(url, key, stop, results))
            await asyncio.sleep(2)
            t0 = time.monotonic()
            tasks = [asyncio.create_task(client_loop(url, key, stop, results)) for _ in range(49)]
            reached = None
            while time.monotonic() - t0 < 180:
                await asyncio.sleep(0.25)
                if await asyncio.to_thread(_ready_closing, deployment.pk) >= enough:
                    reached = time.monotonic() - t0
                    break
            stop.set()
            await asyncio.gather(one, *tasks)
            return reached if reached is not None else float("nan"), t0

        reached, t0 = asyncio.run(step())
        during = [lat for (at, lat, code) in results if at >= t0 and at <= t0 + reached]
        codes = sorted({code for (_, _, code) in results if code != 200})
        errors = sum(1 for (_, _, code) in results if code != 200)
        print(
            f"step 1 -> 50 clients: {enough} READY replicas after {reached:.1f} s; "
            f"p99 during the step {pct(during, 0.99) * 1000:.0f} ms over {len(during)} requests; "
            f"{errors} non-200 {codes}"
        )

        if not args.skip_day:
            day_figures(url, key, deployment, args)
        print(f"load average: {os.getloadavg()}")
    finally:
        beat.halt.set()
        beat.join(timeout=30)
        connections.close_all()
        from apps.catalog.services.deploy import deployment_stop

        for d in Deployment.objects.filter(owner=user).exclude(status__in=("STOPPED", "FAILED")):
            deployment_stop(deployment=d, reason="benchmark over")
        time.sleep(3)  # the agent stops the containers on its next heartbeat
        for proc in (agent, web):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        ours = {
            str(pk)
            for pk in Node.objects.exclude(pk__in=node_ids_before).values_list("pk", flat=True)
        }
        for container in client.containers.list(all=True, filters={"label": "gco.managed=true"}):
            if container.labels.get("gco.node_id") in ours:
                container.remove(force=True)


def _ready_closing(deployment_id) -> int:
    from django.db import connections

    try:
        return ready_replicas(deployment_id)
    finally:
        connections.close_all()


def _answers(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def day_figures(url, key, deployment, args) -> None:
    """The scripted day against the autoscaled deployment, then against a fixed one."""
    from django.db import connections

    from apps.catalog.models import ColdStart
    from apps.catalog.services import scaling

    peak = max(DAY)

    def run_day(deployment_id) -> tuple[float, list, float]:
        results: list = []
        replica_seconds = 0.0

        async def day() -> float:
            nonlocal replica_seconds
            stop_all: list[asyncio.Event] = []
            tasks: list[asyncio.Task] = []
            begun = time.monotonic()
            for clients in DAY:
                while len(stop_all) < clients:
                    event = asyncio.Event()
                    stop_all.append(event)
                    tasks.append(asyncio.create_task(client_loop(url, key, event, results)))
                while len(stop_all) > clients:
                    stop_all.pop().set()
                hour_end = time.monotonic() + args.hour_s
                while time.monotonic() < hour_end:
                    live = await asyncio.to_thread(_live_closing, deployment_id)
                    replica_seconds += live * 0.5
                    await asyncio.sleep(0.5)
            for event in stop_all:
                event.set()
            await asyncio.gather(*tasks)
            return time.monotonic() - begun

        elapsed = asyncio.run(day())
        return replica_seconds, results, elapsed

    # autoscaled: back at zero first
    from apps.catalog.models import Deployment

    wait(
        lambda: (
            Deployment.objects.get(pk=deployment.pk).status == "IDLE"
            and live_replicas(deployment.pk) == 0
        ),
        "back at zero",
        120,
    )
    since = time.time()
    auto_rs, auto_results, elapsed = run_day(deployment.pk)
    held_windows = [
        (c.at.timestamp(), c.at.timestamp() + c.first_byte_ms / 1000)
        for c in ColdStart.objects.filter(deployment=deployment, at__gte=_dt(since))
    ]
    # requests that waited for a cold start are left out of the autoscaled p99
    offset = time.time() - time.monotonic()
    warm = [
        lat
        for (at, lat, code) in auto_results
        if not any(a - 0.01 <= at + offset <= b for a, b in held_windows)
    ]
    # fixed: the same deployment pinned at max_replicas all day
    scaling.deployment_scaling_update(
        deployment_id=deployment.pk,
        changes={"min_replicas": args.max_replicas, "max_replicas": args.max_replicas},
    )
    connections.close_all()
    wait(lambda: ready_replicas(deployment.pk) == args.max_replicas, "fixed size READY", 180)
    fixed_rs, fixed_results, fixed_elapsed = run_day(deployment.pk)
    sized_for_peak = args.max_replicas * fixed_elapsed
    auto_p99 = pct(warm, 0.99) * 1000
    fixed_p99 = pct([lat for (_, lat, _) in fixed_results], 0.99) * 1000
    print(
        f"scripted day ({len(DAY)} h x {args.hour_s:.0f} s, peak {peak} clients): autoscaled "
        f"{auto_rs:.0f} replica-s vs fixed {sized_for_peak:.0f} replica-s "
        f"({100 * auto_rs / sized_for_peak:.0f}%); p99 autoscaled (outside cold starts) "
        f"{auto_p99:.0f} ms over {len(warm)} requests, fixed {fixed_p99:.0f} ms over "
        f"{len(fixed_results)}; cold starts during the day: {len(held_windows)}; measured fixed "
        f"replica-s {fixed_rs:.0f}; non-200: autoscaled "
        f"{sum(1 for r in auto_results if r[2] != 200)}, fixed "
        f"{sum(1 for r in fixed_results if r[2] != 200)}"
    )


def _live_closing(deployment_id) -> int:
    from django.db import connections

    try:
        return live_replicas(deployment_id)
    finally:
        connections.close_all()


def _dt(epoch: float):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, tz=UTC)


if __name__ == "__main__":
    main()
