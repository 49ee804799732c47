"""Per-interval billing of running pods (DESIGN.md §3).

Each tick charges every RUNNING or STOPPING pod for [billed_until, end), where end is the
earliest of now, its node's last heartbeat and the moment billing ended (a stop request).
Pods are processed in chunks; each chunk is ONE database transaction that locks its pods
(`FOR UPDATE SKIP LOCKED`: a pod being stopped right now is billed by the stop instead) and
writes, set-based, the usage records, the ledger transactions and entries, the wallet,
payable and revenue balances, and the pods' new `billed_until`. A tick killed halfway rolls
its chunk back; a tick run twice finds `billed_until` already advanced (and the unique
(pod, period_start) of UsageRecord as a backstop), so no interval is charged twice.

A wallet is never taken below the overdraft floor, nor a user's month past their spend cap:
the charge is capped at what is left, and that user's pods are stopped after the chunk
commits. The same pass warns at 80% of the cap and stops the newest pods of a user over their
maximum hourly burn (apps.billing.spend holds the rules; pod creation reads the same ones)."""

import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.accounts.models import User
from apps.billing.locks import lock_accounts
from apps.billing.models import (
    AccountKind,
    Entry,
    LedgerAccount,
    SpendLimit,
    Transaction,
    TransactionKind,
)
from apps.billing.services import platform_account, provider_payable, wallet_for
from apps.billing.services.ledger import wallet_floor
from apps.billing.spend import WARN_AT_PERCENT, spend_states
from apps.core.bulk_sql import update_from_values
from apps.core.money import micros_to_usd, prorate
from apps.nodes.models import Node
from apps.pods.models import ON_NODE_STATUSES, Pod, PodStatus, UsageRecord

logger = logging.getLogger(__name__)

BILLABLE = (PodStatus.RUNNING, PodStatus.STOPPING)


@dataclass
class MeterResult:
    pods: int = 0
    charged: int = 0  # micro-dollars
    records: int = 0
    # owner → why their pods must stop (balance at the floor, or monthly cap reached)
    stops: dict[uuid.UUID, str] = field(default_factory=dict)
    cap_warnings: list[uuid.UUID] = field(default_factory=list)

    def add(self, other: "MeterResult") -> None:
        self.pods += other.pods
        self.charged += other.charged
        self.records += other.records
        self.stops.update(other.stops)
        self.cap_warnings += other.cap_warnings


def provider_fee_percent(provider_id: object) -> int:
    """The platform's cut of a community provider's earnings (Basic tier until the providers
    app assigns tiers)."""
    return int(settings.PROVIDER_DEFAULT_FEE_PERCENT)


def _end_of(pod: Pod, now: datetime) -> datetime:
    ends = [now]
    if pod.node is not None and pod.node.last_heartbeat_at is not None:
        ends.append(pod.node.last_heartbeat_at)
    if pod.billing_ends_at is not None:
        ends.append(pod.billing_ends_at)
    return min(ends)


def _bill(pods: list[Pod], now: datetime) -> MeterResult:
    """Charge `pods` (locked by the caller, in the caller's transaction) up to `now`."""
    result = MeterResult(pods=len(pods))
    due: list[tuple[Pod, Node, datetime, int]] = []
    for pod in pods:
        if pod.billed_until is None or pod.node is None:
            continue
        seconds = int((_end_of(pod, now) - pod.billed_until).total_seconds())
        if seconds >= 1:
            due.append((pod, pod.node, pod.billed_until, seconds))
    if not due:
        return result

    owners = {pod.owner_id for pod, _, _, _ in due}
    # Every account this chunk touches, created if missing, then locked together in pk order
    # (the ledger's one lock order, so a concurrent top-up or credit cannot deadlock with us).
    wallets = {
        w.user_id: w
        for w in LedgerAccount.objects.filter(kind=AccountKind.USER_WALLET, user_id__in=owners)
    }
    for owner_id in owners - set(wallets):
        wallets[owner_id] = wallet_for(User(pk=owner_id))
    revenue = platform_account(AccountKind.PLATFORM_REVENUE)
    payables = {
        provider_id: provider_payable(provider_id)
        for provider_id in {node.provider_id for _, node, _, _ in due}
        if provider_id is not None
    }
    locked = lock_accounts(
        [*(w.pk for w in wallets.values()), revenue.pk, *(p.pk for p in payables.values())]
    )
    states = spend_states(
        owners, now=now, balances={o: locked[wallets[o].pk].balance for o in owners}
    )
    available = {owner: states[owner].chargeable for owner in owners}
    charged_by_owner: dict[uuid.UUID, int] = defaultdict(int)

    deltas: dict[int, int] = defaultdict(int)
    records: list[UsageRecord] = []
    transactions: list[Transaction] = []
    legs: list[list[tuple[int, int]]] = []
    pod_updates = []
    for pod, node, start, seconds in due:
        end = start + timedelta(seconds=seconds)
        amount = prorate(per_hour=pod.hourly_rate, seconds=seconds)
        left = max(0, available[pod.owner_id])
        if amount > left:
            amount = left
            state = states[pod.owner_id]
            cap_binds = state.cap_left is not None and state.cap_left <= max(0, state.balance_left)
            result.stops[pod.owner_id] = (
                "stopped: monthly spend cap reached"
                if cap_binds
                else "stopped: balance exhausted (overdraft floor reached)"
            )
        available[pod.owner_id] -= amount
        charged_by_owner[pod.owner_id] += amount
        provider_id = node.provider_id
        share = 0
        if provider_id is not None and amount:
            share = amount * (100 - provider_fee_percent(provider_id)) // 100
        records.append(
            UsageRecord(
                pod=pod,
                owner_id=pod.owner_id,
                node=node,
                period_start=start,
                period_end=end,
                seconds=seconds,
                gpu_count=pod.gpu_count,
                price_per_gpu_hour=pod.price_per_gpu_hour or 0,
                amount=amount,
                provider_share=share,
            )
        )
        pod_updates.append((pod.pk, {"billed_until": end}))
        pod.billed_until = end
        if not amount:
            legs.append([])
            transactions.append(None)  # type: ignore[arg-type]
            continue
        wallet = wallets[pod.owner_id]
        lines = [(wallet.pk, -amount)]
        if provider_id is not None and share:
            lines.append((payables[provider_id].pk, share))
        if amount - share:
            lines.append((revenue.pk, amount - share))
        for account_id, change in lines:
            deltas[account_id] += change
        legs.append(lines)
        transactions.append(
            Transaction(
                kind=TransactionKind.USAGE,
                idempotency_key=f"usage:{pod.pk}:{start.isoformat()}",
                memo=(
                    f"{pod.name}: {seconds} s × {pod.gpu_count}× {pod.gpu_model} at "
                    f"${micros_to_usd(pod.price_per_gpu_hour or 0)}/GPU-h"
                )[:255],
                metadata={
                    "pod_id": str(pod.pk),
                    "period_start": start.isoformat(),
                    "seconds": seconds,
                },
            )
        )
        result.charged += amount

    posted = Transaction.objects.bulk_create([t for t in transactions if t is not None])
    by_key = {t.idempotency_key: t for t in posted}
    entries: list[Entry] = []
    for record, tx, lines in zip(records, transactions, legs, strict=True):
        if tx is None:
            continue
        saved = by_key[tx.idempotency_key]
        record.transaction_id = saved.pk
        entries.extend(Entry(transaction=saved, account_id=a, amount=x) for a, x in lines)
    Entry.objects.bulk_create(entries, batch_size=5000)
    UsageRecord.objects.bulk_create(records, batch_size=5000)
    update_from_values(
        model=LedgerAccount,
        rows=[(pk, {"balance": d}) for pk, d in deltas.items() if d],
        add=["balance"],
    )
    update_from_values(model=Pod, rows=pod_updates, set=["billed_until"])
    result.records = len(records)
    month = f"{now:%Y-%m}"
    for owner, state in states.items():
        cap = state.monthly_cap
        spent = state.month_spent + charged_by_owner[owner]
        if cap and spent * 100 >= cap * WARN_AT_PERCENT and state.warned_month != month:
            result.cap_warnings.append(owner)
    return result


def meter_pod_until(*, pod: Pod, until: datetime) -> MeterResult:
    """Bill one pod (locked by the caller) up to `until`: the last interval before it stops,
    fails or moves."""
    if pod.status not in BILLABLE:
        return MeterResult()
    # A capped charge here needs no stop of its own (this pod is stopping or moving); the next
    # tick stops the owner's other pods.
    return _bill([pod], until)


def meter_tick(*, now: datetime | None = None, chunk: int = 10_000) -> MeterResult:
    """One metering pass over every billable pod. Safe to run twice at once and to kill."""
    now = now or timezone.now()
    total = MeterResult()
    last_pk = None
    while True:
        with transaction.atomic():
            query = Pod.objects.filter(status__in=BILLABLE, billed_until__lt=now)
            if last_pk is not None:
                query = query.filter(pk__gt=last_pk)
            pods = list(
                query.select_for_update(skip_locked=True, of=("self",))
                .select_related("node")
                .order_by("pk")[:chunk]
            )
            if not pods:
                break
            last_pk = pods[-1].pk
            result = _bill(pods, now)
        total.add(result)
    _after_charges(total)
    _enforce_burn_limits()
    _warn_low_balances(now)
    return total


def _after_charges(result: MeterResult) -> None:
    """Stop the pods of users whose charges hit the floor or their cap, and send the
    80%-of-cap warnings."""
    from apps.pods.services import pod_stop

    for owner_id, reason in result.stops.items():
        for pod in Pod.objects.filter(owner_id=owner_id, status__in=ON_NODE_STATUSES):
            pod_stop(pod=pod, reason=reason)
        _mail(owner_id, "Your GPU Cloud pods were stopped", f"{reason.capitalize()}.")
    for owner_id in result.cap_warnings:
        limit = SpendLimit.objects.filter(user_id=owner_id).first()
        month = f"{timezone.now():%Y-%m}"
        if limit is None or limit.warned_month == month:
            continue
        SpendLimit.objects.filter(user_id=owner_id).update(warned_month=month)
        _mail(
            owner_id,
            "You have used 80% of your monthly GPU Cloud spend cap",
            f"Your monthly cap is ${micros_to_usd(limit.monthly_cap or 0)}. At the cap, new work "
            "is refused and running pods are stopped.",
        )


def _enforce_burn_limits() -> None:
    """Keep each user's running pods within their maximum hourly burn: the oldest pods keep
    running, the newest that do not fit are stopped."""
    from apps.pods.services import pod_stop

    for limit in SpendLimit.objects.filter(max_hourly_burn__isnull=False):
        burn = 0
        for pod in (
            Pod.objects.filter(owner_id=limit.user_id, status__in=ON_NODE_STATUSES)
            .exclude(status=PodStatus.STOPPING)
            .order_by("created_at")
        ):
            if burn + pod.hourly_rate > (limit.max_hourly_burn or 0):
                pod_stop(
                    pod=pod,
                    reason=(
                        f"stopped: over your maximum hourly burn of "
                        f"${micros_to_usd(limit.max_hourly_burn or 0)}/h"
                    ),
                )
            else:
                burn += pod.hourly_rate


def _mail(owner_id: uuid.UUID, subject: str, body: str) -> None:
    email = User.objects.filter(pk=owner_id).values_list("email", flat=True).first()
    if email:
        logger.warning("notify %s: %s", email, subject)
        send_mail(subject, body, None, [email], fail_silently=True)


def _warn_low_balances(now: datetime) -> None:
    """Email each user whose balance covers less than LOW_BALANCE_WARNING_MINUTES of their
    running pods, at most once a day."""
    minutes = settings.LOW_BALANCE_WARNING_MINUTES
    burn: dict[object, int] = defaultdict(int)
    for owner_id, price, count in Pod.objects.filter(status=PodStatus.RUNNING).values_list(
        "owner_id", "price_per_gpu_hour", "gpu_count"
    ):
        burn[owner_id] += (price or 0) * count
    if not burn:
        return
    wallets = LedgerAccount.objects.filter(
        Q(kind=AccountKind.USER_WALLET), user_id__in=list(burn)
    ).select_related("user")
    for wallet in wallets:
        if wallet.user is None:
            continue
        need = burn[wallet.user_id] * minutes // 60
        if wallet.balance - wallet_floor() >= need:
            continue
        key = f"low-balance-warned:{wallet.user_id}:{now:%Y-%m-%d}"
        if cache.add(key, 1, 86400):
            send_mail(
                "Your GPU Cloud balance is running low",
                f"Your balance is ${micros_to_usd(wallet.balance)}; your running pods cost "
                f"${micros_to_usd(burn[wallet.user_id])}/hour and will be stopped when the "
                "balance runs out. Top up to keep them running.",
                None,
                [wallet.user.email],
                fail_silently=True,
            )
