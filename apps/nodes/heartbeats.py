"""Heartbeats (DESIGN.md §4, docs/agent-protocol.md): record a node's telemetry and container
reports, bring a REGISTERING, SUSPECT or OFFLINE node back, deliver its pending commands.

`node_heartbeat` is the complete rule, run through the ORM. The agent's hot path
(`apps.nodes.heartbeat_lean`, served ahead of Django by `apps.nodes.heartbeat_asgi`) does the
common case (a live node whose containers are as last reported) in one statement and hands every
other beat to this function through the ordinary view."""

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from apps.nodes import signals
from apps.nodes.lifecycle import node_transition
from apps.nodes.locks import lock_node
from apps.nodes.models import CommandStatus, Gpu, Node, NodeCommand, NodeStatus, Workload

TELEMETRY_FIELDS = ("memory_used_mb", "utilization_pct", "temperature_c", "power_w")


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
        transaction.on_commit(lambda: signals.announce_observed(changed))
    return workloads


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
