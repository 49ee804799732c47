"""The operators' admin: a tier change through the provider form records the new fee from now
on (older usage keeps the old fee), the approval queue lists and approves requested payouts,
and the payout form marks a crypto payout paid by its hash or fails it (money returned)."""

import pytest
from django.test import Client

from apps.providers.models import Payout, PayoutStatus, ProviderFee
from apps.providers.selectors import provider_balances
from apps.providers.services import payout_request, payout_send
from tests.factories import CRYPTO, earn

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(operator):
    operator.is_superuser = True
    operator.save(update_fields=["is_superuser"])
    client = Client()
    client.force_login(operator)
    return client


def test_a_tier_change_in_the_admin_adds_a_fee_from_now(admin_client, provider):
    response = admin_client.post(
        f"/admin/providers/provider/{provider.pk}/change/",
        {
            "display_name": provider.display_name,
            "tier": "PRO",
            "verification": "VERIFIED",
            # the read-only inlines' management forms
            "fees-TOTAL_FORMS": "0",
            "fees-INITIAL_FORMS": "0",
            "keys-TOTAL_FORMS": "0",
            "keys-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    provider.refresh_from_db()
    assert (provider.tier, provider.verification) == ("PRO", "VERIFIED")
    fees = list(ProviderFee.objects.filter(provider=provider).order_by("effective_from"))
    assert [(f.tier, f.fee_percent) for f in fees] == [("BASIC", 20), ("PRO", 10)]
    assert fees[1].effective_from > fees[0].effective_from and fees[1].set_by is not None


def test_the_approval_queue_approves(admin_client, provider):
    earn(provider, 30_000_000)
    payout = payout_request(
        provider=provider, amount=20_000_000, method="CRYPTO", details=CRYPTO
    ).payout
    queue = admin_client.get("/admin/providers/payoutapproval/")
    assert str(payout.pk) in queue.content.decode()

    admin_client.post(
        "/admin/providers/payoutapproval/",
        {"action": "approve", "_selected_action": [str(payout.pk)]},
    )

    payout.refresh_from_db()
    assert payout.status == PayoutStatus.APPROVED and payout.approved_by is not None
    assert (
        str(payout.pk) not in admin_client.get("/admin/providers/payoutapproval/").content.decode()
    )


def _sent_crypto_payout(provider, operator) -> Payout:
    from django.test import TestCase

    from apps.providers.services import payout_approve

    earn(provider, 30_000_000)
    payout = payout_request(
        provider=provider, amount=20_000_000, method="CRYPTO", details=CRYPTO
    ).payout
    with TestCase.captureOnCommitCallbacks(execute=False):
        payout_approve(payout=payout, operator=operator)
    return payout_send(payout_id=payout.pk)


def test_entering_the_tx_hash_marks_it_paid(admin_client, provider, operator):
    payout = _sent_crypto_payout(provider, operator)
    url = f"/admin/providers/payout/{payout.pk}/change/"
    page = admin_client.get(url).content.decode()
    assert payout.transfer["to_address"] in page  # the transfer to sign

    base = {"events-TOTAL_FORMS": "0", "events-INITIAL_FORMS": "0", "fail_reason": ""}
    admin_client.post(url, {**base, "tx_hash_entry": "not-a-hash"})
    payout.refresh_from_db()
    assert payout.status == PayoutStatus.SENT

    admin_client.post(url, {**base, "tx_hash_entry": "0x" + "cd" * 32})
    payout.refresh_from_db()
    assert (payout.status, payout.tx_hash) == (PayoutStatus.PAID, "0x" + "cd" * 32)


def test_failing_from_the_form_returns_the_money(admin_client, provider, operator):
    payout = _sent_crypto_payout(provider, operator)
    admin_client.post(
        f"/admin/providers/payout/{payout.pk}/change/",
        {
            "events-TOTAL_FORMS": "0",
            "events-INITIAL_FORMS": "0",
            "tx_hash_entry": "",
            "fail_reason": "wallet rejected the token",
        },
    )
    payout.refresh_from_db()
    assert payout.status == PayoutStatus.FAILED
    assert provider_balances(provider).available == 30_000_000
