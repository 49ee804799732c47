"""Payout requests per second on Postgres, with every request serialised on the payouts
clearing row (and its provider's payable row) as the service locks them.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/gco_bench_providers \
        .venv/bin/python bench/payout_requests.py --providers 200 --threads 1 4 8

Creates `--providers` providers with earnings, then for each thread count has that many
threads each request $10 payouts for its own share of the providers, and prints requests/s.
Checks the ledger afterwards.
"""

import argparse
import threading
import time
import uuid

import _django

_django.setup()

from django.db import connection  # noqa: E402

from apps.accounts.models import User  # noqa: E402
from apps.billing.models import AccountKind, TransactionKind  # noqa: E402
from apps.billing.services import (  # noqa: E402
    ledger_check,
    ledger_post,
    platform_account,
    provider_payable,
)
from apps.providers.models import Provider  # noqa: E402
from apps.providers.services import payout_request, provider_register  # noqa: E402

DETAILS = {"email": "bench@example.com"}


def reset() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE providers_payoutevent, providers_payout, providers_providerkey, "
            "providers_providerfee, providers_provider, billing_entry, billing_transaction, "
            "billing_ledgeraccount, accounts_user CASCADE"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--providers", type=int, default=200)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--per-provider", type=int, default=5)
    args = parser.parse_args()
    print(f"{'threads':>8} {'requests':>9} {'seconds':>8} {'req/s':>8}")
    for threads in args.threads:
        reset()
        revenue = platform_account(AccountKind.PLATFORM_REVENUE)
        providers: list[Provider] = []
        for i in range(args.providers):
            owner = User.objects.create_user(email=f"bench-p{i}@example.com")
            provider = provider_register(owner=owner, display_name=f"p{i}").provider
            ledger_post(
                kind=TransactionKind.USAGE,
                idempotency_key=f"bench-earn:{provider.pk}",
                memo="bench",
                lines=[(revenue, -(10**9)), (provider_payable(provider.pk), 10**9)],
            )
            providers.append(provider)
        connection.close()

        def work(mine: list[Provider]) -> None:
            for _ in range(args.per_provider):
                for provider in mine:
                    payout_request(
                        provider=provider,
                        amount=10_000_000,
                        method="PAYPAL",
                        details=DETAILS,
                        idempotency_key=str(uuid.uuid4()),
                        now=None,
                    )
            connection.close()

        pool = [
            threading.Thread(target=work, args=(providers[t::threads],)) for t in range(threads)
        ]
        t0 = time.perf_counter()
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        elapsed = time.perf_counter() - t0
        total = args.providers * args.per_provider
        print(f"{threads:>8} {total:>9} {elapsed:>8.2f} {total / elapsed:>8.0f}")
    problems = ledger_check()
    print(f"ledger check: {len(problems)} problems")


if __name__ == "__main__":
    main()
