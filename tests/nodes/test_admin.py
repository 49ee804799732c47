"""The operator's node and pod admin: the price edit goes through the service and cannot
overwrite a status that changed meanwhile; pods are view-only with a force-stop action."""

import pytest

from apps.nodes.models import Node, NodeStatus
from apps.pods.models import Pod, PodStatus
from apps.pods.services import pod_create
from tests.factories import admin_node_inlines, fund, make_node

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_client(client, django_user_model):
    operator = django_user_model.objects.create_superuser(
        email="ops@example.com", password="operator-pass-1"
    )
    client.force_login(operator)
    return client


def test_price_edit_writes_only_the_price(operator_client):
    node = make_node("host-a", price=690_000)
    url = f"/admin/nodes/node/{node.pk}/change/"
    assert operator_client.get(url).status_code == 200
    # The node goes offline while the operator has the form open.
    Node.objects.filter(pk=node.pk).update(status=NodeStatus.OFFLINE, hostname="renamed")

    response = operator_client.post(url, {"price_per_gpu_hour": "500000", **admin_node_inlines()})

    assert response.status_code == 302, response.content[:2000]
    node.refresh_from_db()
    assert node.price_per_gpu_hour == 500_000
    assert node.status == NodeStatus.OFFLINE and node.hostname == "renamed"


def test_pods_are_view_only_and_force_stop_goes_through_the_service(operator_client, user):
    fund(user, 10_000_000)
    make_node("host-b", price=690_000)
    pod = pod_create(
        owner=user, spec={"name": "p", "image": "x", "gpu_model": "RTX 4090", "gpu_count": 1}
    ).pod

    page = operator_client.get(f"/admin/pods/pod/{pod.pk}/change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert operator_client.post(f"/admin/pods/pod/{pod.pk}/change/", {}).status_code == 403

    response = operator_client.post(
        "/admin/pods/pod/", {"action": "force_stop", "_selected_action": [str(pod.pk)]}
    )

    assert response.status_code == 302
    pod.refresh_from_db()
    assert pod.status == PodStatus.STOPPING
    assert pod.events.filter(to_status=PodStatus.STOPPING).exists()
    assert Pod.objects.count() == 1


def test_node_page_shows_the_latest_gpu_telemetry(operator_client):
    from apps.nodes import services as node_services

    node = make_node("host-c", gpus=2)
    node_services.node_heartbeat(
        node=node,
        gpus=[
            {
                "index": 1,
                "utilization_pct": 87.4,
                "memory_used_mb": 12000,
                "temperature_c": 65.2,
                "power_w": 301.0,
            }
        ],
        system={},
        containers=[],
    )

    page = operator_client.get(f"/admin/nodes/node/{node.pk}/change/").content.decode()

    assert '<meter min="0" max="100" value="87">' in page
    assert "12000 / 24564 MiB" in page and "65 °C" in page and "301 W" in page


def test_nodes_cannot_be_deleted_only_retired(operator_client):
    node = make_node("host-d")
    page = operator_client.get(f"/admin/nodes/node/{node.pk}/change/")
    assert b"/delete/" not in page.content
    assert (
        operator_client.post(f"/admin/nodes/node/{node.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    assert Node.objects.filter(pk=node.pk).exists()


def test_front_page_shows_the_fleet_and_money_and_actions_are_logged(operator_client, user):
    from django.contrib.admin.models import LogEntry

    from apps.billing.models import AccountKind, TransactionKind
    from apps.billing.services import ledger_post, platform_account, wallet_for

    node = make_node("host-e")
    make_node("host-f")
    fund(user, 5_000_000)
    ledger_post(
        kind=TransactionKind.USAGE,
        idempotency_key="test-usage-1",
        memo="usage",
        lines=[
            (wallet_for(user), -1_250_000),
            (platform_account(AccountKind.PLATFORM_REVENUE), 1_250_000),
        ],
    )
    operator_client.post(
        "/admin/nodes/node/", {"action": "drain", "_selected_action": [str(node.pk)]}
    )

    page = operator_client.get("/admin/").content.decode()

    assert '<span class="kpi-value" data-testid="nodes-online">1</span>' in page
    assert "1 draining" in page
    assert '<span class="kpi-value" data-testid="revenue">$1.25</span>' in page
    assert 'id="revenue-data"' in page
    entry = LogEntry.objects.get(object_id=str(node.pk))
    assert "Drained" in entry.get_change_message()
