"""Operators' wallet credits and refunds: the services and the admin forms that call them."""

import re

import pytest

from apps.billing.models import AccountKind, LedgerAccount, Transaction, TransactionKind
from apps.billing.selectors import wallet_balance
from apps.billing.services import (
    InsufficientFundsError,
    OperatorError,
    ledger_check,
    wallet_credit,
    wallet_for,
    wallet_refund,
)

pytestmark = pytest.mark.django_db

USD = 1_000_000


def test_a_credit_comes_from_platform_revenue_and_records_operator_and_reason(user, operator):
    posted, created = wallet_credit(
        user=user,
        amount=5 * USD,
        reason="GPU outage 12 May",
        operator=operator,
        idempotency_key="c1",
    )

    assert created and posted.kind == TransactionKind.CREDIT
    assert posted.created_by == operator and posted.reason == "GPU outage 12 May"
    assert posted.metadata["operator_id"] == str(operator.pk)
    assert wallet_balance(user) == 5 * USD
    assert LedgerAccount.objects.get(kind=AccountKind.PLATFORM_REVENUE).balance == -5 * USD
    again, created_again = wallet_credit(
        user=user, amount=5 * USD, reason="double click", operator=operator, idempotency_key="c1"
    )
    assert not created_again and again.pk == posted.pk and wallet_balance(user) == 5 * USD


def test_a_refund_goes_to_stripe_clearing_and_cannot_pass_the_floor(user, operator):
    wallet_credit(user=user, amount=5 * USD, reason="r", operator=operator, idempotency_key="c")

    with pytest.raises(InsufficientFundsError):
        wallet_refund(
            user=user, amount=6 * USD, reason="r", operator=operator, idempotency_key="r1"
        )
    posted, _ = wallet_refund(
        user=user, amount=5 * USD, reason="customer asked", operator=operator, idempotency_key="r2"
    )

    assert posted.kind == TransactionKind.REFUND and posted.created_by == operator
    assert wallet_balance(user) == 0
    assert LedgerAccount.objects.get(kind=AccountKind.STRIPE_CLEARING).balance == 5 * USD
    assert not Transaction.objects.filter(idempotency_key="r1").exists()
    assert ledger_check() == []


@pytest.mark.parametrize("amount", [0, -1, 1.5, True])
def test_amounts_must_be_positive_micro_dollars(user, operator, amount):
    for service in (wallet_credit, wallet_refund):
        with pytest.raises(OperatorError):
            service(user=user, amount=amount, reason="r", operator=operator, idempotency_key="k")
    assert not Transaction.objects.exists()


def test_a_reason_and_a_staff_operator_are_required(user, other_user, operator):
    with pytest.raises(OperatorError, match="reason"):
        wallet_credit(user=user, amount=1, reason="  ", operator=operator, idempotency_key="k")
    with pytest.raises(OperatorError, match="not an operator"):
        wallet_credit(user=user, amount=1, reason="r", operator=other_user, idempotency_key="k")
    assert not Transaction.objects.exists()


# -- admin ----------------------------------------------------------------------------------


def form_key(html: str) -> str:
    return re.search(r'name="idempotency_key" value="([^"]+)"', html).group(1)


def test_admin_credit_form_credits_once_per_form(admin_client, admin_user, user):
    url = f"/admin/billing/ledgeraccount/wallet/{user.pk}/credit/"
    page = admin_client.get(url)
    assert page.status_code == 200 and "Credit wallet" in page.text
    data = {
        "amount_usd": "12.50",
        "reason": "Support ticket 42",
        "idempotency_key": form_key(page.text),
    }

    first = admin_client.post(url, data)
    second = admin_client.post(url, data)  # the same form submitted twice

    assert first.status_code == second.status_code == 302
    assert wallet_balance(user) == 12_500_000
    [posted] = Transaction.objects.filter(kind=TransactionKind.CREDIT)
    assert posted.created_by == admin_user and posted.reason == "Support ticket 42"
    assert admin_client.get(second["Location"]).status_code == 200  # the transaction page


def test_admin_refund_form_shows_the_refusal_when_funds_are_short(admin_client, user, operator):
    wallet_credit(user=user, amount=USD, reason="r", operator=operator, idempotency_key="c")
    url = f"/admin/billing/ledgeraccount/wallet/{user.pk}/refund/"
    key = form_key(admin_client.get(url).text)

    refused = admin_client.post(url, {"amount_usd": "2.00", "reason": "r", "idempotency_key": key})
    invalid = admin_client.post(url, {"amount_usd": "-1", "reason": "", "idempotency_key": key})
    done = admin_client.post(url, {"amount_usd": "1.00", "reason": "r", "idempotency_key": key})

    assert refused.status_code == 200 and "below its floor" in refused.text
    assert invalid.status_code == 200 and "errorlist" in invalid.text
    assert done.status_code == 302 and wallet_balance(user) == 0


def test_staff_without_the_permission_cannot_use_the_forms(client, operator, user):
    client.force_login(operator)
    url = f"/admin/billing/ledgeraccount/wallet/{user.pk}/credit/"
    assert client.get(url).status_code == 403
    assert (
        client.post(url, {"amount_usd": "1", "reason": "r", "idempotency_key": "k"}).status_code
        == 403
    )
    assert wallet_balance(user) == 0


def test_admin_ledger_pages_are_read_only_and_render(admin_client, user, operator):
    posted, _ = wallet_credit(
        user=user, amount=USD, reason="r", operator=operator, idempotency_key="c"
    )
    wallet = wallet_for(user)

    accounts = admin_client.get("/admin/billing/ledgeraccount/")
    assert accounts.status_code == 200 and "Credit…" in accounts.text
    assert admin_client.get(f"/admin/billing/ledgeraccount/{wallet.pk}/change/").status_code == 200
    detail = admin_client.get(f"/admin/billing/transaction/{posted.pk}/change/")
    assert detail.status_code == 200 and "1.000000" in detail.text
    assert admin_client.get("/admin/billing/transaction/add/").status_code == 403
    assert admin_client.post(f"/admin/billing/transaction/{posted.pk}/delete/").status_code == 403
    assert admin_client.get("/admin/billing/transaction/").status_code == 200
