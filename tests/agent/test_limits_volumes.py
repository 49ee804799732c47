"""The agent enforces what the scheduler reserved (CPU, memory, shm, GPUs by UUID), reports an
OOM kill, creates and measures volumes, and writes the owner's SSH keys into the container —
on the real Docker engine with the local busybox image."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from agent.commands import PayloadError, parse_pod_spec
from agent.gpu import parse_query_csv
from agent.runtime import DockerRuntime, PodSpec, container_state, gpu_device_request

pytestmark = pytest.mark.docker


def wait_for(check: Any, what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def runtime(docker_client: Any) -> Any:
    node = f"test-node-{uuid.uuid4()}"
    rt = DockerRuntime(default_network_mode="none", node_ids=[node], gpu_devices=True)
    rt.test_node_id = node  # type: ignore[attr-defined]
    yield rt
    rt.close()


@pytest.fixture
def cleanup_volumes(docker_client: Any) -> Any:
    names: list[str] = []
    yield names
    for name in names:
        try:
            docker_client.volumes.get(name).remove(force=True)
        except Exception:  # noqa: S110 - already gone
            pass


def test_gpu_request_names_the_assigned_gpus_by_uuid(gpu_fixtures: Path) -> None:
    # given the H100 host's GPU as the agent reads it from nvidia-smi
    report = parse_query_csv((gpu_fixtures / "h100" / "nvidia-smi-query.csv").read_text())
    [gpu] = report.gpus
    payload = {
        "pod_id": "p1",
        "image": "x",
        "gpu_indices": [gpu.index],
        "gpu_uuids": [gpu.uuid],
    }

    # when the start_pod payload becomes Docker options
    spec = parse_pod_spec(payload, node_id="n", command_id="c")
    request = gpu_device_request(spec)
    options = DockerRuntime(gpu_devices=True).create_options(spec, "none")

    # then the device request asks the NVIDIA runtime for exactly that device, by UUID
    assert request["DeviceIDs"] == ["GPU-d32abdfd-27f3-113f-1220-daec48fd834c"]
    assert request["Capabilities"] == [["gpu"]]
    assert options["device_requests"][0]["DeviceIDs"] == [gpu.uuid]
    # and without UUIDs (an older server) it falls back to the indices
    legacy = parse_pod_spec({**payload, "gpu_uuids": []}, node_id="n", command_id="c")
    assert gpu_device_request(legacy)["DeviceIDs"] == ["0"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("gpu_uuids", ["GPU-a", "GPU-b"]),  # more UUIDs than indices
        ("shm_size_mb", 0),
        ("volumes", [{"name": "other", "mount_path": "/w", "size_gb": 1}]),
        ("volumes", [{"name": "gco-vol-x", "mount_path": "relative", "size_gb": 1}]),
        ("volumes", [{"name": "gco-vol-x", "mount_path": "/a/../etc", "size_gb": 1}]),
        ("authorized_keys", ["ssh-ed25519 AAAA\nevil"]),
    ],
)
def test_bad_limit_and_volume_fields_are_named(field: str, value: object) -> None:
    payload = {"pod_id": "p1", "image": "x", "gpu_indices": [0], field: value}
    with pytest.raises(PayloadError, match=field):
        parse_pod_spec(payload, node_id="n", command_id="c")


def test_started_container_carries_the_reserved_limits(
    runtime: Any, busybox_image: str, pod_id: str, cleanup_pods: list[str], docker_client: Any
) -> None:
    cleanup_pods.append(pod_id)
    spec = PodSpec(
        pod_id=pod_id,
        image=busybox_image,
        command=["sleep", "300"],
        cpu_limit=1.5,
        memory_limit_mb=96,
        shm_size_mb=48,
        node_id=runtime.test_node_id,
    )

    runtime.start(spec)

    host = docker_client.containers.get(f"gco-pod-{pod_id}").attrs["HostConfig"]
    assert host["NanoCpus"] == 1_500_000_000
    assert host["Memory"] == 96 * 1024 * 1024
    assert host["MemorySwap"] == 96 * 1024 * 1024  # no swap: over the limit is an OOM kill
    assert host["ShmSize"] == 48 * 1024 * 1024


def test_memory_hog_is_oom_killed_and_reported(
    runtime: Any, busybox_image: str, pod_id: str, cleanup_pods: list[str], docker_client: Any
) -> None:
    cleanup_pods.append(pod_id)
    # a shell string that doubles until it outgrows a 16 MB limit
    hog = "a=xxxxxxxxxxxxxxxx; while true; do a=$a$a; done"
    runtime.start(
        PodSpec(
            pod_id=pod_id,
            image=busybox_image,
            command=["sh", "-c", hog],
            memory_limit_mb=16,
            node_id=runtime.test_node_id,
        )
    )

    def exited() -> dict[str, Any] | None:
        [state] = [s for s in runtime.states() if s["pod_id"] == pod_id]
        return state if state["state"] == "exited" else None

    state = wait_for(exited, "the hog to be killed")
    assert state["error"] == "OOMKilled"
    assert state["exit_code"] == 137
    attrs = docker_client.containers.get(f"gco-pod-{pod_id}").attrs
    assert container_state(attrs)["error"] == "OOMKilled"


def test_volume_keeps_files_across_pods_and_is_measured(
    runtime: Any,
    busybox_image: str,
    cleanup_pods: list[str],
    cleanup_volumes: list[str],
    docker_client: Any,
) -> None:
    volume = f"gco-vol-{uuid.uuid4()}"
    cleanup_volumes.append(volume)
    runtime.create_volume(volume, size_gb=1)
    assert runtime.create_volume(volume, size_gb=1)["name"] == volume  # idempotent
    from agent.runtime import VolumeMount

    mount = VolumeMount(name=volume, mount_path="/workspace", size_gb=1)
    writer, reader = str(uuid.uuid4()), str(uuid.uuid4())
    cleanup_pods += [writer, reader]

    # when one pod writes 300 KB into the volume and ends
    runtime.start(
        PodSpec(
            pod_id=writer,
            image=busybox_image,
            command=["sh", "-c", "echo kept > /workspace/f; cat /bin/busybox > /workspace/big"],
            volumes=[mount],
            node_id=runtime.test_node_id,
        )
    )
    wait_for(
        lambda: any(s["pod_id"] == writer and s["state"] == "exited" for s in runtime.states()),
        "the writer to finish",
    )
    runtime.stop(writer, timeout=1)

    # then a later pod reads it, and the engine measures what it holds
    runtime.start(
        PodSpec(
            pod_id=reader,
            image=busybox_image,
            command=["sh", "-c", "cat /workspace/f; sleep 300"],
            volumes=[mount],
            node_id=runtime.test_node_id,
        )
    )
    wait_for(lambda: "kept" in runtime.logs(reader), "the reader to print the file")
    volumes, layers = runtime.measure()
    [measured] = [v for v in volumes if v["name"] == volume]
    assert measured["used_bytes"] >= Path("/bin/busybox").stat().st_size
    assert reader in layers

    # a volume in use cannot be deleted; once free it can, and deleting twice is fine
    runtime.stop(reader, timeout=1)
    runtime.delete_volume(volume)
    runtime.delete_volume(volume)
    assert volume not in {v.name for v in docker_client.volumes.list()}


def test_ssh_keys_are_written_to_authorized_keys(
    runtime: Any, busybox_image: str, pod_id: str, cleanup_pods: list[str]
) -> None:
    cleanup_pods.append(pod_id)
    keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA1 me@laptop", "ssh-rsa AAAAB3Nza second"]
    runtime.start(
        PodSpec(
            pod_id=pod_id,
            image=busybox_image,
            command=["sh", "-c", "cat /root/.ssh/authorized_keys; ls -ld /root/.ssh; sleep 300"],
            env={"PUBLIC_KEY": "\n".join(keys)},
            authorized_keys=keys,
            node_id=runtime.test_node_id,
        )
    )
    logs = wait_for(lambda: (text := runtime.logs(pod_id)) and "drwx------" in text and text, "")
    assert all(key in logs for key in keys)
