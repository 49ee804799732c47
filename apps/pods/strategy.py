"""The placement strategies' one shared trade-off (own nodes and upstream offers alike).

BALANCED scores each candidate (lower is better):

    0.5 × price / cheapest  +  0.2 × (price per GB of VRAM) / best  +  3.0 × (1 − reliability)

Price counts most, VRAM per dollar a little, and risk heavily: one percentage point of
reliability is worth 0.03 of score, i.e. 6% of the cheapest price (0.03 / 0.5). So a host at
0.99 beats one at 0.95 unless it costs more than about 24% more; a host 10% cheaper wins
over one 1.5 points more reliable."""

from __future__ import annotations

PRICE_WEIGHT = 0.5
VALUE_WEIGHT = 0.2
RISK_WEIGHT = 3.0


def balanced_score(
    *, price: int, cheapest: int, value: float, best_value: float, reliability: float
) -> float:
    return (
        PRICE_WEIGHT * price / max(cheapest, 1)
        + VALUE_WEIGHT * value / (best_value or 1)
        + RISK_WEIGHT * (1 - reliability)
    )
