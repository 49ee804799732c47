"""Reads of the providers app: balances, the dashboard, the provider's nodes. Everything is
scoped to one provider, so another provider's data is unreachable by construction."""

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from django.conf import settings
from django.db.models import Avg, Count, Q, QuerySet, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.module_loading import import_string

from apps.billing.models import AccountKind, Entry, LedgerAccount, TransactionKind
from apps.nodes.models import Node, NodeEvent, NodeStatus
from apps.providers.models import PENDING_STATUSES, Payout, PayoutStatus, Provider

UP_STATUSES = (NodeStatus.ONLINE, NodeStatus.DRAINING)


@dataclass(frozen=True)
class Balances:
    """A provider's money, micro-dollars. `payable` is the ledger balance (earned − pending −
    paid, failed payouts having come back); `held` the earnings of the hold period;
    `available` = earned − held − pending − paid, never below 0."""

    earned: int
    held: int
    pending: int
    paid: int
    payable: int

    @property
    def available(self) -> int:
        return max(0, self.payable - self.held)


def payable_balance(provider: Provider) -> int:
    balance = (
        LedgerAccount.objects.filter(kind=AccountKind.PROVIDER_PAYABLE, provider_id=provider.pk)
        .values_list("balance", flat=True)
        .first()
    )
    return balance or 0


def provider_balances(
    provider: Provider, *, now: datetime | None = None, payable: int | None = None
) -> Balances:
    """The provider's balances from the ledger (its payable account's entries) and its payouts.
    Pass `payable` when the caller has read it under the account's lock."""
    now = now or timezone.now()
    hold_from = now - timedelta(seconds=int(settings.PAYOUT_HOLD_SECONDS))
    usage = Entry.objects.filter(
        account__kind=AccountKind.PROVIDER_PAYABLE,
        account__provider_id=provider.pk,
        transaction__kind=TransactionKind.USAGE,
    ).aggregate(
        earned=Coalesce(Sum("amount"), 0),
        held=Coalesce(Sum("amount", filter=Q(transaction__created_at__gt=hold_from)), 0),
    )
    payouts = Payout.objects.filter(provider=provider).aggregate(
        pending=Coalesce(Sum("amount", filter=Q(status__in=PENDING_STATUSES)), 0),
        paid=Coalesce(Sum("amount", filter=Q(status=PayoutStatus.PAID)), 0),
    )
    return Balances(
        earned=usage["earned"],
        held=usage["held"],
        pending=payouts["pending"],
        paid=payouts["paid"],
        payable=payable_balance(provider) if payable is None else payable,
    )


def provider_nodes(provider: Provider) -> QuerySet[Node]:
    """The provider's nodes, each with its GPUs and its registrations (every use of a `pk_…`
    key shows: one the provider did not make is a leaked key)."""
    return (
        Node.objects.filter(provider_id=provider.pk)
        .prefetch_related("gpus", "registrations")
        .annotate(
            gpu_utilization=Avg("gpus__utilization_pct"),
            gpu_total=Count("gpus", distinct=True),
            gpus_rented=Count("gpus", filter=Q(gpus__allocation__isnull=False), distinct=True),
        )
        .order_by("hostname", "registered_at")
    )


def _uptime_percent(
    node: Node, events: list[NodeEvent], start: datetime, now: datetime
) -> float | None:
    """Share of [start, now) the node was ONLINE or DRAINING, from its status events."""
    start = max(start, node.registered_at)
    if now <= start:
        return None
    before = [e for e in events if e.at <= start]
    status = before[-1].to_status if before else NodeStatus.REGISTERING
    cursor, up = start, 0.0
    for event in (e for e in events if start < e.at <= now):
        if status in UP_STATUSES:
            up += (event.at - cursor).total_seconds()
        cursor, status = event.at, event.to_status
    if status in UP_STATUSES:
        up += (now - cursor).total_seconds()
    return round(100 * up / (now - start).total_seconds(), 2)


NodeUsage = Callable[[list[Any], datetime], dict[Any, dict[str, int]]]


def _node_usage_selector() -> NodeUsage:
    """Usage per node (`{"earned", "gpu_seconds"}` since a time), read by the app that bills
    it (pods, above providers): settings.PROVIDER_NODE_USAGE_SELECTOR names the function."""
    return cast(NodeUsage, import_string(settings.PROVIDER_NODE_USAGE_SELECTOR))


def provider_dashboard(provider: Provider, *, now: datetime | None = None) -> dict[str, Any]:
    """Earnings today (UTC) / 7 d / 30 d from the ledger, per-node earnings (30 d), GPU
    utilisation and uptime (30 d), and the payout balances."""
    now = now or timezone.now()
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    week, month = now - timedelta(days=7), now - timedelta(days=30)
    earnings = Entry.objects.filter(
        account__kind=AccountKind.PROVIDER_PAYABLE,
        account__provider_id=provider.pk,
        transaction__kind=TransactionKind.USAGE,
    ).aggregate(
        today=Coalesce(Sum("amount", filter=Q(transaction__created_at__gte=today)), 0),
        week=Coalesce(Sum("amount", filter=Q(transaction__created_at__gte=week)), 0),
        month=Coalesce(Sum("amount", filter=Q(transaction__created_at__gte=month)), 0),
    )
    nodes: list[Any] = list(provider_nodes(provider))  # annotated Nodes
    node_ids = [n.pk for n in nodes]
    per_node: dict[Any, dict[str, int]] = defaultdict(lambda: {"earned": 0, "gpu_seconds": 0})
    per_node.update(_node_usage_selector()(node_ids, month))
    events_by_node: dict[Any, list[NodeEvent]] = defaultdict(list)
    for event in NodeEvent.objects.filter(node_id__in=node_ids).order_by("at", "id"):
        events_by_node[event.node_id].append(event)
    balances = provider_balances(provider, now=now)
    return {
        "earnings": {
            "today": earnings["today"],
            "last_7_days": earnings["week"],
            "last_30_days": earnings["month"],
            "all_time": balances.earned,
        },
        "balances": {
            "available": balances.available,
            "held": balances.held,
            "pending": balances.pending,
            "paid": balances.paid,
            "payable": balances.payable,
        },
        "nodes": [
            {
                "id": node.pk,
                "hostname": node.hostname,
                "status": node.status,
                "gpus": node.gpu_total,
                "gpus_rented": node.gpus_rented,
                "gpu_utilization_pct": (
                    None if node.gpu_utilization is None else round(node.gpu_utilization, 1)
                ),
                "uptime_30d_pct": _uptime_percent(node, events_by_node[node.pk], month, now),
                "earned_30d": per_node[node.pk]["earned"],
                "billed_seconds_30d": per_node[node.pk]["gpu_seconds"],
                "price_per_gpu_hour": node.price_per_gpu_hour,
            }
            for node in nodes
        ],
    }


def payouts_clearing_difference() -> int:
    """Payouts clearing's ledger balance less the payouts still pending: 0 when every payout
    that left a payable is either still pending or settled (paid or returned). Anything else
    is a missing or wrong posting (the Stripe-ledger "clearing returns to zero" check)."""
    clearing = (
        LedgerAccount.objects.filter(kind=AccountKind.PAYOUTS_CLEARING)
        .values_list("balance", flat=True)
        .first()
    ) or 0
    pending = Payout.objects.filter(status__in=PENDING_STATUSES).aggregate(
        s=Coalesce(Sum("amount"), 0)
    )["s"]
    return clearing - pending
