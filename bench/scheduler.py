"""Placements per second: 10,000 pods onto 2,000 nodes, with one and with four scheduler
processes at once, on Postgres; checks that no GPU went to two pods.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/gco_bench \
        .venv/bin/python bench/scheduler.py --pods 10000 --nodes 2000 --procs 1 4

Nodes have 8 RTX 4090s each (16,000 GPUs); pods ask for 1 or 2 (15,000 GPUs in all), so every
pod fits. Each run starts from the same empty placement; prints pods placed, seconds and
placements/s, and the double-booking check.
"""

import argparse
import os
import subprocess
import sys
import time
import uuid
from collections import Counter

import _django
from _report import figure

_django.setup()

from django.db import connection  # noqa: E402

from apps.accounts.models import User  # noqa: E402
from apps.nodes.models import Gpu, Node, NodeStatus  # noqa: E402
from apps.pods.models import Pod, PodStatus  # noqa: E402

# Each worker times its own scheduling (not its interpreter and Django start-up) from a
# common start signal, the bench's stdin closing.
# Besides wall time each reports its own CPU seconds and SQL statements: figures the other
# load on a shared machine does not move.
WORKER = (
    "import sys, time; sys.path.insert(0, 'bench'); import _django; _django.setup();"
    "from django.db import connection;"
    "from apps.pods.scheduler import schedule_pending;"
    "n = [0]\n"
    "def count(execute, sql, params, many, context):\n"
    "    n[0] += 1\n"
    "    return execute(sql, params, many, context)\n"
    "print('ready', flush=True); sys.stdin.read(); t0 = time.perf_counter(); placed = 0\n"
    "c0 = time.process_time()\n"
    "with connection.execute_wrapper(count):\n"
    "    while True:\n"
    "        r = schedule_pending(limit=2000)\n"
    "        placed += r.placed\n"
    "        if r.placed == 0: break\n"
    "print(placed, time.perf_counter() - t0, time.process_time() - c0, n[0])"
)


def reset(nodes: int, pods: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE pods_usagerecord, pods_podevent, pods_gpuallocation, pods_pod, "
            "nodes_workload, nodes_nodecommand, nodes_nodeevent, nodes_gpu, nodes_node CASCADE"
        )
    owner, _ = User.objects.get_or_create(email="sched-bench@example.com")
    created = Node.objects.bulk_create(
        Node(
            hostname=f"s{i}",
            status=NodeStatus.ONLINE,
            token_prefix="nt_b",
            token_digest=uuid.uuid4().hex * 2,
        )
        for i in range(nodes)
    )
    Gpu.objects.bulk_create(
        (
            Gpu(
                node=n,
                index=i,
                uuid=f"GPU-{uuid.uuid4()}",
                name="NVIDIA GeForce RTX 4090",
                model="RTX 4090",
                memory_total_mb=24564,
            )
            for n in created
            for i in range(8)
        ),
        batch_size=5000,
    )
    Pod.objects.bulk_create(
        (
            Pod(owner=owner, name=f"p{i}", image="x", gpu_model="RTX 4090", gpu_count=1 + i % 2)
            for i in range(pods)
        ),
        batch_size=5000,
    )


def run(procs: int) -> tuple[int, float, float, int]:
    env = {**os.environ, "LOG_LEVEL": "WARNING"}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER],
            cwd=_django.ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(procs)
    ]
    for w in workers:
        assert w.stdout is not None and w.stdout.readline().strip() == "ready"
    t0 = time.perf_counter()
    # The start signal for all of them first, then their answers: one at a time, each would
    # wait for the one before it to finish (as `communicate` per worker did).
    for w in workers:
        assert w.stdin is not None
        w.stdin.close()
    outputs = []
    for w in workers:
        assert w.stdout is not None
        outputs.append(w.stdout.read())
        w.wait(timeout=1800)
    wall = time.perf_counter() - t0
    last = [out.strip().splitlines()[-1].split() for out in outputs]
    placed = sum(int(w[0]) for w in last)
    return placed, wall, sum(float(w[2]) for w in last), sum(int(w[3]) for w in last)


def check() -> str:
    placed = Pod.objects.filter(status=PodStatus.SCHEDULED)
    slots = Counter(
        (p.node_id, i) for p in placed.only("node_id", "gpu_indices") for i in p.gpu_indices
    )
    doubles = sum(1 for n in slots.values() if n > 1)
    pending = Pod.objects.filter(status=PodStatus.PENDING).count()
    return f"double-booked GPUs: {doubles}, pods still pending: {pending}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--nodes", type=int, default=2_000)
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--quick", action="store_true", help="2,000 pods onto 400 nodes")
    args = parser.parse_args()
    if args.quick:
        args.pods, args.nodes = 2_000, 400
    print(f"{args.pods} pods onto {args.nodes} nodes × 8 GPUs; load average {os.getloadavg()}")
    rates = {}
    for procs in args.procs:
        reset(args.nodes, args.pods)
        placed, seconds, cpu, statements = run(procs)
        rates[procs] = placed / seconds
        print(
            f"{procs} process(es): placed {placed} in {seconds:.1f} s = "
            f"{rates[procs]:.0f} placements/s (target ≥ 1,000); scheduler CPU "
            f"{cpu / max(placed, 1) * 1000:.2f} ms and {statements / max(placed, 1) * 1000:.0f} "
            f"SQL statements per 1,000 placements; {check()}"
        )
        figure(
            f"{procs} process(es): placements/s",
            rates[procs],
            "/s",
            ">= 1000",
            rates[procs] >= 1000,
        )
        figure(f"{procs} process(es): CPU per placement", cpu / max(placed, 1) * 1000, "ms")
    if 1 in rates and len(rates) > 1:
        for procs, rate in rates.items():
            if procs != 1:
                print(
                    f"{procs} processes ÷ 1 process: {rate / rates[1]:.2f} (target ≥ 1.00); "
                    f"load average {os.getloadavg()}"
                )
                ratio = rate / rates[1]
                figure(f"{procs} processes ÷ 1 process", ratio, "×", ">= 1.00", ratio >= 1.0)


if __name__ == "__main__":
    main()
