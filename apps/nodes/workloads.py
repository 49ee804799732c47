"""What each node should run (its workloads) and what the agent last saw of each: starting and
stopping pods on a node queues the agent's start_pod / stop_pod commands."""

import uuid
from typing import Any

from django.db import transaction

from apps.core.request_context import with_request_id
from apps.nodes.commands import command_enqueue
from apps.nodes.models import CommandType, Node, NodeCommand, Workload

# A (re)start forgets what was observed of the pod's previous container on this node: a pod
# placed again on the same node must not inherit the old start time (it would be billed from it).
FRESH_START: dict[str, Any] = {
    "state": "",
    "error": "",
    "container_id": "",
    "exit_code": None,
    "started_at": None,
    "finished_at": None,
    "observed_at": None,
    "disk_used_bytes": None,
}


@transaction.atomic(savepoint=False)
def workload_start(*, node: Node, pod_id: uuid.UUID, spec: dict[str, Any]) -> NodeCommand:
    """Want pod `pod_id` on `node` and tell the agent to start it. `spec` is the start_pod
    payload of docs/agent-protocol.md without `pod_id`."""
    gpu_indices = list(spec.get("gpu_indices") or [])
    wanted = {"wanted": True, "gpu_indices": gpu_indices, **FRESH_START}
    if not Workload.objects.filter(node=node, pod_id=pod_id).update(**wanted):
        Workload.objects.create(node=node, pod_id=pod_id, **wanted)
    return command_enqueue(
        node=node, type=CommandType.START_POD, payload={**spec, "pod_id": str(pod_id)}
    )


@transaction.atomic(savepoint=False)
def workloads_start(*, starts: list[tuple[Node, uuid.UUID, dict[str, Any]]]) -> None:
    """`workload_start` for many pods at once (the scheduler's batches): one upsert of the
    workloads, one insert of the start commands."""
    if not starts:
        return
    Workload.objects.bulk_create(
        [
            Workload(
                node=node,
                pod_id=pod_id,
                wanted=True,
                gpu_indices=list(spec.get("gpu_indices") or []),
                **FRESH_START,
            )
            for node, pod_id, spec in starts
        ],
        update_conflicts=True,
        unique_fields=["node", "pod_id"],
        update_fields=["wanted", "gpu_indices", *FRESH_START],
    )
    NodeCommand.objects.bulk_create(
        NodeCommand(
            node=node,
            type=CommandType.START_POD,
            payload=with_request_id({**spec, "pod_id": str(pod_id)}),
        )
        for node, pod_id, spec in starts
    )


@transaction.atomic(savepoint=False)
def workload_stop(*, node: Node, pod_id: uuid.UUID, timeout_s: int = 10) -> NodeCommand:
    """Stop wanting pod `pod_id` on `node` and tell the agent to stop and remove it."""
    Workload.objects.filter(node=node, pod_id=pod_id).update(wanted=False)
    return command_enqueue(
        node=node,
        type=CommandType.STOP_POD,
        payload={"pod_id": str(pod_id), "timeout_s": timeout_s},
    )
