"""Money over time for charts: the sum of a ledger account's entries of one transaction kind
per day, week or month (UTC), with empty buckets filled. The customer dashboard charts a
wallet's usage with it; a provider's earnings chart is the same call on their payable."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from django.db.models import QuerySet, Sum
from django.db.models.functions import TruncDay, TruncMonth, TruncWeek

from apps.billing.models import Entry, LedgerAccount
from apps.core.money import micros_to_usd

Period = Literal["day", "week", "month"]
PERIODS: tuple[Period, ...] = ("day", "week", "month")
# How many buckets a chart shows: this month by day, the last 12 weeks, the last 12 months.
WEEKS = 12
MONTHS = 12
_TRUNC = {"day": TruncDay, "week": TruncWeek, "month": TruncMonth}


@dataclass(frozen=True)
class Bucket:
    start: datetime
    micros: int

    def label(self, period: Period) -> str:
        if period == "month":
            return f"{self.start:%Y-%m}"
        return f"{self.start:%Y-%m-%d}"

    def short(self, period: Period) -> str:
        if period == "day":
            return str(self.start.day)
        if period == "week":
            return f"{self.start:%d %b}"
        return f"{self.start:%b}"


def parse_period(value: str | None) -> Period:
    """A period from a query string; anything else is "day"."""
    for period in PERIODS:
        if value == period:
            return period
    return "day"


def _month_back(start: datetime, months: int) -> datetime:
    index = start.year * 12 + start.month - 1 - months
    return start.replace(year=index // 12, month=index % 12 + 1)


def bucket_starts(period: Period, *, now: datetime) -> list[datetime]:
    """The buckets' starts, oldest first, the last one holding `now`."""
    now = now.astimezone(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return [midnight.replace(day=d) for d in range(1, now.day + 1)]
    if period == "week":
        monday = midnight - timedelta(days=midnight.weekday())
        return [monday - timedelta(weeks=WEEKS - 1 - i) for i in range(WEEKS)]
    first = midnight.replace(day=1)
    return [_month_back(first, MONTHS - 1 - i) for i in range(MONTHS)]


def entry_series(
    *,
    accounts: QuerySet[LedgerAccount],
    kind: str,
    period: Period,
    now: datetime,
    negate: bool = False,
) -> list[Bucket]:
    """Per bucket, the sum of the accounts' entries of transactions of `kind` (negated for
    money that leaves the account, e.g. a wallet's usage). One grouped query."""
    starts = bucket_starts(period, now=now)
    rows = (
        Entry.objects.filter(
            account__in=accounts,
            transaction__kind=kind,
            transaction__created_at__gte=starts[0],
            transaction__created_at__lte=now,
        )
        .annotate(bucket=_TRUNC[period]("transaction__created_at", tzinfo=UTC))
        .values("bucket")
        .annotate(total=Sum("amount"))
    )
    totals = {row["bucket"]: row["total"] for row in rows}
    sign = -1 if negate else 1
    return [Bucket(start, sign * totals.get(start, 0)) for start in starts]


def chart_points(buckets: list[Bucket], period: Period) -> list[dict[str, str]]:
    """What portal.js's bar chart reads (values as decimal strings of dollars)."""
    return [
        {
            "label": b.label(period),
            "short": b.short(period),
            "value": micros_to_usd(b.micros, places=6),
        }
        for b in buckets
    ]
