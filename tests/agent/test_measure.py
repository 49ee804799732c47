"""The agent measures disk use every `measure_interval` seconds (not on every heartbeat) and
reports each managed volume and each pod container's writable layer, against the real engine;
the create_volume / delete_volume commands run through the same runner as pod commands."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.commands import Command
from agent.config import ConfigError, load_config
from agent.main import Agent
from agent.state import AgentState, StateStore
from tests.support import wait_for

pytestmark = pytest.mark.docker

SERVER = "http://127.0.0.1:9"
WRITER = "cat /bin/busybox > /big; cat /bin/busybox > /w/big; echo written; sleep 300"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def agent(tmp_path: Path, docker_client: Any, clock: Clock) -> Iterator[Agent]:
    StateStore(tmp_path).save(
        AgentState(server_url=SERVER, node_id=str(uuid.uuid4()), node_token="nt_test")
    )
    config = load_config(
        [
            "--server",
            SERVER,
            "--state-dir",
            str(tmp_path),
            "--network-mode",
            "none",
            "--measure-interval",
            "5",
        ],
        env={},
    )
    agent = Agent(config, clock=clock)
    yield agent
    agent.runner.wait_idle(30)
    agent.client.close()
    agent.runtime.close()


def test_measure_interval_must_be_sane() -> None:
    with pytest.raises(ConfigError, match="MEASURE_INTERVAL"):
        load_config(["--server", SERVER, "--measure-interval", "0"], env={})
    assert load_config(["--server", SERVER], env={}).measure_interval == 30.0


def test_volumes_and_layers_are_measured_every_interval(
    agent: Agent,
    clock: Clock,
    busybox_image: str,
    cleanup_pods: list[str],
    docker_client: Any,
) -> None:
    volume = f"gco-vol-{uuid.uuid4()}"
    pod = str(uuid.uuid4())
    cleanup_pods.append(pod)
    try:
        # given a volume made by the create_volume command, and a pod writing to its layer
        agent.runner.submit(
            Command(
                id=str(uuid.uuid4()),
                type="create_volume",
                payload={"volume_id": "v", "name": volume, "size_gb": 1},
            ),
            agent.state.node_id or "",
        )
        agent.runner.wait_finished(30)
        [(_, body)] = agent.runner.take_finished()
        assert body["status"] == "succeeded", body
        agent.handle_answer(
            {
                "heartbeat_interval": 5,
                "wanted_pod_ids": [pod],
                "commands": [
                    {
                        "id": str(uuid.uuid4()),
                        "type": "start_pod",
                        "payload": {
                            "pod_id": pod,
                            "image": busybox_image,
                            "command": [
                                "sh",
                                "-c",
                                WRITER,
                            ],
                            "volumes": [{"name": volume, "mount_path": "/w", "size_gb": 1}],
                        },
                    }
                ],
            }
        )
        agent.runner.wait_finished(60)
        agent.runner.take_finished()
        wait_for(lambda: "written" in agent.runtime.logs(pod), "the pod's writes done")

        # when the interval has not passed, the heartbeat carries no measurement
        assert "volumes" not in agent.heartbeat_payload()

        # when it has, the volume and the container's layer are measured
        clock.now += 5
        size = Path("/bin/busybox").stat().st_size
        payload = agent.heartbeat_payload()
        [measured] = [v for v in payload["volumes"] if v["name"] == volume]
        [state] = [c for c in payload["containers"] if c["pod_id"] == pod]
        assert measured["used_bytes"] >= size
        assert state["disk_used_bytes"] >= size
        # and not again until the next interval
        assert "volumes" not in agent.heartbeat_payload()
    finally:
        agent.handle_answer({"heartbeat_interval": 5, "commands": [], "wanted_pod_ids": []})
        agent.runner.wait_idle(60)
        docker_client.volumes.get(volume).remove(force=True)
