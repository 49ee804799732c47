"""Operator node list, users' available GPUs, install script and agent wheel, schedule."""

import io
import os
import subprocess
import sys
import uuid
import zipfile

import pytest

from apps.core.services import schedule_sync
from apps.nodes import services
from apps.nodes.models import Node
from tests.factories import h100_registration, heartbeat_body

pytestmark = pytest.mark.django_db


def online_node(api_client, hostname, gpus):
    body = h100_registration(hostname=hostname, gpus=gpus)
    token = api_client.post("/api/v1/nodes/register", body, format="json").json()["node_token"]
    api_client.post(
        "/api/v1/nodes/heartbeat",
        heartbeat_body(gpus=[]),
        format="json",
        HTTP_X_AGENT_API_KEY=token,
    )
    return Node.objects.get(hostname=hostname)


def gpu(index, name="NVIDIA GeForce RTX 4090", memory=24564):
    return {"index": index, "uuid": f"GPU-{uuid.uuid4()}", "name": name, "memory_total_mb": memory}


def test_node_list_is_for_operators_only(api_client, user, admin_user):
    online_node(api_client, "a", [gpu(0)])
    assert api_client.get("/api/v1/nodes/").status_code == 401
    api_client.force_authenticate(user)
    assert api_client.get("/api/v1/nodes/").status_code == 403
    api_client.force_authenticate(admin_user)
    body = api_client.get("/api/v1/nodes/").json()
    assert body[0]["hostname"] == "a" and body[0]["gpus"][0]["model"] == "RTX 4090"


def test_available_counts_free_gpus_by_model_with_price(api_client, user):
    node = online_node(api_client, "a", [gpu(0), gpu(1)])
    online_node(api_client, "b", [gpu(0, "NVIDIA H100 80GB HBM3", 81559)])
    drained = online_node(api_client, "c", [gpu(0)])
    services.node_drain(node=drained)
    services.workload_start(node=node, pod_id=uuid.uuid4(), spec={"gpu_indices": [1]})
    api_client.force_authenticate(user)

    body = api_client.get("/api/v1/nodes/available").json()

    by_model = {row["gpu_model"]: row for row in body}
    assert by_model["RTX 4090"]["free_gpus"] == 1  # one claimed, one on a draining node
    assert by_model["RTX 4090"]["price_per_gpu_hour_usd"] == "0.69"
    assert by_model["H100 SXM"]["free_gpus"] == 1
    assert by_model["H100 SXM"]["vram_mb"] == 81559
    api_client.force_authenticate(None)
    assert api_client.get("/api/v1/nodes/available").status_code == 401


def run_installer(script: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-s", "--", *args],
        input=script,
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": os.environ["PATH"], **env},
    )


def test_install_script_is_readable_and_refuses_without_a_key(client, settings):
    settings.SITE_URL = "http://127.0.0.1:8000"
    response = client.get("/api/v1/nodes/install.sh")
    assert response.status_code == 200
    script = response.content.decode()
    assert script.startswith("#!/usr/bin/env bash")
    assert 'server="${GCO_SERVER:-http://127.0.0.1:8000}"' in script
    assert "systemctl enable" in script

    no_key = run_installer(script)
    assert no_key.returncode == 1 and "no enrolment key" in no_key.stderr
    in_argv = run_installer(script, "--provider-key=pk_x")
    assert in_argv.returncode == 1 and "never pass the key as an argument" in in_argv.stderr
    bad_server = run_installer(script, "--server=ftp://x", GCO_PROVIDER_KEY="pk_x")
    assert bad_server.returncode == 1 and "http(s) URL" in bad_server.stderr
    unknown = run_installer(script, "--frobnicate")
    assert unknown.returncode == 1 and "unknown argument" in unknown.stderr


def test_agent_wheel_installs_and_imports(client, tmp_path):
    script = client.get("/api/v1/nodes/install.sh").content.decode()
    filename = script.split('wheel_name="')[1].split('"')[0]
    response = client.get(f"/api/v1/nodes/agent/{filename}")
    assert response.status_code == 200
    wheel = tmp_path / filename
    wheel.write_bytes(response.content)
    names = zipfile.ZipFile(io.BytesIO(response.content)).namelist()
    assert "agent/main.py" in names and not any("django" in n for n in names)

    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        timeout=120,
    )
    out = subprocess.run(
        [sys.executable, "-c", "import agent, sys; print(agent.__version__, agent.__file__)"],
        env={"PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout
    assert str(target) in out
    assert client.get("/api/v1/nodes/agent/evil.whl").status_code == 404


def test_schedule_sync_is_idempotent():
    from django_celery_beat.models import PeriodicTask

    first = schedule_sync()
    second = schedule_sync()
    assert first["created"] >= 1 and second["created"] == 0
    task = PeriodicTask.objects.get(task="nodes.mark_silent_offline")
    assert (task.interval.every, task.expire_seconds) == (10, 15)
