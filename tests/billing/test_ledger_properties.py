"""A stateful property test of the ledger: random interleavings of Stripe webhook deliveries
(fresh, duplicated, replayed, forged), operator credits and refunds, usage debits guarded by
the floor, and batches of usage postings split three ways (wallet → provider payable +
revenue) through `ledger_post_many`, the metering tick's path, with idempotency keys drawn
from one small pool so retries and collisions across single and batch postings are common.
A multi-leg single posting (a provider's payable paid out through the payouts clearing account)
shares the same key pool. After every step the money invariants hold: every transaction sums to
zero, every cached balance is its entries, all balances sum to zero; checked once through
`ledger_check` and once more here, from the raw entries, so a bug in the checker cannot hide
one in the writer.

The suite runs on Postgres (DATABASE_URL); `test_the_same_machine_holds_on_sqlite` runs this
machine again in a pytest subprocess without DATABASE_URL, on the default settings' SQLite."""

import json
import os
import subprocess
import sys
import uuid
from collections import defaultdict
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.test import Client, override_settings
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from apps.accounts.models import User
from apps.billing.models import AccountKind, Entry, LedgerAccount, TransactionKind
from apps.billing.services import (
    InsufficientFundsError,
    LedgerError,
    Posting,
    ledger_check,
    ledger_post,
    ledger_post_many,
    platform_account,
    provider_payable,
    wallet_credit,
    wallet_for,
    wallet_refund,
)
from tests.factories import WEBHOOK_SECRET, deliver, paid_session, stale
from tests.fakes.stripe_server import checkout_event, sign_payload

USERS = 2
amounts = st.integers(min_value=1, max_value=40_000_000)
keys = st.integers(min_value=0, max_value=7)


class LedgerMachine(RuleBasedStateMachine):
    sessions = Bundle("sessions")

    def __init__(self) -> None:
        super().__init__()
        # Each example runs in a savepoint that teardown rolls back: examples never mix.
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        self._overridden = None
        self.client = Client()
        self.operator = User.objects.create_user(email="ops@example.com", is_staff=True)
        self.users = [User.objects.create_user(email=f"u{i}@example.com") for i in range(USERS)]
        self.expected = [0] * USERS
        self.used_keys: set[str] = set()
        self.credited_sessions: set[str] = set()
        self.events: dict[str, list[dict]] = {}
        self.overdraft = 0
        self.payable = provider_payable(uuid.uuid4())

    def teardown(self) -> None:
        if self._overridden is not None:
            self._overridden.disable()
        transaction.set_rollback(True)
        self._atomic.__exit__(None, None, None)

    @initialize(overdraft=st.sampled_from([0, 0, 5_000_000]))
    def choose_overdraft(self, overdraft: int) -> None:
        self.overdraft = overdraft
        self._overridden = override_settings(BILLING_OVERDRAFT_MICROS=overdraft)
        self._overridden.enable()

    # -- the model's view of a posting -------------------------------------------------------

    def _post_through_key(self, who: int, delta: int, key: str, act) -> None:
        """Apply `act()` (a posting that moves user `who` by `delta` under `key`) and the same
        to the model: a used key changes nothing; a guarded debit past the floor is refused."""
        before = self.expected[who]
        if key in self.used_keys:
            _, created = act()
            assert not created
            return
        if delta < 0 and before + delta < -self.overdraft:
            with pytest.raises(InsufficientFundsError):
                act()
            return  # refused: the key stays unused, as nothing was stored
        _, created = act()
        assert created
        self.used_keys.add(key)
        self.expected[who] += delta

    # -- rules ------------------------------------------------------------------------------

    @rule(target=sessions, who=st.integers(0, USERS - 1), cents=st.integers(500, 1_000_000))
    def customer_pays(self, who: int, cents: int) -> dict:
        return paid_session(user=self.users[who], cents=cents)

    @rule(session=sessions, replay=st.booleans())
    def stripe_delivers(self, session: dict, replay: bool) -> None:
        sent = self.events.setdefault(session["id"], [])
        event = sent[0] if replay and sent else checkout_event(session)
        sent.append(event)
        response = deliver(self.client, event)
        assert response.status_code == 200, response.content
        first_time = session["id"] not in self.credited_sessions
        assert response.json()["credited"] is first_time
        if first_time:
            self.credited_sessions.add(session["id"])
            who = next(
                i for i, u in enumerate(self.users) if str(u.pk) == session["metadata"]["user_id"]
            )
            self.expected[who] += session["amount_total"] * 10_000

    @rule(session=sessions, how=st.sampled_from(["tampered", "stale", "wrong_secret"]))
    def forger_delivers(self, session: dict, how: str) -> None:
        event = checkout_event(session)
        raw = json.dumps(event).encode()
        if how == "tampered":
            header = sign_payload(raw, WEBHOOK_SECRET)
            raw = raw.replace(b'"amount_total": ', b'"amount_total": 9')
        elif how == "stale":
            header = sign_payload(raw, WEBHOOK_SECRET, stale(3600))
        else:
            header = sign_payload(raw, "whsec_forged")
        response = deliver(self.client, None, body=raw, signature=header)
        assert response.status_code == 400

    @rule(who=st.integers(0, USERS - 1), amount=amounts, k=keys)
    def operator_credits(self, who: int, amount: int, k: int) -> None:
        key = f"k{k}"
        self._post_through_key(
            who,
            amount,
            key,
            lambda: wallet_credit(
                user=self.users[who],
                amount=amount,
                reason="r",
                operator=self.operator,
                idempotency_key=key,
            ),
        )

    @rule(who=st.integers(0, USERS - 1), amount=amounts, k=keys)
    def operator_refunds(self, who: int, amount: int, k: int) -> None:
        key = f"k{k}"
        self._post_through_key(
            who,
            -amount,
            key,
            lambda: wallet_refund(
                user=self.users[who],
                amount=amount,
                reason="r",
                operator=self.operator,
                idempotency_key=key,
            ),
        )

    @rule(who=st.integers(0, USERS - 1), amount=amounts, k=keys)
    def usage_is_billed(self, who: int, amount: int, k: int) -> None:
        key = f"k{k}"
        self._post_through_key(
            who,
            -amount,
            key,
            lambda: ledger_post(
                kind=TransactionKind.USAGE,
                idempotency_key=key,
                memo="usage",
                lines=[
                    (wallet_for(self.users[who]), -amount),
                    (platform_account(AccountKind.PLATFORM_REVENUE), amount),
                ],
                floor=True,
            ),
        )

    @rule(
        items=st.lists(
            st.tuples(st.integers(0, USERS - 1), amounts, st.integers(0, 100), keys),
            min_size=1,
            max_size=6,
        ),
        floor=st.booleans(),
    )
    def usage_batch_is_posted(self, items: list[tuple[int, int, int, int]], floor: bool) -> None:
        """A batch as the metering tick posts it: each item charges a wallet and splits the
        charge between a provider's payable (`percent`) and revenue."""
        revenue = platform_account(AccountKind.PLATFORM_REVENUE)
        if not floor:  # unguarded, as the tick posts: it caps each charge at what is left
            left = [balance + self.overdraft for balance in self.expected]
            capped = []
            for who, amount, percent, k in items:
                if f"k{k}" not in self.used_keys:
                    amount = min(amount, left[who])
                    left[who] -= amount
                if amount > 0:
                    capped.append((who, amount, percent, k))
            items = capped
            if not items:
                return
        postings = []
        for who, amount, percent, k in items:
            share = amount * percent // 100
            lines = [(wallet_for(self.users[who]).pk, -amount)]
            if share:
                lines.append((self.payable.pk, share))
            if amount - share:
                lines.append((revenue, amount - share))
            postings.append(
                Posting(kind=TransactionKind.USAGE, idempotency_key=f"k{k}", memo="u", lines=lines)
            )
        keys_in_batch = [p.idempotency_key for p in postings]
        if len(set(keys_in_batch)) != len(keys_in_batch):
            with pytest.raises(LedgerError, match="share an idempotency key"):
                ledger_post_many(postings=postings, floor=floor)
            return
        after = list(self.expected)
        for (who, amount, _, _), key in zip(items, keys_in_batch, strict=True):
            if key not in self.used_keys:
                after[who] -= amount
        if floor and any(
            after[w] < self.expected[w] and after[w] < -self.overdraft for w in range(USERS)
        ):
            with pytest.raises(InsufficientFundsError):
                ledger_post_many(postings=postings, floor=floor)
            return  # the whole batch is refused: nothing written, no key used
        posted = ledger_post_many(postings=postings, floor=floor)
        assert [p.created for p in posted] == [k not in self.used_keys for k in keys_in_batch]
        self.used_keys.update(keys_in_batch)
        self.expected = after

    @rule(amount=amounts, k=keys)
    def provider_is_paid_out(self, amount: int, k: int) -> None:
        """A single posting of three legs on accounts no wallet rule touches: the payable is
        paid, part through the clearing account and the rest sent at once."""
        key = f"k{k}"
        sent = amount // 3
        lines = [(self.payable, -amount), (platform_account(AccountKind.PAYOUTS_CLEARING), amount)]
        if sent:
            lines += [
                (platform_account(AccountKind.PAYOUTS_CLEARING), -sent),
                (platform_account(AccountKind.PAYOUTS_SENT), sent),
            ]
        _, created = ledger_post(
            kind=TransactionKind.PAYOUT, idempotency_key=key, memo="payout", lines=lines
        )
        assert created is (key not in self.used_keys)
        self.used_keys.add(key)

    # -- invariants -------------------------------------------------------------------------

    @invariant()
    def every_transaction_balances_and_every_cache_matches_its_entries(self) -> None:
        assert ledger_check() == []

    @invariant()
    def wallets_hold_what_the_model_says_and_never_pass_the_floor(self) -> None:
        balances = dict(
            LedgerAccount.objects.filter(kind=AccountKind.USER_WALLET).values_list(
                "user_id", "balance"
            )
        )
        for who, user in enumerate(self.users):
            assert balances.get(user.pk, 0) == self.expected[who]
            assert self.expected[who] >= -self.overdraft

    @invariant()
    def all_balances_sum_to_zero(self) -> None:
        assert sum(LedgerAccount.objects.values_list("balance", flat=True)) == 0

    @invariant()
    def the_raw_entries_sum_to_zero_and_make_every_balance(self) -> None:
        """The same money invariants, counted here from every entry row (not by
        `ledger_check`, which is the code under test too)."""
        per_account: dict[int, int] = defaultdict(int)
        per_transaction: dict[int, int] = defaultdict(int)
        for account_id, transaction_id, amount in Entry.objects.values_list(
            "account_id", "transaction_id", "amount"
        ):
            per_account[account_id] += amount
            per_transaction[transaction_id] += amount
        assert sum(per_account.values()) == 0
        assert all(total == 0 for total in per_transaction.values())
        for pk, balance in LedgerAccount.objects.values_list("pk", "balance"):
            assert balance == per_account.get(pk, 0), f"account {pk}"


@pytest.mark.django_db
def test_ledger_invariants_hold_under_random_operations(settings):
    # Set by the SQLite run below, so that it cannot pass on another database unnoticed.
    expected = os.environ.get("LEDGER_MACHINE_VENDOR")
    assert expected in (None, connection.vendor), (expected, connection.vendor)
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    run_state_machine_as_test(
        LedgerMachine,
        settings=hypothesis_settings(max_examples=50, stateful_step_count=25, deadline=None),
    )


ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_the_same_machine_holds_on_sqlite(settings):
    """The machine above, again on SQLite: a pytest subprocess with DATABASE_URL unset (the
    default settings' SQLite; pytest-django gives it an in-memory test database). Postgres
    and SQLite lock and aggregate differently; the ledger must hold on both."""
    if settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        pytest.skip("this run is on SQLite already: the machine above is the SQLite run")
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["LEDGER_MACHINE_VENDOR"] = "sqlite"
    test = (
        f"{Path(__file__).relative_to(ROOT)}::test_ledger_invariants_hold_under_random_operations"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", test, "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "1 passed" in done.stdout, done.stdout[-2000:]
