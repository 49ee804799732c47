"""Earnings are exact: over a random mix of pods on several providers' nodes (and a platform
node), at different tiers and prices, with tier changes part-way through and metering ticks
in chunks of random size, each pod's charges are its price to date rounded once (no drift),
its provider shares carry their remainder forward so that, at every point, they sum to
floor(Σ charge × (100 − fee) / 100) with each charge at the fee in force when its interval
started, each provider's payable holds exactly the sum of its shares, and the platform's
revenue is the rest — to the micro-dollar. Each share is credited in the same ledger
transaction as the charge it comes from."""

import uuid
from datetime import timedelta

import pytest
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from apps.billing.models import AccountKind, Entry, LedgerAccount
from apps.billing.services import ledger_check
from apps.core.money import prorate, prorate_increment
from apps.nodes.models import Node
from apps.pods.metering import meter_tick
from apps.pods.models import Pod, PodStatus, UsageRecord
from apps.providers.models import Tier, tier_fee_percent
from apps.providers.services import provider_register, provider_set_tier
from tests.factories import fund, make_node

pytestmark = pytest.mark.django_db

TIERS = list(Tier.values)

provider_spec = st.fixed_dictionaries(
    {
        "tier": st.sampled_from(TIERS),
        # (seconds after t0, new tier) or no change
        "change": st.none() | st.tuples(st.integers(1, 6000), st.sampled_from(TIERS)),
        "prices": st.lists(st.integers(1, 5_000_000), min_size=1, max_size=2),
    }
)
pod_spec = st.fixed_dictionaries(
    {
        "node": st.integers(0, 50),  # index into all nodes, modulo their number
        "gpus": st.integers(1, 2),
        "start": st.integers(0, 3000),
        "seconds": st.integers(1, 7200),
        "owner": st.integers(0, 1),
    }
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    providers=st.lists(provider_spec, min_size=1, max_size=4),
    pods=st.lists(pod_spec, min_size=1, max_size=10),
    ticks=st.lists(st.integers(1, 11_000), min_size=1, max_size=4),
    chunk=st.integers(1, 6),
)
def test_each_providers_earnings_are_exact(django_user_model, providers, pods, ticks, chunk):
    with transaction.atomic():
        _run(django_user_model, providers, pods, ticks, chunk)
        transaction.set_rollback(True)  # each example starts from an empty ledger


def _run(django_user_model, providers, pods, ticks, chunk):
    # Simulated time starts after the providers' first fee rows (created "now").
    t0 = timezone.now().replace(microsecond=0) + timedelta(hours=1)
    owners = [
        django_user_model.objects.create_user(email=f"u{i}-{uuid.uuid4().hex[:6]}@example.com")
        for i in range(2)
    ]
    for owner in owners:
        fund(owner, 10**12)
    nodes: list[Node] = []
    fee_changes: dict[uuid.UUID, tuple[int, int, int]] = {}  # before %, at s, after %
    for i, spec in enumerate(providers):
        user = django_user_model.objects.create_user(
            email=f"p{i}-{uuid.uuid4().hex[:6]}@example.com"
        )
        provider = provider_register(owner=user, display_name=f"p{i}").provider
        provider_set_tier(provider=provider, tier=spec["tier"], effective_from=timezone.now())
        before = tier_fee_percent(spec["tier"])
        after, at = before, 10**9
        if spec["change"] is not None:
            at, new_tier = spec["change"]
            provider_set_tier(
                provider=provider, tier=new_tier, effective_from=t0 + timedelta(seconds=at)
            )
            after = tier_fee_percent(new_tier)
        fee_changes[provider.pk] = (before, at, after)
        for j, price in enumerate(spec["prices"]):
            nodes.append(make_node(f"n{i}-{j}", gpus=2, price=price, provider_id=provider.pk))
    nodes.append(make_node("platform", gpus=2, price=1_234_567))  # no provider: all revenue
    Node.objects.filter(pk__in=[n.pk for n in nodes]).update(
        last_heartbeat_at=t0 + timedelta(days=1)
    )
    for k, spec in enumerate(pods):
        node = nodes[spec["node"] % len(nodes)]
        start = t0 + timedelta(seconds=spec["start"])
        Pod.objects.create(
            owner=owners[spec["owner"]],
            name=f"pod-{k}",
            image="local/busybox:1",
            gpu_model=node.gpus.first().model,
            gpu_count=spec["gpus"],
            status=PodStatus.RUNNING,
            node=node,
            price_per_gpu_hour=node.price_per_gpu_hour,
            started_at=start,
            billed_until=start,
            billing_ends_at=start + timedelta(seconds=spec["seconds"]),
        )

    for tick in sorted(ticks):
        meter_tick(now=t0 + timedelta(seconds=tick), chunk=chunk)

    provider_of = {n.pk: n.provider_id for n in nodes}
    expected: dict[uuid.UUID, int] = {pid: 0 for pid in fee_changes}
    charged = 0
    records = list(UsageRecord.objects.order_by("pod_id", "period_start"))
    billed: dict[uuid.UUID, int] = {}  # seconds charged so far, per pod
    exact: dict[uuid.UUID, int] = {}  # Σ charge × (100 − fee), hundredths of µ$, per pod
    shared: dict[uuid.UUID, int] = {}  # Σ share so far, per pod
    event("billed" if records else "nothing due yet")
    if any(r.provider_share for r in records):
        event("a provider earned")
    for r in records:
        rate = r.price_per_gpu_hour * r.gpu_count
        so_far = billed.get(r.pod_id, 0)
        assert r.amount == prorate_increment(
            per_hour=rate, billed_seconds=so_far, seconds=r.seconds
        )
        billed[r.pod_id] = so_far + r.seconds
        charged += r.amount
        provider_id = provider_of[r.node_id]
        if provider_id is None:
            assert r.provider_share == 0
            continue
        before, at, after = fee_changes[provider_id]
        fee = after if r.period_start >= t0 + timedelta(seconds=at) else before
        if before != after and r.period_start >= t0 + timedelta(seconds=at):
            event("billed after a fee change")
        exact[r.pod_id] = exact.get(r.pod_id, 0) + r.amount * (100 - fee)
        share = exact[r.pod_id] // 100 - shared.get(r.pod_id, 0)  # rounded once, to date
        shared[r.pod_id] = shared.get(r.pod_id, 0) + share
        assert r.provider_share == share, (r, fee)
        expected[provider_id] += share
        if r.amount == 0:  # nothing charged (a tiny price for a second): nothing posted
            assert r.transaction_id is None and share == 0
            continue
        # The share is credited in the charge's own transaction: wallet → payable + revenue.
        legs = dict(
            Entry.objects.filter(transaction_id=r.transaction_id).values_list(
                "account__kind", "amount"
            )
        )
        assert legs[AccountKind.USER_WALLET] == -r.amount
        assert legs.get(AccountKind.PROVIDER_PAYABLE, 0) == share
        assert legs.get(AccountKind.PLATFORM_REVENUE, 0) == r.amount - share
    for pod_id, seconds in billed.items():  # however the ticks cut it: price × time, once
        first = next(r for r in records if r.pod_id == pod_id)
        total = sum(r.amount for r in records if r.pod_id == pod_id)
        assert total == prorate(
            per_hour=first.price_per_gpu_hour * first.gpu_count, seconds=seconds
        )
    for provider_id, total in expected.items():
        payable = LedgerAccount.objects.filter(
            kind=AccountKind.PROVIDER_PAYABLE, provider_id=provider_id
        ).first()
        assert (payable.balance if payable else 0) == total
    revenue = LedgerAccount.objects.filter(kind=AccountKind.PLATFORM_REVENUE).first()
    assert (revenue.balance if revenue else 0) == charged - sum(expected.values())
    wallets = LedgerAccount.objects.filter(kind=AccountKind.USER_WALLET).aggregate(s=Sum("balance"))
    assert wallets["s"] == 2 * 10**12 - charged
    assert ledger_check() == []
