"""Heartbeat throughput and latency: N simulated agents (asyncio, one process) heartbeating with
realistic payloads (one H100, two containers) against real server processes on Postgres.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/gco_bench REDIS_URL=redis://127.0.0.1:6379/2 \
        .venv/bin/python bench/heartbeats.py --nodes 1000 --interval 10 --duration 60 --servers 2

It migrates the database, creates N nodes with known tokens directly (registration is not
what is measured), starts `--servers` daphne processes on 127.0.0.1 (the client spreads nodes
over them, as a load balancer would), runs for `--duration` seconds after a warm-up interval, and
prints sustained heartbeats/s against the target N/interval, p50/p95/p99 latency and errors.
Each simulated agent keeps its own keep-alive connection, as a real one does. Every request
goes to 127.0.0.1; the script stops on its own.
"""

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def setup_nodes(count: int) -> list[str]:
    """Create `count` ONLINE nodes with one H100 each; returns their raw tokens."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one log line per request otherwise
    from django.core.management import call_command
    from django.utils import timezone

    from apps.core.secrets import secret_issue
    from apps.nodes.models import Gpu, Node, NodeStatus

    call_command("migrate", verbosity=0)
    Node.objects.filter(hostname__startswith="hb-").delete()
    tokens, nodes, gpus = [], [], []
    now = timezone.now()
    for i in range(count):
        issued = secret_issue(prefix="nt_")
        tokens.append(issued.raw)
        node = Node(
            hostname=f"hb-{i}",
            status=NodeStatus.ONLINE,
            token_prefix=issued.display_prefix,
            token_digest=issued.digest,
            last_heartbeat_at=now,
            heartbeat_interval=10,
        )
        nodes.append(node)
        gpus.append(
            Gpu(
                node=node,
                index=0,
                uuid=f"GPU-{uuid.uuid4()}",
                name="NVIDIA H100 80GB HBM3",
                model="H100 SXM",
                memory_total_mb=81559,
            )
        )
    Node.objects.bulk_create(nodes, batch_size=2000)
    Gpu.objects.bulk_create(gpus, batch_size=2000)
    return tokens


def payload() -> dict:
    return {
        "gpus": [
            {
                "index": 0,
                "uuid": "GPU-d32abdfd-27f3-113f-1220-daec48fd834c",
                "utilization_pct": random.randint(0, 100),
                "memory_used_mb": random.randint(0, 81559),
                "memory_total_mb": 81559,
                "temperature_c": random.randint(35, 80),
                "power_w": round(random.uniform(60, 700), 2),
            }
        ],
        "system": {
            "cpu_percent": 12.5,
            "ram_used_mb": 20480,
            "disk_free_gb": 120.5,
            "load_avg": 0.8,
        },
        "containers": [
            {
                "pod_id": str(uuid.uuid4()),
                "container_id": "f" * 64,
                "state": "running",
                "exit_code": None,
                "started_at": "2026-11-26T10:00:00Z",
                "finished_at": None,
                "error": "",
            }
            for _ in range(2)
        ],
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Connection:
    """One agent's keep-alive HTTP/1.1 connection, as a real agent has its own (a shared
    client pool in one process would measure the pool, not the server)."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.head = (
            "POST /api/v1/nodes/heartbeat HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"X-Agent-API-Key: {token}\r\nContent-Type: application/json\r\n"
        )
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(f"{self.head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        await self.writer.drain()
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def agent(conn, interval, start_at, stop_at, warm_until, latencies, errors, shed):
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    tick = time.monotonic()
    while tick < stop_at:
        body = json.dumps(payload()).encode()
        sent = time.monotonic()
        try:
            status = await asyncio.wait_for(conn.post(body), timeout=30)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            conn.close()
            status = 0
        elapsed = time.monotonic() - sent
        if sent >= warm_until:
            if status == 200:
                latencies.append(elapsed)
            elif status == 503:  # shed by the server's queue bound; the next beat retries
                shed.append(elapsed)
            else:
                errors.append(sent)
        tick += interval  # drift-corrected, like the real agent
        await asyncio.sleep(max(0.0, tick - time.monotonic()))
    conn.close()


async def run(args, tokens, ports) -> None:
    latencies: list[float] = []
    errors: list[float] = []
    shed: list[float] = []
    now = time.monotonic()
    warm_until = now + args.interval
    stop_at = warm_until + args.duration
    await asyncio.gather(
        *(
            agent(
                Connection(ports[i % len(ports)], token),
                args.interval,
                now + random.uniform(0, args.interval),
                stop_at,
                warm_until,
                latencies,
                errors,
                shed,
            )
            for i, token in enumerate(tokens)
        )
    )
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    target = args.nodes / args.interval
    print(
        f"nodes={args.nodes} interval={args.interval}s servers={len(ports)} "
        f"duration={args.duration}s (after {args.interval}s warm-up)"
    )
    print(f"target heartbeats/s: {target:.0f}")
    print(
        f"sustained heartbeats/s: {len(latencies) / args.duration:.0f} ok, "
        f"{len(shed) / args.duration:.1f} shed/s (503), {len(errors) / args.duration:.1f} errors/s"
    )
    if shed:
        print(f"shed answers: max {max(shed) * 1000:.0f} ms (bounded by WEB_QUEUE_TIMEOUT_S)")
    if latencies:
        print(
            f"latency ms: p50={pct(0.50):.1f} p95={pct(0.95):.1f} p99={pct(0.99):.1f} "
            f"max={latencies[-1] * 1000:.1f} mean={statistics.mean(latencies) * 1000:.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=10)
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--servers", type=int, default=2)
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit("set DATABASE_URL to a Postgres database (see the docstring)")

    tokens = setup_nodes(args.nodes)
    env = {**os.environ, "LOG_LEVEL": "WARNING"}
    ports = [free_port() for _ in range(args.servers)]
    servers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(port),
                "-v",
                "0",
                "config.asgi:application",
            ],
            cwd=ROOT,
            env=env,
        )
        for port in ports
    ]
    try:
        for port in ports:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.2)
        asyncio.run(run(args, tokens, ports))
    finally:
        for server in servers:
            server.send_signal(signal.SIGTERM)
        for server in servers:
            server.wait(timeout=20)


if __name__ == "__main__":
    main()
