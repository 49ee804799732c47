"""Row locks for nodes, taken in one order: node before its GPUs, workloads and commands."""

import uuid

from apps.nodes.models import Node, NodeCommand, NodeQuerySet


def lock_node(node_id: uuid.UUID | str) -> Node:
    # Serialises status transitions of one node: the offline sweep and a late heartbeat must
    # not both decide the node's status from the same stale read.
    return NodeQuerySet(Node).select_for_update().get(pk=node_id)


def lock_command(*, node: Node, command_id: uuid.UUID | str) -> NodeCommand | None:
    # Two deliveries of one ack (agent retry) must not both apply its result.
    return NodeCommand.objects.select_for_update().filter(node=node, pk=command_id).first()
