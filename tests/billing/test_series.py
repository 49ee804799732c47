"""Money over time for charts: buckets by day (this month), week and month, filled with zeros,
each entry in the bucket of its transaction's UTC time."""

import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apps.billing.models import AccountKind, LedgerAccount, TransactionKind
from apps.billing.series import bucket_starts, entry_series, parse_period
from apps.billing.services import ledger_post, platform_account, wallet_for

NOW = datetime(2026, 3, 18, 15, 30, tzinfo=UTC)  # a Wednesday


def charge(user, micros, at):
    posted, _ = ledger_post(
        kind=TransactionKind.USAGE,
        idempotency_key=f"t:{uuid.uuid4()}",
        memo="usage",
        lines=[
            (wallet_for(user), -micros),
            (platform_account(AccountKind.PLATFORM_REVENUE), micros),
        ],
        created_at=at,
    )
    assert posted.created_at == at


def test_bucket_starts():
    days = bucket_starts("day", now=NOW)
    assert days[0] == datetime(2026, 3, 1, tzinfo=UTC) and days[-1] == datetime(
        2026, 3, 18, tzinfo=UTC
    )
    weeks = bucket_starts("week", now=NOW)
    assert len(weeks) == 12 and weeks[-1] == datetime(2026, 3, 16, tzinfo=UTC)  # Monday
    months = bucket_starts("month", now=NOW)
    assert months[0] == datetime(2025, 4, 1, tzinfo=UTC) and months[-1] == datetime(
        2026, 3, 1, tzinfo=UTC
    )


@given(st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2099, 12, 31)))
def test_buckets_are_ordered_and_the_last_holds_now(naive):
    now = naive.replace(tzinfo=UTC)
    for period in ("day", "week", "month"):
        starts = bucket_starts(period, now=now)
        assert starts == sorted(set(starts))
        assert starts[-1] <= now


@pytest.mark.django_db
def test_entry_series_sums_by_bucket_and_fills_gaps(user, other_user):
    charge(user, 1_000, datetime(2026, 3, 2, 23, 59, tzinfo=UTC))
    charge(user, 2_000, datetime(2026, 3, 2, 0, 0, tzinfo=UTC))
    charge(user, 500, datetime(2026, 3, 18, 1, 0, tzinfo=UTC))
    charge(user, 7_000, datetime(2026, 1, 20, tzinfo=UTC))
    charge(other_user, 9_999, datetime(2026, 3, 2, tzinfo=UTC))
    wallets = LedgerAccount.objects.filter(kind=AccountKind.USER_WALLET, user=user)

    days = entry_series(
        accounts=wallets, kind=TransactionKind.USAGE, period="day", now=NOW, negate=True
    )
    months = entry_series(
        accounts=wallets, kind=TransactionKind.USAGE, period="month", now=NOW, negate=True
    )
    topups = entry_series(accounts=wallets, kind=TransactionKind.TOPUP, period="week", now=NOW)

    assert [b.micros for b in days] == [0, 3_000] + [0] * 15 + [500]
    assert [b.micros for b in months][-3:] == [7_000, 0, 3_500]
    assert all(b.micros == 0 for b in topups)


def test_parse_period():
    assert [parse_period(v) for v in ("week", "month", "day", None, "year")] == [
        "week",
        "month",
        "day",
        "day",
        "day",
    ]
