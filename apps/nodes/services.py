"""Writes for GPU hosts: registration, heartbeats and commands (DESIGN.md §4–5). The liveness
sweep (SUSPECT, OFFLINE after the grace, the mass-silence guard) is in `sweep.py`."""

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from apps.core.gpu_models import canonical_gpu_model
from apps.core.request_context import with_request_id
from apps.core.secrets import secret_issue
from apps.nodes import signals
from apps.nodes.lifecycle import node_transition
from apps.nodes.locks import lock_command, lock_node, lock_registration_token_use
from apps.nodes.models import (
    CommandStatus,
    CommandType,
    Credential,
    Gpu,
    Node,
    NodeCommand,
    NodeRegistration,
    NodeStatus,
    Workload,
)
from apps.nodes.registration import RegistrationGrant
from apps.nodes.sweep import (  # the liveness writes live in sweep.py; callers reach them here too
    liveness_guard_release as liveness_guard_release,
)
from apps.nodes.sweep import nodes_mark_silent_offline as nodes_mark_silent_offline
from apps.nodes.sweep import nodes_sweep_liveness as nodes_sweep_liveness

logger = logging.getLogger(__name__)

NODE_TOKEN_PREFIX = "nt_"  # noqa: S105 - a prefix, not a secret
TELEMETRY_FIELDS = ("memory_used_mb", "utilization_pct", "temperature_c", "power_w")
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


class CommandNotFoundError(Exception):
    pass


class RegistrationTokenSpentError(Exception):
    """A limited registration token was used up or has expired; the message says which."""


@dataclass(frozen=True)
class RegisteredNode:
    node: Node
    raw_token: str  # shown to the agent once


def _system_fields(system: dict[str, Any]) -> dict[str, Any]:
    return {
        "cpu_model": system.get("cpu_model") or "",
        "cpu_cores": system.get("cpu_cores") or 0,
        "ram_total_mb": system.get("ram_total_mb") or 0,
        "disk_total_gb": system.get("disk_total_gb") or 0,
        "disk_free_gb": system.get("disk_free_gb") or 0,
        "os": system.get("os") or "",
        "kernel": system.get("kernel") or "",
        "docker_version": system.get("docker_version") or "",
        "address": system.get("address") or "",
    }


def _find_same_machine(
    *, grant: RegistrationGrant, provider_instance_id: str, gpu_uuids: list[str]
) -> Node | None:
    """An agent that lost its token re-registers as the node it was: same upstream instance,
    or the same physical GPUs (UUIDs are unique per device), under the same owner."""
    candidates = Node.objects.exclude(status=NodeStatus.RETIRED).filter(
        provider_id=grant.provider_id
    )
    if provider_instance_id:
        return candidates.filter(provider_instance_id=provider_instance_id).first()
    if gpu_uuids:
        return candidates.filter(gpus__uuid__in=gpu_uuids).distinct().first()
    return None


def _claim_token_use(*, grant: RegistrationGrant, now: datetime) -> None:
    """Count one use of a limited token, or refuse: over its uses, or past its lifetime."""
    max_uses: int = settings.NODE_REGISTRATION_TOKEN_MAX_USES
    ttl = timedelta(seconds=settings.NODE_REGISTRATION_TOKEN_TTL_S)
    use = lock_registration_token_use(digest=grant.limited_digest, credential=grant.credential)
    started = grant.issued_at or (use.first_used_at if use.uses else now)
    what = "bootstrap token" if grant.credential == Credential.BOOTSTRAP else "instance token"
    if now > started + ttl:
        raise RegistrationTokenSpentError(
            f"This {what} expired at {(started + ttl).isoformat(timespec='seconds')} "
            f"({ttl.total_seconds():.0f} s after it was "
            f"{'issued' if grant.issued_at else 'first used'}): issue a new one."
        )
    if use.uses >= max_uses:
        raise RegistrationTokenSpentError(
            f"This {what} has already registered {use.uses} node(s), its limit: bootstrap and "
            f"instance tokens register at most {max_uses} node(s) within "
            f"{ttl.total_seconds():.0f} s. Issue a new one."
        )
    if not use.uses:
        use.first_used_at = now
    use.uses += 1
    use.last_used_at = now
    use.save(update_fields=["uses", "first_used_at", "last_used_at"])


@transaction.atomic
def node_register(
    *, grant: RegistrationGrant, data: dict[str, Any], source_ip: str = ""
) -> RegisteredNode:
    """Create (or re-key) the node for a registering agent and issue its token. A limited
    token (bootstrap, `sit_…`) is counted first and refused when spent; every registration is
    recorded with its credential and source address."""
    now = timezone.now()
    if grant.limited_digest:
        _claim_token_use(grant=grant, now=now)
    issued = secret_issue(prefix=NODE_TOKEN_PREFIX)
    gpus = data.get("gpus") or []
    provider_instance_id = grant.provider_instance_id or data.get("provider_instance_id") or ""
    fields = {
        "hostname": data["hostname"],
        "agent_version": data.get("agent_version") or "",
        "driver_version": data.get("driver_version") or "",
        "cuda_version": data.get("cuda_version") or "",
        "provider_instance_id": provider_instance_id,
        "token_prefix": issued.display_prefix,
        "token_digest": issued.digest,
        "heartbeat_interval": settings.NODE_HEARTBEAT_INTERVAL,
        "last_heartbeat_seq": None,  # a new token starts a new sequence
        **_system_fields(data.get("system") or {}),
    }
    node = _find_same_machine(
        grant=grant,
        provider_instance_id=provider_instance_id,
        gpu_uuids=[g["uuid"] for g in gpus],
    )
    rekeyed = node is not None
    if node is None:
        node = Node.objects.create(provider_id=grant.provider_id, **fields)
    else:
        node = lock_node(node.pk)
        for name, value in fields.items():
            setattr(node, name, value)
        node.save(update_fields=list(fields))
        node.gpus.all().delete()
        logger.info("node %s re-registered; previous token revoked", node.pk)
    NodeRegistration.objects.create(
        node=node,
        credential=grant.credential,
        credential_prefix=grant.credential_prefix,
        source_ip=source_ip[:64],
        hostname=node.hostname,
        rekeyed=rekeyed,
    )
    Gpu.objects.bulk_create(
        Gpu(
            node=node,
            index=g["index"],
            uuid=g["uuid"],
            name=g["name"],
            model=canonical_gpu_model(g["name"]),
            memory_total_mb=g["memory_total_mb"],
            mig_mode=g.get("mig_mode", False),
        )
        for g in gpus
    )
    transaction.on_commit(
        partial(signals.node_registered.send, sender=Node, node=node, grant=grant)
    )
    return RegisteredNode(node=node, raw_token=issued.raw)


@dataclass
class HeartbeatAnswer:
    heartbeat_interval: int
    commands: list[NodeCommand] = field(default_factory=list)
    wanted_pod_ids: list[uuid.UUID] = field(default_factory=list)


def _record_gpu_telemetry(*, node: Node, gpus: list[dict[str, Any]], now: datetime) -> None:
    """All of a node's GPU readings in one UPDATE (a VALUES list joined on the GPU index):
    this runs on every heartbeat of every node."""
    table = connection.ops.quote_name(Gpu._meta.db_table)
    row = (
        "(CAST(%s AS INTEGER), CAST(%s AS INTEGER), "
        + ", ".join(["CAST(%s AS DOUBLE PRECISION)"] * 3)
        + ")"
    )
    rows = ", ".join([row] * len(gpus))
    params: list[Any] = []
    for g in gpus:
        params += [
            g["index"],
            g.get("memory_used_mb"),
            g.get("utilization_pct"),
            g.get("temperature_c"),
            g.get("power_w"),
        ]
    sql = (
        f"WITH v(idx, mem, util, temp, power) AS (VALUES {rows}) "  # noqa: S608 - no user text
        f"UPDATE {table} SET memory_used_mb = v.mem, utilization_pct = v.util, "
        f"temperature_c = v.temp, power_w = v.power, telemetry_at = %s "
        f'FROM v WHERE {table}.node_id = %s AND {table}."index" = v.idx'
    )
    with connection.cursor() as cursor:
        # Adapted by the fields, as the ORM would: SQLite keeps UUIDs as hex text and
        # datetimes as naive UTC text; Postgres takes both natively.
        cursor.execute(
            sql,
            [
                *params,
                Gpu._meta.get_field("telemetry_at").get_db_prep_value(now, connection),
                Node._meta.get_field("id").get_db_prep_value(node.pk, connection),
            ],
        )


def _record_containers(
    *, node: Node, containers: list[dict[str, Any]], now: datetime
) -> list[Workload]:
    """Store what the agent reports of each workload's container; returns every workload of
    the node. Only changed rows are written."""
    workloads = list(Workload.objects.filter(node=node))
    if not containers:
        return workloads
    by_pod = {str(w.pod_id): w for w in workloads}
    changed: list[tuple[Workload, str]] = []
    for report in containers:
        workload = by_pod.get(str(report["pod_id"]))
        if workload is None:
            continue  # not ours to track: the agent removes it (absent from wanted_pod_ids)
        observed = {
            "container_id": report.get("container_id") or "",
            "state": report["state"],
            "exit_code": report.get("exit_code"),
            "started_at": report.get("started_at"),
            "finished_at": report.get("finished_at"),
            "error": report.get("error") or "",
        }
        if report.get("disk_used_bytes") is not None:  # measured now and then, not every beat
            observed["disk_used_bytes"] = report["disk_used_bytes"]
        if any(getattr(workload, k) != v for k, v in observed.items()):
            previous = workload.state
            for name, value in observed.items():
                setattr(workload, name, value)
            workload.observed_at = now
            changed.append((workload, previous))
    if changed:
        # bulk_update runs in its own transaction; announcements wait for its commit.
        Workload.objects.bulk_update(
            [w for w, _ in changed],
            [
                "container_id",
                "state",
                "exit_code",
                "started_at",
                "finished_at",
                "error",
                "observed_at",
                "disk_used_bytes",
            ],
        )
        transaction.on_commit(lambda: _announce_observed(changed))
    return workloads


def _announce_observed(changed: list[tuple[Workload, str]]) -> None:
    for workload, previous in changed:
        signals.workload_observed.send(sender=Workload, workload=workload, previous_state=previous)


def node_heartbeat(
    *,
    node: Node,
    gpus: list[dict[str, Any]],
    system: dict[str, Any],
    containers: list[dict[str, Any]],
    now: datetime | None = None,
    volumes: list[dict[str, Any]] | None = None,
) -> HeartbeatAnswer:
    """Record one heartbeat and return the commands waiting for the node. A REGISTERING or
    SUSPECT node goes back to what it was (ONLINE or DRAINING) and loses nothing; an OFFLINE
    node comes back ONLINE.

    This is the hottest write path (every node, every interval), so it takes no transaction of
    its own: each statement stands alone and a heartbeat cut short halfway leaves only older
    telemetry behind. Status changes and command delivery are each atomic. `now` is for a
    simulated clock; the API passes none."""
    now = now or timezone.now()
    if node.status in (NodeStatus.REGISTERING, NodeStatus.SUSPECT, NodeStatus.OFFLINE):
        _come_online(node=node, now=now)
    # Container reports first: an exit they carry ends the pod's billing, and a metering tick
    # running between the two writes must not bill that pod up to this newer heartbeat.
    workloads = _record_containers(node=node, containers=containers, now=now)
    Node.objects.filter(pk=node.pk).update(
        last_heartbeat_at=now,
        cpu_percent=system.get("cpu_percent"),
        ram_used_mb=system.get("ram_used_mb"),
        load_avg=system.get("load_avg"),
        disk_free_gb=system.get("disk_free_gb") or node.disk_free_gb,
    )
    if gpus:
        _record_gpu_telemetry(node=node, gpus=gpus, now=now)
    if volumes:
        # Measured by the agent every so often; the pods app records them and enforces quotas.
        signals.volumes_measured.send(sender=Node, node=node, volumes=volumes, at=now)
    return HeartbeatAnswer(
        heartbeat_interval=node.heartbeat_interval,
        commands=_deliver_commands(node=node, now=now),
        wanted_pod_ids=[w.pod_id for w in workloads if w.wanted],
    )


@transaction.atomic
def _come_online(*, node: Node, now: datetime) -> None:
    locked = lock_node(node.pk)
    if locked.status == NodeStatus.REGISTERING:
        node_transition(node=locked, to=NodeStatus.ONLINE, reason="first heartbeat")
    elif locked.status in (NodeStatus.SUSPECT, NodeStatus.OFFLINE):
        seen = locked.last_heartbeat_at or locked.registered_at
        silent = (now - seen).total_seconds()
        back_to = (
            NodeStatus.DRAINING
            if locked.suspected_from == NodeStatus.DRAINING
            else NodeStatus.ONLINE
        )
        node_transition(node=locked, to=back_to, reason=f"heartbeat after {silent:.0f} s silent")
    node.status = locked.status


def _deliver_commands(*, node: Node, now: datetime) -> list[NodeCommand]:
    """Commands not yet acked, oldest first, marked delivered. Unacked ones are delivered
    again on every heartbeat: the agent acts on each id once."""
    unacked = (CommandStatus.QUEUED, CommandStatus.DELIVERED)
    pending = list(NodeCommand.objects.filter(node=node, status__in=unacked).order_by("created_at"))
    if pending:
        # Re-checking the status keeps an ack that lands in between from being overwritten.
        NodeCommand.objects.filter(pk__in=[c.pk for c in pending], status__in=unacked).update(
            status=CommandStatus.DELIVERED, delivered_at=now, deliveries=F("deliveries") + 1
        )
    return pending


@transaction.atomic(savepoint=False)
def command_enqueue(*, node: Node, type: str, payload: dict[str, Any]) -> NodeCommand:
    return NodeCommand.objects.create(node=node, type=type, payload=with_request_id(payload))


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


@transaction.atomic
def command_ack(
    *, node: Node, command_id: uuid.UUID, succeeded: bool, result: dict[str, Any], error: str
) -> NodeCommand:
    """Apply an agent's result for a command once; a replayed ack changes nothing."""
    command = lock_command(node=node, command_id=command_id)
    if command is None:
        raise CommandNotFoundError(str(command_id))
    if command.is_final:
        return command
    command.status = CommandStatus.ACKED if succeeded else CommandStatus.FAILED
    command.result = result
    command.error = error
    command.acked_at = timezone.now()
    command.save(update_fields=["status", "result", "error", "acked_at"])

    pod_id = command.payload.get("pod_id")
    if pod_id and command.type in (CommandType.START_POD, CommandType.STOP_POD):
        workload = Workload.objects.filter(node=node, pod_id=pod_id).first()
        if workload is not None:
            previous = workload.state
            if command.type == CommandType.START_POD:
                workload.container_id = result.get("container_id") or workload.container_id
                workload.state = result.get("state") or ("failed" if not succeeded else "created")
            else:
                workload.state = "removed" if succeeded else workload.state
                workload.exit_code = result.get("exit_code", workload.exit_code)
            workload.error = error
            workload.observed_at = command.acked_at
            workload.save(
                update_fields=["container_id", "state", "exit_code", "error", "observed_at"]
            )
            if workload.state != previous:
                transaction.on_commit(lambda: _announce_observed([(workload, previous)]))
    transaction.on_commit(
        lambda: signals.command_finished.send(sender=NodeCommand, command=command)
    )
    return command


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
