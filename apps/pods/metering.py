"""Per-interval billing of running pods (DESIGN.md §3).

Each tick charges every RUNNING or STOPPING pod for [billed_until, end), where end is the
earliest of now, its node's last heartbeat and the moment billing ended (a stop request).
Pods are processed in chunks; each chunk is ONE database transaction that locks its pods
(`FOR UPDATE SKIP LOCKED`: a pod being stopped right now is billed by the stop instead) and
writes, set-based, the usage records, the ledger postings (through billing's one writer,
`ledger_post_many`, whose inserts move the balances) and the pods' new `billed_until`, billed
seconds and share carry. Each charge is the stay's price to date rounded once, less what was
charged before, so ticks never drift from price × time. A tick killed halfway rolls
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
from functools import lru_cache
from typing import NamedTuple

from django.conf import settings
from django.core.cache import cache
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F, Q, Sum
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from apps.accounts.models import User
from apps.billing.locks import lock_accounts
from apps.billing.models import AccountKind, LedgerAccount, SpendLimit, TransactionKind
from apps.billing.services import (
    Posting,
    ledger_post_many,
    payable_ids_for,
    platform_account,
    wallet_ids_for,
)
from apps.billing.services.ledger import wallet_floor
from apps.billing.spend import WARN_AT_PERCENT, spend_states
from apps.core import metrics
from apps.core.bulk_sql import insert_rows, update_from_values
from apps.core.money import micros_to_usd, prorate_increment, split_with_carry
from apps.pods.models import ON_NODE_STATUSES, Pod, PodStatus, UsageRecord, hourly_rate
from apps.providers.fees import fee_percent_at, fee_schedules

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


class Billable(NamedTuple):
    """What billing needs of a pod, read in bulk (no model instances on the hot path)."""

    pk: uuid.UUID
    owner_id: uuid.UUID
    node_id: uuid.UUID
    provider_id: uuid.UUID | None
    last_heartbeat_at: datetime | None
    billing_ends_at: datetime | None
    billed_until: datetime | None
    price_per_gpu_hour: int | None
    gpu_count: int
    name: str
    gpu_model: str
    billed_seconds: int
    share_carry: int
    # A pod that is an upstream container: the last time its provider reported it running.
    upstream_seen_at: datetime | None = None

    @classmethod
    def of(cls, pod: Pod) -> "Billable":
        node = pod.node
        return cls(
            pod.pk,
            pod.owner_id,
            pod.node_id,  # type: ignore[arg-type]  # None for an upstream container
            node.provider_id if node else None,
            node.last_heartbeat_at if node else None,
            pod.billing_ends_at,
            pod.billed_until,
            pod.price_per_gpu_hour,
            pod.gpu_count,
            pod.name,
            pod.gpu_model,
            pod.billed_seconds,
            pod.share_carry,
            pod.upstream_seen_at if node is None else None,
        )

    @property
    def hourly_rate(self) -> int:
        return hourly_rate(self.price_per_gpu_hour, self.gpu_count)

    def end(self, now: datetime) -> datetime:
        end = now
        if self.last_heartbeat_at is not None and self.last_heartbeat_at < end:
            end = self.last_heartbeat_at
        if self.billing_ends_at is not None and self.billing_ends_at < end:
            end = self.billing_ends_at
        if self.node_id is None and self.upstream_seen_at is not None:
            end = min(end, self.upstream_seen_at)
        return end


BILLABLE_FIELDS = (
    "pk",
    "owner_id",
    "node_id",
    "node__provider_id",
    "node__last_heartbeat_at",
    "billing_ends_at",
    "billed_until",
    "price_per_gpu_hour",
    "gpu_count",
    "name",
    "gpu_model",
    "billed_seconds",
    "share_carry",
    "upstream_seen_at",
)


@lru_cache(maxsize=1024)
def _usd(micros: int) -> str:
    """A price for a memo; a few prices serve thousands of pods, so each is formatted once."""
    return micros_to_usd(micros)


def _lock_accounts_for(
    due: list[tuple[Billable, datetime, int]],
) -> tuple[dict[uuid.UUID, int], int, dict[uuid.UUID, int], dict[int, LedgerAccount]]:
    """Every account a chunk touches, created if missing, then locked together in pk order
    (the ledger's one lock order, so a concurrent top-up or credit cannot deadlock with us).
    Returns wallet ids by owner, the revenue account id, payable ids by provider, locked rows."""
    wallets = wallet_ids_for(b.owner_id for b, _, _ in due)
    payables = payable_ids_for(b.provider_id for b, _, _ in due if b.provider_id is not None)
    revenue = platform_account(AccountKind.PLATFORM_REVENUE).pk
    locked = lock_accounts([*wallets.values(), revenue, *payables.values()])
    return wallets, revenue, payables, locked


def _bill(pods: list[Billable], now: datetime) -> MeterResult:
    """Charge `pods` (locked by the caller, in the caller's transaction) up to `now`."""
    result = MeterResult(pods=len(pods))
    due: list[tuple[Billable, datetime, int]] = []
    for b in pods:
        if b.billed_until is None:
            continue
        seconds = int((b.end(now) - b.billed_until).total_seconds())
        if seconds >= 1:
            due.append((b, b.billed_until, seconds))
    if not due:
        return result

    wallets, revenue, payables, locked = _lock_accounts_for(due)
    owners = set(wallets)
    states = spend_states(owners, now=now, balances={o: locked[wallets[o]].balance for o in owners})
    available = {owner: states[owner].chargeable for owner in owners}
    charged_by_owner: dict[uuid.UUID, int] = defaultdict(int)
    # Every provider's fee history in one query per chunk; each interval pays the fee in force
    # when it started, so a tier change never reaches back.
    fees = fee_schedules({b.provider_id for b, _, _ in due if b.provider_id is not None})

    records: list[list[object]] = []
    record_tx: list[int | None] = []  # each record's index into `postings`
    postings: list[Posting] = []
    pod_updates = []
    for b, start, seconds in due:
        end = start + timedelta(seconds=seconds)
        # The cumulative price of the pod's stay, rounded once, less what was charged: no
        # drift however the ticks cut the time (a capped charge forgives the rest).
        amount = prorate_increment(
            per_hour=b.hourly_rate, billed_seconds=b.billed_seconds, seconds=seconds
        )
        left = max(0, available[b.owner_id])
        if amount > left:
            amount = left
            state = states[b.owner_id]
            cap_binds = state.cap_left is not None and state.cap_left <= max(0, state.balance_left)
            result.stops[b.owner_id] = (
                "stopped: monthly spend cap reached"
                if cap_binds
                else "stopped: balance exhausted (overdraft floor reached)"
            )
        available[b.owner_id] -= amount
        charged_by_owner[b.owner_id] += amount
        share, carry = 0, b.share_carry
        if b.provider_id is not None and amount:
            share, carry = split_with_carry(
                amount=amount,
                percent=100 - fee_percent_at(fees, b.provider_id, start),
                carry=b.share_carry,
            )
        pod_updates.append(
            (
                b.pk,
                {
                    "billed_until": end,
                    "billed_seconds": b.billed_seconds + seconds,
                    "share_carry": carry,
                },
            )
        )
        # pod, owner, node, period_start, period_end, seconds, gpu_count, price, amount, share
        records.append(
            [
                b.pk,
                b.owner_id,
                b.node_id,
                start,
                end,
                seconds,
                b.gpu_count,
                b.price_per_gpu_hour or 0,
                amount,
                share,
            ]
        )
        record_tx.append(None)
        if not amount:
            continue
        lines: list[tuple[LedgerAccount | int, int]] = [(wallets[b.owner_id], -amount)]
        if b.provider_id is not None and share:
            lines.append((payables[b.provider_id], share))
        if amount - share:
            lines.append((revenue, amount - share))
        record_tx[-1] = len(postings)
        postings.append(
            Posting(
                kind=TransactionKind.USAGE,
                idempotency_key=f"usage:{b.pk}:{start.isoformat()}",
                memo=(
                    f"{b.name}: {seconds} s × {max(b.gpu_count, 1)}× {b.gpu_model} at "
                    f"${_usd(b.price_per_gpu_hour or 0)}/h"
                ),
                lines=lines,
            )
        )
        result.charged += amount

    # The ledger's one writer: the same validation, lock order and keys as every posting.
    tx_ids = [posted.transaction_id for posted in ledger_post_many(postings=postings)]
    insert_rows(
        model=UsageRecord,
        fields=[
            "pod",
            "owner",
            "node",
            "period_start",
            "period_end",
            "seconds",
            "gpu_count",
            "price_per_gpu_hour",
            "amount",
            "provider_share",
            "transaction_id",
        ],
        rows=[
            [*r, None if i is None else tx_ids[i]] for r, i in zip(records, record_tx, strict=True)
        ],
    )
    update_from_values(
        model=Pod, rows=pod_updates, set=["billed_until", "billed_seconds", "share_carry"]
    )
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
    result = _bill([Billable.of(pod)], until)
    pod.billed_until, pod.billed_seconds, pod.share_carry = Pod.objects.values_list(
        "billed_until", "billed_seconds", "share_carry"
    ).get(pk=pod.pk)
    return result


def meter_tick(*, now: datetime | None = None, chunk: int = 10_000) -> MeterResult:
    """One metering pass over every billable pod. Safe to run twice at once and to kill."""
    now = now or timezone.now()
    total = MeterResult()
    due = Pod.objects.filter(status__in=BILLABLE, billed_until__lt=now)
    # The due pods' keys, sorted once; each chunk then locks one key range, so no chunk
    # sorts (or scans) the whole due set again. A pod that falls due meanwhile waits a tick.
    keys = list(due.order_by("pk").values_list("pk", flat=True))
    for i in range(0, len(keys), chunk):
        with transaction.atomic():
            pods = [
                Billable(*row)
                for row in due.filter(pk__gte=keys[i], pk__lte=keys[min(i + chunk, len(keys)) - 1])
                .select_for_update(skip_locked=True, of=("self",))
                .order_by("pk")
                .values_list(*BILLABLE_FIELDS)
            ]
            if not pods:
                continue
            result = _bill(pods, now)
        total.add(result)
    _after_charges(total)
    _enforce_burn_limits()
    _warn_low_balances(now)
    metrics.BILLED_MICROS.inc(total.charged)
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
    burn: dict[object, int] = dict(
        Pod.objects.filter(status=PodStatus.RUNNING)
        .values("owner_id")
        .annotate(rate=Sum(Coalesce(F("price_per_gpu_hour"), 0) * Greatest(F("gpu_count"), 1)))
        .values_list("owner_id", "rate")
    )
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
