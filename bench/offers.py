"""Offer search over the three simulators holding 10,000 machines each: a fresh aggregated
search (all providers at once, each within its deadline) against a read of the offer book,
p50/p95; the ranking cost per strategy; and a search with one provider stuck, which must take
about that provider's deadline, not the sum of the providers' times.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/gco_bench_sourcing \
        .venv/bin/python bench/offers.py --offers 10000 --searches 30 --reads 300

The simulators run as their own process (`python -m apps.sourcing.simulators`), as remote
APIs would. Vast lists one offer per machine; RunPod and Lambda aggregate their machines by
type (and region) exactly as their real APIs do, so they list fewer offers for as many
machines: the figures say how many offers each returned.
"""

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time

import _django

_django.setup()

from django.conf import settings  # noqa: E402

from apps.sourcing import offer_book, registry  # noqa: E402
from apps.sourcing.adapters.base import OfferFilters  # noqa: E402
from apps.sourcing.ranking import Strategy, rank  # noqa: E402
from apps.sourcing.simulators import SimControl  # noqa: E402


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def ms(values: list[float]) -> str:
    return f"p50 {pct(values, 0.5) * 1000:8.2f} ms   p95 {pct(values, 0.95) * 1000:8.2f} ms"


def free_port_base() -> int:
    for base in range(17801, 18800, 3):
        ok = True
        for port in range(base, base + 3):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    ok = False
        if ok:
            return base
    raise SystemExit("no free ports")


def timed_search(filters: OfferFilters, providers: list[str] | None = None) -> tuple[float, int]:
    # the adapters' clients belong to the event loop that uses them: one service per run
    service = registry.make_service(providers)
    return asyncio.run(_timed(service, filters, providers))


async def _timed(service, filters, providers):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    try:
        found = await service.search(filters, providers=providers)
    finally:
        await service.aclose()
    return time.perf_counter() - t0, len(found.offers)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--offers", type=int, default=10_000)
    parser.add_argument("--searches", type=int, default=30)
    parser.add_argument("--reads", type=int, default=300)
    parser.add_argument("--gpu", default="RTX 4090")
    args = parser.parse_args()

    base = free_port_base()
    sims = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "apps.sourcing.simulators",
            "--port",
            str(base),
            "--offers",
            str(args.offers),
        ],
        cwd=_django.ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(3):
            print("  simulator", sims.stdout.readline().strip())  # type: ignore[union-attr]
        names = ["vast_ai", "runpod", "lambda_labs"]
        keys = ["vast-sim-key", "runpod-sim-key", "lambda-sim-key"]
        settings.SOURCING_PROVIDERS = {
            n: {"base_url": f"http://127.0.0.1:{base + i}", "api_key": keys[i]}
            for i, n in enumerate(names)
        }
        settings.SOURCING_SEARCH_DEADLINE_S = 5.0
        settings.SOURCING_ENABLED = True  # searches only: nothing is rented here
        for i in range(3):  # no price drift during the bench
            SimControl(f"http://127.0.0.1:{base + i}").configure(drift_seconds=0)
        print(f"machines per simulator: {args.offers}; CPU cores: {os.cpu_count()}")

        # 1. fresh aggregated search for one GPU model (what a pod request would wait for)
        one = OfferFilters(gpu_model=args.gpu, limit=1000)
        times, counts = [], []
        per_provider: dict[str, list[float]] = {n: [] for n in names}
        for _ in range(args.searches):
            t, n = timed_search(one)
            times.append(t)
            counts.append(n)
            for name in names:
                per_provider[name].append(timed_search(one, [name])[0])
        print(
            f"\nfresh search, {args.gpu}, 3 providers at once ({counts[-1]} offers):  {ms(times)}"
        )
        for name in names:
            print(f"  {name:12s} alone:                           {ms(per_provider[name])}")
        sums = [sum(per_provider[n][i] for n in names) for i in range(args.searches)]
        print(f"  sum of the three alone:                    {ms(sums)}")

        # 2. the whole market (the periodic refresh), into the book
        refresh = []
        for _ in range(3):
            t0 = time.perf_counter()
            result = offer_book.offer_book_refresh()
            refresh.append(time.perf_counter() - t0)
        print(
            f"\nbook refresh (search all + upsert {result.offers} rows: {result.by_provider}):"
            f" {ms(refresh)}"
        )

        # 3. book reads
        for strategy in Strategy:
            reads = []
            for _ in range(args.reads):
                t0 = time.perf_counter()
                offer_book.book_offers(gpu_model=args.gpu, strategy=strategy, limit=20)
                reads.append(time.perf_counter() - t0)
            found = offer_book.book_offers(gpu_model=args.gpu, strategy=strategy, limit=20)
            assert len(found) == 20, "the book must hold the offers it is read for"
            print(f"book read, {args.gpu}, top 20, {strategy.value:20s} {ms(reads)}")

        # 4. ranking cost per strategy over the whole market
        service = registry.make_service()

        async def whole_market():  # type: ignore[no-untyped-def]
            try:
                return await service.search(OfferFilters(limit=20_000))
            finally:
                await service.aclose()

        priced = asyncio.run(whole_market()).offers
        print(f"\nranking {len(priced)} offers:")
        for strategy in Strategy:
            runs = []
            for _ in range(20):
                t0 = time.perf_counter()
                rank(priced, strategy)
                runs.append(time.perf_counter() - t0)
            per = pct(runs, 0.5) / max(len(priced), 1) * 1e6
            print(f"  {strategy.value:20s} {ms(runs)}   ({per:.2f} µs per offer)")

        # 5. one provider stuck: the answer takes its deadline, not the sum
        SimControl(f"http://127.0.0.1:{base}").configure()
        stuck = []
        settings.SOURCING_SEARCH_DEADLINE_S = 1.0
        for _ in range(5):
            SimControl(f"http://127.0.0.1:{base}").fault("offers", "timeout", seconds=8)
            stuck.append(timed_search(one)[0])
        print(f"\nsearch with Vast stuck for 8 s, deadline 1 s per provider: {ms(stuck)}")
    finally:
        sims.terminate()
        sims.wait(timeout=20)


if __name__ == "__main__":
    main()
