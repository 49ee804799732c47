"""Liveness in stages, judged without a database (DESIGN.md §4).

A node that misses beats becomes SUSPECT (an event, nothing else); it is condemned (OFFLINE:
its pods are rescheduled or failed) only after a grace measured from its last beat. A fleet-wide
silence is more likely our outage than theirs, so when too much of the fleet is silent at once,
or the sweep itself did not run for a while (the control plane was down or restarted), a guard
holds: nobody is condemned, operators are alerted once, and when beats resume every node's grace
starts again from that moment.

`liveness_judge` is a pure function of the clock, the silent nodes and the guard's state, so the
sweep (`apps.nodes.sweep`) and a simulation of a large fleet drive exactly the same rules.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings

from apps.nodes.models import NodeStatus

# Statuses the sweep watches: a node in one of them is expected to heartbeat.
WATCHED_STATUSES = (
    NodeStatus.REGISTERING,
    NodeStatus.ONLINE,
    NodeStatus.DRAINING,
    NodeStatus.SUSPECT,
)


class AlertKind:
    MASS_SILENCE = "mass_silence"
    SWEEP_GAP = "sweep_gap"


@dataclass(frozen=True)
class LivenessPolicy:
    """The operator's knobs (settings `NODE_*`, see docs/agent-protocol.md)."""

    missed_beats_suspect: int = 3
    grace: timedelta = timedelta(minutes=5)
    mass_silence_percent: int = 30
    mass_silence_min_nodes: int = 3
    sweep_gap: timedelta = timedelta(seconds=60)

    @classmethod
    def from_settings(cls) -> "LivenessPolicy":
        return cls(
            missed_beats_suspect=settings.NODE_MISSED_HEARTBEATS_SUSPECT,
            grace=timedelta(seconds=settings.NODE_OFFLINE_GRACE_S),
            mass_silence_percent=settings.NODE_MASS_SILENCE_PERCENT,
            mass_silence_min_nodes=settings.NODE_MASS_SILENCE_MIN_NODES,
            sweep_gap=timedelta(seconds=settings.NODE_LIVENESS_SWEEP_GAP_S),
        )

    def suspect_after(self, heartbeat_interval: int) -> timedelta:
        return timedelta(seconds=heartbeat_interval * self.missed_beats_suspect)


@dataclass(frozen=True)
class SilentNode:
    """A watched node whose last sign of life (`last_seen`: its last heartbeat, or its
    registration if it never beat) is older than `now - suspect_after(interval)`."""

    id: Any
    status: str
    last_seen: datetime
    heartbeat_interval: int


@dataclass(frozen=True)
class GuardState:
    """What the judge remembers between sweeps (stored in `LivenessState`)."""

    last_sweep_at: datetime | None = None
    # No node is condemned before max(its last beat, grace_epoch) + grace.
    grace_epoch: datetime | None = None
    guard_since: datetime | None = None
    guard_reason: str = ""
    # An operator declared the current silence real: the mass-silence trigger is ignored until
    # the silent share falls under the threshold again.
    operator_release: bool = False

    @property
    def guarding(self) -> bool:
        return self.guard_since is not None


@dataclass(frozen=True)
class Alert:
    kind: str
    message: str
    silent_nodes: int
    fleet_nodes: int


@dataclass(frozen=True)
class Judgement:
    state: GuardState
    suspect: list[SilentNode] = field(default_factory=list)
    offline: list[SilentNode] = field(default_factory=list)
    alert: Alert | None = None  # the guard engaged in this sweep
    released: bool = False  # the guard let go in this sweep


def offline_due(*, node: SilentNode, state: GuardState, policy: LivenessPolicy) -> datetime:
    """When `node` may be condemned if it stays silent and the guard stays down."""
    start = node.last_seen
    if state.grace_epoch is not None and state.grace_epoch > start:
        start = state.grace_epoch
    return start + policy.grace


def liveness_judge(
    *,
    now: datetime,
    fleet_size: int,
    silent: Sequence[SilentNode],
    state: GuardState,
    policy: LivenessPolicy,
) -> Judgement:
    """Decide one sweep: who becomes SUSPECT, who goes OFFLINE, whether the guard engages or
    lets go. `fleet_size` counts every watched node; `silent` those past their suspect point."""
    gap = now - state.last_sweep_at if state.last_sweep_at is not None else None
    share_percent = 100 * len(silent) / fleet_size if fleet_size else 0.0
    mass = len(silent) >= policy.mass_silence_min_nodes and (
        share_percent > policy.mass_silence_percent
    )
    operator_release = state.operator_release and mass

    trigger: tuple[str, str] | None = None
    if gap is not None and gap > policy.sweep_gap:
        trigger = (
            AlertKind.SWEEP_GAP,
            f"the liveness sweep did not run for {gap.total_seconds():.0f} s (control plane "
            f"down or restarted); {len(silent)} of {fleet_size} nodes silent",
        )
    elif mass and not operator_release:
        trigger = (
            AlertKind.MASS_SILENCE,
            f"{len(silent)} of {fleet_size} nodes ({share_percent:.0f}%) silent at once "
            f"(threshold {policy.mass_silence_percent}%)",
        )

    next_state = replace(state, last_sweep_at=now, operator_release=operator_release)
    alert = None
    released = False
    if trigger is not None:
        if not state.guarding:
            alert = Alert(
                kind=trigger[0],
                message=trigger[1],
                silent_nodes=len(silent),
                fleet_nodes=fleet_size,
            )
            next_state = replace(next_state, guard_since=now, guard_reason=trigger[1])
    elif state.guarding:
        # Beats have resumed (or an operator released the guard): let go. After our own outage
        # every node gets its grace again from now; after an operator's release the silence is
        # real and nodes are judged from their last beat.
        released = True
        next_state = replace(
            next_state,
            guard_since=None,
            guard_reason="",
            grace_epoch=state.grace_epoch if operator_release else now,
        )

    suspect = [n for n in silent if n.status != NodeStatus.SUSPECT]
    offline: list[SilentNode] = []
    if not next_state.guarding:
        offline = [n for n in silent if offline_due(node=n, state=next_state, policy=policy) <= now]
    return Judgement(
        state=next_state, suspect=suspect, offline=offline, alert=alert, released=released
    )
