"""The Docker runtime against a real engine (host/none networks only, a locally made image)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from agent.runtime import (
    ContainerMissingError,
    ContainerRuntimeError,
    DockerRuntime,
    ImageUnavailableError,
    PodSpec,
    PortSpec,
    container_name,
    tail_within,
)

pytestmark = pytest.mark.docker

# One node identity per test process: reconcile only touches this node's containers, so
# parallel workers and other agents on the same engine are left alone.
NODE_ID = str(uuid.uuid4())


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Poll ``predicate`` until it returns something truthy, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.05)


@pytest.fixture
def runtime(docker_client: Any) -> Iterator[DockerRuntime]:
    rt = DockerRuntime(default_network_mode="none", node_ids=[NODE_ID])
    yield rt
    rt.close()


def spec(pod_id: str, image: str, **overrides: Any) -> PodSpec:
    fields: dict[str, Any] = {
        "pod_id": pod_id,
        "image": image,
        "command": ["sleep", "300"],
        "env": {"GREETING": "hello"},
        "network_mode": "none",
        "node_id": NODE_ID,
        "command_id": "c-" + pod_id,
    }
    fields.update(overrides)
    return PodSpec(**fields)


def state_of(rt: DockerRuntime, pod_id: str) -> dict[str, Any] | None:
    return next((s for s in rt.states() if s["pod_id"] == pod_id), None)


def test_start_runs_a_labelled_container(
    runtime: DockerRuntime,
    busybox_image: str,
    pod_id: str,
    cleanup_pods: list[str],
    docker_client: Any,
) -> None:
    # given a start_pod spec with env, command and a memory limit
    cleanup_pods.append(pod_id)

    # when it is started
    result = runtime.start(spec(pod_id, busybox_image, memory_limit_mb=64, cpu_limit=0.5))

    # then a running container carries the protocol's name, labels, env, command and limits
    container = docker_client.containers.get(result["container_id"])
    assert result["state"] == "running"
    assert result["ports"] == {}
    assert container.name == container_name(pod_id) == f"gco-pod-{pod_id}"
    labels = container.labels
    assert labels["gco.managed"] == "true"
    assert labels["gco.pod_id"] == pod_id
    assert labels["gco.node_id"] == NODE_ID
    assert labels["gco.command_id"] == "c-" + pod_id
    assert "GREETING=hello" in container.attrs["Config"]["Env"]
    assert container.attrs["Config"]["Cmd"] == ["sleep", "300"]
    host_config = container.attrs["HostConfig"]
    assert host_config["Memory"] == 64 * 1024 * 1024
    assert host_config["NanoCpus"] == 500_000_000
    assert host_config["NetworkMode"] == "none"
    assert host_config["RestartPolicy"]["Name"] == "no"
    assert not host_config.get("DeviceRequests")


def test_start_is_idempotent(
    runtime: DockerRuntime,
    busybox_image: str,
    pod_id: str,
    cleanup_pods: list[str],
    docker_client: Any,
) -> None:
    # given a started pod
    cleanup_pods.append(pod_id)
    first = runtime.start(spec(pod_id, busybox_image))

    # when the same start arrives again
    second = runtime.start(spec(pod_id, busybox_image))

    # then it answers with the same container and there is only one
    assert second["container_id"] == first["container_id"]
    found = docker_client.containers.list(all=True, filters={"label": f"gco.pod_id={pod_id}"})
    assert len(found) == 1


def test_start_restarts_a_stopped_container(
    runtime: DockerRuntime,
    busybox_image: str,
    pod_id: str,
    cleanup_pods: list[str],
    docker_client: Any,
) -> None:
    # given a pod whose container was stopped behind the agent's back
    cleanup_pods.append(pod_id)
    first = runtime.start(spec(pod_id, busybox_image))
    docker_client.containers.get(first["container_id"]).stop(timeout=0)

    # when start arrives again
    again = runtime.start(spec(pod_id, busybox_image))

    # then the same container runs again
    assert again["container_id"] == first["container_id"]
    assert again["state"] == "running"


def test_states_report_running_then_exit_code(
    runtime: DockerRuntime, busybox_image: str, cleanup_pods: list[str]
) -> None:
    # given one pod that keeps running and one that exits with code 3
    running, failing = str(uuid.uuid4()), str(uuid.uuid4())
    cleanup_pods.extend([running, failing])
    runtime.start(spec(running, busybox_image))
    runtime.start(spec(failing, busybox_image, command=["sh", "-c", "exit 3"]))

    # when the states are read
    state = state_of(runtime, running)
    exited = wait_for(lambda: (s := state_of(runtime, failing)) and s["state"] == "exited" and s)

    # then both are reported in the protocol's shape
    assert state is not None
    assert state["state"] == "running"
    assert state["exit_code"] is None
    assert state["started_at"] and state["started_at"].endswith("Z")
    assert state["finished_at"] is None
    assert state["error"] == ""
    assert len(state["container_id"]) == 64
    assert exited["exit_code"] == 3
    assert exited["finished_at"] and exited["finished_at"].endswith("Z")
    assert set(exited) == {
        "pod_id",
        "container_id",
        "state",
        "exit_code",
        "started_at",
        "finished_at",
        "error",
    }


def test_logs(
    runtime: DockerRuntime, busybox_image: str, pod_id: str, cleanup_pods: list[str]
) -> None:
    # given a pod that writes to stdout and stderr
    cleanup_pods.append(pod_id)
    runtime.start(
        spec(
            pod_id,
            busybox_image,
            command=["sh", "-c", 'echo one; echo two >&2; echo "$GREETING"; sleep 300'],
        )
    )

    # when its logs are fetched
    logs = wait_for(lambda: (text := runtime.logs(pod_id, tail=100)).count("\n") >= 3 and text)

    # then both streams are there (their interleaving is the engine's), and tail limits lines
    lines = logs.splitlines()
    assert sorted(lines) == ["hello", "one", "two"]
    assert lines.index("one") < lines.index("hello")  # stdout keeps its order
    assert len(runtime.logs(pod_id, tail=1).splitlines()) == 1


def test_logs_of_a_pod_without_container(runtime: DockerRuntime, pod_id: str) -> None:
    with pytest.raises(ContainerMissingError):
        runtime.logs(pod_id, tail=10)


def test_stop_removes_and_is_idempotent(
    runtime: DockerRuntime,
    busybox_image: str,
    pod_id: str,
    cleanup_pods: list[str],
    docker_client: Any,
) -> None:
    # given a running pod
    cleanup_pods.append(pod_id)
    runtime.start(
        spec(pod_id, busybox_image, command=["sh", "-c", "trap 'exit 7' TERM; sleep 300 & wait"])
    )

    # when it is stopped, twice
    first = runtime.stop(pod_id, timeout=5)
    second = runtime.stop(pod_id, timeout=5)

    # then its container is gone, the exit code was reported, and the replay succeeds
    assert first == {"state": "removed", "exit_code": 7}
    assert second == {"state": "removed", "exit_code": None}
    assert docker_client.containers.list(all=True, filters={"label": f"gco.pod_id={pod_id}"}) == []
    assert state_of(runtime, pod_id) is None


def test_reconcile_removes_only_unwanted(
    runtime: DockerRuntime, busybox_image: str, cleanup_pods: list[str], docker_client: Any
) -> None:
    # given two pods of this node, one of another node and one unmanaged container
    wanted, unwanted, foreign = (str(uuid.uuid4()) for _ in range(3))
    cleanup_pods.extend([wanted, unwanted, foreign])
    runtime.start(spec(wanted, busybox_image))
    runtime.start(spec(unwanted, busybox_image))
    runtime.start(spec(foreign, busybox_image, node_id=str(uuid.uuid4())))
    bystander = docker_client.containers.run(
        busybox_image, ["sleep", "300"], detach=True, network_mode="none"
    )
    try:
        # when the server wants only one of this node's pods
        removed = runtime.reconcile([wanted], timeout=0)

        # then only the unwanted pod of this node is gone
        assert removed == [unwanted]
        pods = {s["pod_id"] for s in runtime.states()}
        assert pods == {wanted}  # the other node's pod is not this agent's to report
        assert runtime.find(foreign) is not None
        bystander.reload()
        assert bystander.status == "running"
    finally:
        bystander.remove(force=True)


def test_a_fresh_runtime_rebuilds_its_view_from_labels(
    runtime: DockerRuntime, busybox_image: str, pod_id: str, cleanup_pods: list[str]
) -> None:
    # given a pod started by one runtime object (an agent that then restarted)
    cleanup_pods.append(pod_id)
    started = runtime.start(spec(pod_id, busybox_image))

    # when a new runtime object looks
    fresh = DockerRuntime(default_network_mode="none", node_ids=[NODE_ID])
    try:
        state = state_of(fresh, pod_id)
        again = fresh.start(spec(pod_id, busybox_image))
        stopped = fresh.stop(pod_id, timeout=0)
    finally:
        fresh.close()

    # then it sees, reuses and stops the same container
    assert state is not None and state["container_id"] == started["container_id"]
    assert again["container_id"] == started["container_id"]
    assert stopped["state"] == "removed"


def test_host_network_skips_port_bindings(
    runtime: DockerRuntime,
    busybox_image: str,
    pod_id: str,
    cleanup_pods: list[str],
    docker_client: Any,
) -> None:
    # given a pod on the host network that asks for a port
    cleanup_pods.append(pod_id)

    # when it is started
    result = runtime.start(
        spec(
            pod_id,
            busybox_image,
            network_mode="host",
            ports=[PortSpec(container_port=18777, protocol="tcp", host_port=None)],
            restart_policy="unless-stopped",
        )
    )

    # then nothing is published (the port is the host's own) and the result says where it is
    container = docker_client.containers.get(result["container_id"])
    assert container.attrs["HostConfig"]["NetworkMode"] == "host"
    assert not container.attrs["HostConfig"].get("PortBindings")
    assert container.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert result["ports"] == {"18777/tcp": 18777}


def test_missing_image_is_a_clear_error(
    runtime: DockerRuntime, pod_id: str, cleanup_pods: list[str], docker_client: Any
) -> None:
    # given an image that is nowhere (no registry is reachable either)
    cleanup_pods.append(pod_id)
    image = f"local/does-not-exist-{uuid.uuid4().hex[:8]}:1"

    # when the pod is started
    with pytest.raises(ImageUnavailableError) as excinfo:
        runtime.start(spec(pod_id, image))

    # then the error names the image, and no container is left behind
    assert "image not found" in str(excinfo.value)
    assert image in str(excinfo.value)
    assert docker_client.containers.list(all=True, filters={"label": f"gco.pod_id={pod_id}"}) == []


def test_gpu_request_without_gpu_runtime_fails_cleanly(
    runtime: DockerRuntime,
    busybox_image: str,
    pod_id: str,
    cleanup_pods: list[str],
    docker_client: Any,
) -> None:
    # given a host whose engine has no NVIDIA runtime (this one)
    cleanup_pods.append(pod_id)
    info = docker_client.info()
    if "nvidia" in (info.get("Runtimes") or {}):
        pytest.skip("this engine has the NVIDIA runtime; the failure cannot be shown here")

    # when a pod asks for GPU 0
    with pytest.raises(ContainerRuntimeError) as excinfo:
        runtime.start(spec(pod_id, busybox_image, gpu_indices=[0]))

    # then the start fails with the engine's reason and leaves no half-made container
    assert "failed to start" in str(excinfo.value)
    assert docker_client.containers.list(all=True, filters={"label": f"gco.pod_id={pod_id}"}) == []


def test_gpu_device_request_names_exactly_the_assigned_indices(
    runtime: DockerRuntime,
    busybox_image: str,
    pod_id: str,
    cleanup_pods: list[str],
    docker_client: Any,
) -> None:
    # given the create arguments for a pod on GPUs 1 and 3
    kwargs = runtime.create_options(spec(pod_id, busybox_image, gpu_indices=[1, 3]), "none")

    # then one device request names exactly those GPUs
    [request] = kwargs["device_requests"]
    assert request["DeviceIDs"] == ["1", "3"]
    assert request["Capabilities"] == [["gpu"]]
    assert "Count" not in request or request["Count"] in (None, 0)


def test_tail_within_keeps_the_newest_text_that_fits_as_json() -> None:
    text = "old line\n" * 1000 + "\x01" * 1000 + "newest\n"
    kept = tail_within(text, 4096)
    assert text.endswith(kept)
    assert kept.endswith("newest\n")
    assert len(json.dumps(kept)) <= 4096 < len(json.dumps("o" + kept))
    assert tail_within("short", 4096) == "short"
