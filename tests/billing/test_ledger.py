"""ledger_post, the account helpers and the consistency check."""

import logging
import uuid

import pytest
from django.db import IntegrityError, connection, transaction

from apps.billing.models import AccountKind, Entry, LedgerAccount, Transaction, TransactionKind
from apps.billing.services import (
    InsufficientFundsError,
    LedgerError,
    UnbalancedPostingError,
    ledger_check,
    ledger_post,
    platform_account,
    provider_payable,
    wallet_for,
)
from apps.billing.tasks import ledger_check_task

pytestmark = pytest.mark.django_db

USD = 1_000_000


def top_up(user, amount, key=None):
    return ledger_post(
        kind=TransactionKind.TOPUP,
        idempotency_key=key or f"test:{uuid.uuid4()}",
        memo="top-up",
        lines=[
            (platform_account(AccountKind.STRIPE_CLEARING), -amount),
            (wallet_for(user), amount),
        ],
    )


def usage(user, amount, key=None, floor=True):
    return ledger_post(
        kind=TransactionKind.USAGE,
        idempotency_key=key or f"test:{uuid.uuid4()}",
        memo="usage",
        lines=[
            (wallet_for(user), -amount),
            (platform_account(AccountKind.PLATFORM_REVENUE), amount),
        ],
        floor=floor,
    )


def balance(account):
    return LedgerAccount.objects.get(pk=account.pk).balance


def test_a_posting_moves_cached_balances_and_writes_balanced_entries(user):
    posted, created = top_up(user, 25 * USD)

    assert created
    assert balance(wallet_for(user)) == 25 * USD
    assert balance(platform_account(AccountKind.STRIPE_CLEARING)) == -25 * USD
    assert sorted(posted.entries.values_list("amount", flat=True)) == [-25 * USD, 25 * USD]
    assert ledger_check() == []


def test_the_callers_account_objects_show_the_new_balance(user):
    wallet = wallet_for(user)
    clearing = platform_account(AccountKind.STRIPE_CLEARING)
    ledger_post(
        kind=TransactionKind.TOPUP,
        idempotency_key="k1",
        memo="",
        lines=[(clearing, -3), (wallet, 3)],
    )
    assert (wallet.balance, clearing.balance) == (3, -3)


def test_same_key_returns_the_first_transaction_and_changes_nothing(user):
    first, created = top_up(user, 10 * USD, key="topup:1")
    again, created_again = top_up(user, 99 * USD, key="topup:1")

    assert created and not created_again
    assert again.pk == first.pk
    assert balance(wallet_for(user)) == 10 * USD
    assert Transaction.objects.count() == 1


def test_same_external_ref_under_another_key_changes_nothing(user):
    lines = [(platform_account(AccountKind.STRIPE_CLEARING), -5), (wallet_for(user), 5)]
    first, _ = ledger_post(
        kind=TransactionKind.TOPUP, idempotency_key="a", memo="", lines=lines, external_ref="x:1"
    )
    second, created = ledger_post(
        kind=TransactionKind.TOPUP, idempotency_key="b", memo="", lines=lines, external_ref="x:1"
    )
    assert not created and second.pk == first.pk
    assert balance(wallet_for(user)) == 5


@pytest.mark.parametrize(
    "amounts, error",
    [
        ([5, -4], UnbalancedPostingError),
        ([5], UnbalancedPostingError),
        ([5, 0, -5], LedgerError),
        ([5.0, -5.0], LedgerError),
        ([True, -1], LedgerError),
    ],
)
def test_bad_lines_are_refused_and_nothing_is_written(user, amounts, error):
    accounts = [
        wallet_for(user),
        platform_account(AccountKind.PLATFORM_REVENUE),
        platform_account(AccountKind.UPSTREAM_COST),
    ]
    with pytest.raises(error):
        ledger_post(
            kind=TransactionKind.ADJUSTMENT,
            idempotency_key="bad",
            memo="",
            lines=list(zip(accounts, amounts, strict=False)),
        )
    assert Transaction.objects.count() == 0 and Entry.objects.count() == 0


def test_unknown_kind_and_missing_key_are_refused(user):
    lines = [(wallet_for(user), 1), (platform_account(AccountKind.PLATFORM_REVENUE), -1)]
    with pytest.raises(LedgerError):
        ledger_post(kind="GIFT", idempotency_key="k", memo="", lines=lines)
    with pytest.raises(LedgerError):
        ledger_post(kind=TransactionKind.CREDIT, idempotency_key="", memo="", lines=lines)


def test_the_floor_refuses_a_debit_below_zero_and_writes_nothing(user):
    top_up(user, 3 * USD)

    with pytest.raises(InsufficientFundsError) as refused:
        usage(user, 3 * USD + 1)

    assert refused.value.balance == 3 * USD and refused.value.floor == 0
    assert balance(wallet_for(user)) == 3 * USD
    assert Transaction.objects.filter(kind=TransactionKind.USAGE).count() == 0
    usage(user, 3 * USD)  # down to exactly zero is fine
    assert balance(wallet_for(user)) == 0


def test_the_overdraft_setting_lowers_the_floor(user, settings):
    settings.BILLING_OVERDRAFT_MICROS = 2 * USD
    usage(user, 2 * USD)
    assert balance(wallet_for(user)) == -2 * USD
    with pytest.raises(InsufficientFundsError):
        usage(user, 1)


def test_postings_without_the_floor_may_go_below_it(user):
    usage(user, 1 * USD, floor=False)  # e.g. a correcting adjustment
    assert balance(wallet_for(user)) == -USD


def test_the_floor_only_guards_wallets_that_a_posting_lowers(user):
    revenue = platform_account(AccountKind.PLATFORM_REVENUE)
    ledger_post(
        kind=TransactionKind.CREDIT,
        idempotency_key="credit",
        memo="",
        lines=[(revenue, -USD), (wallet_for(user), USD)],
        floor=True,  # revenue goes negative: not a wallet, not guarded
    )
    assert balance(revenue) == -USD


def test_one_account_per_owner_and_platform_kind(user):
    assert wallet_for(user).pk == wallet_for(user).pk
    provider = uuid.uuid4()
    assert provider_payable(provider).pk == provider_payable(str(provider)).pk
    assert provider_payable(provider).kind == AccountKind.PROVIDER_PAYABLE
    assert platform_account(AccountKind.UPSTREAM_COST).pk == platform_account("UPSTREAM_COST").pk
    with pytest.raises(LedgerError):
        platform_account(AccountKind.USER_WALLET)
    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerAccount.objects.create(kind=AccountKind.USER_WALLET, user=user)
    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerAccount.objects.create(kind=AccountKind.PLATFORM_REVENUE, user=user)  # owner


def test_entries_are_never_zero_at_the_database(user):
    posted, _ = top_up(user, 1)
    with pytest.raises(IntegrityError), transaction.atomic():
        Entry.objects.create(transaction=posted, account=wallet_for(user), amount=0)


def test_ledger_check_finds_a_drifted_balance_and_an_unbalanced_transaction(user, caplog):
    posted, _ = top_up(user, 7)
    wallet = wallet_for(user)
    LedgerAccount.objects.filter(pk=wallet.pk).update(balance=8)  # a write that bypassed us
    stray = Entry.objects.create(transaction=posted, account=wallet, amount=1)  # trigger deferred

    found = {(m.what, m.object_id) for m in ledger_check()}

    assert ("transaction_sum", posted.pk) in found
    assert ("account_balance", platform_account(AccountKind.STRIPE_CLEARING).pk) not in found
    with caplog.at_level(logging.ERROR, logger="apps.billing.tasks"):
        assert ledger_check_task() == len(ledger_check())
    assert "ledger check: transaction_sum" in caplog.text
    stray.delete()  # the deferred trigger checks again at the test's end
    assert ledger_check_task.name == "billing.ledger_check"


def test_ledger_check_reports_the_account_whose_cache_drifted(user):
    top_up(user, 7)
    wallet = wallet_for(user)
    LedgerAccount.objects.filter(pk=wallet.pk).update(balance=8)

    [mismatch] = ledger_check()

    assert (mismatch.what, mismatch.object_id, mismatch.expected, mismatch.actual) == (
        "account_balance",
        wallet.pk,
        7,
        8,
    )


@pytest.mark.django_db(transaction=True)
def test_postgres_refuses_to_commit_an_unbalanced_transaction(user):
    if connection.vendor != "postgresql":
        pytest.skip("the zero-sum trigger is Postgres-only")
    posted, _ = top_up(user, 5)
    with pytest.raises(IntegrityError, match="does not balance"), transaction.atomic():
        Entry.objects.create(transaction=posted, account=wallet_for(user), amount=1)
    assert ledger_check() == []
