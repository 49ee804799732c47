"""The operator sets what each GPU of a node brings to a pod (CPU and RAM) in the admin; it goes
through a service that writes those columns alone, and the next placement uses it."""

import pytest

from apps.nodes.models import Node, NodeStatus
from apps.nodes.services import node_share_set
from apps.pods.services import pod_create
from tests.factories import admin_node_inlines, fund, make_host

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_client(client, django_user_model):
    operator = django_user_model.objects.create_superuser(
        email="ops@example.com", password="operator-pass-1"
    )
    client.force_login(operator)
    return client


def test_share_edit_is_used_by_the_next_placement(operator_client, user):
    node = make_host(gpus=4, cores=32, ram_mb=262_144)
    Node.objects.filter(pk=node.pk).update(status=NodeStatus.DRAINING)  # changes meanwhile

    response = operator_client.post(
        f"/admin/nodes/node/{node.pk}/change/",
        {"cpu_per_gpu_millicores": "6000", "ram_per_gpu_mb": "40000", **admin_node_inlines()},
    )

    assert response.status_code == 302, response.content[:2000]
    node.refresh_from_db()
    assert (node.cpu_per_gpu_millicores, node.ram_per_gpu_mb) == (6000, 40_000)
    assert node.status == NodeStatus.DRAINING  # not written back from the form
    Node.objects.filter(pk=node.pk).update(status=NodeStatus.ONLINE)
    fund(user, 10_000_000)
    pod = pod_create(
        owner=user, spec={"name": "p", "image": "i", "gpu_model": "H100 SXM", "gpu_count": 2}
    ).pod
    assert (pod.cpu_millicores, pod.memory_mb) == (12_000, 80_000)


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_a_share_is_a_positive_whole_number(bad):
    node = make_host()
    with pytest.raises(ValueError, match="positive whole number"):
        node_share_set(node=node, cpu_per_gpu_millicores=bad, ram_per_gpu_mb=None)
