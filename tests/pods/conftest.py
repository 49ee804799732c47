import uuid
from datetime import datetime

import pytest
from django.test import TestCase

from apps.billing.models import AccountKind, TransactionKind
from apps.billing.services import ledger_post, platform_account, wallet_for
from apps.nodes import services as node_services
from apps.nodes.models import Node
from apps.nodes.registration import RegistrationGrant


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


POD = {
    "name": "train",
    "image": "local/busybox:1",
    "command": ["sleep", "3600"],
    "gpu_model": "RTX 4090",
    "gpu_count": 1,
}


@pytest.fixture
def owner_client(api_client, user):
    fund(user, 100_000_000)  # new work needs a balance
    api_client.force_authenticate(user)
    return api_client
