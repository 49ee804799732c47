"""Builders for the whole suite: one place to make a node, a pod, a deployment, money on a
wallet, a provider's earnings, a Stripe event, an agent's registration body. Tests and conftest
fixtures import from here (never from another directory's conftest).

Everything goes through the services the product uses (node registration and heartbeats, the
ledger API, deployment keys), so a built object is one the product could have made."""

import json
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from django.test import TestCase

from apps.billing.models import AccountKind, TransactionKind
from apps.billing.services import ledger_post, platform_account, provider_payable, wallet_for
from apps.nodes import services as node_services
from apps.nodes.models import Node
from apps.nodes.registration import RegistrationGrant
from apps.nodes.sweep import nodes_sweep_liveness
from apps.pods import services as pod_services
from apps.pods.models import Pod, PodStatus
from apps.providers.models import Provider
from tests.fakes.stripe_server import checkout_event, sign_payload
from tests.support import Backend

# --- Nodes -------------------------------------------------------------------------------------

BOOTSTRAP = "bt_test-bootstrap-token"  # the bootstrap token tests/nodes sets in its settings
GPU_CAPTURES = Path(__file__).resolve().parent / "fixtures" / "gpu"  # real H100/H200 captures


def make_node(
    hostname: str = "node-1",
    *,
    gpus: int = 2,
    name: str = "NVIDIA GeForce RTX 4090",
    memory_mb: int = 24564,
    price: int | None = None,
    provider_id: uuid.UUID | None = None,
    online: bool = True,
) -> Node:
    registered = node_services.node_register(
        grant=RegistrationGrant(provider_id=provider_id),
        data={
            "hostname": hostname,
            "gpus": [
                {
                    "index": i,
                    "uuid": f"GPU-{uuid.uuid4()}",
                    "name": name,
                    "memory_total_mb": memory_mb,
                }
                for i in range(gpus)
            ],
        },
    )
    node = registered.node
    if price is not None:
        Node.objects.filter(pk=node.pk).update(price_per_gpu_hour=price)
    if online:
        node_services.node_heartbeat(node=node, gpus=[], system={}, containers=[])
    node.refresh_from_db()
    return node


def make_host(
    hostname: str = "big",
    *,
    gpus: int = 4,
    cores: int = 32,
    ram_mb: int = 262_144,
    disk_gb: float = 1000,
) -> Node:
    """An ONLINE node with 4 H100s and the CPU, RAM and disk it declares (the resource
    scheduler's tests size pods against these)."""
    registered = node_services.node_register(
        grant=RegistrationGrant(provider_id=None),
        data={
            "hostname": hostname,
            "system": {"cpu_cores": cores, "ram_total_mb": ram_mb, "disk_total_gb": disk_gb},
            "gpus": [
                {
                    "index": i,
                    "uuid": f"GPU-{uuid.uuid4()}",
                    "name": "NVIDIA H100 80GB HBM3",
                    "memory_total_mb": 81559,
                }
                for i in range(gpus)
            ],
        },
    )
    node_services.node_heartbeat(node=registered.node, gpus=[], system={}, containers=[])
    registered.node.refresh_from_db()
    return registered.node


def admin_node_inlines() -> dict[str, str]:
    """Management forms of the node admin page's read-only inlines (a POST of the page must
    carry them)."""
    data: dict[str, str] = {}
    for prefix in ("gpus", "workloads", "events", "commands"):
        for key, value in (("TOTAL_FORMS", "0"), ("INITIAL_FORMS", "0")):
            data[f"{prefix}-{key}"] = value
    return data


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
    snapshot = json.loads((GPU_CAPTURES / "h100" / "pynvml.json").read_text())
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


def node_with_token(hostname: str = "term-node") -> tuple[Node, str]:
    """An ONLINE node and its raw token (what its agent holds)."""
    registered = node_services.node_register(
        grant=RegistrationGrant(provider_id=None), data={"hostname": hostname, "gpus": []}
    )
    node_services.node_heartbeat(node=registered.node, gpus=[], system={}, containers=[])
    registered.node.refresh_from_db()
    return registered.node, registered.raw_token


def report_container(
    node: Node,
    pod_id,
    state: str,
    *,
    exit_code=None,
    started_at: datetime | None = None,
    finished_at: datetime | None = None,
):
    """A heartbeat carrying one container's state, with the on-commit signals delivered (the
    test's transaction never commits)."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        _beat(node, pod_id, state, exit_code, started_at, finished_at)


def ack(node: Node, command_id, *, succeeded: bool, result: dict, error: str = "") -> None:
    with TestCase.captureOnCommitCallbacks(execute=True):
        node_services.command_ack(
            node=node, command_id=command_id, succeeded=succeeded, result=result, error=error
        )


def _beat(node, pod_id, state, exit_code, started_at, finished_at) -> None:
    node_services.node_heartbeat(
        node=node,
        gpus=[],
        system={},
        containers=[
            {
                "pod_id": str(pod_id),
                "container_id": "c" * 12,
                "state": state,
                "exit_code": exit_code,
                "started_at": started_at,
                "finished_at": finished_at,
                "error": "",
            }
        ],
    )


# --- Pods ------------------------------------------------------------------------------------

POD = {
    "name": "train",
    "image": "local/busybox:1",
    "command": ["sleep", "3600"],
    "gpu_model": "RTX 4090",
    "gpu_count": 1,
}


def make_pod(owner: Any, node: Node | None, status: str = PodStatus.RUNNING, **extra: Any) -> Pod:
    return Pod.objects.create(
        owner=owner,
        name="p",
        image="local/busybox:1",
        gpu_model="CPU",
        gpu_count=0,
        status=status,
        node=node,
        price_per_gpu_hour=0,
        **extra,
    )


# --- Deployments ------------------------------------------------------------------------------


def make_deployment(
    owner: Any,
    *,
    backends: list[Backend] | list[str],
    model_name: str = "echo-model",
    capabilities: list[str] | None = None,
    status: str = "READY",
    rate_limit_per_minute: int = 600,
) -> tuple[Any, str]:
    """A deployment of the echo test template with one READY replica per backend (no pods:
    the proxy only needs where the replicas answer). Returns it and its raw key."""
    from apps.catalog.models import Deployment, ModelTemplate, Replica
    from apps.catalog.services.deploy import deployment_key_issue
    from apps.catalog.services.templates import templates_seed

    templates_seed()
    template = ModelTemplate.objects.get(slug="local-echo-test")
    deployment = Deployment.objects.create(
        owner=owner,
        template=template,
        name=model_name,
        model_name=model_name,
        capabilities=capabilities or list(template.capabilities),
        image=template.image,
        args=template.args,
        port=0,
        health_path="/health",
        gpu_model="CPU",
        gpu_count=0,
        replicas=len(backends),
        status=status,
        rate_limit_per_minute=rate_limit_per_minute,
    )
    for backend in backends:
        url = backend if isinstance(backend, str) else backend.url
        Replica.objects.create(
            deployment=deployment, port=int(url.rsplit(":", 1)[1]), status="READY", base_url=url
        )
    key = deployment_key_issue(deployment=deployment)
    return deployment, key.raw


# --- Money ------------------------------------------------------------------------------------


def fund(user, micros: int) -> None:
    ledger_post(
        kind=TransactionKind.TOPUP,
        idempotency_key=f"test-topup:{uuid.uuid4()}",
        memo="test top-up",
        lines=[
            (platform_account(AccountKind.STRIPE_CLEARING), -micros),
            (wallet_for(user), micros),
        ],
    )


EVM_ADDRESS = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"  # EIP-55's own example
CRYPTO = {"currency": "USDC", "chain": "polygon", "address": EVM_ADDRESS}


def earn(provider: Provider, micros: int, *, payer=None) -> None:
    """Usage earnings credited to the provider's payable (the shape metering posts)."""
    source = (
        wallet_for(payer) if payer is not None else platform_account(AccountKind.PLATFORM_REVENUE)
    )
    ledger_post(
        kind=TransactionKind.USAGE,
        idempotency_key=f"test-usage:{uuid.uuid4()}",
        memo="test usage",
        lines=[(source, -micros), (provider_payable(provider.pk), micros)],
    )


# --- Stripe (the fake's wire format) ---------------------------------------------------------

WEBHOOK_SECRET = "whsec_test_0123456789abcdefghijklmnop"


def paid_session(*, user, cents, session_id=None, **overrides):
    """A completed, paid Checkout Session as it appears inside Stripe's event."""
    session = {
        "id": session_id or f"cs_test_{uuid.uuid4().hex}",
        "object": "checkout.session",
        "amount_subtotal": cents,
        "amount_total": cents,
        "client_reference_id": str(user.pk),
        "currency": "usd",
        "customer_email": user.email,
        "livemode": False,
        "metadata": {"user_id": str(user.pk), "amount_micros": str(cents * 10_000)},
        "mode": "payment",
        "payment_intent": f"pi_test_{uuid.uuid4().hex[:24]}",
        "payment_status": "paid",
        "status": "complete",
    }
    session.update(overrides)
    return session


def deliver(client, event, *, secret=WEBHOOK_SECRET, timestamp=None, body=None, signature=None):
    """POST an event to our webhook as Stripe does: raw JSON, signed."""
    raw = body if body is not None else json.dumps(event).encode()
    header = signature if signature is not None else sign_payload(raw, secret, timestamp)
    return client.post(
        "/webhooks/stripe", data=raw, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
    )


def paid_event(*, user, cents, session_id=None, event_id=None):
    return checkout_event(
        paid_session(user=user, cents=cents, session_id=session_id), event_id=event_id
    )


def stale(seconds_ago):
    return int(time.time()) - seconds_ago


# --- Liveness ---------------------------------------------------------------------------------


def sweep(now):
    """One liveness sweep at `now`, with its on-commit signals run."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        return nodes_sweep_liveness(now=now)


def beat(node, now):
    node_services.node_heartbeat(
        node=Node.objects.get(pk=node.pk), gpus=[], system={}, containers=[], now=now
    )


def silent_since(node, when):
    Node.objects.filter(pk=node.pk).update(last_heartbeat_at=when)


def running_pod(user, node, *, started, restartable=False):
    """A 1-GPU pod placed on `node` and reported running since `started`."""
    pod = pod_services.pod_create(
        owner=user, spec={**POD, "gpu_count": 1, "restartable": restartable}
    ).pod
    assert pod.node_id == node.pk
    report_container(node, pod.pk, "running", started_at=started)
    pod.refresh_from_db()
    assert pod.status == PodStatus.RUNNING
    return pod
