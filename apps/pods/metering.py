"""Per-interval billing of running pods (DESIGN.md §3).

Each tick charges every RUNNING or STOPPING pod for [billed_until, end), where end is the
earliest of now, its node's last heartbeat and the moment billing ended (a stop request).
Pods are processed in chunks; each chunk is ONE database transaction that locks its pods
(`FOR UPDATE SKIP LOCKED`: a pod being stopped right now is billed by the stop instead) and
writes, set-based, the usage records, the ledger transactions and entries, the wallet,
payable and revenue balances, and the pods' new `billed_until`. A tick killed halfway rolls
its chunk back; a tick run twice finds `billed_until` already advanced (and the unique
(pod, period_start) of UsageRecord as a backstop), so no interval is charged twice.

A wallet is never taken below the overdraft floor: the charge is capped at what is left, and
that user's pods are stopped after the chunk commits."""

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
from apps.billing.models import AccountKind, Entry, LedgerAccount, Transaction, TransactionKind
from apps.billing.services import platform_account, provider_payable, wallet_for
from apps.billing.services.ledger import wallet_floor
from apps.core.bulk_sql import update_from_values
from apps.core.money import micros_to_usd, prorate
from apps.nodes.models import Node
from apps.pods.models import Pod, PodStatus, UsageRecord

logger = logging.getLogger(__name__)

BILLABLE = (PodStatus.RUNNING, PodStatus.STOPPING)


@dataclass
class MeterResult:
    pods: int = 0
    charged: int = 0  # micro-dollars
    records: int = 0
    exhausted_pod_ids: list[uuid.UUID] = field(default_factory=list)


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
    floor = wallet_floor()
    available = {owner: locked[wallets[owner].pk].balance - floor for owner in owners}

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
            result.exhausted_pod_ids.append(pod.pk)
        available[pod.owner_id] -= amount
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
    return result


def meter_pod_until(*, pod: Pod, until: datetime) -> MeterResult:
    """Bill one pod (locked by the caller) up to `until`: the last interval before it stops,
    fails or moves."""
    if pod.status not in BILLABLE:
        return MeterResult()
    result = _bill([pod], until)
    if result.exhausted_pod_ids:
        _warn_exhausted({pod.owner_id})
    return result


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
        total.pods += result.pods
        total.charged += result.charged
        total.records += result.records
        total.exhausted_pod_ids += result.exhausted_pod_ids
    if total.exhausted_pod_ids:
        _stop_exhausted(total.exhausted_pod_ids)
    _warn_low_balances(now)
    return total


def _stop_exhausted(pod_ids: list[uuid.UUID]) -> None:
    from apps.pods.services import pod_stop

    owners = set(Pod.objects.filter(pk__in=pod_ids).values_list("owner_id", flat=True))
    for pod in Pod.objects.filter(
        owner_id__in=owners, status__in=BILLABLE + (PodStatus.SCHEDULED, PodStatus.STARTING)
    ):
        pod_stop(pod=pod, reason="stopped: balance exhausted (overdraft floor reached)")
    _warn_exhausted(owners)


def _warn_exhausted(owner_ids: set[uuid.UUID]) -> None:
    for email in User.objects.filter(pk__in=owner_ids).values_list("email", flat=True):
        logger.warning("balance exhausted for %s: pods stopped", email)
        send_mail(
            "Your GPU Cloud pods were stopped: balance exhausted",
            "Your balance reached its floor, so your running pods were stopped. Top up to start "
            "them again.",
            None,
            [email],
            fail_silently=True,
        )


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
