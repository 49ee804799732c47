"""Each GPU brings a share of its node's CPU and RAM; pods may ask for more within what is free;
the start command carries what was reserved, and a pod that does not fit waits, saying why."""

import pytest

from apps.nodes.models import CommandType, Node, NodeCommand
from apps.pods.models import Pod, PodStatus
from apps.pods.services import pod_create
from tests.factories import fund, make_host

pytestmark = pytest.mark.django_db

H100 = "NVIDIA H100 80GB HBM3"


def create(user, **spec) -> Pod:
    base = {"name": "p", "image": "img", "gpu_model": "H100 SXM", "gpu_count": 1}
    return pod_create(owner=user, spec={**base, **spec}).pod


def start_payload(pod: Pod) -> dict:
    return NodeCommand.objects.get(type=CommandType.START_POD, payload__pod_id=str(pod.pk)).payload


@pytest.fixture
def funded(user):
    fund(user, 100_000_000)
    return user


def test_each_gpu_brings_its_share_of_cpu_and_ram(funded):
    node = make_host()

    pod = create(funded, gpu_count=2)

    assert pod.status == PodStatus.SCHEDULED
    assert (pod.cpu_millicores, pod.memory_mb, pod.shm_mb) == (16_000, 131_072, 65_536)
    payload = start_payload(pod)
    assert payload["cpu_limit"] == 16.0
    assert payload["memory_limit_mb"] == 131_072
    assert payload["shm_size_mb"] == 65_536
    assert payload["disk_limit_gb"] == 20
    assigned = list(node.gpus.filter(index__in=pod.gpu_indices).order_by("index"))
    assert payload["gpu_uuids"] == [g.uuid for g in assigned]


def test_operator_share_setting_wins_over_the_totals(funded):
    node = make_host()
    Node.objects.filter(pk=node.pk).update(cpu_per_gpu_millicores=4000, ram_per_gpu_mb=32_768)

    pod = create(funded)

    assert (pod.cpu_millicores, pod.memory_mb) == (4000, 32_768)


def test_a_pod_may_ask_for_more_within_what_is_free(funded):
    make_host()

    pod = create(funded, cpu_request_millicores=20_000, memory_request_mb=200_000)

    assert pod.status == PodStatus.SCHEDULED
    assert (pod.cpu_millicores, pod.memory_mb) == (20_000, 200_000)
    # and the next pod fits only in what is left: 12 cores
    too_big = create(funded, cpu_request_millicores=16_000)
    assert too_big.status == PodStatus.PENDING
    assert "CPU, memory and disk" in too_big.status_reason
    assert too_big.cpu_millicores == 0  # nothing reserved for a waiting pod
    fits = create(funded, cpu_request_millicores=12_000, memory_request_mb=62_144)
    assert fits.status == PodStatus.SCHEDULED


def test_cpu_pods_take_defaults_and_stop_at_the_node_totals(funded, settings):
    settings.POD_DEFAULT_CPU_MILLICORES = 1000
    settings.POD_DEFAULT_MEMORY_MB = 1024
    make_host("cpu-box", gpus=0, cores=2, ram_mb=4096)

    first = create(funded, gpu_model="CPU", gpu_count=0)
    second = create(funded, gpu_model="CPU", gpu_count=0)
    third = create(funded, gpu_model="CPU", gpu_count=0)

    assert [first.status, second.status] == [PodStatus.SCHEDULED] * 2
    assert (first.cpu_millicores, first.memory_mb) == (1000, 1024)
    # a default is reserved, not enforced: the agent sets no limit for it
    payload = start_payload(first)
    assert (payload["cpu_limit"], payload["memory_limit_mb"]) == (None, None)
    assert third.status == PodStatus.PENDING
    assert "CPU and memory" in third.status_reason


def test_disk_is_reserved_too(funded):
    make_host(disk_gb=100)

    big = create(funded, disk_gb=80)
    second = create(funded, disk_gb=30)

    assert big.status == PodStatus.SCHEDULED
    assert second.status == PodStatus.PENDING


def test_finished_pods_give_their_share_back(funded):
    make_host(gpus=1, cores=4, ram_mb=8192)
    first = create(funded)
    waiting = create(funded, gpu_model="CPU", gpu_count=0, cpu_request_millicores=1000)
    assert waiting.status == PodStatus.PENDING

    Pod.objects.filter(pk=first.pk).update(status=PodStatus.FAILED)
    from apps.pods.scheduler import schedule_pending

    schedule_pending()
    waiting.refresh_from_db()
    assert waiting.status == PodStatus.SCHEDULED


def test_api_takes_vcpus_memory_and_shm(owner_client):
    make_host()
    body = {
        "name": "big",
        "image": "img",
        "gpu_model": "H100 SXM",
        "gpu_count": 1,
        "vcpus": "10.5",
        "memory_mb": 100_000,
        "shm_mb": 8192,
    }

    response = owner_client.post("/api/v1/pods/", body, format="json")

    assert response.status_code == 201, response.json()
    data = response.json()
    assert (data["vcpus"], data["memory_mb"], data["shm_mb"]) == (10.5, 100_000, 8192)
    bad = owner_client.post("/api/v1/pods/", {**body, "shm_mb": 200_000}, format="json")
    assert bad.status_code == 400 and "shm_mb" in bad.json()["error"]["fields"]
