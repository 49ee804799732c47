"""Many threads posting to one wallet at once on the real database: no lost update, the floor
holds, a key posts once, and opposite-direction transfers do not deadlock."""

import threading
import uuid
from collections.abc import Callable

import pytest
from django.db import connection, connections

from apps.billing.models import AccountKind, LedgerAccount, Transaction, TransactionKind
from apps.billing.services import (
    InsufficientFundsError,
    ledger_check,
    ledger_post,
    platform_account,
    wallet_for,
)

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 8
USD = 1_000_000


@pytest.fixture(autouse=True)
def _postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("row locks need a real multi-connection database")


def run_together(work: Callable[[int], None], threads: int = THREADS) -> list[BaseException]:
    """Run work(i) in `threads` threads released at the same moment; return their errors."""
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def runner(i: int) -> None:
        try:
            start.wait()
            work(i)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)
        finally:
            connections.close_all()

    pool = [threading.Thread(target=runner, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=60)
    return errors


def post(kind, lines, floor=False, key=None):
    return ledger_post(
        kind=kind, idempotency_key=key or f"test:{uuid.uuid4()}", memo="", lines=lines, floor=floor
    )


def balance(account):
    return LedgerAccount.objects.get(pk=account.pk).balance


def test_parallel_credits_and_debits_lose_no_update(user):
    wallet = wallet_for(user)
    clearing = platform_account(AccountKind.STRIPE_CLEARING)
    revenue = platform_account(AccountKind.PLATFORM_REVENUE)
    post(TransactionKind.TOPUP, [(clearing, -100 * USD), (wallet, 100 * USD)])

    def work(i: int) -> None:
        for _ in range(10):
            post(TransactionKind.TOPUP, [(clearing, -3 * USD), (wallet, 3 * USD)])
            post(TransactionKind.USAGE, [(wallet, -2 * USD), (revenue, 2 * USD)], floor=True)

    assert run_together(work) == []
    assert balance(wallet) == 100 * USD + THREADS * 10 * USD
    assert balance(revenue) == THREADS * 10 * 2 * USD
    assert ledger_check() == []


def test_parallel_debits_stop_exactly_at_the_floor(user):
    wallet = wallet_for(user)
    clearing = platform_account(AccountKind.STRIPE_CLEARING)
    revenue = platform_account(AccountKind.PLATFORM_REVENUE)
    post(TransactionKind.TOPUP, [(clearing, -50 * USD), (wallet, 50 * USD)])
    refused = []

    def work(i: int) -> None:
        for _ in range(10):  # 8 × 10 × $1 = $80 asked of $50
            try:
                post(TransactionKind.USAGE, [(wallet, -USD), (revenue, USD)], floor=True)
            except InsufficientFundsError:
                refused.append(1)

    assert run_together(work) == []
    assert balance(wallet) == 0
    assert len(refused) == THREADS * 10 - 50
    assert Transaction.objects.filter(kind=TransactionKind.USAGE).count() == 50
    assert ledger_check() == []


def test_one_key_posted_from_many_threads_posts_once(user):
    wallet = wallet_for(user)
    clearing = platform_account(AccountKind.STRIPE_CLEARING)
    created = []

    def work(i: int) -> None:
        _, was_created = post(
            TransactionKind.TOPUP, [(clearing, -USD), (wallet, USD)], key="stripe:event:evt_same"
        )
        created.append(was_created)

    assert run_together(work) == []
    assert sorted(created) == [False] * (THREADS - 1) + [True]
    assert balance(wallet) == USD


def test_transfers_in_opposite_directions_do_not_deadlock(user, other_user):
    a, b = wallet_for(user), wallet_for(other_user)
    clearing = platform_account(AccountKind.STRIPE_CLEARING)
    post(TransactionKind.TOPUP, [(clearing, -100 * USD), (a, 100 * USD)])
    post(TransactionKind.TOPUP, [(clearing, -100 * USD), (b, 100 * USD)])

    def work(i: int) -> None:
        for _ in range(10):
            # Lines listed source first: half the threads name a first, half b first.
            src, dst = (a, b) if i % 2 else (b, a)
            post(TransactionKind.ADJUSTMENT, [(src, -USD), (dst, USD)], floor=True)

    assert run_together(work) == []
    assert balance(a) == balance(b) == 100 * USD
    assert ledger_check() == []


def test_wallets_are_created_once_under_a_race(user):
    wallets: list[int] = []
    assert run_together(lambda i: wallets.append(wallet_for(user).pk)) == []
    assert len(set(wallets)) == 1
    assert LedgerAccount.objects.filter(kind=AccountKind.USER_WALLET, user=user).count() == 1
