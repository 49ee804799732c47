"""Payouts through the API and the services: the ledger moves, available balance, minimum,
hold, idempotency, bad details (400 naming the field, nothing changed), rejection and failure
returning the money, crypto transfers marked paid by an operator's hash."""

from datetime import timedelta

import pytest
from django.test import TestCase
from django.utils import timezone

from apps.billing.models import AccountKind, LedgerAccount, Transaction
from apps.billing.services import ledger_check
from apps.providers.models import Payout, PayoutStatus
from apps.providers.selectors import provider_balances
from apps.providers.services import (
    PayoutError,
    payout_approve,
    payout_fail,
    payout_mark_paid,
    payout_reject,
    payout_request,
    payout_send,
)
from tests.factories import CRYPTO, EVM_ADDRESS, earn

pytestmark = pytest.mark.django_db

URL = "/api/v1/providers/payouts/request"


@pytest.fixture
def client(api_client, provider):
    api_client.force_authenticate(provider.owner)
    return api_client


def account(kind, **filters) -> int:
    row = LedgerAccount.objects.filter(kind=kind, **filters).first()
    return row.balance if row else 0


def test_a_request_moves_money_from_payable_to_clearing(client, provider):
    earn(provider, 50_000_000)

    response = client.post(URL, {"amount_usd": "20.00"}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["amount"], body["status"], body["method"]) == (20_000_000, "REQUESTED", "CRYPTO")
    assert body["details"] == CRYPTO
    assert account(AccountKind.PROVIDER_PAYABLE, provider_id=provider.pk) == 30_000_000
    assert account(AccountKind.PAYOUTS_CLEARING) == 20_000_000
    balances = provider_balances(provider)
    assert (balances.available, balances.pending, balances.earned) == (
        30_000_000,
        20_000_000,
        50_000_000,
    )
    listed = client.get("/api/v1/providers/payouts").json()
    assert [p["id"] for p in listed] == [body["id"]]
    assert ledger_check() == []


def test_more_than_available_is_refused(client, provider):
    earn(provider, 15_000_000)
    response = client.post(URL, {"amount_usd": "15.01"}, format="json")
    assert response.status_code == 400
    assert "amount_usd" in response.json()["error"]["fields"]
    assert not Payout.objects.exists()


def test_fresh_earnings_are_held(settings, provider):
    settings.PAYOUT_HOLD_SECONDS = 3600
    earn(provider, 40_000_000)
    assert provider_balances(provider).available == 0
    with pytest.raises(PayoutError):
        payout_request(provider=provider, amount=20_000_000, method="CRYPTO", details=CRYPTO)
    later = timezone.now() + timedelta(hours=2)
    assert provider_balances(provider, now=later).available == 40_000_000
    assert payout_request(
        provider=provider, amount=20_000_000, method="CRYPTO", details=CRYPTO, now=later
    ).created


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"amount_usd": "-5.00"}, "amount_usd"),
        ({"amount_usd": "0.001"}, "amount_usd"),
        ({"amount_usd": "9.99"}, "amount_usd"),  # under the $10 minimum
        ({"amount_usd": "abc"}, "amount_usd"),
        (
            {
                "amount_usd": "20.00",
                "method": "CRYPTO",
                "details": {**CRYPTO, "address": EVM_ADDRESS[:-1] + "D"},  # bad checksum
            },
            "details.address",
        ),
        (
            {"amount_usd": "20.00", "method": "CRYPTO", "details": {**CRYPTO, "chain": "doge"}},
            "details.chain",
        ),
        (
            {"amount_usd": "20.00", "method": "PAYPAL", "details": {"email": "nobody@"}},
            "details.email",
        ),
        ({"amount_usd": "20.00", "method": "PAYPAL"}, "details"),
        ({"amount_usd": "20.00", "method": "WIRE"}, "method"),
        ({"amount_usd": "20.00", "iban": "DE00"}, "iban"),
    ],
)
def test_bad_payout_requests_are_400_naming_the_field(client, provider, body, field):
    earn(provider, 50_000_000)
    before = Transaction.objects.count()

    response = client.post(URL, body, format="json")

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert field in error["fields"], error
    assert not Payout.objects.exists()
    assert Transaction.objects.count() == before
    assert provider_balances(provider).available == 50_000_000


def test_bad_profile_details_are_400_naming_the_field(client):
    response = client.patch(
        "/api/v1/providers/me",
        {"payout_method": "CRYPTO", "payout_details": {**CRYPTO, "address": EVM_ADDRESS.lower()}},
        format="json",
    )
    assert response.status_code == 400
    assert "payout_details.address" in response.json()["error"]["fields"]
    ok = client.patch(
        "/api/v1/providers/me",
        {"payout_method": "PAYPAL", "payout_details": {"email": "farm@example.com"}},
        format="json",
    )
    assert ok.status_code == 200 and ok.json()["payout_method"] == "PAYPAL"


def test_the_same_idempotency_key_makes_one_payout(client, provider):
    earn(provider, 50_000_000)
    headers = {"HTTP_IDEMPOTENCY_KEY": "payout-2026-11-1"}
    first = client.post(URL, {"amount_usd": "20.00"}, format="json", **headers)
    again = client.post(URL, {"amount_usd": "20.00"}, format="json", **headers)
    other = client.post(URL, {"amount_usd": "25.00"}, format="json", **headers)

    assert (first.status_code, again.status_code, other.status_code) == (201, 200, 409)
    assert first.json()["id"] == again.json()["id"]
    assert Payout.objects.count() == 1
    assert account(AccountKind.PAYOUTS_CLEARING) == 20_000_000


def test_a_rejected_payout_is_available_again(provider, operator):
    earn(provider, 30_000_000)
    payout = payout_request(
        provider=provider, amount=30_000_000, method="CRYPTO", details=CRYPTO
    ).payout
    assert provider_balances(provider).available == 0

    payout_reject(payout=payout, operator=operator, reason="address on a sanctions list")

    payout.refresh_from_db()
    assert payout.status == PayoutStatus.REJECTED
    assert provider_balances(provider).available == 30_000_000
    assert account(AccountKind.PAYOUTS_CLEARING) == 0
    assert ledger_check() == []


def test_crypto_payout_is_recorded_for_signing_and_paid_by_the_operators_hash(provider, operator):
    earn(provider, 30_000_000)
    payout = payout_request(
        provider=provider, amount=12_340_000, method="CRYPTO", details=CRYPTO
    ).payout
    with TestCase.captureOnCommitCallbacks(execute=False):
        payout_approve(payout=payout, operator=operator)
    sent = payout_send(payout_id=payout.pk)

    assert sent.status == PayoutStatus.SENT
    assert sent.transfer == {
        "chain": "polygon",
        "token": "USDC",
        "to_address": EVM_ADDRESS,
        "amount": "12.340000",
        "amount_micros": 12_340_000,
        "memo": f"payout {payout.pk}",
    }
    with pytest.raises(PayoutError) as bad:
        payout_mark_paid(payout=sent, reference="0x1234", operator=operator)
    assert bad.value.field == "tx_hash"

    paid = payout_mark_paid(payout=sent, reference="0x" + "ab" * 32, operator=operator)

    assert (paid.status, paid.tx_hash) == (PayoutStatus.PAID, "0x" + "ab" * 32)
    assert account(AccountKind.PAYOUTS_CLEARING) == 0
    assert account(AccountKind.PAYOUTS_SENT) == 12_340_000
    balances = provider_balances(provider)
    assert (balances.paid, balances.pending, balances.available) == (12_340_000, 0, 17_660_000)
    assert ledger_check() == []


def test_a_failed_payout_restores_availability(provider, operator):
    earn(provider, 30_000_000)
    payout = payout_request(
        provider=provider, amount=25_000_000, method="CRYPTO", details=CRYPTO
    ).payout
    with TestCase.captureOnCommitCallbacks(execute=False):
        payout_approve(payout=payout, operator=operator)
    payout_send(payout_id=payout.pk)
    assert provider_balances(provider).available == 5_000_000

    payout_fail(payout=payout, reason="the transfer reverted", operator=operator)

    payout.refresh_from_db()
    assert payout.status == PayoutStatus.FAILED
    balances = provider_balances(provider)
    assert (balances.available, balances.pending, balances.paid) == (30_000_000, 0, 0)
    assert account(AccountKind.PAYOUTS_CLEARING) == 0
    # Failing twice changes nothing more.
    with pytest.raises(Exception):  # noqa: B017 - the illegal transition
        payout_fail(payout=payout, reason="again", operator=operator)
    assert provider_balances(provider).available == 30_000_000
    assert ledger_check() == []


def test_only_operators_approve(provider):
    earn(provider, 30_000_000)
    payout = payout_request(
        provider=provider, amount=20_000_000, method="CRYPTO", details=CRYPTO
    ).payout
    with pytest.raises(PayoutError):
        payout_approve(payout=payout, operator=provider.owner)
