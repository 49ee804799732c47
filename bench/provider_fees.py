"""What per-interval fee lookups cost a metering tick: the billing_tick set-up (1,000 users,
1,000 nodes, half community) with the community nodes' providers either having no fee history
(`--mode flat`: every charge at the default Basic fee) or being real providers with a tier
history of several changes each (`--mode history`: fees looked up once per chunk, then per
interval by its start).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/gco_bench_providers \
        .venv/bin/python bench/provider_fees.py --mode history --sizes 10000 50000

Prints seconds per tick and per 1,000 pods, and checks that every provider share matches its
fee at the interval's start.
"""

import argparse
import time
from datetime import timedelta

import _django

_django.setup()

from django.db import connection  # noqa: E402
from django.db.models import F  # noqa: E402
from django.utils import timezone  # noqa: E402

from apps.accounts.models import User  # noqa: E402
from apps.nodes.models import Node  # noqa: E402
from apps.pods.metering import meter_tick  # noqa: E402
from apps.pods.models import Pod, UsageRecord  # noqa: E402
from apps.providers.models import Provider, ProviderFee  # noqa: E402
from bench.billing_tick import add_pods, reset, setup_fixtures  # noqa: E402

CHANGES = 5  # fee rows per provider


def make_providers(nodes: list[Node]) -> None:
    community = [n for n in nodes if n.provider_id is not None]
    owners = User.objects.bulk_create(
        User(email=f"provider{i}@example.com", password="!") for i in range(len(community))
    )
    providers = Provider.objects.bulk_create(
        Provider(id=node.provider_id, owner=owner, display_name=node.hostname)
        for node, owner in zip(community, owners, strict=True)
    )
    start = timezone.now() - timedelta(days=30)
    ProviderFee.objects.bulk_create(
        ProviderFee(
            provider=provider,
            tier="BASIC",
            fee_percent=(20, 15, 10)[(i + k) % 3],
            effective_from=start + timedelta(days=5 * k),
        )
        for i, provider in enumerate(providers)
        for k in range(CHANGES)
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=("flat", "history"), default="history")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000])
    args = parser.parse_args()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE providers_providerfee, providers_provider CASCADE")
    reset()
    users, nodes = setup_fixtures()
    if args.mode == "history":
        make_providers(nodes)
    have = 0
    print(f"mode={args.mode}")
    print(f"{'pods':>8} {'seconds':>8} {'s/1k pods':>10} {'records':>8}")
    for size in sorted(args.sizes):
        add_pods(size - have, users, nodes, have)
        have = size
        Pod.objects.update(billed_until=timezone.now() - timedelta(minutes=1))
        t0 = time.perf_counter()
        result = meter_tick(now=timezone.now())
        elapsed = time.perf_counter() - t0
        print(f"{size:>8} {elapsed:>8.2f} {elapsed / size * 1000:>10.3f} {result.records:>8}")
    fee = {20: 80, 15: 85, 10: 90}
    expected_pct = 80 if args.mode == "flat" else fee[(20, 15, 10)[0]]
    wrong = 0
    for record in UsageRecord.objects.filter(provider_share__gt=0).annotate(
        provider_id=F("node__provider_id")
    )[:2000]:
        if args.mode == "history":
            rows = ProviderFee.objects.filter(
                provider_id=record.provider_id, effective_from__lte=record.period_start
            ).order_by("-effective_from")
            expected_pct = 100 - rows[0].fee_percent
        wrong += record.provider_share != record.amount * expected_pct // 100
    print(f"checked 2000 records: {wrong} shares off")


if __name__ == "__main__":
    main()
