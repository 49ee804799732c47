"""Node state changes that other apps ask for, each under the node's lock (apps.nodes.locks)
and through the node state machine (apps.nodes.lifecycle). Other apps call these, never
`node_transition` itself."""

import uuid

from django.db import transaction

from apps.nodes.lifecycle import node_transition
from apps.nodes.locks import lock_node_if_exists
from apps.nodes.models import NodeStatus


@transaction.atomic
def node_retire_if_live(*, node_id: uuid.UUID, reason: str) -> bool:
    """Retire the node for good unless it already is (sourcing: the rented machine under it
    ended). Safe to call twice. False: no such node, or already RETIRED."""
    node = lock_node_if_exists(node_id)
    if node is None or node.status == NodeStatus.RETIRED:
        return False
    node_transition(node=node, to=NodeStatus.RETIRED, reason=reason[:255])
    return True
