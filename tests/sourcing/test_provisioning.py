"""ProvisioningService, the offer book, the scheduler's upstream source, reconciliation and
upstream cost, against the simulators over HTTP and the real database."""

import os
import re
import subprocess
import sys
import uuid
from datetime import timedelta

import pytest
from django.db.models import Sum
from django.utils import timezone

from apps.billing.models import AccountKind, Entry, LedgerAccount
from apps.nodes.models import Node
from apps.pods.models import Pod, PodStatus
from apps.pods.scheduler import schedule_pending
from apps.sourcing import offer_book, services
from apps.sourcing.models import (
    InstanceStatus,
    LaunchStat,
    OfferBookEntry,
    OrphanInstance,
    ProvisionedInstance,
    UpstreamCharge,
)

pytestmark = pytest.mark.django_db

GPU = "RTX 4090"


def make_pod(user, **overrides) -> Pod:
    # LOWEST_PRICE: these tests are about price (strategies: test_strategies.py)
    spec = {
        "name": "p",
        "image": "busybox",
        "gpu_model": GPU,
        "gpu_count": 1,
        "strategy": "LOWEST_PRICE",
        **overrides,
    }
    return Pod.objects.create(owner=user, **spec)


def creates(sims) -> int:
    return sum(sim.control.stats().get("create", 0) for sim in sims.values())


def live_at(sim, label):
    return [i for i in sim.control.instances() if i["label"] == label and not i["terminated"]]


def test_flags_off_by_default_no_create_call_is_ever_made(sourcing, settings, user):
    settings.SOURCING_ENABLED = False
    settings.AUTO_PROVISIONING_ENABLED = False
    offer_book.offer_book_refresh()
    pod = make_pod(user)
    schedule_pending()
    services.provisioning_tick()
    services.reconcile()
    pod.refresh_from_db()
    assert pod.status == PodStatus.PENDING and "Waiting for capacity" in pod.status_reason
    assert ProvisionedInstance.objects.count() == 0
    # sourcing off: not a single upstream call of any kind
    assert sum(sim.control.stats().get("total", 0) for sim in sourcing.values()) == 0
    settings.SOURCING_ENABLED = True  # one switch alone is not enough to rent
    offer_book.offer_book_refresh()  # reads now happen
    schedule_pending()
    services.provisioning_tick()
    assert OfferBookEntry.objects.exists()
    assert ProvisionedInstance.objects.count() == 0
    assert creates(sourcing) == 0


def test_the_defaults_are_off():
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SOURCING_ENABLED", "AUTO_PROVISIONING_ENABLED")
    }
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings as s; "
            "print(s.SOURCING_ENABLED, s.AUTO_PROVISIONING_ENABLED)",
        ],
        env={**env, "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["False", "False"]


def test_offer_book_refresh_and_stale_provider(sourcing, settings):
    result = offer_book.offer_book_refresh()
    assert set(result.by_provider) == {"vast_ai", "runpod", "lambda_labs"}
    assert OfferBookEntry.objects.count() == result.offers > 0
    cheapest = OfferBookEntry.objects.filter(gpu_model=GPU).order_by("price_per_gpu_hour").first()
    assert cheapest.price_per_gpu_hour == -(-cheapest.upstream_price_per_gpu_hour * 125 // 100)
    # a provider that misses its deadline keeps its lines, marked stale
    settings.SOURCING_SEARCH_DEADLINE_S = 0.3
    sourcing["runpod"].control.fault("offers", "timeout", seconds=2)
    second = offer_book.offer_book_refresh()
    assert "runpod" in second.errors
    assert OfferBookEntry.objects.filter(provider="runpod", stale=False).count() == 0
    assert (
        OfferBookEntry.objects.filter(provider="runpod", stale=True).count()
        == result.by_provider["runpod"]
    )
    assert OfferBookEntry.objects.filter(provider="vast_ai", stale=False).exists()


def _provision_one(sourcing, user, **pod_fields):
    offer_book.offer_book_refresh()
    pod = make_pod(user, **pod_fields)
    schedule_pending(pod_ids=[pod.pk])
    pod.refresh_from_db()
    return pod


def test_pod_without_own_capacity_gets_an_instance_at_the_cheapest_provider(sourcing, user):
    pod = _provision_one(sourcing, user)
    assert pod.status == PodStatus.PROVISIONING and "upstream" in pod.status_reason
    instance = ProvisionedInstance.objects.get(pod=pod)
    assert instance.status == InstanceStatus.PENDING
    services.provisioning_tick()
    instance.refresh_from_db()
    assert instance.status in (InstanceStatus.STARTING, InstanceStatus.INSTALLING)
    cheapest = (
        OfferBookEntry.objects.filter(gpu_model=GPU, gpu_count=1, spot=False)
        .order_by("price_per_gpu_hour")
        .first()
    )
    assert instance.provider == cheapest.provider
    assert instance.price_per_gpu_hour == cheapest.price_per_gpu_hour
    assert instance.markup_percent == 25
    assert len(live_at(sourcing[instance.provider], instance.label)) == 1
    assert LaunchStat.objects.get(provider=instance.provider, gpu_model=GPU).successes == 1
    # the startup script carries a per-instance token, stored only hashed
    assert instance.token_digest and "sit_" not in instance.token_digest


def test_registration_with_the_instance_token_activates_it(
    sourcing, user, api_client, settings, django_capture_on_commit_callbacks
):
    # the VM cloud: its user_data runs our agent, which registers (container clouds run the
    # pod itself: tests/e2e/test_upstream_container_pods.py)
    settings.SOURCING_PROVIDERS = {"lambda_labs": settings.SOURCING_PROVIDERS["lambda_labs"]}
    pod = _provision_one(sourcing, user, gpu_model="H100 SXM")
    services.provisioning_tick()
    instance = ProvisionedInstance.objects.get(pod=pod)
    script = live_at(sourcing["lambda_labs"], instance.label)[0]["startup_script"]
    token = re.search(r"(sit_\S+)", script)[1]
    with django_capture_on_commit_callbacks(execute=True):
        answer = register(api_client, token)
    assert answer.status_code == 201, answer.content
    instance.refresh_from_db()
    node = Node.objects.get(pk=answer.json()["node_id"])
    assert node.provider_instance_id == instance.provider_instance_id
    assert instance.status == InstanceStatus.ACTIVE and instance.node_id == node.pk
    assert node.price_per_gpu_hour == instance.price_per_gpu_hour
    # a token for another machine does not register
    bad = api_client.post(
        "/api/v1/nodes/register",
        {"registration_token": "sit_not-a-token", "hostname": "x"},
        format="json",
    )
    assert bad.status_code == 401


def register(api_client, token):
    return api_client.post(
        "/api/v1/nodes/register",
        {
            "registration_token": token,
            "hostname": "rented-1",
            "provider_instance_id": "lies",  # the token's binding wins
            "gpus": [
                {
                    "index": 0,
                    "uuid": f"GPU-{uuid.uuid4()}",
                    "name": "NVIDIA GeForce RTX 4090",
                    "memory_total_mb": 24564,
                }
            ],
        },
        format="json",
    )


def test_agent_that_never_registers_fails_the_instance_and_terminates_it(sourcing, user, settings):
    settings.SOURCING_PROVIDERS = {"lambda_labs": settings.SOURCING_PROVIDERS["lambda_labs"]}
    pod = _provision_one(sourcing, user, gpu_model="H100 SXM")
    services.provisioning_tick()
    instance = ProvisionedInstance.objects.get(pod=pod)
    services.provisioning_tick(
        now=timezone.now() + timedelta(seconds=settings.SOURCING_REGISTRATION_TIMEOUT_S + 1)
    )
    instance.refresh_from_db()
    pod.refresh_from_db()
    assert instance.status == InstanceStatus.FAILED and "did not register" in instance.status_reason
    assert live_at(sourcing[instance.provider], instance.label) == []
    assert pod.status == PodStatus.PENDING


def test_price_cap_and_max_instances(sourcing, user, settings):
    offer_book.offer_book_refresh()
    cheapest = (
        OfferBookEntry.objects.filter(gpu_model=GPU, gpu_count=1, spot=False)
        .order_by("price_per_gpu_hour")
        .first()
    )
    capped = make_pod(user, price_cap_per_gpu_hour=cheapest.price_per_gpu_hour - 1)
    schedule_pending()
    capped.refresh_from_db()
    assert capped.status == PodStatus.PENDING and not ProvisionedInstance.objects.exists()
    settings.SOURCING_MAX_INSTANCES = 1
    a, b = make_pod(user, name="a"), make_pod(user, name="b")
    schedule_pending()
    assert ProvisionedInstance.objects.count() == 1
    assert {Pod.objects.get(pk=a.pk).status, Pod.objects.get(pk=b.pk).status} == {
        PodStatus.PROVISIONING,
        PodStatus.PENDING,
    }
    services.provisioning_tick()
    instance = ProvisionedInstance.objects.get()
    assert instance.price_per_gpu_hour <= cheapest.price_per_gpu_hour


def test_no_capacity_anywhere_fails_and_pod_waits(sourcing, user):
    offer_book.offer_book_refresh()
    pod = make_pod(user)
    schedule_pending(pod_ids=[pod.pk])
    for sim in sourcing.values():
        sim.control.exhaust(GPU)
    services.provisioning_tick()
    instance = ProvisionedInstance.objects.get(pod=pod)
    pod.refresh_from_db()
    assert instance.status == InstanceStatus.FAILED and "no provider" in instance.status_reason
    assert pod.status == PodStatus.PENDING
    assert all(a["outcome"] == "capacity" for a in instance.attempts)


def test_orphan_is_flagged_then_terminated_after_grace(sourcing, settings):
    planted = sourcing["runpod"].control.plant(gpu_model="RTX 4090", label="someone-forgot-me")
    settings.SOURCING_ORPHAN_GRACE_S = 600
    first = services.reconcile()
    assert first.orphans_flagged == 1 and first.orphans_terminated == 0
    assert live_at(sourcing["runpod"], "someone-forgot-me")
    later = services.reconcile(now=timezone.now() + timedelta(seconds=601))
    assert later.orphans_terminated == 1
    assert live_at(sourcing["runpod"], "someone-forgot-me") == []
    orphan = OrphanInstance.objects.get(provider="runpod", provider_instance_id=planted)
    assert orphan.terminated_at is not None


def test_tracked_instance_gone_upstream_is_closed_out(sourcing, user):
    pod = _provision_one(sourcing, user)
    services.provisioning_tick()
    instance = ProvisionedInstance.objects.get(pod=pod)
    import asyncio

    from apps.sourcing.registry import make_service

    svc = make_service([instance.provider])

    async def kill():
        await svc.adapters[instance.provider].terminate_instance(instance.provider_instance_id)
        await svc.aclose()

    asyncio.run(kill())  # someone terminated it behind our back
    result = services.reconcile()
    instance.refresh_from_db()
    assert result.closed_out == 1 and instance.status == InstanceStatus.TERMINATED
    assert Pod.objects.get(pk=pod.pk).status == PodStatus.PENDING


def test_upstream_cost_is_booked_once_against_revenue(sourcing, user):
    start = timezone.now() - timedelta(hours=1)
    instance = ProvisionedInstance.objects.create(
        label="gco-cost",
        provider="vast_ai",
        provider_instance_id="1",
        gpu_model=GPU,
        status=InstanceStatus.ACTIVE,
        upstream_price_per_hour=1_000_000,
        cost_accrued_until=start,
    )
    now = start + timedelta(hours=1)
    assert services.accrue_upstream_costs(now=now) == 1
    assert services.accrue_upstream_costs(now=now) == 0  # run twice: booked once
    charge = UpstreamCharge.objects.get(instance=instance)
    assert charge.seconds == 3600 and charge.amount == 1_000_000
    revenue = LedgerAccount.objects.get(kind=AccountKind.PLATFORM_REVENUE)
    cost = LedgerAccount.objects.get(kind=AccountKind.UPSTREAM_COST)
    assert revenue.balance == -1_000_000 and cost.balance == 1_000_000
    assert Entry.objects.aggregate(s=Sum("amount"))["s"] == 0


def _active_instance_on_planted_machine(sim, provider, *, label="gco-warm") -> ProvisionedInstance:
    iid = sim.control.plant(gpu_model=GPU, label=label)
    node = Node.objects.create(
        hostname="rented",
        token_digest=uuid.uuid4().hex * 2,
        token_prefix="nt_x",
        provider_instance_id=iid,
    )
    return ProvisionedInstance.objects.create(
        label=label,
        provider=provider,
        provider_instance_id=iid,
        gpu_model=GPU,
        status=InstanceStatus.ACTIVE,
        node=node,
        upstream_price_per_hour=400_000,
        cost_accrued_until=timezone.now(),
    )


def test_idle_instance_is_kept_warm_then_terminated(sourcing, settings):
    settings.SOURCING_IDLE_KEEP_S = 600
    instance = _active_instance_on_planted_machine(sourcing["vast_ai"], "vast_ai")
    now = timezone.now()
    services.provisioning_tick(now=now)
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.ACTIVE and instance.idle_since is not None
    services.provisioning_tick(now=now + timedelta(seconds=601))
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.TERMINATED
    assert live_at(sourcing["vast_ai"], "gco-warm") == []
    assert Node.objects.get(pk=instance.node_id).status == "RETIRED"
    assert UpstreamCharge.objects.filter(instance=instance).exists() or instance.terminated_at


def test_a_create_lost_with_its_worker_is_found_by_label_or_failed(sourcing, user):
    old = timezone.now() - timedelta(minutes=10)
    found_label, lost_label = "gco-found-later", "gco-never-made"
    sourcing["runpod"].control.plant(gpu_model=GPU, label=found_label)
    for label in (found_label, lost_label):
        ProvisionedInstance.objects.create(
            label=label, gpu_model=GPU, status=InstanceStatus.CREATING, create_sent_at=old
        )
    services.provisioning_tick()
    adopted = ProvisionedInstance.objects.get(label=found_label)
    assert adopted.status == InstanceStatus.STARTING and adopted.provider == "runpod"
    assert ProvisionedInstance.objects.get(label=lost_label).status == InstanceStatus.FAILED


def test_a_pod_stopped_before_the_rent_rents_nothing(sourcing, user):
    from apps.pods.services import pod_stop

    pod = _provision_one(sourcing, user)
    pod_stop(pod=pod)
    services.provisioning_tick()
    assert ProvisionedInstance.objects.get(pod=pod).status == InstanceStatus.FAILED
    assert creates(sourcing) == 0


def test_a_booting_machine_whose_pod_ended_is_terminated_at_once(sourcing, user):
    from apps.pods.services import pod_stop

    pod = _provision_one(sourcing, user)
    services.provisioning_tick()
    instance = ProvisionedInstance.objects.get(pod=pod)
    assert instance.status in (InstanceStatus.STARTING, InstanceStatus.INSTALLING)
    pod_stop(pod=pod)
    services.provisioning_tick()
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.TERMINATED
    assert live_at(sourcing[instance.provider], instance.label) == []
