"""Command payloads (validated per the protocol) and the runner against a real engine."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from agent.commands import (
    Command,
    CommandRunner,
    PayloadError,
    parse_command,
    parse_pod_spec,
)
from agent.runtime import DockerRuntime, PortSpec

POD = "0b7c8d5e-1111-4222-8333-444455556666"
FULL_START = {
    "pod_id": POD,
    "image": "vllm/vllm-openai:v0.6.0",
    "command": ["python", "-m", "vllm"],
    "env": {"HF_HOME": "/data"},
    "ports": [{"container_port": 8000, "protocol": "tcp", "host_port": None}],
    "gpu_indices": [0, 1],
    "cpu_limit": 7.5,
    "memory_limit_mb": 65536,
    "restart_policy": "on-failure",
    "network_mode": None,
}


def test_full_start_payload() -> None:
    spec = parse_pod_spec(FULL_START, node_id="node-1", command_id="cmd-1")
    assert spec.pod_id == POD
    assert spec.ports == [PortSpec(8000, "tcp", None)]
    assert spec.gpu_indices == [0, 1]
    assert spec.cpu_limit == 7.5
    assert spec.memory_limit_mb == 65536
    assert spec.restart_policy == "on-failure"
    assert spec.network_mode is None
    assert (spec.node_id, spec.command_id) == ("node-1", "cmd-1")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"pod_id": ""}, "pod_id"),
        ({"pod_id": "../etc"}, "pod_id"),
        ({"image": ""}, "image"),
        ({"command": "sleep 1"}, "command"),
        ({"env": {"A": 1}}, "env"),
        ({"ports": [{"container_port": 0}]}, "ports[0].container_port"),
        ({"ports": [{"container_port": 80, "protocol": "sctp"}]}, "ports[0].protocol"),
        ({"gpu_indices": [0, 0]}, "gpu_indices"),
        ({"gpu_indices": [-1]}, "gpu_indices"),
        ({"cpu_limit": 0}, "cpu_limit"),
        ({"memory_limit_mb": True}, "memory_limit_mb"),
        ({"restart_policy": "always"}, "restart_policy"),
    ],
)
def test_bad_start_payload_names_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(PayloadError) as excinfo:
        parse_pod_spec({**FULL_START, **change}, node_id="n", command_id="c")
    assert str(excinfo.value).startswith(f"{field}:")


def test_malformed_commands_are_skipped() -> None:
    assert parse_command({"type": "start_pod"}) is None
    assert parse_command("x") is None
    command = parse_command({"id": "c1", "type": "stop_pod", "payload": {"pod_id": POD}})
    assert command == Command("c1", "stop_pod", {"pod_id": POD})


@pytest.mark.docker
def test_runner_orders_a_pods_commands_and_fails_bad_ones(
    docker_client: Any, busybox_image: str, cleanup_pods: list[str]
) -> None:
    # given start, logs, stop for one pod, an unknown command and a start of a missing image
    pod, other = str(uuid.uuid4()), str(uuid.uuid4())
    cleanup_pods.extend([pod, other])
    runtime = DockerRuntime(default_network_mode="none")
    runner = CommandRunner(runtime)
    start = {"pod_id": pod, "image": busybox_image, "command": ["sh", "-c", "echo hi; sleep 300"]}
    commands = [
        Command("c-start", "start_pod", start),
        Command("c-stop", "stop_pod", {"pod_id": pod, "timeout_s": 0}),
        Command("c-weird", "reboot_host", {"pod_id": pod}),
        Command("c-bad", "start_pod", {"pod_id": other, "image": "local/nope-404:1"}),
    ]

    # when they are submitted in that order
    for command in commands:
        runner.submit(command, node_id="node-1")
    runner.wait_finished(60)
    results = {c.id: body for c, body in runner.take_finished()}
    runtime.close()

    # then the pod started and then stopped, and the bad ones failed with a reason
    assert results["c-start"]["status"] == "succeeded"
    assert set(results["c-start"]["result"]) == {"container_id", "state", "ports"}
    assert results["c-stop"] == {
        "status": "succeeded",
        "result": {"state": "removed", "exit_code": 137},
        "error": "",
    }
    assert results["c-weird"]["status"] == "failed"
    assert "unknown command type" in results["c-weird"]["error"]
    assert results["c-bad"]["status"] == "failed"
    assert "image not found" in results["c-bad"]["error"]
    assert docker_client.containers.list(all=True, filters={"label": f"gco.pod_id={pod}"}) == []
