"""Row locks for nodes, taken in one order: node before its GPUs, workloads and commands."""

import uuid

from django.utils import timezone

from apps.nodes.models import LivenessState, Node, NodeCommand, NodeQuerySet, RegistrationTokenUse


def lock_node(node_id: uuid.UUID | str) -> Node:
    # Serialises status transitions of one node: the offline sweep and a late heartbeat must
    # not both decide the node's status from the same stale read.
    return NodeQuerySet(Node).select_for_update().get(pk=node_id)


def lock_command(*, node: Node, command_id: uuid.UUID | str) -> NodeCommand | None:
    # Two deliveries of one ack (agent retry) must not both apply its result.
    return NodeCommand.objects.select_for_update().filter(node=node, pk=command_id).first()


def lock_liveness_state() -> LivenessState:
    # Serialises liveness sweeps: two sweeps judging from the same state would both raise the
    # mass-silence alert, or one would overwrite the other's guard.
    LivenessState.objects.get_or_create(pk=1)
    return LivenessState.objects.select_for_update().get(pk=1)


def lock_registration_token_use(*, digest: str, credential: str) -> RegistrationTokenUse:
    # Two agents registering with one single-use token at once must not both get in.
    now = timezone.now()
    RegistrationTokenUse.objects.get_or_create(
        digest=digest,
        defaults={"credential": credential, "first_used_at": now, "last_used_at": now},
    )
    return RegistrationTokenUse.objects.select_for_update().get(digest=digest)


def lock_node_if_exists(node_id: uuid.UUID | str) -> Node | None:
    # As lock_node, for callers in other apps that hold a node id which may since have been
    # deleted (sourcing retiring the node of an ended rental).
    return NodeQuerySet(Node).select_for_update().filter(pk=node_id).first()
