"""Volumes through the API: created on a node by its agent, attached to one pod at a time on
that node, measured against their size, billed per GB-month by the minute, deleted only by
their own DELETE. Bad input gets a 400 naming the field and changes nothing."""

import uuid
from datetime import timedelta

import pytest
from django.test import TestCase

from apps.billing.models import AccountKind, LedgerAccount, Transaction, TransactionKind
from apps.billing.services import ledger_post, platform_account, wallet_for
from apps.nodes import services as node_services
from apps.nodes.models import CommandType, Node, NodeCommand
from apps.pods.models import Pod, PodStatus, Volume, VolumeStatus
from apps.pods.storage_billing import storage_bill_tick, volume_bill
from apps.pods.volumes import GB
from tests.factories import ack, fund, make_host, report_container

pytestmark = pytest.mark.django_db

POD = {"name": "train", "image": "img", "gpu_model": "H100 SXM", "gpu_count": 1}


def created_volume(client, node: Node, size_gb: int = 10, name: str = "data") -> dict:
    response = client.post(
        "/api/v1/volumes/", {"name": name, "size_gb": size_gb, "node": str(node.pk)}, format="json"
    )
    assert response.status_code == 201, response.json()
    command = NodeCommand.objects.get(type=CommandType.CREATE_VOLUME, node=node)
    ack(node, command.pk, succeeded=True, result={"name": command.payload["name"]})
    return response.json()


def test_a_volume_is_made_by_the_nodes_agent(owner_client):
    node = make_host(disk_gb=500)

    response = owner_client.post(
        "/api/v1/volumes/", {"name": "data", "size_gb": 50, "node": str(node.pk)}, format="json"
    )

    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "CREATING" and body["node"]["hostname"] == node.hostname
    command = NodeCommand.objects.get(type=CommandType.CREATE_VOLUME)
    assert command.payload == {
        "volume_id": body["id"],
        "name": f"gco-vol-{body['id']}",
        "size_gb": 50,
        "request_id": response["X-Request-ID"],  # the request that queued it (observability)
    }
    ack(node, command.pk, succeeded=True, result={})
    assert Volume.objects.get(pk=body["id"]).status == VolumeStatus.READY


def test_without_a_node_the_roomiest_fitting_node_is_chosen(owner_client):
    make_host("small", disk_gb=100)
    roomy = make_host("roomy", disk_gb=900)

    response = owner_client.post("/api/v1/volumes/", {"name": "d", "size_gb": 200}, format="json")

    assert response.status_code == 201
    assert response.json()["node"]["id"] == str(roomy.pk)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "big", "size_gb": 5000}, "size_gb"),  # larger than any node holds
        ({"name": "", "size_gb": 1}, "name"),
        ({"name": "x", "size_gb": 0}, "size_gb"),
        ({"name": "x", "size_gb": 1, "node": str(uuid.uuid4())}, "node"),
    ],
)
def test_bad_volume_input_names_the_field_and_changes_nothing(owner_client, body, field):
    make_host(disk_gb=1000)

    response = owner_client.post("/api/v1/volumes/", body, format="json")

    assert response.status_code == 400
    assert field in response.json()["error"]["fields"], response.json()
    assert not Volume.objects.exists()
    assert not NodeCommand.objects.filter(type=CommandType.CREATE_VOLUME).exists()


def test_a_volume_too_big_for_the_named_node_is_refused(owner_client):
    node = make_host(disk_gb=100)
    owner_client.post("/api/v1/pods/", POD, format="json")  # takes 20 GB of its disk

    response = owner_client.post(
        "/api/v1/volumes/", {"name": "d", "size_gb": 90, "node": str(node.pk)}, format="json"
    )

    assert response.status_code == 400
    assert "80 GB free" in response.json()["error"]["fields"]["size_gb"]


def test_pod_with_a_volume_runs_on_its_node_with_the_mount(owner_client):
    make_host("other")
    home = make_host("home")
    volume = created_volume(owner_client, home)

    response = owner_client.post(
        "/api/v1/pods/",
        {**POD, "volume": volume["id"], "volume_mount_path": "/data"},
        format="json",
    )

    assert response.status_code == 201, response.json()
    pod = Pod.objects.get(pk=response.json()["id"])
    assert pod.status == PodStatus.SCHEDULED and pod.node_id == home.pk
    payload = NodeCommand.objects.get(type=CommandType.START_POD).payload
    assert payload["volumes"] == [
        {"name": f"gco-vol-{volume['id']}", "mount_path": "/data", "size_gb": 10}
    ]


def test_mount_path_defaults_to_workspace(owner_client):
    node = make_host()
    volume = created_volume(owner_client, node)

    response = owner_client.post("/api/v1/pods/", {**POD, "volume": volume["id"]}, format="json")

    assert response.json()["volume_mount_path"] == "/workspace"


@pytest.mark.parametrize("path", ["workspace", "../etc", "/", "/a/../b", "/a/", "/a:b"])
def test_a_mount_path_outside_root_is_refused(owner_client, path):
    node = make_host()
    volume = created_volume(owner_client, node)

    response = owner_client.post(
        "/api/v1/pods/", {**POD, "volume": volume["id"], "volume_mount_path": path}, format="json"
    )

    assert response.status_code == 400
    assert "volume_mount_path" in response.json()["error"]["fields"]
    assert not Pod.objects.exists()


def test_a_volume_on_a_node_that_cannot_host_the_pod_is_refused(owner_client):
    node = make_host(gpus=1)
    volume = created_volume(owner_client, node)

    response = owner_client.post(
        "/api/v1/pods/", {**POD, "gpu_count": 2, "volume": volume["id"]}, format="json"
    )

    assert response.status_code == 400
    assert "must run where its volume is" in response.json()["error"]["fields"]["volume"]
    assert not Pod.objects.exists()


def test_a_volume_mounts_in_one_pod_at_a_time(owner_client):
    node = make_host()
    volume = created_volume(owner_client, node)
    first = owner_client.post("/api/v1/pods/", {**POD, "volume": volume["id"]}, format="json")
    assert first.status_code == 201

    second = owner_client.post("/api/v1/pods/", {**POD, "volume": volume["id"]}, format="json")

    assert second.status_code == 400
    assert "attached to pod" in second.json()["error"]["fields"]["volume"]
    assert Pod.objects.count() == 1


def test_another_tenants_volume_is_not_found(owner_client, api_client, other_user):
    node = make_host()
    volume = created_volume(owner_client, node)
    api_client.force_authenticate(other_user)

    assert api_client.get(f"/api/v1/volumes/{volume['id']}").status_code == 404
    assert api_client.delete(f"/api/v1/volumes/{volume['id']}").status_code == 404
    taken = api_client.post("/api/v1/pods/", {**POD, "volume": volume["id"]}, format="json")
    assert taken.status_code == 400 and "volume" in taken.json()["error"]["fields"]
    api_client.force_authenticate(None)
    assert api_client.get(f"/api/v1/volumes/{volume['id']}").status_code == 401


def test_delete_refuses_while_a_pod_uses_the_volume_even_stopped(owner_client):
    node = make_host()
    volume = created_volume(owner_client, node)
    pod_id = owner_client.post("/api/v1/pods/", {**POD, "volume": volume["id"]}, format="json")
    pod = Pod.objects.get(pk=pod_id.json()["id"])

    refused = owner_client.delete(f"/api/v1/volumes/{volume['id']}")
    assert refused.status_code == 409
    assert "terminate them first" in refused.json()["error"]["message"]

    Pod.objects.filter(pk=pod.pk).update(status=PodStatus.STOPPED)
    assert owner_client.delete(f"/api/v1/volumes/{volume['id']}").status_code == 409

    owner_client.delete(f"/api/v1/pods/{pod.pk}")  # STOPPED → TERMINATED
    deleted = owner_client.delete(f"/api/v1/volumes/{volume['id']}")
    assert deleted.status_code == 200 and deleted.json()["status"] == "DELETING"
    command = NodeCommand.objects.get(type=CommandType.DELETE_VOLUME)
    ack(node, command.pk, succeeded=True, result={"deleted": True})
    assert Volume.objects.get(pk=volume["id"]).status == VolumeStatus.DELETED


def test_a_volume_over_its_size_stops_its_pod_with_an_event(owner_client):
    node = make_host()
    volume = created_volume(owner_client, node, size_gb=1)
    pod_id = owner_client.post(
        "/api/v1/pods/", {**POD, "volume": volume["id"]}, format="json"
    ).json()["id"]
    report_container(node, pod_id, "running")
    assert Pod.objects.get(pk=pod_id).status == PodStatus.RUNNING

    # the agent measures 1.5 GB in a 1 GB volume
    with TestCase.captureOnCommitCallbacks(execute=True):
        node_services.node_heartbeat(
            node=node,
            gpus=[],
            system={},
            containers=[],
            volumes=[{"name": f"gco-vol-{volume['id']}", "used_bytes": int(1.5 * GB)}],
        )

    pod = Pod.objects.get(pk=pod_id)
    assert pod.status == PodStatus.STOPPING
    assert "holds 1.50 GB, over its 1 GB size" in pod.status_reason
    assert pod.events.last().reason == pod.status_reason
    stored = Volume.objects.get(pk=volume["id"])
    assert stored.used_bytes == int(1.5 * GB) and "over quota" in stored.status_reason


def test_a_pods_own_disk_over_its_limit_stops_it(owner_client):
    node = make_host()
    pod_id = owner_client.post("/api/v1/pods/", {**POD, "disk_gb": 2}, format="json").json()["id"]
    report_container(node, pod_id, "running")

    with TestCase.captureOnCommitCallbacks(execute=True):
        node_services.node_heartbeat(
            node=node,
            gpus=[],
            system={},
            containers=[
                {
                    "pod_id": pod_id,
                    "container_id": "c" * 12,
                    "state": "running",
                    "exit_code": None,
                    "error": "",
                    "disk_used_bytes": 3 * GB,
                }
            ],
        )

    pod = Pod.objects.get(pk=pod_id)
    assert pod.status == PodStatus.STOPPING
    assert "over its 2 GB limit" in pod.status_reason


def test_storage_is_billed_by_the_minute_exactly_and_once(owner_client, user, settings):
    settings.VOLUME_PRICE_PER_GB_MONTH = 150_000  # $0.15 per GB-month
    node = make_host()
    provider = uuid.uuid4()
    Node.objects.filter(pk=node.pk).update(provider_id=provider)
    volume = Volume.objects.get(pk=created_volume(owner_client, node, size_gb=10)["id"])
    wallet = wallet_for(user)
    before = LedgerAccount.objects.get(pk=wallet.pk).balance

    # 59 s: not a whole minute yet
    volume_bill(volume_id=volume.pk, now=volume.created_at + timedelta(seconds=59))
    assert not Transaction.objects.filter(idempotency_key__startswith="volume-storage:").exists()
    # 61 min 30 s → 61 minutes: 10 × 150 000 × 61 / 43 200 = 2118.05… → 2118
    storage_bill_tick(now=volume.created_at + timedelta(minutes=61, seconds=30))
    storage_bill_tick(now=volume.created_at + timedelta(minutes=61, seconds=31))  # twice
    # 1 day → 1440 minutes: 10 × 150 000 × 1440 / 43 200 = 50 000 exactly
    storage_bill_tick(now=volume.created_at + timedelta(days=1))

    assert LedgerAccount.objects.get(pk=wallet.pk).balance == before - 50_000
    charges = Transaction.objects.filter(idempotency_key__startswith="volume-storage:")
    assert charges.count() == 2
    first = charges.get(idempotency_key=f"volume-storage:{volume.pk}:61:2118")
    amounts = dict(first.entries.values_list("account__kind", "amount"))
    assert amounts[AccountKind.USER_WALLET] == -2118
    # the provider's share by its tier (the default 20% fee): 80% of 2118, rounded down
    assert amounts[AccountKind.PROVIDER_PAYABLE] == 1694
    assert amounts[AccountKind.PLATFORM_REVENUE] == 424
    volume.refresh_from_db()
    assert (volume.billed_minutes, volume.billed_amount) == (1440, 50_000)


def test_billing_ends_at_delete(owner_client, user, settings):
    settings.VOLUME_PRICE_PER_GB_MONTH = 432_000  # 10 µ$ per GB-minute
    node = make_host()
    volume = Volume.objects.get(pk=created_volume(owner_client, node, size_gb=1)["id"])
    Volume.objects.filter(pk=volume.pk).update(
        status=VolumeStatus.DELETED, deleted_at=volume.created_at + timedelta(minutes=30)
    )

    storage_bill_tick(now=volume.created_at + timedelta(hours=5))
    storage_bill_tick(now=volume.created_at + timedelta(hours=6))

    volume.refresh_from_db()
    assert (volume.billed_minutes, volume.billed_amount, volume.billing_closed) == (30, 300, True)


def test_a_wallet_is_never_taken_below_its_floor_and_arrears_follow(owner_client, user, settings):
    settings.VOLUME_PRICE_PER_GB_MONTH = 432_000  # 10 µ$ per GB-minute
    settings.BILLING_OVERDRAFT_MICROS = 0
    node = make_host()
    volume = Volume.objects.get(pk=created_volume(owner_client, node, size_gb=10)["id"])
    wallet = wallet_for(user)
    balance = LedgerAccount.objects.get(pk=wallet.pk).balance

    # leave 500 µ$ in the wallet
    ledger_post(
        kind=TransactionKind.ADJUSTMENT,
        idempotency_key="drain",
        memo="test",
        lines=[
            (wallet, -(balance - 500)),
            (platform_account(AccountKind.PLATFORM_REVENUE), balance - 500),
        ],
    )

    # 10 minutes of 10 GB cost 1000 µ$: only 500 can be charged
    volume_bill(volume_id=volume.pk, now=volume.created_at + timedelta(minutes=10))
    assert LedgerAccount.objects.get(pk=wallet.pk).balance == 0
    volume.refresh_from_db()
    assert (volume.billed_minutes, volume.billed_amount) == (10, 500)
    assert "storage unpaid: $0.000500 owed" in volume.status_reason

    # after a top-up the arrears and the new minutes are charged
    fund(user, 10_000)
    volume_bill(volume_id=volume.pk, now=volume.created_at + timedelta(minutes=12))
    volume.refresh_from_db()
    assert (volume.billed_minutes, volume.billed_amount) == (12, 1200)
    assert LedgerAccount.objects.get(pk=wallet.pk).balance == 10_000 - 700
    assert "unpaid" not in volume.status_reason
