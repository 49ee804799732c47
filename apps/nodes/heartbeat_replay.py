"""Replay protection for heartbeats. From agent 0.2.0 on, every heartbeat carries `seq` (a
number that only grows, per node token) and `sent_at` (the agent's clock). The server refuses
one whose `sent_at` is more than NODE_HEARTBEAT_REPLAY_WINDOW_S away from its own clock, or
whose `seq` is not above the last one it accepted: a captured heartbeat is useless a moment
later. Nodes registered by an older agent (which sends neither) are accepted without the check
until they re-register with a current agent; docs/agent-protocol.md says why."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q

from apps.nodes.models import Node

REPLAY_PROTECTED_SINCE = (0, 2, 0)


@dataclass(frozen=True)
class HeartbeatRefusedError(Exception):
    """Refused as stale or replayed; `status` is the HTTP status to answer with."""

    status: int
    code: str
    reason: str
    last_seq: int | None = None

    def __str__(self) -> str:
        return self.reason


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def replay_protected(node: Node) -> bool:
    """Whether the node's agent (as it registered) sends `seq` and `sent_at`."""
    return bool(node.agent_version) and _version(node.agent_version) >= REPLAY_PROTECTED_SINCE


def heartbeat_claim_sequence(
    *, node: Node, seq: int | None, sent_at: datetime | None, now: datetime
) -> None:
    """Accept this heartbeat's sequence number, or raise `HeartbeatRefusedError`. The claim is
    one conditional UPDATE, so two copies of one heartbeat racing each other cannot both pass."""
    if seq is None or sent_at is None:
        if seq is None and sent_at is None and not replay_protected(node):
            return
        raise HeartbeatRefusedError(
            400,
            "heartbeat_unprotected",
            f"seq and sent_at are required (agent {node.agent_version} registered this node; "
            "agents from 0.2.0 on send both)",
        )
    window = timedelta(seconds=settings.NODE_HEARTBEAT_REPLAY_WINDOW_S)
    skew = (now - sent_at).total_seconds()
    if abs(skew) > window.total_seconds():
        raise HeartbeatRefusedError(
            400,
            "heartbeat_stale",
            f"sent_at is {abs(skew):.0f} s {'behind' if skew > 0 else 'ahead of'} the server's "
            f"clock (window {window.total_seconds():.0f} s): a stale or replayed heartbeat, or "
            "this host's clock is off (sync it with NTP)",
        )
    claimed = (
        Node.objects.filter(pk=node.pk)
        .filter(Q(last_heartbeat_seq__isnull=True) | Q(last_heartbeat_seq__lt=seq))
        .update(last_heartbeat_seq=seq)
    )
    if not claimed:
        last = Node.objects.filter(pk=node.pk).values_list("last_heartbeat_seq", flat=True).first()
        raise HeartbeatRefusedError(
            409,
            "heartbeat_replayed",
            f"seq {seq} is not above the last accepted ({last}): a replayed heartbeat",
            last,
        )
