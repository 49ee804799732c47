"""`{% back_office_summary as summary %}`: the figures on the admin's front page (fleet, pods,
money this month, and revenue by day for the chart). Reads only, a handful of grouped queries.
It lives with pods, which may read nodes and billing; billing reads no feature app."""

from typing import Any

from django import template
from django.db.models import Count, Sum
from django.utils import timezone

from apps.billing.models import AccountKind, LedgerAccount, TransactionKind
from apps.billing.series import chart_points, entry_series
from apps.core.money import micros_to_usd
from apps.nodes.models import Node, NodeStatus
from apps.pods.models import Pod, PodStatus

register = template.Library()


@register.simple_tag
def back_office_summary() -> dict[str, Any]:
    now = timezone.now()
    nodes = dict(Node.objects.values_list("status").annotate(n=Count("id")))
    pods = dict(
        Pod.objects.filter(status__in=[PodStatus.PENDING, PodStatus.RUNNING])
        .values_list("status")
        .annotate(n=Count("id"))
    )
    balances = dict(
        LedgerAccount.objects.filter(
            kind__in=[AccountKind.USER_WALLET, AccountKind.PROVIDER_PAYABLE]
        )
        .values_list("kind")
        .annotate(total=Sum("balance"))
    )
    revenue = entry_series(
        accounts=LedgerAccount.objects.filter(kind=AccountKind.PLATFORM_REVENUE),
        kind=TransactionKind.USAGE,
        period="day",
        now=now,
    )
    topups = entry_series(
        accounts=LedgerAccount.objects.filter(kind=AccountKind.USER_WALLET),
        kind=TransactionKind.TOPUP,
        period="day",
        now=now,
    )
    return {
        "nodes_online": nodes.get(NodeStatus.ONLINE, 0),
        "nodes_draining": nodes.get(NodeStatus.DRAINING, 0),
        "nodes_offline": nodes.get(NodeStatus.OFFLINE, 0),
        "pods_running": pods.get(PodStatus.RUNNING, 0),
        "pods_pending": pods.get(PodStatus.PENDING, 0),
        "revenue_month_usd": micros_to_usd(sum(b.micros for b in revenue)),
        "topups_month_usd": micros_to_usd(sum(b.micros for b in topups)),
        "wallets_usd": micros_to_usd(balances.get(AccountKind.USER_WALLET) or 0),
        "payable_usd": micros_to_usd(balances.get(AccountKind.PROVIDER_PAYABLE) or 0),
        "revenue_points": chart_points(revenue, "day"),
        "month_label": f"{now:%B %Y}",
    }
