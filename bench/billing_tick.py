"""One metering tick over 10k, 50k and 100k running pods on Postgres.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/gco_bench \
        .venv/bin/python bench/billing_tick.py --sizes 10000 50000 100000

Creates 1,000 funded users and 1,000 online nodes (half of them community nodes, so half the
charges are split with a provider), then RUNNING pods whose last billed minute is due, and
times `meter_tick()` (usage records, and the ledger postings through `ledger_post_many`, all
written set-based in chunks of 10,000; the database moves the balances). Prints seconds per
tick and per 1,000 pods for each size, and checks the ledger afterwards.
"""

import argparse
import os
import time
import uuid
from datetime import timedelta

import _django
from _report import figure

_django.setup()

from django.db import connection  # noqa: E402
from django.db.models import Sum  # noqa: E402
from django.utils import timezone  # noqa: E402

from apps.accounts.models import User  # noqa: E402
from apps.billing.models import AccountKind, LedgerAccount, TransactionKind  # noqa: E402
from apps.billing.services import ledger_post, platform_account, wallet_for  # noqa: E402
from apps.nodes.models import Node, NodeStatus  # noqa: E402
from apps.pods.metering import meter_tick  # noqa: E402
from apps.pods.models import Pod, PodStatus  # noqa: E402

USERS = 1000
NODES = 1000


def reset() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE pods_usagerecord, pods_podevent, pods_gpuallocation, pods_pod, "
            "billing_entry, billing_transaction, billing_ledgeraccount, billing_spendlimit, "
            "nodes_workload, nodes_nodecommand, nodes_nodeevent, nodes_gpu, nodes_node, "
            "accounts_apikey, account_emailaddress, accounts_user CASCADE"
        )


def setup_fixtures() -> tuple[list[User], list[Node]]:
    users = User.objects.bulk_create(
        User(email=f"bench{i}@example.com", password="!") for i in range(USERS)
    )
    clearing = platform_account(AccountKind.STRIPE_CLEARING)
    for user in users:
        ledger_post(
            kind=TransactionKind.TOPUP,
            idempotency_key=f"bench-topup:{user.pk}",
            memo="bench",
            lines=[(clearing, -(10**12)), (wallet_for(user), 10**12)],
        )
    now = timezone.now()
    nodes = Node.objects.bulk_create(
        Node(
            hostname=f"bench-{i}",
            status=NodeStatus.ONLINE,
            token_prefix="nt_bench",
            token_digest=uuid.uuid4().hex * 2,
            last_heartbeat_at=now + timedelta(hours=1),
            provider_id=uuid.uuid4() if i % 2 else None,
            price_per_gpu_hour=1_000_000,
        )
        for i in range(NODES)
    )
    return users, nodes


def add_pods(count: int, users: list[User], nodes: list[Node], start: int) -> None:
    started = timezone.now() - timedelta(minutes=1)
    Pod.objects.bulk_create(
        (
            Pod(
                owner=users[i % USERS],
                name=f"p{i}",
                image="x",
                gpu_model="H100 SXM",
                gpu_count=1 + i % 2,
                status=PodStatus.RUNNING,
                node=nodes[i % NODES],
                price_per_gpu_hour=1_000_000,
                started_at=started,
                billed_until=started,
            )
            for i in range(start, start + count)
        ),
        batch_size=5000,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 100_000])
    parser.add_argument("--quick", action="store_true", help="10k and 20k pods only")
    args = parser.parse_args()
    if args.quick:
        args.sizes = [10_000, 20_000]
    reset()
    users, nodes = setup_fixtures()
    have = 0
    # Besides wall time: this process's CPU seconds and SQL statements per 1,000 pods, which
    # the other load on a shared machine does not move.
    statements = [0]

    def count(execute, sql, params, many, context):
        statements[0] += 1
        return execute(sql, params, many, context)

    print(f"load average {os.getloadavg()}")
    print(
        f"{'pods':>8} {'seconds':>8} {'s/1k pods':>10} {'CPU s/1k':>9} {'SQL/1k':>7} {'records':>8}"
    )
    for size in sorted(args.sizes):
        add_pods(size - have, users, nodes, have)
        have = size
        Pod.objects.update(billed_until=timezone.now() - timedelta(minutes=1))
        # What autovacuum does between ticks in production: the set-up UPDATE above left a dead
        # version of every pod, and the planner has not seen the grown tables yet.
        with connection.cursor() as cursor:
            cursor.execute(
                "VACUUM ANALYZE pods_pod, pods_usagerecord, billing_transaction, billing_entry, "
                "billing_ledgeraccount"
            )
        statements[0] = 0
        t0, c0 = time.perf_counter(), time.process_time()
        with connection.execute_wrapper(count):
            result = meter_tick(now=timezone.now())
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        target = "  (target < 10 s)" if size == 100_000 else ""
        print(
            f"{size:>8} {elapsed:>8.2f} {elapsed / size * 1000:>10.3f} {cpu / size * 1000:>9.3f} "
            f"{statements[0] / size * 1000:>7.1f} {result.records:>8}{target}"
        )
        if size == 100_000:
            figure("tick, 100,000 pods", elapsed, "s", "< 10 s", elapsed < 10)
        else:
            figure(f"tick, {size:,} pods", elapsed, "s")
        figure(f"tick, {size:,} pods: per 1k pods", elapsed / size * 1000, "s")
    print(f"load average {os.getloadavg()}")
    total = sum(a.balance for a in LedgerAccount.objects.all())
    entries = LedgerAccount.objects.aggregate(s=Sum("entries__amount"))["s"]
    print(f"ledger: accounts sum to {total} (want 0), entries sum to {entries} (want 0)")


if __name__ == "__main__":
    main()
