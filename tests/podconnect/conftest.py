from typing import Any

import pytest

from apps.nodes import services as node_services
from apps.nodes.models import Node
from apps.nodes.registration import RegistrationGrant
from apps.pods.models import Pod, PodStatus


def node_with_token(hostname: str = "term-node") -> tuple[Node, str]:
    """An ONLINE node and its raw token (what its agent holds)."""
    registered = node_services.node_register(
        grant=RegistrationGrant(provider_id=None), data={"hostname": hostname, "gpus": []}
    )
    node_services.node_heartbeat(node=registered.node, gpus=[], system={}, containers=[])
    registered.node.refresh_from_db()
    return registered.node, registered.raw_token


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


@pytest.fixture
def node_and_token():
    return node_with_token()
