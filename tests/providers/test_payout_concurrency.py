"""Concurrent payout requests on real Postgres: each decides "available" under the provider's
payable row lock, so together they never take more than was available, and the ledger stays
whole. Threads start together at a barrier; each uses its own database connection."""

import threading

import pytest
from django.db import connection
from rest_framework.test import APIClient

from apps.billing.models import AccountKind, LedgerAccount
from apps.billing.services import ledger_check
from apps.providers.models import Payout
from apps.providers.selectors import provider_balances
from tests.factories import earn

pytestmark = pytest.mark.django_db(transaction=True)


def _race(n: int, work) -> list:
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = work(i)
        except Exception as exc:  # noqa: BLE001 - reported below
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_two_concurrent_requests_cannot_exceed_available(provider):
    earn(provider, 100_000_000)

    def request(i: int) -> int:
        client = APIClient()
        client.force_authenticate(provider.owner)
        return client.post(
            "/api/v1/providers/payouts/request", {"amount_usd": "60.00"}, format="json"
        ).status_code

    codes = _race(2, request)

    assert sorted(codes) == [201, 400], codes
    assert Payout.objects.count() == 1
    payable = LedgerAccount.objects.get(kind=AccountKind.PROVIDER_PAYABLE, provider_id=provider.pk)
    assert payable.balance == 40_000_000
    assert ledger_check() == []


def test_many_concurrent_requests_take_at_most_what_is_available(provider):
    earn(provider, 100_000_000)

    def request(i: int) -> int:
        client = APIClient()
        client.force_authenticate(provider.owner)
        return client.post(
            "/api/v1/providers/payouts/request", {"amount_usd": "30.00"}, format="json"
        ).status_code

    codes = _race(6, request)

    assert codes.count(201) == 3 and codes.count(400) == 3, codes
    balances = provider_balances(provider)
    assert (balances.pending, balances.available) == (90_000_000, 10_000_000)
    assert ledger_check() == []


def test_concurrent_retries_with_one_key_make_one_payout(provider):
    earn(provider, 100_000_000)

    def request(i: int) -> tuple[int, str]:
        client = APIClient()
        client.force_authenticate(provider.owner)
        response = client.post(
            "/api/v1/providers/payouts/request",
            {"amount_usd": "30.00"},
            format="json",
            HTTP_IDEMPOTENCY_KEY="same-click",
        )
        return response.status_code, response.json()["id"]

    results = _race(4, request)

    assert sorted(code for code, _ in results) == [200, 200, 200, 201], results
    assert len({payout_id for _, payout_id in results}) == 1
    assert provider_balances(provider).pending == 30_000_000
