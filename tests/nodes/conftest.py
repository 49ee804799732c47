import json
from pathlib import Path

import pytest

BOOTSTRAP = "bt_test-bootstrap-token"
FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "gpu"


@pytest.fixture(autouse=True)
def _bootstrap_token(settings):
    settings.NODE_BOOTSTRAP_TOKEN = BOOTSTRAP
    # Most tests here register several hosts with the one bootstrap token; the tests of the
    # token's limit (test_registration_tokens.py) set the real default back.
    settings.NODE_REGISTRATION_TOKEN_MAX_USES = 50


def h100_registration(**overrides):
    """A registration body as the agent sends it from the real H100 capture."""
    gpus = [
        {
            "index": 0,
            "uuid": "GPU-d32abdfd-27f3-113f-1220-daec48fd834c",
            "name": "NVIDIA H100 80GB HBM3",
            "memory_total_mb": 81559,
            "mig_mode": False,
        }
    ]
    if (FIXTURES / "h100" / "pynvml.json").exists():
        snapshot = json.loads((FIXTURES / "h100" / "pynvml.json").read_text())
        assert snapshot["gpus"][0]["uuid"] == gpus[0]["uuid"]
    body = {
        "registration_token": BOOTSTRAP,
        "hostname": "gpu-host-1",
        "agent_version": "0.1.0",
        "provider_instance_id": None,
        "system": {
            "cpu_model": "Intel(R) Xeon(R) Processor",
            "cpu_cores": 16,
            "ram_total_mb": 128887,
            "disk_total_gb": 251.9,
            "disk_free_gb": 63.9,
            "os": "Ubuntu 24.04.3 LTS",
            "kernel": "6.18.44-fc-v657-gpu",
            "docker_version": None,
            "address": "127.0.0.1",
        },
        "driver_version": "580.159.04",
        "cuda_version": "13.0",
        "gpus": gpus,
    }
    body.update(overrides)
    return body


def heartbeat_body(**overrides):
    body = {
        "gpus": [
            {
                "index": 0,
                "uuid": "GPU-d32abdfd-27f3-113f-1220-daec48fd834c",
                "utilization_pct": 0,
                "memory_used_mb": 0,
                "memory_total_mb": 81559,
                "temperature_c": 49,
                "power_w": 134.98,
            }
        ],
        "system": {"cpu_percent": 3.5, "ram_used_mb": 2048, "disk_free_gb": 63.9, "load_avg": 0.1},
        "containers": [],
    }
    body.update(overrides)
    return body


@pytest.fixture
def registered(api_client):
    """(node_id, token) of a registered H100 node."""
    response = api_client.post("/api/v1/nodes/register", h100_registration(), format="json")
    assert response.status_code == 201, response.json()
    return response.json()["node_id"], response.json()["node_token"]
