"""No rounding drift: however the metering ticks cut a pod's running time, its charges add up
to price × time rounded once, and a community provider's shares to the fee split rounded once.

Driven through the real tick on the real database, at every catalogue price and at arbitrary
prices (not ones that divide evenly by 3,600 and so hide drift)."""

import uuid
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from apps.accounts.models import User
from apps.billing.models import AccountKind, LedgerAccount
from apps.billing.services import ledger_check
from apps.core.money import prorate, prorate_increment, split_with_carry
from apps.nodes.models import Node
from apps.pods.metering import meter_tick
from apps.pods.models import Pod, UsageRecord
from apps.pods.services import pod_create
from tests.factories import POD, fund, make_node, report_container

pytestmark = pytest.mark.django_db

CATALOGUE = sorted(set(django_settings.GPU_DEFAULT_PRICES.values()))
FEE_PERCENT = 20  # the Basic tier's platform cut (PROVIDER_DEFAULT_FEE_PERCENT)

prices = st.one_of(st.sampled_from(CATALOGUE), st.integers(1, 50_000_000))
# Interval lengths in seconds: short ticks, late ticks, odd lengths.
cuts = st.lists(
    st.one_of(st.sampled_from([1, 7, 59, 60, 61, 3599]), st.integers(1, 7200)),
    min_size=1,
    max_size=25,
)


def _run(*, price: int, gpus: int, community: bool, intervals: list[int]) -> tuple[Pod, int]:
    """Start one pod at `price` on a fresh node and tick at the end of each interval; returns
    the pod and the seconds it ran."""
    user = User.objects.create_user(email=f"drift-{uuid.uuid4().hex[:8]}@example.com")
    fund(user, 10**13)
    node = make_node(
        f"drift-{uuid.uuid4().hex[:8]}",
        gpus=max(gpus, 1),
        price=price,
        provider_id=uuid.uuid4() if community else None,
    )
    pod = pod_create(owner=user, spec={**POD, "gpu_count": gpus}).pod
    started = timezone.now().replace(microsecond=0) - timedelta(days=30)
    report_container(node, pod.pk, "running", started_at=started)
    total = sum(intervals)
    Node.objects.filter(pk=node.pk).update(last_heartbeat_at=started + timedelta(seconds=total))
    at = started
    for seconds in intervals:
        at += timedelta(seconds=seconds)
        meter_tick(now=at)
    pod.refresh_from_db()
    assert pod.billed_until == started + timedelta(seconds=total)
    return pod, total


@given(price=prices, gpus=st.integers(1, 4), community=st.booleans(), intervals=cuts)
@hypothesis_settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_any_split_of_the_time_charges_the_one_shot_price(
    price: int, gpus: int, community: bool, intervals: list[int], settings
) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.PROVIDER_DEFAULT_FEE_PERCENT = FEE_PERCENT
    with transaction.atomic():
        pod, total = _run(price=price, gpus=gpus, community=community, intervals=intervals)

        usage = UsageRecord.objects.filter(pod=pod).aggregate(
            amount=Sum("amount"), share=Sum("provider_share"), seconds=Sum("seconds")
        )
        one_shot = prorate(per_hour=price * max(gpus, 1), seconds=total)
        assert usage["seconds"] == total
        assert usage["amount"] == one_shot  # to the micro-dollar
        expected_share = one_shot * (100 - FEE_PERCENT) // 100 if community else 0
        assert (usage["share"] or 0) == expected_share
        assert ledger_check() == []
        transaction.set_rollback(True)


@pytest.mark.parametrize("price", CATALOGUE)
def test_sixty_one_minute_ticks_charge_exactly_one_hour(price, settings, django_user_model):
    """The probe of the issue: an hour billed minute by minute costs the hourly price."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.PROVIDER_DEFAULT_FEE_PERCENT = FEE_PERCENT
    pod, total = _run(price=price, gpus=1, community=True, intervals=[60] * 60)

    amounts = list(UsageRecord.objects.filter(pod=pod).values_list("amount", flat=True))

    assert total == 3600 and len(amounts) == 60
    assert sum(amounts) == price
    payable = LedgerAccount.objects.get(kind=AccountKind.PROVIDER_PAYABLE)
    assert payable.balance == price * (100 - FEE_PERCENT) // 100
    assert ledger_check() == []


@given(
    per_hour=st.integers(0, 10**9),
    intervals=st.lists(st.integers(0, 10**6), max_size=50),
)
def test_prorate_increments_sum_to_the_one_shot_charge(per_hour: int, intervals: list[int]):
    billed = charged = 0
    for seconds in intervals:
        charged += prorate_increment(per_hour=per_hour, billed_seconds=billed, seconds=seconds)
        billed += seconds
    assert charged == prorate(per_hour=per_hour, seconds=billed)


@given(
    splits=st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 100)), max_size=50),
)
def test_split_with_carry_pays_the_exact_share_and_conserves_money(splits):
    carry = paid = exact_hundredths = 0
    for amount, percent in splits:
        share, carry = split_with_carry(amount=amount, percent=percent, carry=carry)
        assert 0 <= share <= amount  # the other party's part is never negative
        paid += share
        exact_hundredths += amount * percent
    assert paid == exact_hundredths // 100
    assert carry == exact_hundredths % 100
