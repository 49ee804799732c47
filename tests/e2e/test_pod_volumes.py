"""Volumes end to end on the real Docker engine, through the API, a live server and a real
agent: a pod writes to /workspace, is stopped (its volume keeps billing, exactly), is resumed on
the same node and sees its file; a second pod started later with the same volume reads it; the
volume is deleted only by its own DELETE once no pod holds it."""

from datetime import timedelta

import pytest

from apps.billing.models import LedgerAccount
from apps.billing.services import wallet_for
from apps.nodes.models import Node, NodeStatus
from apps.pods.models import Pod, PodStatus, Volume, VolumeStatus
from apps.pods.storage_billing import volume_bill
from tests.factories import fund
from tests.support import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.django_db(transaction=True)]


def container_of(docker_client, pod_id):
    found = docker_client.containers.list(all=True, filters={"label": f"gco.pod_id={pod_id}"})
    return found[0] if found else None


def pod_status(pod_id, status):
    return Pod.objects.filter(pk=pod_id, status=status).first()


@pytest.fixture
def cleanup_volumes(docker_client):
    yield
    for volume in Volume.objects.all():
        try:
            docker_client.volumes.get(volume.docker_name).remove(force=True)
        except Exception:  # noqa: S110 - already removed by the test
            pass


def test_volume_outlives_pods_keeps_billing_when_stopped_and_resumes(
    agent_env,
    settings,
    user,
    api_client,
    docker_client,
    busybox_image,
    cleanup_containers,
    cleanup_volumes,
    monkeypatch,
):
    settings.VOLUME_PRICE_PER_GB_MONTH = 432_000  # 10 micro-dollars per GB-minute
    monkeypatch.setenv("GPU_AGENT_MEASURE_INTERVAL", "1")
    agent = agent_env()
    node = wait_for(lambda: Node.objects.filter(status=NodeStatus.ONLINE).first(), "node ONLINE")
    fund(user, 50_000_000)
    api_client.force_authenticate(user)

    # a 2 GB volume on the agent's node, made by the agent
    made = api_client.post(
        "/api/v1/volumes/", {"name": "work", "size_gb": 2, "node": str(node.pk)}, format="json"
    )
    assert made.status_code == 201, made.json()
    volume = wait_for(
        lambda: Volume.objects.filter(pk=made.json()["id"], status=VolumeStatus.READY).first(),
        "volume READY",
    )
    assert docker_client.volumes.get(volume.docker_name).attrs["Labels"]["gco.managed"] == "true"

    # a pod that writes a note on its first run and shows it on later runs
    spec = {
        "name": "notebook",
        "image": busybox_image,
        "command": [
            "sh",
            "-c",
            "cat /workspace/note 2>/dev/null || echo first-run > /workspace/note; sleep 300",
        ],
        "gpu_model": "CPU",
        "gpu_count": 0,
        "disk_gb": 1,
        "vcpus": "0.5",
        "memory_mb": 64,
        "volume": str(volume.pk),
    }
    created = api_client.post("/api/v1/pods/", spec, format="json")
    assert created.status_code == 201, created.json()
    pod_id = created.json()["id"]
    wait_for(lambda: pod_status(pod_id, PodStatus.RUNNING), "pod RUNNING")
    mounts = container_of(docker_client, pod_id).attrs["Mounts"]
    assert [(m["Name"], m["Destination"]) for m in mounts] == [(volume.docker_name, "/workspace")]
    wait_for(
        lambda: (
            b"first-run"
            in container_of(docker_client, pod_id).exec_run(["cat", "/workspace/note"]).output
        ),
        "the note written",
    )

    # stop: the container goes, the volume stays and keeps billing at the storage price
    assert api_client.post(f"/api/v1/pods/{pod_id}/stop").status_code == 200
    stopped = wait_for(lambda: pod_status(pod_id, PodStatus.STOPPED), "pod STOPPED")
    assert container_of(docker_client, pod_id) is None
    assert docker_client.volumes.get(volume.docker_name)
    wallet = wallet_for(user)
    before = LedgerAccount.objects.get(pk=wallet.pk).balance
    charged = volume_bill(
        volume_id=volume.pk, now=volume.created_at + timedelta(hours=2, minutes=17, seconds=40)
    )
    assert charged == 2 * 10 * 137  # 2 GB × 137 whole minutes × 10 µ$
    assert LedgerAccount.objects.get(pk=wallet.pk).balance == before - 2740
    assert stopped.billed_until is not None and stopped.status == PodStatus.STOPPED

    # resume: back on the same node, and it sees the file of its first run
    resumed = api_client.post(f"/api/v1/pods/{pod_id}/resume")
    assert resumed.status_code == 200, resumed.json()
    assert resumed.json()["node"]["id"] == str(node.pk)
    wait_for(lambda: pod_status(pod_id, PodStatus.RUNNING), "resumed pod RUNNING")
    wait_for(
        lambda: b"first-run" in container_of(docker_client, pod_id).logs(),
        "the resumed pod to print its note",
    )

    # terminate for good; a second pod started later with the volume reads the file
    api_client.delete(f"/api/v1/pods/{pod_id}")
    wait_for(lambda: pod_status(pod_id, PodStatus.STOPPED), "pod stopped")
    assert api_client.delete(f"/api/v1/pods/{pod_id}").json()["status"] == "TERMINATED"
    reader = api_client.post(
        "/api/v1/pods/",
        {**spec, "name": "reader", "command": ["sh", "-c", "cat /workspace/note; sleep 300"]},
        format="json",
    )
    assert reader.status_code == 201, reader.json()
    reader_id = reader.json()["id"]
    wait_for(lambda: pod_status(reader_id, PodStatus.RUNNING), "reader RUNNING")
    wait_for(
        lambda: b"first-run" in container_of(docker_client, reader_id).logs(),
        "the second pod to read the file",
    )

    # the agent measures the volume; DELETE waits until no pod holds it
    wait_for(
        lambda: Volume.objects.filter(pk=volume.pk, used_bytes__gt=0).exists(),
        "the volume measured",
    )
    assert api_client.delete(f"/api/v1/volumes/{volume.pk}").status_code == 409
    api_client.delete(f"/api/v1/pods/{reader_id}")
    wait_for(lambda: pod_status(reader_id, PodStatus.STOPPED), "reader stopped")
    api_client.delete(f"/api/v1/pods/{reader_id}")
    assert api_client.delete(f"/api/v1/volumes/{volume.pk}").status_code == 200
    wait_for(
        lambda: Volume.objects.filter(pk=volume.pk, status=VolumeStatus.DELETED).exists(),
        "volume DELETED",
    )
    assert volume.docker_name not in {v.name for v in docker_client.volumes.list()}
    # a clean stop: no heartbeat is in flight when the test database is flushed
    assert agent.stop() == 0, agent.output()
