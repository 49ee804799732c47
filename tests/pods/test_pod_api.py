"""POST/GET /api/v1/pods, stop, delete, events; placement, idempotency, bad input, tenancy."""

import uuid

import pytest

from apps.nodes.models import CommandType, NodeCommand, Workload
from apps.pods.models import GpuAllocation, Pod, PodStatus
from tests.factories import POD, ack, make_node, report_container

pytestmark = pytest.mark.django_db


def create(client, body=None, **headers):
    return client.post("/api/v1/pods/", body or POD, format="json", **headers)


def test_create_places_the_pod_and_queues_its_start(owner_client, user):
    node = make_node(price=690_000)

    response = create(owner_client)

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "SCHEDULED"
    assert body["node"]["hostname"] == "node-1" and body["gpu_indices"] == [0]
    assert body["price_per_gpu_hour_usd"] == "0.69"
    command = NodeCommand.objects.get(node=node, type=CommandType.START_POD)
    assert command.payload["pod_id"] == body["id"]
    assert command.payload["gpu_indices"] == [0]
    assert command.payload["image"] == "local/busybox:1"
    events = owner_client.get(f"/api/v1/pods/{body['id']}/events").json()
    assert [e["to_status"] for e in events] == ["PENDING", "SCHEDULED"]


def test_cheapest_fitting_node_wins(owner_client):
    make_node("dear", price=900_000)
    make_node("cheap", price=500_000)
    assert create(owner_client).json()["node"]["hostname"] == "cheap"


def test_nothing_fits_leaves_pod_pending_with_reason(owner_client):
    make_node(gpus=1)
    response = create(owner_client, {**POD, "gpu_count": 2})
    assert response.status_code == 201
    assert response.json()["status"] == "PENDING"
    assert "no online node has 2 free RTX 4090" in response.json()["status_reason"]


def test_idempotency_key(owner_client):
    make_node(gpus=4)
    first = create(owner_client, HTTP_IDEMPOTENCY_KEY="k-1")
    again = create(owner_client, HTTP_IDEMPOTENCY_KEY="k-1")
    other = create(owner_client, {**POD, "name": "different"}, HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == again.status_code == 201  # the first answer, replayed
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    assert other.status_code == 422
    assert Pod.objects.count() == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"gpu_count": 0}, "gpu_count"),
        ({"gpu_count": -1}, "gpu_count"),
        ({"gpu_count": 10_000}, "gpu_count"),
        ({"gpu_count": "two"}, "gpu_count"),
        ({"gpu_model": "RTX 9999 Ultra"}, "gpu_model"),
        ({"price_cap_per_gpu_hour_usd": "0.10"}, "price_cap_per_gpu_hour_usd"),
        ({"price_cap_per_gpu_hour_usd": "-1"}, "price_cap_per_gpu_hour_usd"),
        ({"min_vram_mb": 2**40}, "min_vram_mb"),
        ({"env": {"1BAD": "x"}}, "env"),
        ({"ports": [{"container_port": 70000}]}, "ports[0].container_port"),
        ({"privileged": True}, "privileged"),
    ],
)
def test_bad_input_is_400_naming_the_field_and_creates_nothing(owner_client, change, field):
    make_node(price=690_000)
    response = create(owner_client, {**POD, **change})
    assert response.status_code == 400, response.json()
    assert field in response.json()["error"]["fields"]
    assert Pod.objects.count() == 0


def test_unknown_model_error_lists_known_models(owner_client):
    response = create(owner_client, {**POD, "gpu_model": "RTX 9999"})
    assert "H100 SXM" in response.json()["error"]["fields"]["gpu_model"]


def test_other_tenant_gets_404_and_anonymous_401(owner_client, api_client, other_user):
    make_node()
    pod_id = create(owner_client).json()["id"]
    api_client.force_authenticate(other_user)
    for method, path in [
        ("get", f"/api/v1/pods/{pod_id}"),
        ("post", f"/api/v1/pods/{pod_id}/stop"),
        ("delete", f"/api/v1/pods/{pod_id}"),
        ("get", f"/api/v1/pods/{pod_id}/events"),
        ("get", f"/api/v1/pods/{pod_id}/logs"),
    ]:
        assert getattr(api_client, method)(path).status_code == 404, path
    assert api_client.get("/api/v1/pods/").json() == []
    api_client.force_authenticate(None)
    assert api_client.get(f"/api/v1/pods/{pod_id}").status_code == 401
    assert Pod.objects.get(pk=pod_id).status == PodStatus.SCHEDULED


def test_running_then_stop_releases_gpus(owner_client):
    node = make_node()
    pod_id = create(owner_client).json()["id"]
    report_container(node, pod_id, "running")
    assert owner_client.get(f"/api/v1/pods/{pod_id}").json()["status"] == "RUNNING"

    stopped = owner_client.post(f"/api/v1/pods/{pod_id}/stop").json()
    assert stopped["status"] == "STOPPING"
    assert not Workload.objects.get(pod_id=pod_id).wanted
    stop = NodeCommand.objects.get(type=CommandType.STOP_POD)
    ack(node, stop.pk, succeeded=True, result={"state": "removed"})
    pod = Pod.objects.get(pk=pod_id)
    assert pod.status == PodStatus.STOPPED and pod.stopped_at is not None
    assert not GpuAllocation.objects.exists()
    assert owner_client.delete(f"/api/v1/pods/{pod_id}").json()["status"] == "TERMINATED"


def test_container_that_exits_non_zero_fails_the_pod(owner_client):
    node = make_node()
    pod_id = create(owner_client).json()["id"]
    report_container(node, pod_id, "running")
    report_container(node, pod_id, "exited", exit_code=3)
    pod = Pod.objects.get(pk=pod_id)
    assert pod.status == PodStatus.FAILED
    assert pod.status_reason == "container exited with code 3"
    assert not GpuAllocation.objects.exists()


def test_failed_start_fails_the_pod(owner_client):
    node = make_node()
    pod_id = create(owner_client).json()["id"]
    start = NodeCommand.objects.get(type=CommandType.START_POD)
    ack(node, start.pk, succeeded=False, result={}, error="image local/nope:1 not found")
    pod = Pod.objects.get(pk=pod_id)
    assert pod.status == PodStatus.FAILED and "image local/nope:1 not found" in pod.status_reason


def test_unknown_pod_id_is_404(owner_client):
    assert owner_client.get(f"/api/v1/pods/{uuid.uuid4()}").status_code == 404


def test_cpu_pod_runs_on_a_cpu_node_first(owner_client):
    make_node("gpu-box", gpus=2)
    make_node("cpu-box", gpus=0)
    response = create(owner_client, {**POD, "gpu_model": "CPU", "gpu_count": 0})
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["node"]["hostname"] == "cpu-box" and body["gpu_indices"] == []
    assert body["price_per_gpu_hour_usd"] == "0.05"
    assert not GpuAllocation.objects.exists()


def test_cpu_model_and_gpu_count_must_agree(owner_client):
    for change in ({"gpu_model": "CPU", "gpu_count": 1}, {"gpu_count": 0}):
        response = create(owner_client, {**POD, **change})
        assert response.status_code == 400
        assert "gpu_count" in response.json()["error"]["fields"]
