"""What operators (and providers, for their own nodes) do to a node: drain, undrain, retire,
set its price and its CPU/RAM share per GPU. Each writes under the node's row lock."""

from django.db import transaction

from apps.nodes.lifecycle import node_transition
from apps.nodes.locks import lock_node
from apps.nodes.models import Node, NodeStatus


@transaction.atomic
def node_drain(*, node: Node, reason: str = "drained by operator") -> Node:
    node = lock_node(node.pk)
    node_transition(node=node, to=NodeStatus.DRAINING, reason=reason)
    return node


@transaction.atomic
def node_undrain(*, node: Node, reason: str = "undrained by operator") -> Node:
    node = lock_node(node.pk)
    node_transition(node=node, to=NodeStatus.ONLINE, reason=reason)
    return node


@transaction.atomic
def node_retire(*, node: Node, reason: str = "retired by operator") -> Node:
    """Retire for good: the token stops working and the node never takes work again."""
    node = lock_node(node.pk)
    node_transition(node=node, to=NodeStatus.RETIRED, reason=reason)
    return node


@transaction.atomic
def node_price_set(*, node: Node, price_per_gpu_hour: int | None) -> Node:
    """Set the node's asking price per GPU-hour in micro-dollars (None: the platform default
    for its GPU model). Pods already placed keep the price they were placed at. Writes only
    this column, under the node's lock, so a heartbeat or status change racing an operator's
    (or provider's) edit is never overwritten with a stale copy."""
    if price_per_gpu_hour is not None and (
        isinstance(price_per_gpu_hour, bool)
        or not isinstance(price_per_gpu_hour, int)
        or price_per_gpu_hour < 0
    ):
        raise ValueError("A price is a non-negative number of micro-dollars, or None.")
    locked = lock_node(node.pk)
    locked.price_per_gpu_hour = price_per_gpu_hour
    locked.save(update_fields=["price_per_gpu_hour"])
    return locked


@transaction.atomic
def node_share_set(
    *, node: Node, cpu_per_gpu_millicores: int | None, ram_per_gpu_mb: int | None
) -> Node:
    """Set what each GPU of the node brings to a pod of its CPU (millicores) and RAM (MB); None:
    the node's totals divided by its GPUs. Pods already placed keep their reservation. Writes
    these columns alone, under the node's lock."""
    for value in (cpu_per_gpu_millicores, ram_per_gpu_mb):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ValueError("A share is a positive whole number, or None.")
    locked = lock_node(node.pk)
    locked.cpu_per_gpu_millicores = cpu_per_gpu_millicores
    locked.ram_per_gpu_mb = ram_per_gpu_mb
    locked.save(update_fields=["cpu_per_gpu_millicores", "ram_per_gpu_mb"])
    return locked
