"""Gauges read from the database (and the sourcing health cache) when `/metrics` is scraped,
so they are right whichever process answers and nobody's code has to keep them up to date.
Each is one grouped query; the ledger's zero-sum check scans every entry, so its answer is
kept for METRICS_LEDGER_CHECK_S seconds per process."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db.models import Count, Sum
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from apps.billing.models import Entry
from apps.nodes.models import Node, NodeStatus
from apps.pods.models import Pod, PodStatus
from apps.providers.models import Payout, PayoutStatus
from apps.sourcing import registry
from apps.sourcing.breaker import BreakerState

logger = logging.getLogger(__name__)


def _by(model: Any, field: str, choices: Any) -> dict[str, int]:
    counts = {value: 0 for value in choices.values}
    for row in model.objects.order_by().values(field).annotate(n=Count("pk")):
        counts[row[field]] = row["n"]
    return counts


class StateCollector(Collector):
    """Nodes, pods and payouts by state; the ledger's sum; each provider's breaker state."""

    def __init__(self) -> None:
        self._ledger: tuple[float, int, int] | None = None  # (read at, sum, entries)

    def collect(self) -> Iterator[Metric]:
        for name, read in (
            ("nodes", self._nodes),
            ("pods", self._pods),
            ("payouts", self._payouts),
            ("ledger", self._ledger_check),
            ("breakers", self._breakers),
        ):
            try:
                yield from read()
            except Exception:  # one failing source must not hide the others
                logger.exception("metrics: could not read %s", name)

    def _nodes(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("gco_nodes", "GPU hosts by state.", labels=["status"])
        for status, n in _by(Node, "status", NodeStatus).items():
            family.add_metric([status], n)
        yield family

    def _pods(self) -> Iterator[Metric]:
        counts = _by(Pod, "status", PodStatus)
        family = GaugeMetricFamily("gco_pods", "Pods by state.", labels=["status"])
        for status, n in counts.items():
            family.add_metric([status], n)
        yield family
        yield GaugeMetricFamily(
            "gco_pods_pending", "Pods waiting for a place.", value=counts[PodStatus.PENDING]
        )

    def _payouts(self) -> Iterator[Metric]:
        count = GaugeMetricFamily("gco_payouts", "Provider payouts by state.", labels=["status"])
        amount = GaugeMetricFamily(
            "gco_payouts_microdollars", "Provider payout amounts by state.", labels=["status"]
        )
        rows: dict[str, dict[str, Any]] = {
            row["status"]: dict(row)
            for row in Payout.objects.order_by()
            .values("status")
            .annotate(n=Count("pk"), total=Sum("amount"))
        }
        for status in PayoutStatus.values:
            row = rows.get(status, {})
            count.add_metric([status], row.get("n", 0))
            amount.add_metric([status], row.get("total") or 0)
        yield count
        yield amount

    def _ledger_check(self) -> Iterator[Metric]:
        now = time.monotonic()
        cached = self._ledger
        if cached is None or now - cached[0] >= settings.METRICS_LEDGER_CHECK_S:
            agg = Entry.objects.aggregate(total=Sum("amount"), n=Count("pk"))
            cached = self._ledger = (now, int(agg["total"] or 0), int(agg["n"]))
        _, total, entries = cached
        yield GaugeMetricFamily(
            "gco_ledger_imbalance_microdollars",
            "Sum of every ledger entry: 0 when each transaction balances (double entry).",
            value=total,
        )
        yield GaugeMetricFamily(
            "gco_ledger_balanced", "1 when the ledger sums to zero, else 0.", value=int(total == 0)
        )
        yield GaugeMetricFamily("gco_ledger_entries", "Ledger entries.", value=entries)

    def _breakers(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "gco_upstream_breaker_state",
            "Each provider's circuit breaker: 1 on its current state.",
            labels=["provider", "state"],
        )
        for snap in registry.health():
            for state in BreakerState:
                family.add_metric([snap["provider"], state.value], int(snap["state"] == state))
        yield family
