"""Sourcing end to end: a pod asks for a GPU no node of ours has → an instance is rented at
a simulator → its startup script starts a REAL agent process carrying the instance's
provider id and per-instance token → the agent registers → the pod's container runs →
billing charges the markup and books the upstream cost → stop → the instance is terminated
at the simulator, and its agent process with it."""

import re
import time
from datetime import timedelta

import httpx
import pytest
from django.db.models import Sum
from django.utils import timezone

from apps.accounts.services import api_key_create
from apps.billing.models import AccountKind, Entry, LedgerAccount, Transaction
from apps.billing.services import wallet_credit
from apps.nodes.models import Node, NodeStatus
from apps.pods.metering import meter_tick
from apps.pods.models import Pod, PodStatus, UsageRecord
from apps.sourcing import offer_book, services
from apps.sourcing.models import InstanceStatus, ProvisionedInstance, UpstreamCharge
from config import settings as default_settings
from tests.agent.conftest import busybox_image, docker_client  # noqa: F401 - fixtures
from tests.e2e.conftest import cleanup_containers  # noqa: F401 - fixtures
from tests.support import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.django_db(transaction=True)]

GPU = "H100 SXM"  # the captured H100 reports "NVIDIA H100 80GB HBM3": our H100 SXM


# The VM cloud. Container clouds (Vast.ai, RunPod) run the pod itself, with no agent:
# tests/e2e/test_upstream_container_pods.py.
@pytest.mark.parametrize("provider", ["lambda_labs"])
def test_pod_runs_on_a_rented_machine_and_the_machine_is_returned(
    provider,
    sourcing,
    settings,
    live_server,
    user,
    django_user_model,
    busybox_image,  # noqa: F811 - the fixture
    cleanup_containers,  # noqa: F811 - the fixture
):
    settings.NODE_HEARTBEAT_INTERVAL = 1
    settings.SOURCING_SERVER_URL = live_server.url
    settings.SOURCING_IDLE_KEEP_S = 0
    # the real user_data: curl our install.sh | bash (the `sourcing` fixture's stand-in is
    # put back to the default); install.sh creates a venv, installs the agent wheel served
    # by this server and starts it in the background (no systemd on the simulated VM)
    settings.SOURCING_AGENT_BOOTSTRAP = default_settings.SOURCING_AGENT_BOOTSTRAP
    # one provider at a time: each one's startup path (Vast onstart with CONTAINER_ID, RunPod
    # dockerArgs with RUNPOD_POD_ID, Lambda user_data with no id: the token binds it)
    settings.SOURCING_PROVIDERS = {provider: settings.SOURCING_PROVIDERS[provider]}
    sourcing[provider].control.reset(offers=2000, seed=3)
    sourcing[provider].control.configure(boot_seconds=0.5)
    operator = django_user_model.objects.create_user(
        email="op@example.com", password="x-pass-12345", is_staff=True
    )
    wallet_credit(
        user=user, amount=50_000_000, reason="e2e", operator=operator, idempotency_key="e2e-credit"
    )
    key = api_key_create(user=user, name="e2e").raw_key
    api = httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    assert not Node.objects.filter(gpus__model=GPU).exists()

    # the offer book is fresh; the pod cannot be placed on any node of ours
    offer_book.offer_book_refresh()
    requested = time.monotonic()
    created = api.post(
        "/api/v1/pods/",
        json={
            "name": "rented-e2e",
            "image": busybox_image,
            "command": ["sleep", "300"],
            "gpu_model": GPU,
            "gpu_count": 1,
        },
    )
    assert created.status_code == 201, created.text
    pod_id = created.json()["id"]
    assert Pod.objects.get(pk=pod_id).status == PodStatus.PROVISIONING
    instance = ProvisionedInstance.objects.get(pod_id=pod_id)

    # the provisioning tick rents it; the machine boots and its startup script runs our agent
    services.provisioning_tick()
    instance.refresh_from_db()
    assert instance.provider == provider and instance.provider_instance_id, instance.status_reason
    sim = sourcing[instance.provider]
    instance = wait_for(
        lambda: ProvisionedInstance.objects.filter(
            pk=instance.pk, status=InstanceStatus.ACTIVE
        ).first(),
        "the agent on the rented machine to register",
        timeout=90,
    )
    node = Node.objects.get(pk=instance.node_id)
    assert node.provider_instance_id == instance.provider_instance_id
    assert [g.model for g in node.gpus.all()] == [GPU]
    wait_for(lambda: Node.objects.get(pk=node.pk).status == NodeStatus.ONLINE, "node ONLINE")

    # the next tick hands the machine to its pod, which the agent starts
    services.provisioning_tick()
    pod = wait_for(
        lambda: Pod.objects.filter(pk=pod_id, status=PodStatus.RUNNING).first(),
        "pod RUNNING",
        timeout=90,
    )
    print(f"\n[{provider}] request → RUNNING: {time.monotonic() - requested:.2f} s")  # noqa: T201
    # the agent came from install.sh: its venv in the VM's (sandboxed) /opt/gco-agent
    view = next(i for i in sim.control.instances() if i["label"] == instance.label)
    assert "install.sh" in view["startup_script"]
    assert pod.node_id == node.pk
    assert pod.price_per_gpu_hour == instance.price_per_gpu_hour
    upstream_per_gpu = -(-instance.upstream_price_per_hour // instance.gpu_count)
    assert pod.price_per_gpu_hour == -(-upstream_per_gpu * 125 // 100)  # 25% markup

    billed = Pod.objects.get(pk=pod_id).billed_until
    wait_for(
        lambda: (Node.objects.get(pk=node.pk).last_heartbeat_at - billed).total_seconds() >= 2,
        "a later heartbeat",
    )
    assert meter_tick(now=timezone.now()).records == 1
    services.accrue_upstream_costs()

    stopped = api.post(f"/api/v1/pods/{pod_id}/stop")
    assert stopped.json()["status"] == "STOPPING"
    wait_for(
        lambda: Pod.objects.get(pk=pod_id).status == PodStatus.STOPPED, "pod STOPPED", timeout=60
    )

    # idle now: the next tick terminates it upstream, and the agent process goes with it
    services.provisioning_tick()
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.TERMINATED, instance.status_reason
    view = next(i for i in sim.control.instances() if str(i["id"]) == instance.provider_instance_id)
    assert view["terminated"]
    wait_for(
        lambda: (
            not next(
                i for i in sim.control.instances() if str(i["id"]) == instance.provider_instance_id
            )["process_alive"]
        ),
        "the rented machine's agent process to end",
    )
    assert re.search(r"sit_", view["startup_script"]) or instance.provider == "runpod"
    assert Node.objects.get(pk=node.pk).status == NodeStatus.RETIRED

    # billing: the user paid our price (markup included); upstream cost was booked against it
    usage = UsageRecord.objects.filter(pod_id=pod_id)
    revenue = usage.aggregate(s=Sum("amount"))["s"]
    assert revenue and all(r.price_per_gpu_hour == pod.price_per_gpu_hour for r in usage)
    charges = UpstreamCharge.objects.filter(instance=instance)
    cost = charges.aggregate(s=Sum("amount"))["s"]
    assert cost and all(c.price_per_hour == instance.upstream_price_per_hour for c in charges)
    assert charges.filter(pod_id=pod_id).exists()
    # cost booked up to the termination, to the whole second
    assert (
        timedelta(0) <= instance.terminated_at - instance.cost_accrued_until < timedelta(seconds=1)
    )
    margin = services.margins_by(key="pod")[str(pod_id)]
    assert margin == {"revenue": revenue, "upstream_cost": cost, "margin": revenue - cost}
    by_provider = services.margins_by(key="provider")[instance.provider]
    assert by_provider["upstream_cost"] == cost
    upstream_account = LedgerAccount.objects.get(kind=AccountKind.UPSTREAM_COST)
    assert upstream_account.balance == cost
    for tx in Transaction.objects.all():
        assert tx.entries.aggregate(s=Sum("amount"))["s"] == 0
    assert Entry.objects.aggregate(s=Sum("amount"))["s"] == 0
