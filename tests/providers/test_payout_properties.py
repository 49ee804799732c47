"""A stateful property test of payouts: random earnings, requests (some over the available
balance, under the minimum, or retried with an Idempotency-Key, same or different body),
approvals, rejections, sends, payments by tx hash and failures, for two providers. After every
step the services agree with a plain model of the money:

- available = earned − pending − paid (no hold here), never negative, per provider;
- the provider's payable balance is exactly that; payouts clearing holds what is pending;
  payouts sent holds what was paid; every transaction sums to zero and every cached balance
  is the sum of its entries (ledger_check);
- a refused request changes nothing; a retried key returns the first payout, the same key
  with another (valid) request is a conflict; an invalid request is refused before its key
  is looked at."""

import uuid

import pytest
from django.db import transaction
from django.test import TestCase
from hypothesis import HealthCheck, event
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from apps.accounts.models import User
from apps.billing.models import AccountKind, LedgerAccount
from apps.billing.services import ledger_check
from apps.providers.lifecycle import IllegalPayoutTransitionError
from apps.providers.models import Payout, PayoutStatus
from apps.providers.selectors import provider_balances
from apps.providers.services import (
    IdempotencyConflictError,
    InsufficientAvailableError,
    PayoutError,
    payout_approve,
    payout_fail,
    payout_mark_paid,
    payout_reject,
    payout_request,
    payout_send,
    provider_register,
)
from tests.factories import CRYPTO, earn

MINIMUM = 10_000_000
CENT = 10_000


def balance(kind, **filters) -> int:
    row = LedgerAccount.objects.filter(kind=kind, **filters).first()
    return row.balance if row else 0


class PayoutMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        self.operator = User.objects.create_user(email=f"op-{uuid.uuid4().hex[:6]}@x.com")
        self.operator.is_staff = True
        self.operator.save(update_fields=["is_staff"])
        self.providers = []
        for i in range(2):
            owner = User.objects.create_user(email=f"p{i}-{uuid.uuid4().hex[:6]}@x.com")
            self.providers.append(
                provider_register(
                    owner=owner, display_name=f"p{i}", payout_method="CRYPTO", payout_details=CRYPTO
                ).provider
            )
        self.earned = [0, 0]
        self.keys: dict[tuple[int, str], tuple[uuid.UUID, int]] = {}

    def teardown(self) -> None:
        transaction.set_rollback(True)
        self._atomic.__exit__(None, None, None)

    def _model(self, i: int) -> tuple[int, int]:
        payouts = Payout.objects.filter(provider=self.providers[i])
        pending = sum(
            p.amount
            for p in payouts
            if p.status
            in (
                PayoutStatus.REQUESTED,
                PayoutStatus.APPROVED,
                PayoutStatus.PROCESSING,
                PayoutStatus.SENT,
            )
        )
        paid = sum(p.amount for p in payouts if p.status == PayoutStatus.PAID)
        return pending, paid

    def _pick(self, i: int, status: str, n: int) -> Payout | None:
        found = list(
            Payout.objects.filter(provider=self.providers[i], status=status).order_by("created_at")
        )
        return found[n % len(found)] if found else None

    @initialize(first=st.integers(1_000, 10_000), second=st.integers(0, 10_000))
    def first_earnings(self, first, second):
        self.earn(0, first)
        if second:
            self.earn(1, second)

    @rule(i=st.integers(0, 1), cents=st.integers(1, 10_000))
    def earn(self, i, cents):
        earn(self.providers[i], cents * CENT)
        self.earned[i] += cents * CENT

    @rule(
        i=st.integers(0, 1),
        cents=st.integers(1, 999) | st.integers(1_000, 4_000) | st.integers(4_000, 20_000),
        key=st.sampled_from(["", "", "k1", "k2"]),
    )
    def request(self, i, cents, key):
        amount = cents * CENT
        pending, paid = self._model(i)
        available = self.earned[i] - pending - paid
        count = Payout.objects.count()
        first = self.keys.get((i, key)) if key else None
        try:
            requested = payout_request(
                provider=self.providers[i],
                amount=amount,
                method="CRYPTO",
                details=CRYPTO,
                idempotency_key=key,
            )
        except IdempotencyConflictError:
            assert first is not None and first[1] != amount
            event("key reused with another amount: 409")
            assert Payout.objects.count() == count
            return
        except InsufficientAvailableError:
            assert first is None and amount > available
            event("more than available: refused")
            assert Payout.objects.count() == count
            return
        except PayoutError:
            # A malformed request is a 400 before its key is looked at.
            assert amount < MINIMUM
            event("under the minimum: refused")
            assert Payout.objects.count() == count
            return
        if first is not None:
            assert (requested.created, requested.payout.pk) == (False, first[0])
            event("key retried: same payout")
            return
        assert requested.created and MINIMUM <= amount <= available
        event("requested")
        if key:
            self.keys[(i, key)] = (requested.payout.pk, amount)

    @rule(i=st.integers(0, 1), n=st.integers(0, 5))
    def approve(self, i, n):
        payout = self._pick(i, PayoutStatus.REQUESTED, n)
        if payout is not None:
            with TestCase.captureOnCommitCallbacks(execute=False):
                payout_approve(payout=payout, operator=self.operator)

    @rule(i=st.integers(0, 1), n=st.integers(0, 5))
    def reject(self, i, n):
        payout = self._pick(i, PayoutStatus.REQUESTED, n)
        if payout is not None:
            payout_reject(payout=payout, operator=self.operator, reason="no")
            event("rejected")

    @rule(i=st.integers(0, 1), n=st.integers(0, 5))
    def send(self, i, n):
        payout = self._pick(i, PayoutStatus.APPROVED, n)
        if payout is not None:
            assert payout_send(payout_id=payout.pk).status == PayoutStatus.SENT

    @rule(i=st.integers(0, 1), n=st.integers(0, 5))
    def pay(self, i, n):
        payout = self._pick(i, PayoutStatus.SENT, n)
        if payout is not None:
            payout_mark_paid(payout=payout, reference="0x" + "ef" * 32, operator=self.operator)
            event("paid")

    @rule(i=st.integers(0, 1), n=st.integers(0, 5), status=st.sampled_from(["APPROVED", "SENT"]))
    def fail(self, i, n, status):
        payout = self._pick(i, status, n)
        if payout is not None:
            payout_fail(payout=payout, reason="bounced", operator=self.operator)
            event("failed")

    @rule(i=st.integers(0, 1), n=st.integers(0, 5))
    def settle_twice(self, i, n):
        """An operator acting on a payout already settled is refused and changes nothing."""
        payout = self._pick(i, PayoutStatus.PAID, n) or self._pick(i, PayoutStatus.FAILED, n)
        if payout is not None:
            with pytest.raises(IllegalPayoutTransitionError):
                payout_fail(payout=payout, reason="again", operator=self.operator)

    @invariant()
    def money_adds_up(self):
        total_pending = total_paid = 0
        for i, provider in enumerate(self.providers):
            pending, paid = self._model(i)
            total_pending += pending
            total_paid += paid
            balances = provider_balances(provider)
            assert balances.earned == self.earned[i]
            assert (balances.pending, balances.paid) == (pending, paid)
            assert balances.available == self.earned[i] - pending - paid >= 0
            assert balance(AccountKind.PROVIDER_PAYABLE, provider_id=provider.pk) == (
                self.earned[i] - pending - paid
            )
        assert balance(AccountKind.PAYOUTS_CLEARING) == total_pending
        assert balance(AccountKind.PAYOUTS_SENT) == total_paid
        assert ledger_check() == []


@pytest.mark.django_db
def test_payout_money_adds_up_under_random_operations(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.PAYOUT_HOLD_SECONDS = 0
    settings.PAYOUT_MINIMUM_MICROS = MINIMUM
    run_state_machine_as_test(
        PayoutMachine,
        settings=hypothesis_settings(
            max_examples=20,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
