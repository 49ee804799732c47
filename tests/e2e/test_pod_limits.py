"""Enforced resources end to end: the real server places a pod, a real agent starts it on the
real Docker engine, and `docker inspect` shows the CPU, memory and shm the scheduler reserved. A
memory hog over its limit is OOM-killed and the pod (API) says so."""

import pytest

from apps.nodes.models import Node, NodeStatus
from apps.pods.models import Pod, PodStatus
from apps.pods.services import pod_create
from tests.factories import fund
from tests.support import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.django_db(transaction=True)]


def container_of(docker_client, pod: Pod):
    found = docker_client.containers.list(all=True, filters={"label": f"gco.pod_id={pod.pk}"})
    return found[0] if found else None


def test_inspect_shows_the_reserved_limits_and_an_oom_kill_is_reported(
    agent_env, user, api_client, docker_client, busybox_image, cleanup_containers
):
    agent = agent_env()
    node = wait_for(lambda: Node.objects.filter(status=NodeStatus.ONLINE).first(), "node ONLINE")
    assert node.cpu_cores > 0 and node.ram_total_mb > 0  # the agent reported its totals
    fund(user, 100_000_000)

    # a CPU pod asking for half a core, 64 MB and a 32 MB /dev/shm
    pod = pod_create(
        owner=user,
        spec={
            "name": "limited",
            "image": busybox_image,
            "command": ["sleep", "300"],
            "gpu_model": "CPU",
            "gpu_count": 0,
            "disk_gb": 1,
            "cpu_request_millicores": 500,
            "memory_request_mb": 64,
            "shm_request_mb": 32,
        },
    ).pod
    assert pod.status == PodStatus.SCHEDULED, pod.status_reason
    wait_for(
        lambda: Pod.objects.filter(pk=pod.pk, status=PodStatus.RUNNING).exists(), "pod RUNNING"
    )
    host = container_of(docker_client, pod).attrs["HostConfig"]
    assert host["NanoCpus"] == 500_000_000
    assert host["Memory"] == 64 * 1024 * 1024
    assert host["ShmSize"] == 32 * 1024 * 1024

    # a pod that doubles a string until it outgrows its 24 MB
    hog = pod_create(
        owner=user,
        spec={
            "name": "hog",
            "image": busybox_image,
            "command": ["sh", "-c", "a=xxxxxxxxxxxxxxxx; while true; do a=$a$a; done"],
            "gpu_model": "CPU",
            "gpu_count": 0,
            "disk_gb": 1,
            "cpu_request_millicores": 500,
            "memory_request_mb": 24,
        },
    ).pod
    failed = wait_for(
        lambda: Pod.objects.filter(pk=hog.pk, status=PodStatus.FAILED).first(), "hog FAILED"
    )
    assert failed.oom_killed
    assert "out of memory" in failed.status_reason and "24 MB" in failed.status_reason
    api_client.force_authenticate(user)
    body = api_client.get(f"/api/v1/pods/{hog.pk}").json()
    assert body["oom_killed"] is True and body["status"] == "FAILED"
    assert "OOMKilled" in body["status_reason"]
    # the failed pod gave its reservation back; the other still holds its own
    assert Pod.objects.get(pk=pod.pk).cpu_millicores == 500
    # a clean stop: no heartbeat is in flight when the test database is flushed
    assert agent.stop() == 0, agent.output()
