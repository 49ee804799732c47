"""The real server (live server on Postgres) and a real `python -m agent` process on a real
Docker engine: register → heartbeat → start_pod → RUNNING → stop_pod → gone → agent killed →
node OFFLINE. Also: an agent restart reconciles away containers the server does not want."""

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from apps.nodes import services
from apps.nodes.models import CommandStatus, Node, NodeCommand, NodeStatus, Workload

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP = "bt_e2e-bootstrap-token"


def wait_for(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class AgentProcess:
    def __init__(self, server: str, state_dir: Path, log_path: Path) -> None:
        self.log_path = log_path
        self.log = log_path.open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agent",
                "--server",
                server,
                "--bootstrap-token",
                BOOTSTRAP,
                "--state-dir",
                str(state_dir),
                "--network-mode",
                "none",
                "--log-level",
                "DEBUG",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=60)
        self.log.close()
        return code


@pytest.fixture
def agent_env(live_server, settings, tmp_path) -> Iterator[Callable[[], AgentProcess]]:
    settings.NODE_BOOTSTRAP_TOKEN = BOOTSTRAP
    settings.NODE_HEARTBEAT_INTERVAL = 1
    started: list[AgentProcess] = []

    def start() -> AgentProcess:
        agent = AgentProcess(live_server.url, tmp_path / "state", tmp_path / "agent.log")
        started.append(agent)
        return agent

    yield start
    for agent in started:
        if agent.proc.poll() is None:
            agent.stop(signal.SIGKILL)


@pytest.fixture
def cleanup_containers(docker_client) -> Iterator[None]:
    yield
    for container in docker_client.containers.list(all=True, filters={"label": "gco.managed=true"}):
        container.remove(force=True)


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
