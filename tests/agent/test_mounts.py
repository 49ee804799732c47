"""`--mount`: host paths the operator binds read-only into every pod container (the local
agent runs the CPU model backends from the host's Python this way)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from agent.config import ConfigError, load_config, parse_mount
from agent.runtime import DockerRuntime, PodSpec


def test_mount_flags_and_environment() -> None:
    from_flags = load_config(["--mount", "/usr:/usr", "--mount", "/data:/data:rw"], {})
    from_env = load_config([], {"GPU_AGENT_MOUNTS": "/usr:/usr:ro,/opt/x:/x"})

    assert from_flags.mounts == (("/usr", "/usr", "ro"), ("/data", "/data", "rw"))
    assert from_env.mounts == (("/usr", "/usr", "ro"), ("/opt/x", "/x", "ro"))
    assert load_config([], {}).mounts == ()


@pytest.mark.parametrize("bad", ["/usr", "usr:/usr", "/usr:usr", "/a:/b:rx", "/a:/b:ro:x"])
def test_bad_mounts_are_refused_naming_the_variable(bad: str) -> None:
    with pytest.raises(ConfigError, match="GPU_AGENT_MOUNTS / --mount"):
        parse_mount(bad)


def test_mounts_go_into_every_container_read_only() -> None:
    runtime = DockerRuntime(mounts=[("/usr", "/usr", "ro"), ("/srv/app", "/opt/app", "ro")])

    options = runtime.create_options(PodSpec(pod_id=str(uuid.uuid4()), image="x:1"), "host")

    assert options["volumes"] == {
        "/usr": {"bind": "/usr", "mode": "ro"},
        "/srv/app": {"bind": "/opt/app", "mode": "ro"},
    }
    assert "volumes" not in DockerRuntime().create_options(
        PodSpec(pod_id=str(uuid.uuid4()), image="x:1"), "host"
    )


@pytest.mark.docker
def test_the_local_backends_image_runs_python_from_the_host(docker_client) -> None:
    """The near-empty image plus the mounts run the host's venv Python (the core venv here)."""
    import sys

    from backends.localimage import IMAGE, agent_mounts, ensure_image

    ensure_image(docker_client)
    volumes = {}
    for mount in agent_mounts(Path(sys.prefix)):
        host, container, mode = parse_mount(mount)
        volumes[host] = {"bind": container, "mode": mode}

    output = docker_client.containers.run(
        IMAGE,
        ["/opt/gco/venv/bin/python", "-c", "import backends.echo, httpx; print('ok')"],
        environment={"PYTHONPATH": "/opt/gco/app"},
        volumes=volumes,
        network_mode="none",
        remove=True,
    )

    assert output.strip() == b"ok"
