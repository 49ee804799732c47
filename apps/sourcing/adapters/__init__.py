"""Upstream cloud adapters behind one interface (DESIGN.md §7)."""

from apps.sourcing.adapters.base import ProviderAdapter
from apps.sourcing.adapters.lambda_labs import LambdaLabsAdapter
from apps.sourcing.adapters.runpod import RunPodAdapter
from apps.sourcing.adapters.vast_ai import VastAiAdapter

ADAPTERS: dict[str, type[ProviderAdapter]] = {
    VastAiAdapter.name: VastAiAdapter,
    RunPodAdapter.name: RunPodAdapter,
    LambdaLabsAdapter.name: LambdaLabsAdapter,
}

__all__ = ["ADAPTERS", "LambdaLabsAdapter", "ProviderAdapter", "RunPodAdapter", "VastAiAdapter"]
