"""The node state machine (DESIGN.md §4): REGISTERING → ONLINE ⇄ DRAINING → OFFLINE → RETIRED,
and SUSPECT between a live status and OFFLINE (missed beats, within the grace; a heartbeat brings
the node back to where it was). Every move goes through `node_transition`, which rejects
illegal moves and records a NodeEvent."""

from django.utils import timezone

from apps.nodes.models import Node, NodeEvent, NodeStatus

S = NodeStatus
ALLOWED: dict[str, set[str]] = {
    S.REGISTERING: {S.ONLINE, S.SUSPECT, S.OFFLINE, S.RETIRED},
    S.ONLINE: {S.DRAINING, S.SUSPECT, S.OFFLINE, S.RETIRED},
    S.DRAINING: {S.ONLINE, S.SUSPECT, S.OFFLINE, S.RETIRED},
    S.SUSPECT: {S.ONLINE, S.DRAINING, S.OFFLINE, S.RETIRED},
    S.OFFLINE: {S.ONLINE, S.DRAINING, S.RETIRED},
    S.RETIRED: set(),
}


class IllegalNodeTransitionError(Exception):
    pass


def node_transition(*, node: Node, to: str, reason: str) -> None:
    """Move `node` to `to`; the caller holds the node's row lock (or has just created it)."""
    if to not in ALLOWED[node.status]:
        raise IllegalNodeTransitionError(f"node {node.pk}: {node.status} → {to} is not allowed")
    NodeEvent.objects.create(node=node, from_status=node.status, to_status=to, reason=reason)
    node.suspected_from = node.status if to == S.SUSPECT else ""
    node.status = to
    node.status_reason = reason
    node.status_changed_at = timezone.now()
    node.save(update_fields=["status", "status_reason", "status_changed_at", "suspected_from"])
