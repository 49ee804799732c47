"""The real server (live server on Postgres) and a real `python -m agent` process on a real
Docker engine: register → heartbeat → start_pod → RUNNING → stop_pod → gone → agent killed →
node OFFLINE. Also: an agent restart reconciles away containers the server does not want."""

import signal
import uuid

import pytest

from apps.nodes import services
from apps.nodes.models import CommandStatus, Node, NodeCommand, NodeStatus, Workload
from tests.support import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.django_db(transaction=True)]


def pod_container(docker_client, pod_id: uuid.UUID):
    found = docker_client.containers.list(all=True, filters={"label": f"gco.pod_id={pod_id}"})
    return found[0] if found else None


def test_pod_lifecycle_through_a_real_agent(
    agent_env, docker_client, busybox_image, cleanup_containers
):
    agent = agent_env()
    node = wait_for(lambda: Node.objects.filter(status=NodeStatus.ONLINE).first(), "node ONLINE")
    assert node.hostname and node.agent_version and node.last_heartbeat_at
    assert node.docker_version  # the agent reached the engine

    pod_id = uuid.uuid4()
    start = services.workload_start(
        node=node,
        pod_id=pod_id,
        spec={
            "image": busybox_image,
            "command": ["sh", "-c", "echo hello from $GREETING; sleep 300"],
            "env": {"GREETING": "the pod"},
            "ports": [],
            "gpu_indices": [],
            "cpu_limit": 0.5,
            "memory_limit_mb": 64,
            "restart_policy": "no",
            "network_mode": "none",
        },
    )

    workload = wait_for(
        lambda: Workload.objects.filter(pod_id=pod_id, state="running").first(),
        "the server to see the container running",
    )
    assert NodeCommand.objects.get(pk=start.pk).status == CommandStatus.ACKED
    container = pod_container(docker_client, pod_id)
    assert container is not None and container.status == "running"
    assert container.id == workload.container_id
    assert container.labels["gco.node_id"] == str(node.pk)
    assert container.attrs["HostConfig"]["Memory"] == 64 * 1024 * 1024
    assert container.attrs["HostConfig"]["NetworkMode"] == "none"

    logs = services.command_enqueue(
        node=node, type="fetch_logs", payload={"pod_id": str(pod_id), "tail": 10}
    )
    fetched = wait_for(
        lambda: NodeCommand.objects.filter(pk=logs.pk, status=CommandStatus.ACKED).first(),
        "logs",
    )
    assert "hello from the pod" in fetched.result["logs"]

    stop = services.workload_stop(node=node, pod_id=pod_id, timeout_s=2)
    wait_for(
        lambda: NodeCommand.objects.filter(pk=stop.pk, status=CommandStatus.ACKED).exists(),
        "stop_pod acked",
    )
    assert pod_container(docker_client, pod_id) is None
    assert Workload.objects.get(pod_id=pod_id).state == "removed"

    assert agent.stop(signal.SIGTERM) == 0, agent.output()  # clean shutdown
    offline = wait_for(
        lambda: services.nodes_mark_silent_offline(), "the silent node to be marked offline"
    )
    assert offline == [node.pk]
    node.refresh_from_db()
    assert node.status == NodeStatus.OFFLINE
    assert "missed intervals" in node.status_reason


def test_restarted_agent_keeps_wanted_pods_and_removes_the_rest(
    agent_env, docker_client, busybox_image, cleanup_containers, tmp_path
):
    agent = agent_env()
    node = wait_for(lambda: Node.objects.filter(status=NodeStatus.ONLINE).first(), "node ONLINE")
    kept, dropped = uuid.uuid4(), uuid.uuid4()
    for pod_id in (kept, dropped):
        services.workload_start(
            node=node,
            pod_id=pod_id,
            spec={"image": busybox_image, "command": ["sleep", "300"], "network_mode": "none"},
        )
    for pod_id in (kept, dropped):
        wait_for(
            lambda pod_id=pod_id: Workload.objects.filter(pod_id=pod_id, state="running").exists(),
            f"pod {pod_id} running",
        )
    agent.stop(signal.SIGKILL)

    # While the agent is down the server stops wanting one pod (no command reaches it).
    Workload.objects.filter(pod_id=dropped).update(wanted=False)
    agent_env()

    wait_for(lambda: pod_container(docker_client, dropped) is None, "unwanted container removed")
    assert pod_container(docker_client, kept).status == "running"
    assert Node.objects.count() == 1  # same node: the token was kept in the state dir
    state_files = [f for f in (tmp_path / "state").iterdir() if f.is_file()]
    assert state_files and all(f.stat().st_mode & 0o777 == 0o600 for f in state_files)
