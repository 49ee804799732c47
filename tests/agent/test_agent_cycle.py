"""The agent's handling of a heartbeat answer, against the real engine (no server involved).

The HTTP side is exercised by the contract test against the real server; here the answer is
handed to the agent directly, as the loop does after a heartbeat.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from agent.main import Agent

pytestmark = pytest.mark.docker

CONTAINER_FIELDS = {
    "pod_id",
    "container_id",
    "state",
    "exit_code",
    "started_at",
    "finished_at",
    "error",
}


def start_command(command_id: str, pod_id: str, image: str) -> dict[str, Any]:
    return {
        "id": command_id,
        "type": "start_pod",
        "payload": {
            "pod_id": pod_id,
            "image": image,
            "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 300 & wait"],
            "env": {},
            "ports": [],
            "gpu_indices": [],
            "cpu_limit": None,
            "memory_limit_mb": None,
            "restart_policy": "no",
            "network_mode": None,
        },
    }


def test_answer_runs_commands_once_and_reconciles(
    agent: Agent, busybox_image: str, cleanup_pods: list[str], docker_client: Any
) -> None:
    pod = str(uuid.uuid4())
    cleanup_pods.append(pod)
    command = start_command(str(uuid.uuid4()), pod, busybox_image)

    # when an answer carries a start_pod for a wanted pod
    agent.handle_answer({"heartbeat_interval": 5, "commands": [command], "wanted_pod_ids": [pod]})
    agent.runner.wait_finished(60)
    [(done, body)] = agent.runner.take_finished()

    # then the pod runs, the interval follows the server, and the next heartbeat reports it
    assert (done.id, body["status"]) == (command["id"], "succeeded")
    assert agent.interval == 5.0
    payload = agent.heartbeat_payload()
    assert set(payload) == {"gpus", "system", "containers", "seq", "sent_at"}
    [state] = payload["containers"]
    assert set(state) == CONTAINER_FIELDS
    assert (state["pod_id"], state["state"]) == (pod, "running")

    # when the same command comes again after its ack was accepted
    agent.state.remember_ack(command["id"], body)
    agent.handle_answer({"heartbeat_interval": 5, "commands": [command], "wanted_pod_ids": [pod]})

    # then it is answered with the same ack, and nothing runs twice
    assert agent.state.pending[command["id"]] == {"type": "start_pod", "body": body}
    assert not agent.runner.is_in_flight(command["id"])
    assert len(docker_client.containers.list(all=True, filters={"label": f"gco.pod_id={pod}"})) == 1

    # when the server no longer wants the pod
    agent.handle_answer({"heartbeat_interval": 5, "commands": [], "wanted_pod_ids": []})
    agent.runner.wait_idle(60)

    # then its container is stopped and removed
    assert docker_client.containers.list(all=True, filters={"label": f"gco.pod_id={pod}"}) == []
    assert agent.heartbeat_payload()["containers"] == []


def test_a_wanted_pod_without_container_is_reported_missing(agent: Agent) -> None:
    pod = str(uuid.uuid4())

    agent.handle_answer({"heartbeat_interval": 10, "commands": [], "wanted_pod_ids": [pod]})

    [state] = agent.heartbeat_payload()["containers"]
    assert state == {
        "pod_id": pod,
        "container_id": None,
        "state": "missing",
        "exit_code": None,
        "started_at": None,
        "finished_at": None,
        "error": "",
    }


def test_a_bad_command_fails_with_the_field_named(agent: Agent) -> None:
    command = {"id": "c-bad", "type": "start_pod", "payload": {"pod_id": "p1", "image": ""}}

    agent.handle_answer({"heartbeat_interval": 10, "commands": [command], "wanted_pod_ids": []})

    [(done, body)] = agent.runner.take_finished()
    assert done.id == "c-bad"
    assert body["status"] == "failed"
    assert body["error"].startswith("invalid payload: image:")
    assert body["result"] == {}


def test_every_heartbeat_carries_a_larger_seq_and_the_send_time(agent: Agent) -> None:
    # given an agent whose wall clock stands still (or went back after a restart)
    agent.wall_clock = lambda: 1_780_000_000.0

    # when it builds three heartbeats
    payloads = [agent.heartbeat_payload() for _ in range(3)]

    # then their sequence numbers only grow, and each says when it was sent
    seqs = [p["seq"] for p in payloads]
    assert seqs == sorted(set(seqs)) and seqs[0] == 1_780_000_000_000_000
    assert payloads[0]["sent_at"] == "2026-05-28T20:26:40.000+00:00"
