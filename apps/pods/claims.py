"""Claims (DESIGN.md §6): a batch of locked PENDING pods planned onto the capacity view, then
claimed set-based. The planned nodes are locked in pk order (CPU, RAM and disk are reserved
under that lock), their free GPU rows with one `FOR UPDATE SKIP LOCKED` statement, and each
claim is a `GpuAllocation` row whose primary key is the GPU: even a logic error could not give
one GPU to two pods."""

import json
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection

from apps.core.money import micros_to_usd
from apps.nodes import services as node_services
from apps.nodes.models import Gpu, Node, NodeStatus
from apps.pods.capacity import CapacityView, NodeCapacity
from apps.pods.lifecycle import pod_transition_event
from apps.pods.models import GpuAllocation, Pod, PodCloud, PodEvent, PodStatus
from apps.pods.resources import Needs, node_resources
from apps.pods.ssh import ssh_keys_by_owner, ssh_public_keys


@dataclass
class BatchOutcome:
    placed: set[uuid.UUID] = field(default_factory=set)
    # Pods planned onto a node whose free GPUs another scheduler had locked meanwhile: the
    # pass tries them again with a fresh view (see schedule_pending).
    contended: set[uuid.UUID] = field(default_factory=set)


def _take_gpus(
    free: list[tuple[int, int, str, int]], pod: Pod
) -> list[tuple[int, int, str, int]] | None:
    """Remove and return `pod.gpu_count` fitting GPUs (id, index, model, MiB) from `free`."""
    fits = [g for g in free if g[2] == pod.gpu_model and g[3] >= pod.min_vram_mb]
    if len(fits) < pod.gpu_count:
        return None
    chosen = fits[: pod.gpu_count]
    for g in chosen:
        free.remove(g)
    return chosen


def community_nodes(pods: list[Pod], capacity: CapacityView) -> BatchOutcome:
    """Capacity source: our platform and community nodes.

    Gets a batch of PENDING pods that the caller has locked, in the caller's transaction. Plans
    each onto the cheapest fitting node of the in-memory capacity view, locks the planned
    nodes' free GPU rows in one query (SKIP LOCKED: GPUs being claimed by another scheduler
    are not ours), assigns them, and writes allocations, events, pods, workloads and start
    commands with one statement each. A pod whose node turned out fuller than the view said
    stays PENDING for the next pass."""
    outcome = BatchOutcome()
    plan: list[tuple[Pod, NodeCapacity]] = []
    for pod in own_cloud_pods(pods):
        candidates = capacity.candidates(pod, first=True)
        if candidates:
            chosen_node = candidates[0]
            capacity.set_free(chosen_node, chosen_node.free - pod.gpu_count)
            resources = capacity.resources[chosen_node.node.pk]
            resources.take(resources.needs(pod))
            plan.append((pod, chosen_node))
    if not plan:
        return outcome
    # CPU, RAM and disk are claimed under the planned nodes' row locks, taken in pk order (two
    # schedulers wait for each other instead of deadlocking). Whoever holds a node's lock reads
    # its reservations after every earlier placement on it committed, so two batches never both
    # take the last free core or gigabyte. Node before GPUs: the lock order of apps.nodes.locks.
    locked_nodes = lock_nodes_for_placement({c.node.pk for _, c in plan})
    fresh = node_resources(locked_nodes)
    capacity.resources.update(fresh)
    free: dict[uuid.UUID, list[tuple[int, int, str, int]]] = defaultdict(list)
    uuids: dict[int, str] = {}
    gpu_nodes = {c.node.pk for pod, c in plan if pod.gpu_count}
    if gpu_nodes:
        for gpu_id, node_id, index, model, memory, gpu_uuid in (
            Gpu.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(node_id__in=gpu_nodes, node__status=NodeStatus.ONLINE, allocation__isnull=True)
            .order_by("node_id", "index")
            .values_list("id", "node_id", "index", "model", "memory_total_mb", "uuid")
        ):
            free[node_id].append((gpu_id, index, model, memory))
            uuids[gpu_id] = gpu_uuid
        # The lock query judged `allocation IS NULL` by its own snapshot, and Postgres
        # re-checks a locked row only when that row itself changed: a GPU that another
        # scheduler claimed and committed while this query ran looks free. With the rows
        # locked now, a fresh statement sees every committed claim.
        locked = [g[0] for rows in free.values() for g in rows]
        taken = set(
            GpuAllocation.objects.filter(gpu_id__in=locked).values_list("gpu_id", flat=True)
        )
        if taken:
            for node_id, rows in free.items():
                free[node_id] = [g for g in rows if g[0] not in taken]
    keys = ssh_keys_by_owner(p.owner_id for p, _ in plan)
    allocations: list[GpuAllocation] = []
    events: list[PodEvent] = []
    placed_pods: list[Pod] = []
    starts: list[tuple[Node, uuid.UUID, dict[str, object]]] = []
    for pod, candidate in plan:
        on_node = fresh.get(candidate.node.pk)
        if on_node is None:
            outcome.contended.add(pod.pk)  # the node left ONLINE meanwhile: try another
            continue
        needs = on_node.needs(pod)
        if on_node.shortfall(needs):
            outcome.contended.add(pod.pk)  # fuller than the view said: try with a fresh view
            continue
        chosen = _take_gpus(free[candidate.node.pk], pod) if pod.gpu_count else []
        if chosen is None:
            # fuller than the view said: someone else got there first
            capacity.set_free(candidate, 0)
            outcome.contended.add(pod.pk)
            continue
        on_node.take(needs)
        pod.cpu_millicores = needs.cpu_millicores
        pod.memory_mb = needs.memory_mb
        pod.shm_mb = pod.shm_request_mb or needs.shm_default_mb
        reason = (
            f"placed on {candidate.node.hostname}: {pod.gpu_count}× {pod.gpu_model} "
            f"at ${micros_to_usd(candidate.price)}/GPU-h, {needs.cpu_millicores / 1000:g} vCPU, "
            f"{needs.memory_mb} MB RAM"
        )
        allocations += [GpuAllocation(gpu_id=g[0], pod=pod) for g in chosen]
        events.append(pod_transition_event(pod=pod, to=PodStatus.SCHEDULED, reason=reason))
        pod.node = candidate.node
        pod.gpu_indices = [g[1] for g in chosen]
        pod.price_per_gpu_hour = candidate.price
        placed_pods.append(pod)
        starts.append(
            (
                candidate.node,
                pod.pk,
                start_spec(
                    pod,
                    gpu_uuids=[uuids[g[0]] for g in chosen],
                    ssh_keys=keys.get(pod.owner_id, []),
                    needs=needs,
                ),
            )
        )
    GpuAllocation.objects.bulk_create(allocations)
    PodEvent.objects.bulk_create(events)
    _save_placements(placed_pods)
    node_services.workloads_start(starts=starts)
    outcome.placed = {p.pk for p in placed_pods}
    return outcome


_PLACED_FIELDS = [
    "status",
    "status_reason",
    "node",
    "gpu_indices",
    "price_per_gpu_hour",
    "cpu_millicores",
    "memory_mb",
    "shm_mb",
]


def _save_placements(pods: list[Pod]) -> None:
    """Write the placed pods' new fields. Postgres: one UPDATE joined to one array per column
    (Django's bulk_update builds a CASE per column and row, which cost more than the claim)."""
    if not pods:
        return
    if connection.vendor != "postgresql":
        Pod.objects.bulk_update(pods, _PLACED_FIELDS)
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE pods_pod SET status = v.status, status_reason = v.reason, node_id = v.node, "
            "gpu_indices = v.gpus::jsonb, price_per_gpu_hour = v.price, "
            "cpu_millicores = v.cpu, memory_mb = v.mem, shm_mb = v.shm "
            "FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::uuid[], %s::text[], "
            "%s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[]) "
            "AS v(id, status, reason, node, gpus, price, cpu, mem, shm) WHERE pods_pod.id = v.id",
            [
                [p.pk for p in pods],
                [p.status for p in pods],
                [p.status_reason for p in pods],
                [p.node_id for p in pods],
                [json.dumps(p.gpu_indices) for p in pods],
                [p.price_per_gpu_hour for p in pods],
                [p.cpu_millicores for p in pods],
                [p.memory_mb for p in pods],
                [p.shm_mb for p in pods],
            ],
        )


def own_cloud_pods(pods: list[Pod]) -> list[Pod]:
    """The pods our own nodes may take: not `cloud: upstream`, and not spot pods (spot
    capacity is an upstream cloud's bid market; our nodes are never interruptible)."""
    return [p for p in pods if p.cloud != PodCloud.UPSTREAM and not p.interruptible]


def lock_nodes_for_placement(node_ids: set[uuid.UUID]) -> list[Node]:
    """Lock the ONLINE nodes among `node_ids` in pk order (a placement on a node waits for the
    other placements on it to commit, so it reads their reservations)."""
    return list(
        Node.objects.select_for_update(of=("self",))
        .filter(pk__in=node_ids, status=NodeStatus.ONLINE)
        .order_by("pk")
    )


def start_spec(
    pod: Pod,
    *,
    gpu_uuids: list[str] | None = None,
    ssh_keys: list[str] | None = None,
    needs: Needs | None = None,
) -> dict[str, object]:
    """The start_pod payload of docs/agent-protocol.md (without pod_id): what the pod runs and
    the limits the agent enforces, which are what was reserved for it on the node (a platform
    default is reserved only: `needs` says which)."""
    limit_cpu = needs is None or needs.limit_cpu
    limit_memory = needs is None or needs.limit_memory
    env = dict(pod.env)
    keys = ssh_keys if ssh_keys is not None else ssh_public_keys(owner_id=pod.owner_id)
    if keys and "PUBLIC_KEY" not in env:
        env["PUBLIC_KEY"] = "\n".join(keys)
    volumes = []
    if pod.volume_id is not None:
        volume = pod.volume
        volumes.append(
            {
                "name": volume.docker_name,  # type: ignore[union-attr]
                "mount_path": pod.volume_mount_path or settings.VOLUME_DEFAULT_MOUNT_PATH,
                "size_gb": volume.size_gb,  # type: ignore[union-attr]
            }
        )
    return {
        "image": pod.image,
        "command": pod.command,
        "env": env,
        "ports": [
            {
                "container_port": p["container_port"],
                "protocol": p.get("protocol", "tcp"),
                "host_port": None,
            }
            for p in pod.ports
        ],
        "gpu_indices": pod.gpu_indices,
        "gpu_uuids": list(gpu_uuids or []),
        "cpu_limit": pod.cpu_millicores / 1000 if pod.cpu_millicores and limit_cpu else None,
        "memory_limit_mb": pod.memory_mb if pod.memory_mb and limit_memory else None,
        "shm_size_mb": pod.shm_mb or None,
        "disk_limit_gb": pod.disk_gb,
        "volumes": volumes,
        "authorized_keys": keys,
        "restart_policy": "unless-stopped" if pod.restartable else "no",
        "network_mode": None,
        # The request that asked for this start (empty: the current one, if any).
        **({"request_id": pod.request_id} if pod.request_id else {}),
    }
