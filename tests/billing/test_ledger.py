"""ledger_post, the account helpers and the consistency check."""

import logging
import uuid
from contextlib import contextmanager

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F

from apps.billing.models import AccountKind, Entry, LedgerAccount, Transaction, TransactionKind
from apps.billing.services import (
    InsufficientFundsError,
    LedgerError,
    LedgerMismatch,
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


@contextmanager
def ledger_guards_off():
    """What only a database superuser (or a hand on the SQLite file) can do: write with the
    ledger's triggers off. The test's rollback puts them back."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = replica")
            yield cursor
            cursor.execute("SET LOCAL session_replication_role = origin")
        else:
            for name in SQLITE_LEDGER_TRIGGERS:
                cursor.execute(f"DROP TRIGGER IF EXISTS {name}")
            yield cursor


SQLITE_LEDGER_TRIGGERS = (
    "billing_entry_append_only_update",
    "billing_entry_append_only_delete",
    "billing_transaction_append_only_update",
    "billing_transaction_append_only_delete",
    "billing_entry_move_balances",
)


def test_ledger_check_finds_a_drifted_balance_and_an_unbalanced_transaction(user, caplog):
    posted, _ = top_up(user, 7)
    wallet = wallet_for(user)
    with ledger_guards_off() as cursor:
        cursor.execute("UPDATE billing_ledgeraccount SET balance = 8 WHERE id = %s", [wallet.pk])
        cursor.execute(
            "INSERT INTO billing_entry (transaction_id, account_id, amount) VALUES (%s, %s, 1)",
            [posted.pk, wallet.pk],
        )

    found = {(m.what, m.object_id) for m in ledger_check()}

    assert ("transaction_sum", posted.pk) in found
    assert ("account_balance", platform_account(AccountKind.STRIPE_CLEARING).pk) not in found
    with caplog.at_level(logging.ERROR, logger="apps.billing.tasks"):
        assert ledger_check_task() == len(ledger_check())
    assert "ledger check: transaction_sum" in caplog.text
    assert ledger_check_task.name == "billing.ledger_check"


def test_ledger_check_reports_the_account_whose_cache_drifted(user):
    top_up(user, 7)
    wallet = wallet_for(user)
    with ledger_guards_off() as cursor:
        cursor.execute("UPDATE billing_ledgeraccount SET balance = 8 WHERE id = %s", [wallet.pk])

    [mismatch] = ledger_check()

    assert (mismatch.what, mismatch.object_id, mismatch.expected, mismatch.actual) == (
        "account_balance",
        wallet.pk,
        7,
        8,
    )


# -- the ledger is append-only, and balances move only with entries ---------------------------

REFUSED = (IntegrityError, DatabaseError)


def test_deleting_every_entry_of_a_transaction_is_refused(user):
    posted, _ = top_up(user, 5 * USD)
    with pytest.raises(REFUSED, match="append-only"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM billing_entry WHERE transaction_id = %s", [posted.pk])
    with pytest.raises(REFUSED, match="append-only"), transaction.atomic():
        Entry.objects.filter(transaction=posted).delete()
    assert Entry.objects.filter(transaction=posted).count() == 2
    assert wallet_for(user).balance == 5 * USD and ledger_check() == []


def test_doubling_both_legs_is_refused(user):
    posted, _ = top_up(user, 5 * USD)
    with pytest.raises(REFUSED, match="append-only"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE billing_entry SET amount = amount * 2 WHERE transaction_id = %s",
                [posted.pk],
            )
    assert sorted(Entry.objects.filter(transaction=posted).values_list("amount", flat=True)) == [
        -5 * USD,
        5 * USD,
    ]


def test_editing_or_deleting_a_transaction_is_refused(user):
    posted, _ = top_up(user, 5 * USD)
    with pytest.raises(REFUSED, match="append-only"), transaction.atomic():
        Transaction.objects.filter(pk=posted.pk).update(memo="nothing to see")
    with pytest.raises(REFUSED, match="append-only"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM billing_transaction WHERE id = %s", [posted.pk])
    assert Transaction.objects.get(pk=posted.pk).memo == "top-up"


def test_editing_a_balance_is_refused_on_postgres_and_caught_elsewhere(user):
    top_up(user, 5 * USD)
    wallet = wallet_for(user)
    if connection.vendor == "postgresql":
        with pytest.raises(REFUSED, match="only through posted entries"), transaction.atomic():
            LedgerAccount.objects.filter(pk=wallet.pk).update(balance=F("balance") + USD)
        with pytest.raises(REFUSED, match="only through posted entries"), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(
                    "UPDATE billing_ledgeraccount SET balance = 0 WHERE id = %s", [wallet.pk]
                )
        assert wallet_for(user).balance == 5 * USD and ledger_check() == []
    else:  # SQLite cannot tell a trigger's write from a direct one: the check catches it
        LedgerAccount.objects.filter(pk=wallet.pk).update(balance=F("balance") + USD)
        assert [(m.what, m.object_id) for m in ledger_check()] == [("account_balance", wallet.pk)]


def test_balances_are_moved_by_the_database_from_inserted_entries(user):
    """The cached balance is derived: an entry written by any insert moves it, in the same
    statement, so it can never disagree with the entries it sums."""
    top_up(user, 5 * USD)
    revenue = platform_account(AccountKind.PLATFORM_REVENUE)
    wallet = wallet_for(user)
    posted = Transaction.objects.create(kind=TransactionKind.USAGE, idempotency_key="raw")
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO billing_entry (transaction_id, account_id, amount) "
            "VALUES (%s, %s, -700), (%s, %s, 700)",
            [posted.pk, wallet.pk, posted.pk, revenue.pk],
        )
    wallet.refresh_from_db()
    revenue.refresh_from_db()
    assert (wallet.balance, revenue.balance) == (5 * USD - 700, 700)
    assert ledger_check() == []


def test_postgres_refuses_an_unbalanced_transaction(user):
    if connection.vendor != "postgresql":
        pytest.skip("the zero-sum trigger is Postgres-only")
    top_up(user, 5 * USD)
    posted = Transaction.objects.create(kind=TransactionKind.USAGE, idempotency_key="raw")
    with pytest.raises(IntegrityError, match="does not balance"), transaction.atomic():
        Entry.objects.create(transaction=posted, account=wallet_for(user), amount=1)
    assert ledger_check() == [LedgerMismatch("transaction_legs", posted.pk, 2, 0)]


def test_postgres_refuses_legs_added_to_a_posted_transaction(user):
    if connection.vendor != "postgresql":
        pytest.skip("the zero-sum trigger is Postgres-only")
    posted, _ = top_up(user, 5 * USD)
    revenue = platform_account(AccountKind.PLATFORM_REVENUE)
    with pytest.raises(IntegrityError, match="already has entries"), transaction.atomic():
        with connection.cursor() as cursor:  # balanced, but the transaction was closed
            cursor.execute(
                "INSERT INTO billing_entry (transaction_id, account_id, amount) "
                "VALUES (%s, %s, -700), (%s, %s, 700)",
                [posted.pk, wallet_for(user).pk, posted.pk, revenue.pk],
            )
    assert wallet_for(user).balance == 5 * USD and ledger_check() == []


def test_the_ledger_triggers_are_installed():
    """A later migration that rebuilds a ledger table (SQLite does for most column changes)
    drops its triggers silently: this says so."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgrelid IN "
                "('billing_entry'::regclass, 'billing_transaction'::regclass, "
                "'billing_ledgeraccount'::regclass)"
            )
            wanted = {
                "billing_entry_append_only",
                "billing_transaction_append_only",
                "billing_entry_move_balances",
                "billing_guard_balance",
                "billing_entries_zero_sum",
            }
        else:
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            wanted = set(SQLITE_LEDGER_TRIGGERS)
        assert wanted <= {name for (name,) in cursor.fetchall()}
