"""The customer dashboard: balance, active pods and deployments, usage charges. It composes
billing, pods and catalog, so it lives above them (apps.portal). Views parse, call selectors,
and render."""

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from apps.billing.models import AccountKind, LedgerAccount, TransactionKind
from apps.billing.selectors import wallet_balance
from apps.billing.series import PERIODS, chart_points, entry_series, parse_period
from apps.catalog.models import Deployment
from apps.core.money import micros_to_usd
from apps.pods.models import PodStatus
from apps.pods.selectors import user_pods


def _spend_usd(micros: int) -> str:
    """Cents, or tenths of a cent while the total is under a dollar (a few minutes of a
    cheap pod would otherwise read $0.00)."""
    return micros_to_usd(micros, places=4 if 0 < micros < 1_000_000 else 2)


SPEND_TITLES = {
    "day": "this month, by day",
    "week": "the last 12 weeks",
    "month": "the last 12 months",
}


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    """Balance, active pods, and usage charges as a chart (this month by day, or by week or
    month with ?period=)."""
    user: Any = request.user
    period = parse_period(request.GET.get("period"))
    now = timezone.now()
    wallets = LedgerAccount.objects.filter(kind=AccountKind.USER_WALLET, user=user)
    buckets = entry_series(
        accounts=wallets, kind=TransactionKind.USAGE, period=period, now=now, negate=True
    )
    pods = list(user_pods(user, active_only=True)[:20])
    balance = wallet_balance(user)
    burn = sum(p.hourly_rate for p in pods if p.status == PodStatus.RUNNING)
    this_month = (
        buckets
        if period == "day"
        else entry_series(
            accounts=wallets, kind=TransactionKind.USAGE, period="day", now=now, negate=True
        )
    )
    context = {
        "balance_usd": micros_to_usd(balance),
        # Whole hours the balance lasts at the current burn (None: nothing is running).
        "hours_left": max(balance, 0) // burn if burn else None,
        "month_spent_usd": _spend_usd(sum(b.micros for b in this_month)),
        "month_label": f"{now:%B %Y}",
        "period": period,
        "periods": [(p, p.capitalize() + "s") for p in PERIODS],
        "spend_title": SPEND_TITLES[period],
        "spend_points": chart_points(buckets, period),
        "pods": pods,
        "deployments": list(Deployment.objects.for_user(user).live().order_by("-created_at")[:10]),
        "burn_usd": micros_to_usd(burn),
    }
    return render(request, "portal/dashboard.html", context)
