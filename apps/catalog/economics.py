"""What a deployment's tokens cost (issue 14), over a window [since, until), from its rows only:

- **GPU cost**: what its replicas' pods were charged — the `amount` of their `UsageRecord`s
  whose period starts in the window (integer micro-dollars, as in the ledger).
- **Tokens**: `prompt_tokens` (input) and `completion_tokens` (output) of its successful
  (status < 400) `ModelUsageLog` rows whose `at` is in the window.
- **Split between input and output**: an output token weighs CATALOG_OUTPUT_TOKEN_WEIGHT input
  tokens (decoding costs more than prefilling). input share = floor(cost × in / (in + w × out));
  output share = cost − input share, so the two add up to the cost exactly. Cost per 1M tokens =
  floor(share × 1,000,000 / tokens); none when there were no such tokens.
- **Idle share**: replica-seconds are the billed seconds of those usage records; busy seconds
  are, per replica, the union of its requests' spans ([at − latency, at]) clipped to its billed
  periods; idle share = 1 − busy / replica-seconds.
- **Operators** also see the upstream cost (`UpstreamCharge` of those pods, period starting in
  the window), the community hosts' share (`provider_share`), and the margin = GPU cost −
  upstream cost − hosts' share.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Sum

from apps.catalog.models import Deployment, ModelUsageLog, Replica
from apps.core.money import micros_to_usd
from apps.pods.models import UsageRecord
from apps.sourcing.models import UpstreamCharge

PER = 1_000_000  # tokens


def split_cost(*, cost: int, input_tokens: int, output_tokens: int, weight: int) -> tuple[int, int]:
    """(input share, output share) of `cost`, by weighted tokens; they sum to `cost`."""
    units = input_tokens + weight * output_tokens
    if units == 0:
        return 0, 0
    input_share = cost * input_tokens // units
    return input_share, cost - input_share


def per_million(share: int, tokens: int) -> int | None:
    return share * PER // tokens if tokens else None


def _ms(at: datetime) -> int:
    return int(round(at.timestamp() * 1000))


def _union(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if end <= start:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _overlap_ms(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> int:
    total, i, j = 0, 0, 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if end > start:
            total += end - start
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


def _usd(micros: int | None) -> str | None:
    return None if micros is None else micros_to_usd(micros, 6)


def deployment_economics(
    *, deployment: Deployment, since: datetime, until: datetime, operator: bool = False
) -> dict[str, Any]:
    """The deployment's GPU cost per 1M input and output tokens and its idle share over
    [since, until); with `operator`, upstream cost and margin too. Money in micro-dollars
    (and USD strings)."""
    weight = int(settings.CATALOG_OUTPUT_TOKEN_WEIGHT)
    pod_of = dict(
        Replica.objects.filter(deployment=deployment, pod__isnull=False).values_list("pk", "pod_id")
    )
    records = list(
        UsageRecord.objects.filter(
            pod_id__in=list(pod_of.values()), period_start__gte=since, period_start__lt=until
        ).values_list("pod_id", "period_start", "period_end", "seconds", "amount", "provider_share")
    )
    cost = sum(r[4] for r in records)
    hosts_share = sum(r[5] for r in records)
    replica_seconds = sum(r[3] for r in records)
    billed: dict[uuid.UUID, list[tuple[int, int]]] = defaultdict(list)
    for pod_id, start, end, *_ in records:
        billed[pod_id].append((_ms(start), _ms(end)))

    usage = ModelUsageLog.objects.filter(
        deployment=deployment, at__gte=since, at__lt=until, status_code__lt=400
    )
    tokens = usage.aggregate(i=Sum("prompt_tokens"), o=Sum("completion_tokens"))
    input_tokens, output_tokens = tokens["i"] or 0, tokens["o"] or 0
    spans: dict[uuid.UUID, list[tuple[int, int]]] = defaultdict(list)
    for replica_id, at, latency_ms in usage.filter(replica_id__isnull=False).values_list(
        "replica_id", "at", "latency_ms"
    ):
        served_by = pod_of.get(replica_id) if replica_id is not None else None
        if served_by is not None:
            done_ms = _ms(at)
            spans[served_by].append((done_ms - int(round(latency_ms)), done_ms))
    busy_ms = sum(_overlap_ms(_union(spans[p]), _union(billed[p])) for p in billed)
    busy_s = busy_ms / 1000
    idle_s = max(0.0, replica_seconds - busy_s)

    input_share, output_share = split_cost(
        cost=cost, input_tokens=input_tokens, output_tokens=output_tokens, weight=weight
    )
    per_1m_input = per_million(input_share, input_tokens)
    per_1m_output = per_million(output_share, output_tokens)
    body: dict[str, Any] = {
        "since": since,
        "until": until,
        "gpu_cost": cost,
        "gpu_cost_usd": _usd(cost),
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "output_token_weight": weight,
        "input_cost": input_share,
        "output_cost": output_share,
        "cost_per_1m_input_tokens": per_1m_input,
        "cost_per_1m_input_tokens_usd": _usd(per_1m_input),
        "cost_per_1m_output_tokens": per_1m_output,
        "cost_per_1m_output_tokens_usd": _usd(per_1m_output),
        "replica_seconds": replica_seconds,
        "busy_seconds": round(busy_s, 3),
        "idle_seconds": round(idle_s, 3),
        "idle_share": round(idle_s / replica_seconds, 4) if replica_seconds else None,
    }
    if operator:
        upstream = (
            UpstreamCharge.objects.filter(
                pod_id__in=list(pod_of.values()), period_start__gte=since, period_start__lt=until
            ).aggregate(s=Sum("amount"))["s"]
            or 0
        )
        margin = cost - upstream - hosts_share
        body.update(
            {
                "upstream_cost": upstream,
                "upstream_cost_usd": _usd(upstream),
                "hosts_share": hosts_share,
                "margin": margin,
                "margin_usd": _usd(margin),
            }
        )
    return body


def deployments_margins(*, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Operators' view: per deployment that was charged in the window, its GPU revenue,
    upstream cost, hosts' share and margin (same rules as `deployment_economics`)."""
    pods = dict(Replica.objects.filter(pod__isnull=False).values_list("pod_id", "deployment_id"))
    charged: dict[uuid.UUID, list[int]] = defaultdict(lambda: [0, 0, 0])
    for pod_id, amount, share in (
        UsageRecord.objects.filter(
            pod_id__in=list(pods), period_start__gte=since, period_start__lt=until
        )
        .values("pod_id")
        .annotate(a=Sum("amount"), s=Sum("provider_share"))
        .values_list("pod_id", "a", "s")
    ):
        row = charged[pods[pod_id]]
        row[0] += amount or 0
        row[2] += share or 0
    for pod_id, amount in (
        UpstreamCharge.objects.filter(
            pod_id__in=list(pods), period_start__gte=since, period_start__lt=until
        )
        .values("pod_id")
        .annotate(a=Sum("amount"))
        .values_list("pod_id", "a")
    ):
        charged[pods[pod_id]][1] += amount or 0
    names = dict(Deployment.objects.filter(pk__in=list(charged)).values_list("pk", "name"))
    return [
        {
            "deployment": str(dep),
            "name": names.get(dep, ""),
            "gpu_revenue": revenue,
            "upstream_cost": upstream,
            "hosts_share": share,
            "margin": revenue - upstream - share,
        }
        for dep, (revenue, upstream, share) in sorted(charged.items(), key=lambda kv: str(kv[0]))
    ]
