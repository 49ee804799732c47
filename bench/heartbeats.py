"""Heartbeat throughput and latency: N simulated agents (asyncio, one process) heartbeating with
realistic payloads (one H100, two containers) against real server processes on Postgres.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/gco_bench REDIS_URL=redis://127.0.0.1:6379/2 \
        .venv/bin/python bench/heartbeats.py --nodes 10000 --interval 10 --duration 30 --servers 2

It migrates the database, creates N nodes with known tokens directly (registration is not
what is measured), starts `--servers` web processes on 127.0.0.1 (daphne, as the Procfile does,
or `--server uvicorn`; the client spreads nodes over them, as a load balancer would), runs for
`--duration` seconds after a warm-up interval, and prints each figure next to its target:
sustained heartbeats/s (target N/interval), shed and failed beats (target 0), p99 latency
(target 50 ms up to 1,000 nodes, 100 ms above), then figures that do not depend on how busy the
machine is: CPU time per heartbeat of the web processes, of the database's backends and of this
client (user + system, from /proc), and database transactions per heartbeat (the database's
`pg_stat_database` counters; every statement outside a transaction is one). The agents send
`seq` and `sent_at` as agents from 0.2.0 on do. Each simulated agent keeps its own keep-alive
connection, as a real one does. Every request goes to 127.0.0.1; the script stops on its own
(about 70 s for 10,000 nodes).
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
from datetime import UTC, datetime
from pathlib import Path

import httpx
from _report import figure

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
            agent_version="0.2.0",  # sends seq and sent_at (replay protection)
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


def payload(seq: int) -> dict:
    return {
        "seq": seq,
        "sent_at": datetime.now(UTC).isoformat(),
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


# How each ASGI server is started on 127.0.0.1 (the port and the app follow).
SERVERS = {
    "daphne": ["daphne", "-b", "127.0.0.1", "-v", "0", "-p"],
    "uvicorn": ["uvicorn", "--host", "127.0.0.1", "--no-access-log", "--log-level", "warning"]
    + ["--lifespan", "off", "--timeout-keep-alive", "60", "--loop", "uvloop"]
    + ["--http", "httptools", "--port"],
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
        for attempt in (1, 2):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            assert self.reader is not None
            self.writer.write(f"{self.head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
            await self.writer.drain()
            status_line = await self.reader.readline()
            if status_line or attempt == 2:
                break
            self.close()  # the server closed the idle connection: dial again, as httpx does
        status = int(status_line.split()[1])
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
        body = json.dumps(payload(time.time_ns() // 1000)).encode()
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


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (Linux /proc), in seconds."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


def db_transactions() -> int:
    """Transactions committed or rolled back in this database so far (statistics are flushed
    by each backend about once a second, so read over a window of many seconds)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database "
            "WHERE datname = current_database()"
        )
        return int(cursor.fetchone()[0])


def db_backend_pids() -> list[int]:
    """The Postgres backends connected to this database (the web processes' connections)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
        return [row[0] for row in cursor.fetchall()]


def cpu_by_pid(pids: list[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        try:
            out[pid] = cpu_seconds([pid])
        except (FileNotFoundError, ProcessLookupError):
            pass  # gone (a closed connection)
    return out


async def measure(pids, warm_until, stop_at, figures) -> None:
    """CPU time (web processes, this client, the database's backends) and database
    transactions over the measured window."""
    await asyncio.sleep(max(0.0, warm_until - time.monotonic()))
    backends = cpu_by_pid(await asyncio.to_thread(db_backend_pids))
    cpu0, tx0, client0 = cpu_seconds(pids), await asyncio.to_thread(db_transactions), os.times()
    await asyncio.sleep(max(0.0, stop_at - time.monotonic()))
    figures["cpu_s"] = cpu_seconds(pids) - cpu0
    client = os.times()
    figures["client_s"] = client.user + client.system - client0.user - client0.system
    # Backends open at both ends of the window (the lean path's pool keeps its connections).
    after = cpu_by_pid(list(backends))
    figures["db_cpu_s"] = sum(after[pid] - backends[pid] for pid in after)
    await asyncio.sleep(2)  # let the last beats' statistics reach pg_stat_database
    figures["tx"] = await asyncio.to_thread(db_transactions) - tx0


async def run(args, tokens, ports, pids) -> None:
    latencies: list[float] = []
    errors: list[float] = []
    shed: list[float] = []
    figures: dict[str, float] = {}
    now = time.monotonic()
    warm_until = now + args.interval
    stop_at = warm_until + args.duration
    await asyncio.gather(
        measure(pids, warm_until, stop_at, figures),
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
        ),
    )
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    target = args.nodes / args.interval
    p99_target = 50 if args.nodes <= 1000 else 100
    answered = len(latencies) + len(shed) + len(errors)
    print(
        f"nodes={args.nodes} interval={args.interval}s servers={len(ports)} ({args.server}) "
        f"duration={args.duration}s (after {args.interval}s warm-up); load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)"
    )
    print(f"heartbeats ok/s:  {len(latencies) / args.duration:8.1f}   target {target:.0f}")
    print(f"shed/s (503):     {len(shed) / args.duration:8.1f}   target 0")
    print(f"errors/s:         {len(errors) / args.duration:8.1f}   target 0")
    if latencies:
        print(f"latency p99 ms:   {pct(0.99):8.1f}   target < {p99_target}")
        print(
            f"latency ms: p50={pct(0.50):.1f} p95={pct(0.95):.1f} max={latencies[-1] * 1000:.1f} "
            f"mean={statistics.mean(latencies) * 1000:.1f}"
        )
    if shed:
        print(f"shed answers: max {max(shed) * 1000:.0f} ms")
    at = f"{args.nodes} nodes"
    ok_rate = len(latencies) / args.duration
    figure(f"{at}: heartbeats ok/s", ok_rate, "/s", f">= {target:.0f}", ok_rate >= 0.99 * target)
    figure(f"{at}: shed/s", len(shed) / args.duration, "/s", "0", not shed)
    if latencies:
        figure(f"{at}: p99 latency", pct(0.99), "ms", f"< {p99_target}", pct(0.99) < p99_target)
    if answered:
        figure(f"{at}: web CPU per beat", figures["cpu_s"] * 1000 / answered, "ms")
    if answered:
        ok = len(latencies) or 1

        def per_beat(label: str, value: float, unit: float = 1000) -> None:
            print(
                f"{label} per heartbeat answered: {value * unit / answered:.2f}; "
                f"per 200: {value * unit / ok:.2f}"
            )

        print("load-independent figures:")
        per_beat("  web processes' CPU ms", figures["cpu_s"])
        per_beat("  Postgres backends' CPU ms", figures["db_cpu_s"])
        per_beat("  database transactions", figures["tx"], unit=1)
        per_beat("  this client's CPU ms (the simulated agents)", figures["client_s"])
        print(
            "  (transactions are read from pg_stat_database, which a backend busy without pause "
            "updates late: under overload they are undercounted)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=10)
    parser.add_argument("--duration", type=float, default=30)
    parser.add_argument("--servers", type=int, default=2)
    parser.add_argument(
        "--server",
        choices=sorted(SERVERS),
        default="daphne",
        help="the ASGI server the web processes run (production: daphne, see the Procfile)",
    )
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit("set DATABASE_URL to a Postgres database (see the docstring)")

    tokens = setup_nodes(args.nodes)
    env = {**os.environ, "LOG_LEVEL": "WARNING"}
    ports = [free_port() for _ in range(args.servers)]
    servers = [
        subprocess.Popen(
            [sys.executable, "-m", *SERVERS[args.server], str(port), "config.asgi:application"],
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
        asyncio.run(run(args, tokens, ports, [server.pid for server in servers]))
    finally:
        for server in servers:
            server.send_signal(signal.SIGTERM)
        for server in servers:
            server.wait(timeout=20)


if __name__ == "__main__":
    main()
