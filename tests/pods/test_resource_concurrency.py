"""200 placements at once, each its own scheduler call on its own thread and connection, onto
nodes whose CPU and RAM run out long before the demand does: afterwards no node has more CPU,
RAM, disk or GPUs reserved than it has (checked on Postgres, where the row locks are real)."""

import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, connections

from apps.nodes.models import Gpu, Node, NodeStatus
from apps.pods.models import ON_NODE_STATUSES, GpuAllocation, Pod, PodStatus
from apps.pods.scheduler import schedule_pending

CORES, RAM_MB, DISK_GB, GPUS = 8, 16_384, 200, 4


def place(pod_id: uuid.UUID) -> int:
    try:
        return schedule_pending(pod_ids=[pod_id]).placed
    finally:
        connections.close_all()


@pytest.mark.django_db(transaction=True)
def test_200_concurrent_placements_never_oversubscribe(user):
    if connection.vendor != "postgresql":
        pytest.skip("row locks need Postgres (set DATABASE_URL)")
    # given 6 nodes of 4 GPUs, 8 cores, 16 GB and 200 GB each
    nodes = Node.objects.bulk_create(
        Node(
            hostname=f"tight-{i}",
            status=NodeStatus.ONLINE,
            token_prefix="nt_x",
            token_digest=uuid.uuid4().hex + uuid.uuid4().hex,
            cpu_cores=CORES,
            ram_total_mb=RAM_MB,
            disk_total_gb=DISK_GB,
        )
        for i in range(6)
    )
    Gpu.objects.bulk_create(
        Gpu(
            node=node,
            index=i,
            uuid=f"GPU-{uuid.uuid4()}",
            name="NVIDIA GeForce RTX 4090",
            model="RTX 4090",
            memory_total_mb=24564,
        )
        for node in nodes
        for i in range(GPUS)
    )
    # and 200 pods: GPU pods on their share, GPU pods asking for more, CPU pods
    shapes = [
        {"gpu_model": "RTX 4090", "gpu_count": 1},
        {
            "gpu_model": "RTX 4090",
            "gpu_count": 1,
            "cpu_request_millicores": 3500,
            "memory_request_mb": 7000,
        },
        {"gpu_model": "CPU", "gpu_count": 0, "cpu_request_millicores": 1500},
        {"gpu_model": "RTX 4090", "gpu_count": 2, "disk_gb": 90},
    ]
    pods = Pod.objects.bulk_create(
        Pod(owner=user, name=f"p{i}", image="x", **shapes[i % len(shapes)]) for i in range(200)
    )

    # when each is placed by its own concurrent scheduler call
    with ThreadPoolExecutor(max_workers=16) as pool:
        placed = sum(pool.map(place, [p.pk for p in pods]))

    # then nothing is oversubscribed
    held = Pod.objects.filter(status__in=ON_NODE_STATUSES)
    assert placed == held.count() > 0
    used: dict[uuid.UUID, Counter] = defaultdict(Counter)
    for pod in held:
        assert pod.cpu_millicores > 0 and pod.memory_mb > 0
        used[pod.node_id]["cpu"] += pod.cpu_millicores
        used[pod.node_id]["ram"] += pod.memory_mb
        used[pod.node_id]["disk"] += pod.disk_gb
        used[pod.node_id]["gpus"] += pod.gpu_count
    for node_id, totals in used.items():
        assert totals["cpu"] <= CORES * 1000, (node_id, totals)
        assert totals["ram"] <= RAM_MB, (node_id, totals)
        assert totals["disk"] <= DISK_GB, (node_id, totals)
        assert totals["gpus"] <= GPUS, (node_id, totals)
    # no GPU twice, and the allocations match what the pods hold
    assert GpuAllocation.objects.count() == sum(p.gpu_count for p in held)
    slots = Counter((p.node_id, i) for p in held for i in p.gpu_indices)
    assert not slots or max(slots.values()) == 1
    # and every pod left over says why it waits
    waiting = Pod.objects.filter(status=PodStatus.PENDING)
    assert waiting.count() == 200 - placed
    assert all(p.status_reason.startswith("Waiting for capacity") for p in waiting)
    # the demand exceeded the CPU: some node is (nearly) full of it
    assert max(t["cpu"] for t in used.values()) > CORES * 1000 - 2000
