"""The heartbeat's common case in one database round trip (served by `heartbeat_asgi`).

A beat from a live node (ONLINE or DRAINING) with `seq` and `sent_at` (agents from 0.2.0 on),
whose containers are as the server last recorded them, is one statement (`BEAT_SQL`): it finds
the node by its token digest, claims the sequence number (`seq` above the last accepted, the
rule of `heartbeat_replay`), writes `last_heartbeat_at` and the system telemetry, marks the
pending commands delivered and returns them with the pods the node should run. GPU readings go
to `TelemetryBuffer`, which writes every node's readings in one statement every
NODE_TELEMETRY_FLUSH_MS.

Every other beat is left to the full path (`heartbeats.node_heartbeat` behind the DRF view),
untouched by the statement: the statement writes nothing unless every condition holds. That
covers an unknown or retired token, a REGISTERING, SUSPECT or OFFLINE node coming back, a
refused `seq`, an older agent without `seq`, and a container whose reported state differs from
the recorded one (its report must be stored, and announced, before the beat moves
`last_heartbeat_at`: billing reads it). `parse_beat` accepts exactly what `HeartbeatInput`
accepts in the shapes agents send; anything else (including anything invalid) goes the full
way too, so every refusal is the one the full path gives."""

import json
import math
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils.dateparse import parse_datetime

from apps.nodes.models import CommandStatus, NodeStatus
from apps.nodes.serializers import CONTAINER_STATES

# Keys of the heartbeat body and of its parts (HeartbeatInput and its nested serializers).
TOP_KEYS = frozenset({"gpus", "system", "containers", "seq", "sent_at", "volumes"})
GPU_KEYS = frozenset(
    {"index", "uuid", "utilization_pct", "memory_used_mb", "memory_total_mb", "temperature_c"}
    | {"power_w"}
)
GPU_REQUIRED = frozenset({"index", "utilization_pct", "memory_used_mb", "temperature_c", "power_w"})
SYSTEM_KEYS = frozenset({"cpu_percent", "ram_used_mb", "disk_free_gb", "load_avg"})
CONTAINER_KEYS = frozenset(
    {"pod_id", "container_id", "state", "exit_code", "started_at", "finished_at", "error"}
    | {"disk_used_bytes"}
)
CONTAINER_REQUIRED = frozenset({"pod_id", "container_id", "state", "exit_code"})
MAX_INT32 = 2**31 - 1
STATES = frozenset(CONTAINER_STATES)


class NotLeanError(Exception):
    """The body is not one the lean path serves; the full path answers it."""


@dataclass(frozen=True)
class Beat:
    seq: int
    sent_at: datetime
    gpus: list[tuple[int, int | None, float | None, float | None, float | None]]
    system: tuple[float | None, int | None, float | None, float | None]  # cpu, ram, disk, load
    containers: list[dict[str, Any]]  # as the SQL compares them (jsonb_to_recordset)
    volumes: list[dict[str, Any]]


def _reject_constant(name: str) -> Any:
    raise NotLeanError(f"JSON constant {name}")  # DRF's JSON parser refuses NaN and Infinity


def _int(value: Any, low: int, high: int, *, null: bool = False) -> Any:
    if value is None and null:
        return None
    if type(value) is not int or not low <= value <= high:
        raise NotLeanError("integer")
    return value


def _float(value: Any, low: float, high: float, *, null: bool = False) -> float | None:
    if value is None and null:
        return None
    if type(value) not in (int, float) or not low <= value <= high or not math.isfinite(value):
        raise NotLeanError("number")
    return float(value)


def _text(value: Any, max_length: int, *, blank: bool, null: bool = False) -> str | None:
    # Only text DRF's CharField keeps as it is: no surrounding whitespace to trim, no NUL, no
    # lone surrogate; anything else is the full path's to judge.
    if value is None and null:
        return None
    if type(value) is not str or len(value) > max_length or value != value.strip():
        raise NotLeanError("text")
    if (not value and not blank) or "\x00" in value:
        raise NotLeanError("text")
    try:
        value.encode()
    except UnicodeEncodeError as exc:
        raise NotLeanError("text") from exc
    return value


def _moment(value: Any, *, null: bool) -> Any:
    if value is None and null:
        return None
    if type(value) is not str:
        raise NotLeanError("datetime")
    try:
        parsed = parse_datetime(value)
    except ValueError as exc:
        raise NotLeanError("datetime") from exc
    if parsed is None or parsed.tzinfo is None:
        raise NotLeanError("datetime")
    return parsed


def _object(value: Any, keys: frozenset[str], required: frozenset[str]) -> dict[str, Any]:
    if type(value) is not dict or not keys.issuperset(value) or not required.issubset(value):
        raise NotLeanError("object")
    return value


def _list(value: Any, max_length: int) -> list[Any]:
    if type(value) is not list or len(value) > max_length:
        raise NotLeanError("list")
    return value


def parse_beat(raw: bytes) -> Beat:
    """The heartbeat in `raw`, validated as HeartbeatInput would; NotLeanError otherwise."""
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except ValueError as exc:
        raise NotLeanError("not JSON") from exc
    body = _object(body, TOP_KEYS, frozenset({"gpus", "system", "containers", "seq", "sent_at"}))
    seq = _int(body["seq"], 1, 2**63 - 1)
    sent_at = _moment(body["sent_at"], null=False)
    gpus = []
    for g in _list(body["gpus"], 64):
        g = _object(g, GPU_KEYS, GPU_REQUIRED)
        if "uuid" in g:
            _text(g["uuid"], 64, blank=False)
        if "memory_total_mb" in g:
            _int(g["memory_total_mb"], 0, MAX_INT32, null=True)
        index = _int(g["index"], 0, 255)
        gpus.append(
            (
                index,
                _int(g["memory_used_mb"], 0, MAX_INT32, null=True),
                _float(g["utilization_pct"], 0, 100, null=True),
                _float(g["temperature_c"], -50, 200, null=True),
                _float(g["power_w"], 0, 10000, null=True),
            )
        )
    s = _object(body["system"], SYSTEM_KEYS, SYSTEM_KEYS)
    system = (
        _float(s["cpu_percent"], 0, 100 * 4096, null=True),
        _int(s["ram_used_mb"], 0, 2**40, null=True),
        _float(s["disk_free_gb"], 0, 1e9, null=True),
        _float(s["load_avg"], 0, 1e6, null=True),
    )
    containers = []
    for c in _list(body["containers"], 1024):
        c = _object(c, CONTAINER_KEYS, CONTAINER_REQUIRED)
        pod_id = c["pod_id"]
        if type(pod_id) is not str:
            raise NotLeanError("pod_id")
        try:
            pod = uuid.UUID(pod_id)
        except ValueError as exc:
            raise NotLeanError("pod_id") from exc
        if c["state"] not in STATES:
            raise NotLeanError("state")
        started = _moment(c.get("started_at"), null=True)
        finished = _moment(c.get("finished_at"), null=True)
        disk = _int(c.get("disk_used_bytes"), 0, 2**62, null=True)
        containers.append(
            {
                "pod_id": str(pod),
                "container_id": _text(c["container_id"], 80, blank=True, null=True) or "",
                "state": c["state"],
                "exit_code": _int(c["exit_code"], -(2**31), MAX_INT32, null=True),
                "started_at": started.isoformat() if started else None,
                "finished_at": finished.isoformat() if finished else None,
                "error": _text(c.get("error", ""), 2000, blank=True) or "",
                "disk_used_bytes": disk,
            }
        )
    volumes = []
    for v in _list(body.get("volumes", []), 4096):
        v = _object(v, frozenset({"name", "used_bytes"}), frozenset({"name", "used_bytes"}))
        volumes.append(
            {
                "name": _text(v["name"], 128, blank=False),
                "used_bytes": _int(v["used_bytes"], 0, 2**62),
            }
        )
    return Beat(seq, sent_at, gpus, system, containers, volumes)


# One statement per beat. `me` finds the node by its token digest; `changed` is any reported
# container that differs from what is recorded (as heartbeats._record_containers compares);
# `beat` claims the sequence number and records the beat only when the node is live, nothing
# changed and `seq` is above the last accepted; `sent` delivers the pending commands of a
# recorded beat. The answer is one row; `interval` is NULL when nothing was written.
BEAT_SQL = f"""
WITH me AS (
    SELECT id FROM nodes_node WHERE token_digest = %(digest)s
), reported AS (
    SELECT * FROM jsonb_to_recordset(%(containers)s::jsonb) AS r(
        pod_id uuid, container_id text, state text, exit_code integer,
        started_at timestamptz, finished_at timestamptz, error text, disk_used_bytes bigint)
), changed AS (
    SELECT 1 FROM nodes_workload w JOIN me ON w.node_id = me.id
    JOIN reported r ON r.pod_id = w.pod_id
    WHERE w.container_id IS DISTINCT FROM r.container_id
       OR w.state IS DISTINCT FROM r.state
       OR w.exit_code IS DISTINCT FROM r.exit_code
       OR w.started_at IS DISTINCT FROM r.started_at
       OR w.finished_at IS DISTINCT FROM r.finished_at
       OR w.error IS DISTINCT FROM r.error
       OR (r.disk_used_bytes IS NOT NULL AND w.disk_used_bytes IS DISTINCT FROM r.disk_used_bytes)
    LIMIT 1
), beat AS (
    UPDATE nodes_node n SET
        last_heartbeat_seq = %(seq)s,
        last_heartbeat_at = %(now)s,
        cpu_percent = %(cpu)s,
        ram_used_mb = %(ram)s,
        load_avg = %(load)s,
        disk_free_gb = COALESCE(NULLIF(%(disk)s::double precision, 0), n.disk_free_gb)
    FROM me
    WHERE n.id = me.id
      AND n.status IN ('{NodeStatus.ONLINE}', '{NodeStatus.DRAINING}')
      AND (n.last_heartbeat_seq IS NULL OR n.last_heartbeat_seq < %(seq)s)
      AND NOT EXISTS (SELECT 1 FROM changed)
    RETURNING n.id, n.heartbeat_interval
), sent AS (
    UPDATE nodes_nodecommand c SET
        status = '{CommandStatus.DELIVERED}', delivered_at = %(now)s,
        deliveries = c.deliveries + 1
    FROM beat
    WHERE c.node_id = beat.id
      AND c.status IN ('{CommandStatus.QUEUED}', '{CommandStatus.DELIVERED}')
    RETURNING c.id, c.type, c.payload, c.created_at
)
SELECT
    (SELECT id FROM beat),
    (SELECT heartbeat_interval FROM beat),
    (SELECT json_agg(json_build_array(id, type, payload) ORDER BY created_at, id) FROM sent),
    (SELECT json_agg(w.pod_id ORDER BY w.created_at, w.id)
       FROM nodes_workload w JOIN beat ON w.node_id = beat.id WHERE w.wanted)
"""  # noqa: S608 - the only interpolations are our own status constants


def beat_params(*, digest: str, beat: Beat, now: datetime) -> dict[str, Any]:
    cpu, ram, disk, load = beat.system
    return {
        "digest": digest,
        "containers": json.dumps(beat.containers),
        "seq": beat.seq,
        "now": now,
        "cpu": cpu,
        "ram": ram,
        "disk": disk,
        "load": load,
    }


def answer_body(*, interval: int, commands: Any, wanted: Any) -> bytes:
    """The heartbeat answer, as the DRF view renders it (compact JSON, UTF-8)."""
    return json.dumps(
        {
            "heartbeat_interval": interval,
            "commands": [
                {"id": str(command_id), "type": type_, "payload": payload}
                for command_id, type_, payload in commands or ()
            ],
            "wanted_pod_ids": [str(pod_id) for pod_id in wanted or ()],
        },
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()
