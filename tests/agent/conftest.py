"""Fixtures for the agent's tests. Nothing here touches Django or a database.

The runtime tests use the real Docker engine at the default socket and a busybox image made
locally with ``docker import`` (no registry is needed); they skip, saying why, without either.
"""

from __future__ import annotations

import io
import shutil
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.config import load_config
from agent.main import Agent
from agent.state import AgentState, StateStore

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gpu"  # real H100/H200 captures
BUSYBOX_IMAGE = "local/busybox:1"
BUSYBOX_APPLETS = ("sh", "sleep", "echo", "cat", "true", "env", "ls")


@pytest.fixture(scope="session")
def gpu_fixtures() -> Path:
    assert (FIXTURES / "h100").is_dir() and (FIXTURES / "h200").is_dir(), FIXTURES
    return FIXTURES


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    docker = pytest.importorskip("docker")
    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except Exception as exc:
        pytest.skip(
            "no Docker engine answers at the default socket (DOCKER_HOST or "
            "unix:///var/run/docker.sock); start one, e.g. "
            f"`dockerd --bridge none --iptables=false --ip-masq=false &` ({exc})"
        )
    yield client
    client.close()


def _static_busybox() -> Path | None:
    for candidate in (Path("/bin/busybox"), Path(shutil.which("busybox") or "/nonexistent")):
        if candidate.is_file():
            data = candidate.read_bytes()
            # A dynamically linked busybox names its ELF interpreter; it cannot run alone.
            if b"/ld-linux" not in data and b"/ld-musl" not in data:
                return candidate
    return None


def _busybox_tar(busybox: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for folder in ("bin", "tmp", "etc"):
            info = tarfile.TarInfo(folder)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if folder == "tmp" else 0o755
            tar.addfile(info)
        tar.add(str(busybox), arcname="bin/busybox")
        for applet in BUSYBOX_APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            tar.addfile(link)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def busybox_image(docker_client: Any) -> str:
    """``local/busybox:1``, imported from the host's static busybox when missing."""
    from docker.errors import ImageNotFound

    try:
        docker_client.images.get(BUSYBOX_IMAGE)
        return BUSYBOX_IMAGE
    except ImageNotFound:
        pass
    busybox = _static_busybox()
    if busybox is None:
        pytest.skip(
            f"{BUSYBOX_IMAGE} is missing and no static busybox exists to build it: "
            "`apt-get install -y busybox-static`"
        )
    repository, tag = BUSYBOX_IMAGE.rsplit(":", 1)
    docker_client.api.import_image_from_data(_busybox_tar(busybox), repository=repository, tag=tag)
    docker_client.images.get(BUSYBOX_IMAGE)
    return BUSYBOX_IMAGE


@pytest.fixture
def pod_id() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def cleanup_pods(docker_client: Any) -> Iterator[list[str]]:
    """Pod ids to remove (containers and all) after the test, whatever happened."""
    from docker.errors import APIError

    pods: list[str] = []
    yield pods
    for pod in pods:
        for container in docker_client.containers.list(
            all=True, filters={"label": f"gco.pod_id={pod}"}, sparse=True
        ):
            try:
                container.remove(force=True)
            except APIError as exc:  # already gone, or its removal is under way
                if exc.status_code not in (404, 409):
                    raise


SERVER = "http://127.0.0.1:9"  # nothing listens: agents built here never reach a server


@pytest.fixture
def agent(tmp_path: Path, docker_client: Any) -> Iterator[Agent]:
    # a registered agent (saved token) whose node identity is unique to this test
    StateStore(tmp_path).save(
        AgentState(server_url=SERVER, node_id=str(uuid.uuid4()), node_token="nt_test")
    )
    config = load_config(
        ["--server", SERVER, "--state-dir", str(tmp_path), "--network-mode", "none"], env={}
    )
    agent = Agent(config)
    yield agent
    agent.runner.wait_idle(30)
    agent.client.close()
    agent.runtime.close()
