"""Four scheduler processes place 500 pods onto 100 nodes at once, on Postgres: no GPU is
given to two pods, and every pod ends placed or PENDING with a reason. Full passes beyond
SCHEDULER_MAX_PASSES stand aside; a pod's own pass never does."""

import os
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from apps.nodes.models import Gpu, Node, NodeStatus
from apps.pods.models import GpuAllocation, Pod, PodStatus
from apps.pods.scheduler import SLOT_LOCK_CLASS, schedule_pending
from tests.factories import POD, fund, make_node

ROOT = Path(__file__).resolve().parents[2]
SCHEDULER = (
    "import django; django.setup();"
    "from apps.pods.scheduler import schedule_pending;"
    "r = schedule_pending(limit=1000); print(r.placed)"
)


@pytest.mark.django_db(transaction=True)
def test_four_processes_never_double_book(user):
    if connection.vendor != "postgresql":
        pytest.skip("row locks with SKIP LOCKED need Postgres (set DATABASE_URL)")
    nodes = Node.objects.bulk_create(
        Node(
            hostname=f"n{i}",
            status=NodeStatus.ONLINE,
            token_prefix="nt_x",
            token_digest=uuid.uuid4().hex + uuid.uuid4().hex,
        )
        for i in range(100)
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
        for i in range(4)
    )
    Pod.objects.bulk_create(
        Pod(
            owner=user, name=f"p{i}", image="x", gpu_model="RTX 4090", gpu_count=1 + (i % 3 == 0)
        )  # a third want two GPUs
        for i in range(500)
    )
    wanted = sum(p.gpu_count for p in Pod.objects.all())
    env = {
        **os.environ,
        "DATABASE_URL": _test_database_url(),
        "LOG_LEVEL": "WARNING",
        "SCHEDULER_MAX_PASSES": "4",  # all four race (none stands aside)
    }

    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SCHEDULER],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outputs]
    placed_by_process = [int(out.strip().splitlines()[-1]) for out, _ in outputs]

    placed = Pod.objects.filter(status=PodStatus.SCHEDULED)
    assert sum(placed_by_process) == placed.count()
    # No GPU twice: by the allocation table and by what the pods themselves say.
    assert GpuAllocation.objects.count() == sum(p.gpu_count for p in placed)
    slots = Counter((p.node_id, i) for p in placed for i in p.gpu_indices)
    assert max(slots.values()) == 1
    assert len(slots) <= 400
    for pod in placed:
        assert GpuAllocation.objects.filter(pod=pod).count() == pod.gpu_count
    pending = Pod.objects.filter(status=PodStatus.PENDING)
    assert placed.count() + pending.count() == 500
    assert all(p.status_reason.startswith("Waiting for capacity") for p in pending)
    assert 400 - len(slots) < 2 or pending.filter(gpu_count=1).count() == 0
    assert wanted > 400  # more demand than GPUs, so the race was real


def _test_database_url() -> str:
    s = connection.settings_dict
    return f"postgres://{s['USER']}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


@pytest.mark.django_db(transaction=True)
def test_a_full_pass_beyond_the_limit_stands_aside_and_a_pods_own_pass_does_not(user, settings):
    if connection.vendor != "postgresql":
        pytest.skip("scheduler slots are Postgres advisory locks (set DATABASE_URL)")
    make_node(gpus=2)
    fund(user, 10_000_000)
    waiting = Pod.objects.create(owner=user, **POD)
    settings.SCHEDULER_MAX_PASSES = 2
    # Two other scheduler processes each hold a full pass's slot
    holders = [psycopg.connect(_test_database_url(), autocommit=True) for _ in range(2)]
    try:
        for slot, holder in enumerate(holders):
            holder.execute("SELECT pg_advisory_lock(%s, %s)", [SLOT_LOCK_CLASS, slot])

        # A third full pass leaves the queue to them
        result = schedule_pending()
        assert result.stood_aside and result.placed == 0
        assert Pod.objects.get(pk=waiting.pk).status == PodStatus.PENDING

        # A pass for one pod (its API call's) still places it
        result = schedule_pending(pod_ids=[waiting.pk])
        assert not result.stood_aside and result.placed == 1
        assert Pod.objects.get(pk=waiting.pk).status == PodStatus.SCHEDULED
    finally:
        for holder in holders:
            holder.close()

    # With a slot free again, a full pass runs
    Pod.objects.create(owner=user, **{**POD, "name": "second"})
    assert schedule_pending().placed == 1
