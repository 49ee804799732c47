"""The agent protocol endpoints: register, heartbeat, ack (docs/agent-protocol.md)."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.nodes import services
from apps.nodes.models import CommandStatus, Gpu, Node, NodeCommand, NodeEvent, NodeStatus, Workload
from tests.factories import h100_registration, heartbeat_body

pytestmark = pytest.mark.django_db


def beat(api_client, token, **body):
    return api_client.post(
        "/api/v1/nodes/heartbeat", heartbeat_body(**body), format="json", HTTP_X_AGENT_API_KEY=token
    )


def test_register_stores_the_node_and_only_a_hash_of_its_token(registered):
    node_id, token = registered
    node = Node.objects.get(pk=node_id)
    assert token.startswith("nt_")
    assert token not in (node.token_digest, node.token_prefix) and len(node.token_digest) == 64
    assert node.status == NodeStatus.REGISTERING
    assert node.provider_id is None  # bootstrap token: a platform node
    gpu = Gpu.objects.get(node=node)
    assert (gpu.name, gpu.model, gpu.memory_total_mb) == (
        "NVIDIA H100 80GB HBM3",
        "H100 SXM",
        81559,
    )
    assert (node.driver_version, node.cuda_version) == ("580.159.04", "13.0")


def test_register_with_bad_token_is_401_and_writes_nothing(api_client):
    for token in ("wrong", "pk_not-a-provider-key"):
        response = api_client.post(
            "/api/v1/nodes/register", h100_registration(registration_token=token), format="json"
        )
        assert response.status_code == 401
    assert Node.objects.count() == 0


def test_register_malformed_gpu_is_400_naming_the_field(api_client):
    body = h100_registration()
    body["gpus"][0]["memory_total_mb"] = "eighty"
    response = api_client.post("/api/v1/nodes/register", body, format="json")
    assert response.status_code == 400
    assert "memory_total_mb" in response.json()["error"]["message"]
    assert Node.objects.count() == 0


def test_cpu_only_node_registers(api_client):
    body = h100_registration(gpus=[], driver_version=None, cuda_version=None)
    response = api_client.post("/api/v1/nodes/register", body, format="json")
    assert response.status_code == 201
    assert Node.objects.get().is_cpu_only


def test_first_heartbeat_brings_node_online_and_records_telemetry(api_client, registered):
    node_id, token = registered
    response = beat(api_client, token)
    assert response.status_code == 200
    assert response.json() == {"heartbeat_interval": 10, "commands": [], "wanted_pod_ids": []}
    node = Node.objects.get(pk=node_id)
    assert node.status == NodeStatus.ONLINE and node.last_heartbeat_at is not None
    assert NodeEvent.objects.get(node=node).reason == "first heartbeat"
    gpu = Gpu.objects.get(node=node)
    assert (gpu.temperature_c, gpu.power_w, gpu.memory_used_mb) == (49, 134.98, 0)


def test_heartbeat_with_wrong_token_is_401_and_writes_nothing(api_client, registered):
    node_id, _ = registered
    response = beat(api_client, "nt_forged")
    assert response.status_code == 401
    node = Node.objects.get(pk=node_id)
    assert node.last_heartbeat_at is None and node.status == NodeStatus.REGISTERING
    assert Gpu.objects.get(node=node).telemetry_at is None


def test_malformed_telemetry_is_400_naming_the_field(api_client, registered):
    node_id, token = registered
    body = heartbeat_body()
    body["gpus"][0]["utilization_pct"] = "very hot"
    response = api_client.post(
        "/api/v1/nodes/heartbeat", body, format="json", HTTP_X_AGENT_API_KEY=token
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["fields"] == {"gpus[0].utilization_pct": "A valid number is required."}
    assert "utilization_pct" in error["message"]
    assert Node.objects.get(pk=node_id).last_heartbeat_at is None

    response = beat(api_client, token, containers=[{"pod_id": "x", "state": "sleeping"}])
    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert fields["containers[0].pod_id"] == "Must be a valid UUID."
    assert fields["containers[0].state"] == '"sleeping" is not a valid choice.'
    assert fields["containers[0].container_id"] == "This field is required."


def test_commands_ride_on_the_heartbeat_and_ack_is_idempotent(api_client, registered):
    node_id, token = registered
    node = Node.objects.get(pk=node_id)
    pod_id = uuid.uuid4()
    command = services.workload_start(
        node=node, pod_id=pod_id, spec={"image": "local/busybox:1", "gpu_indices": [0]}
    )

    answer = beat(api_client, token).json()
    assert [c["id"] for c in answer["commands"]] == [str(command.pk)]
    assert answer["commands"][0]["type"] == "start_pod"
    assert answer["commands"][0]["payload"]["pod_id"] == str(pod_id)
    assert answer["wanted_pod_ids"] == [str(pod_id)]
    assert NodeCommand.objects.get(pk=command.pk).status == CommandStatus.DELIVERED

    ack_url = f"/api/v1/nodes/commands/{command.pk}/ack"
    ack = {"status": "succeeded", "result": {"container_id": "c0ffee", "state": "running"}}
    first = api_client.post(ack_url, ack, format="json", HTTP_X_AGENT_API_KEY=token)
    assert first.status_code == 200 and first.json()["status"] == "ACKED"
    acked = NodeCommand.objects.get(pk=command.pk)
    replay = {"status": "failed", "result": {}, "error": "late duplicate"}
    again = api_client.post(ack_url, replay, format="json", HTTP_X_AGENT_API_KEY=token)
    assert again.status_code == 200 and again.json()["status"] == "ACKED"
    after = NodeCommand.objects.get(pk=command.pk)
    assert (after.status, after.result, after.error, after.acked_at) == (
        acked.status,
        acked.result,
        acked.error,
        acked.acked_at,
    )
    assert Workload.objects.get(pod_id=pod_id).state == "running"
    assert beat(api_client, token).json()["commands"] == []


def test_ack_of_another_nodes_command_is_404(api_client, registered):
    node_id, _ = registered
    other = api_client.post(
        "/api/v1/nodes/register",
        h100_registration(hostname="other", gpus=[]),
        format="json",
    ).json()
    command = services.workload_start(
        node=Node.objects.get(pk=node_id), pod_id=uuid.uuid4(), spec={"image": "x"}
    )
    response = api_client.post(
        f"/api/v1/nodes/commands/{command.pk}/ack",
        {"status": "succeeded"},
        format="json",
        HTTP_X_AGENT_API_KEY=other["node_token"],
    )
    assert response.status_code == 404
    assert NodeCommand.objects.get(pk=command.pk).status == CommandStatus.QUEUED


def test_container_reports_update_the_workload(api_client, registered):
    node_id, token = registered
    pod_id = uuid.uuid4()
    services.workload_start(node=Node.objects.get(pk=node_id), pod_id=pod_id, spec={"image": "x"})
    report = {
        "pod_id": str(pod_id),
        "container_id": "abc",
        "state": "exited",
        "exit_code": 3,
        "started_at": "2026-11-26T10:00:00Z",
        "finished_at": "2026-11-26T10:01:00Z",
        "error": "",
    }
    assert beat(api_client, token, containers=[report]).status_code == 200
    workload = Workload.objects.get(pod_id=pod_id)
    assert (workload.state, workload.exit_code, workload.container_id) == ("exited", 3, "abc")


def test_silent_node_goes_offline_with_reason_and_comes_back(api_client, registered):
    node_id, token = registered
    beat(api_client, token)
    Node.objects.filter(pk=node_id).update(
        last_heartbeat_at=timezone.now() - timedelta(seconds=301)
    )

    assert services.nodes_mark_silent_offline() == [uuid.UUID(node_id)]
    node = Node.objects.get(pk=node_id)
    assert node.status == NodeStatus.OFFLINE
    assert node.status_reason.startswith("no heartbeat for 301 s (30 missed intervals of 10 s")
    assert services.nodes_mark_silent_offline() == []  # idempotent

    beat(api_client, token)
    node.refresh_from_db()
    assert node.status == NodeStatus.ONLINE
    assert node.status_reason.startswith("heartbeat after")


def test_node_within_its_intervals_stays_online(api_client, registered):
    node_id, token = registered
    beat(api_client, token)
    Node.objects.filter(pk=node_id).update(last_heartbeat_at=timezone.now() - timedelta(seconds=25))
    assert services.nodes_mark_silent_offline() == []


def test_reregistering_the_same_gpus_keeps_the_node_and_revokes_the_old_token(
    api_client, registered
):
    node_id, old_token = registered
    again = api_client.post("/api/v1/nodes/register", h100_registration(), format="json").json()
    assert again["node_id"] == node_id
    assert beat(api_client, old_token).status_code == 401
    assert beat(api_client, again["node_token"]).status_code == 200
    assert Node.objects.count() == 1 and Gpu.objects.count() == 1


def test_retired_node_token_stops_working(api_client, registered):
    node_id, token = registered
    services.node_retire(node=Node.objects.get(pk=node_id))
    assert beat(api_client, token).status_code == 401
