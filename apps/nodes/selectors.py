from collections import defaultdict
from typing import Any

from django.conf import settings
from django.db.models import Prefetch, QuerySet

from apps.core.money import micros_to_usd
from apps.nodes.models import Node, Workload


def node_list() -> QuerySet[Node]:
    return Node.objects.prefetch_related("gpus").order_by("hostname", "registered_at")


def gpu_price_per_hour(*, node: Node, gpu_model: str) -> int:
    """The node's asking price, else the platform default for the model (micro-dollars)."""
    if node.price_per_gpu_hour is not None:
        return node.price_per_gpu_hour
    defaults: dict[str, int] = settings.GPU_DEFAULT_PRICES
    return defaults.get(gpu_model, defaults["default"])


def gpus_available() -> list[dict[str, Any]]:
    """Free GPUs on schedulable nodes, by model: how many, the most on one node, the lowest
    price. A GPU is taken while a wanted workload on its node holds its index."""
    nodes = Node.objects.schedulable().prefetch_related(
        "gpus", Prefetch("workloads", queryset=Workload.objects.filter(wanted=True))
    )
    groups: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"free_gpus": 0, "max_gpus_per_node": 0, "nodes": 0, "price": None, "vram": 0}
    )
    for node in nodes:
        taken = {i for w in node.workloads.all() for i in w.gpu_indices}
        free_by_model: dict[str, int] = defaultdict(int)
        for gpu in node.gpus.all():
            if gpu.index not in taken:
                free_by_model[gpu.model] += 1
                groups[gpu.model]["vram"] = max(groups[gpu.model]["vram"], gpu.memory_total_mb)
        for model, free in free_by_model.items():
            group = groups[model]
            group["free_gpus"] += free
            group["max_gpus_per_node"] = max(group["max_gpus_per_node"], free)
            group["nodes"] += 1
            price = gpu_price_per_hour(node=node, gpu_model=model)
            group["price"] = price if group["price"] is None else min(group["price"], price)
    return [
        {
            "gpu_model": model,
            "vram_mb": g["vram"],
            "free_gpus": g["free_gpus"],
            "max_gpus_per_node": g["max_gpus_per_node"],
            "nodes": g["nodes"],
            "price_per_gpu_hour": g["price"],
            "price_per_gpu_hour_usd": micros_to_usd(g["price"]),
        }
        for model, g in sorted(groups.items(), key=lambda item: item[1]["price"])
    ]
