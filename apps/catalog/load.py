"""Outstanding requests per deployment, summed over every web process (issue 14).

Each web process publishes what it has in flight, per replica, and how many requests it holds
per deployment waiting for a replica, as one Redis hash of its own (`gco:load:<process>`) that
expires LOAD_TTL_S after its last refresh; the sorted set `gco:load:procs` lists the processes
scored by their last write. A reader (the autoscaler, in a worker) sums the hashes of the
processes written within LOAD_TTL_S, so a process that dies stops counting within LOAD_TTL_S
instead of leaking its counts forever.

The queue of held requests is admitted through one Redis counter per deployment
(`gco:queue:<deployment>`, INCR/DECR), so `max_queue` holds across processes.

Without REDIS_URL (the embedded default: one process) both live in this module's memory.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import redis
from django.conf import settings
from django.utils import timezone

PROCS_KEY = "gco:load:procs"
LOAD_TTL_S = 5
QUEUE_KEY = "gco:queue:{}"


def proc_key(process_id: str) -> str:
    return f"gco:load:{process_id}"


def month_key(key_id: uuid.UUID | str, when: datetime | None = None) -> str:
    """The Redis counter of a deployment key's tokens in a calendar month (UTC)."""
    when = when or timezone.now()
    return f"ktok:{key_id}:{when:%Y%m}"


def keys_tokens_this_month(key_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    """Tokens each key has used this month (as the proxy counted them)."""
    if not key_ids:
        return {}
    client = sync_client()
    if client is None:
        return dict.fromkeys(key_ids, 0)
    values = client.mget([month_key(k) for k in key_ids])
    return {k: int(v or 0) for k, v in zip(key_ids, values, strict=True)}


def queue_key(deployment_id: uuid.UUID | str) -> str:
    return QUEUE_KEY.format(deployment_id)


@dataclass
class LoadSnapshot:
    """Requests in flight per replica and held per deployment, over every live process."""

    in_flight: dict[int, int] = field(default_factory=dict)
    held: dict[str, int] = field(default_factory=dict)

    def replica(self, replica_id: int) -> int:
        return self.in_flight.get(replica_id, 0)

    def held_for(self, deployment_id: uuid.UUID | str) -> int:
        return self.held.get(str(deployment_id), 0)


# The embedded default's store: one process, no Redis.
_local_lock = threading.Lock()
_local_published: dict[str, dict[str, int]] = {}
_local_queue: dict[str, int] = {}

_client: Any = None
_client_lock = threading.Lock()


def sync_client() -> Any:
    """A process-wide sync Redis client (None without REDIS_URL)."""
    global _client
    if not settings.REDIS_URL:
        return None
    with _client_lock:
        if _client is None:
            _client = redis.Redis.from_url(
                settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2
            )
        return _client


def fields_of(in_flight: Mapping[int, int], held: Mapping[str, int]) -> dict[str, int]:
    """The hash a process publishes: `r:<replica>` in flight, `h:<deployment>` held."""
    out = {f"r:{rid}": n for rid, n in in_flight.items() if n > 0}
    out.update({f"h:{dep}": n for dep, n in held.items() if n > 0})
    return out


def local_publish(process_id: str, fields: dict[str, int]) -> None:
    with _local_lock:
        if fields:
            _local_published[process_id] = dict(fields)
        else:
            _local_published.pop(process_id, None)


def _add(snapshot: LoadSnapshot, fields: Mapping[Any, Any]) -> None:
    for raw_name, raw_value in fields.items():
        name = raw_name.decode() if isinstance(raw_name, bytes) else str(raw_name)
        value = int(raw_value)
        kind, _, ident = name.partition(":")
        if kind == "r":
            rid = int(ident)
            snapshot.in_flight[rid] = snapshot.in_flight.get(rid, 0) + value
        elif kind == "h":
            snapshot.held[ident] = snapshot.held.get(ident, 0) + value


def load_snapshot() -> LoadSnapshot:
    """The sum of what every live web process published."""
    snapshot = LoadSnapshot()
    client = sync_client()
    if client is None:
        with _local_lock:
            for fields in _local_published.values():
                _add(snapshot, fields)
        return snapshot
    # Members are scored by their last write: one silent for LOAD_TTL_S has stopped (and its
    # hash has expired). Nothing live is ever removed by a reader, whatever the interleaving.
    now = time.time()
    client.zremrangebyscore(PROCS_KEY, "-inf", now - LOAD_TTL_S)
    members = [m.decode() for m in client.zrangebyscore(PROCS_KEY, now - LOAD_TTL_S, "+inf")]
    if not members:
        return snapshot
    pipe = client.pipeline(transaction=False)
    for member in members:
        pipe.hgetall(proc_key(member))
    for fields in pipe.execute():
        _add(snapshot, fields)
    return snapshot


def queue_length(deployment_id: uuid.UUID | str) -> int:
    client = sync_client()
    if client is None:
        with _local_lock:
            return _local_queue.get(str(deployment_id), 0)
    value = client.get(queue_key(deployment_id))
    return max(0, int(value or 0))


def local_queue_add(deployment_id: uuid.UUID | str, delta: int) -> int:
    """Embedded default: the queue counter in memory; the new length."""
    with _local_lock:
        key = str(deployment_id)
        value = max(0, _local_queue.get(key, 0) + delta)
        _local_queue[key] = value
        return value
