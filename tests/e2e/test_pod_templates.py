"""Templates and SSH keys end to end: a pod started from a template on the real Docker engine
runs the template's image, command and env; the request's override wins; and the owner's SSH
key is in the container's PUBLIC_KEY and /root/.ssh/authorized_keys."""

import shutil
import subprocess

import pytest

from apps.nodes.models import Node, NodeStatus
from apps.pods.models import Pod, PodStatus
from tests.factories import fund
from tests.support import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.django_db(transaction=True)]


def container_of(docker_client, pod_id):
    found = docker_client.containers.list(all=True, filters={"label": f"gco.pod_id={pod_id}"})
    return found[0] if found else None


def test_template_pod_runs_the_templates_values_and_overrides_win(
    agent_env, user, api_client, docker_client, busybox_image, cleanup_containers, tmp_path
):
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen is not installed")
    agent = agent_env()
    wait_for(lambda: Node.objects.filter(status=NodeStatus.ONLINE).first(), "node ONLINE")
    fund(user, 50_000_000)
    api_client.force_authenticate(user)
    subprocess.run(  # noqa: S603 - fixed arguments
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "e2e", "-f", str(tmp_path / "k")],
        check=True,
    )
    public_key = (tmp_path / "k.pub").read_text().strip()
    assert (
        api_client.post(
            "/api/v1/auth/ssh-keys", {"public_key": public_key}, format="json"
        ).status_code
        == 201
    )
    template = {
        "slug": "greeter",
        "name": "Greeter",
        "image": busybox_image,
        "command": ["sh", "-c", "echo mode=$MODE seed=$SEED; sleep 300"],
        "env": {"MODE": "train", "SEED": "7"},
        "recommended_gpu_model": "CPU",
    }
    assert api_client.post("/api/v1/pod-templates/", template, format="json").status_code == 201

    plain = api_client.post(
        "/api/v1/pods/", {"template": "greeter", "memory_mb": 64, "vcpus": "0.5"}, format="json"
    )
    override = api_client.post(
        "/api/v1/pods/",
        {"template": "greeter", "name": "eval", "env": {"MODE": "eval"}, "memory_mb": 64},
        format="json",
    )
    assert plain.status_code == override.status_code == 201, (plain.json(), override.json())

    for response, expected in ((plain, b"mode=train seed=7"), (override, b"mode=eval seed=7")):
        pod_id = response.json()["id"]
        wait_for(
            lambda pod_id=pod_id: Pod.objects.filter(pk=pod_id, status=PodStatus.RUNNING).exists(),
            "pod RUNNING",
        )
        container = container_of(docker_client, pod_id)
        wait_for(lambda c=container, e=expected: e in c.logs(), f"logs to show {expected!r}")
        assert container.attrs["Config"]["Image"] == busybox_image
        assert f"PUBLIC_KEY={public_key}" in container.attrs["Config"]["Env"]
        keys = container.exec_run(["cat", "/root/.ssh/authorized_keys"]).output.decode()
        assert keys.strip() == public_key
    assert Pod.objects.get(pk=override.json()["id"]).name == "eval"
    assert Pod.objects.get(pk=plain.json()["id"]).name == "greeter"
    # a clean stop: no heartbeat is in flight when the test database is flushed
    assert agent.stop() == 0, agent.output()
