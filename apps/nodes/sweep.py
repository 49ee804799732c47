"""The liveness sweep (every 10 s, `nodes.mark_silent_offline`): applies `liveness_judge` to the
database. Silent nodes become SUSPECT, nodes past their grace go OFFLINE (their pods are billed up
to the last heartbeat, then rescheduled or failed by the pods app), and the mass-silence guard
raises one alert per episode (admin banner, mail to staff, `FleetAlert` rows as the metric)."""

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.nodes import signals
from apps.nodes.lifecycle import node_transition
from apps.nodes.liveness import (
    WATCHED_STATUSES,
    Alert,
    GuardState,
    Judgement,
    LivenessPolicy,
    SilentNode,
    liveness_judge,
    offline_due,
)
from apps.nodes.locks import lock_liveness_state, lock_node
from apps.nodes.models import FleetAlert, LivenessState, Node, NodeStatus

logger = logging.getLogger(__name__)

GUARD_FIELDS = ("last_sweep_at", "grace_epoch", "guard_since", "guard_reason", "operator_release")


@dataclass
class SweepResult:
    suspect: list[uuid.UUID] = field(default_factory=list)
    offline: list[uuid.UUID] = field(default_factory=list)
    alert: FleetAlert | None = None
    guarding: bool = False


def _silent_nodes(*, now: datetime, policy: LivenessPolicy) -> tuple[int, list[SilentNode]]:
    """The watched fleet's size and its silent members, in two indexed queries."""
    watched = Node.objects.filter(status__in=WATCHED_STATUSES)
    fleet_size = watched.count()
    shortest = watched.order_by("heartbeat_interval").values_list("heartbeat_interval", flat=True)
    if not fleet_size:
        return 0, []
    horizon = now - policy.suspect_after(shortest[0])
    rows = watched.filter(
        Q(last_heartbeat_at__lt=horizon)
        | Q(last_heartbeat_at__isnull=True, registered_at__lt=horizon)
    ).values_list("pk", "status", "last_heartbeat_at", "registered_at", "heartbeat_interval")
    silent = []
    for pk, status, last_beat, registered_at, interval in rows:
        seen = last_beat or registered_at
        if now - seen > policy.suspect_after(interval):
            silent.append(SilentNode(pk, status, seen, interval))
    return fleet_size, silent


def _state_of(row: LivenessState) -> GuardState:
    return GuardState(**{name: getattr(row, name) for name in GUARD_FIELDS})


@transaction.atomic
def _judge(*, now: datetime, policy: LivenessPolicy) -> tuple[Judgement, FleetAlert | None]:
    row = lock_liveness_state()
    fleet_size, silent = _silent_nodes(now=now, policy=policy)
    judgement = liveness_judge(
        now=now, fleet_size=fleet_size, silent=silent, state=_state_of(row), policy=policy
    )
    for name in GUARD_FIELDS:
        setattr(row, name, getattr(judgement.state, name))
    row.save(update_fields=list(GUARD_FIELDS))
    alert = None
    if judgement.alert is not None:
        alert = _raise_alert(judgement.alert, now=now)
    if judgement.released:
        FleetAlert.objects.filter(ended_at__isnull=True).update(ended_at=now)
        logger.warning("liveness guard released; every silent node's grace restarts now")
    return judgement, alert


def _raise_alert(alert: Alert, *, now: datetime) -> FleetAlert:
    row = FleetAlert.objects.create(
        kind=alert.kind,
        message=alert.message[:255],
        silent_nodes=alert.silent_nodes,
        fleet_nodes=alert.fleet_nodes,
        started_at=now,
    )
    logger.error("liveness guard engaged, no node will be marked offline: %s", alert.message)
    transaction.on_commit(partial(_mail_staff, alert))
    return row


def _mail_staff(alert: Alert) -> None:
    recipients = list(
        get_user_model()
        .objects.filter(is_staff=True, is_active=True)
        .exclude(email="")
        .values_list("email", flat=True)
    )
    if not recipients:
        return
    body = (
        f"{alert.message}.\n\nNo node is being marked offline and no pod is failed or "
        "rescheduled while this lasts. When heartbeats resume, every silent node gets its full "
        "grace again. If the silence is real (the nodes are gone), release the guard from the "
        "admin (Nodes → Liveness guard)."
    )
    send_mail(
        subject="[GPU Cloud] fleet liveness guard engaged",
        message=body,
        from_email=None,
        recipient_list=recipients,
        fail_silently=True,
    )


def _mark_suspect(node: SilentNode, *, now: datetime, policy: LivenessPolicy) -> bool:
    with transaction.atomic():
        locked = lock_node(node.id)
        seen = locked.last_heartbeat_at or locked.registered_at
        if locked.status not in (NodeStatus.REGISTERING, NodeStatus.ONLINE, NodeStatus.DRAINING):
            return False
        silent = now - seen
        if silent <= policy.suspect_after(locked.heartbeat_interval):
            return False  # a heartbeat landed since the sweep's read
        node_transition(
            node=locked,
            to=NodeStatus.SUSPECT,
            reason=f"no heartbeat for {silent.total_seconds():.0f} s "
            f"({policy.missed_beats_suspect} missed intervals of {locked.heartbeat_interval} s); "
            f"offline after {policy.grace.total_seconds():.0f} s of silence",
        )
    return True


def _mark_offline(
    node: SilentNode, *, now: datetime, state: GuardState, policy: LivenessPolicy
) -> bool:
    with transaction.atomic():
        locked = lock_node(node.id)
        if locked.status not in WATCHED_STATUSES:
            return False
        seen = locked.last_heartbeat_at or locked.registered_at
        current = SilentNode(locked.pk, locked.status, seen, locked.heartbeat_interval)
        if offline_due(node=current, state=state, policy=policy) > now:
            return False  # a heartbeat landed since the sweep's read
        silent = (now - seen).total_seconds()
        grace = policy.grace.total_seconds()
        reason = (
            f"no heartbeat for {silent:.0f} s ({silent / locked.heartbeat_interval:.0f} missed "
            f"intervals of {locked.heartbeat_interval} s; grace {grace:.0f} s)"
        )
        node_transition(node=locked, to=NodeStatus.OFFLINE, reason=reason)
        transaction.on_commit(
            partial(
                signals.node_went_offline.send,
                sender=Node,
                node=locked,
                last_heartbeat_at=seen,
                reason=reason,
            )
        )
    return True


def nodes_sweep_liveness(
    *, now: datetime | None = None, policy: LivenessPolicy | None = None
) -> SweepResult:
    """One sweep. Safe to run concurrently: the judgement is taken under the guard's row lock
    and each node is re-checked under its own before it changes."""
    now = now or timezone.now()
    policy = policy or LivenessPolicy.from_settings()
    judgement, alert = _judge(now=now, policy=policy)
    result = SweepResult(alert=alert, guarding=judgement.state.guarding)
    for node in judgement.suspect:
        if _mark_suspect(node, now=now, policy=policy):
            result.suspect.append(node.id)
    for node in judgement.offline:
        if _mark_offline(node, now=now, state=judgement.state, policy=policy):
            result.offline.append(node.id)
    if result.offline:
        logger.warning("marked %d silent node(s) offline: %s", len(result.offline), result.offline)
    return result


def nodes_mark_silent_offline(*, now: datetime | None = None) -> list[uuid.UUID]:
    """The sweep, answering only which nodes it marked OFFLINE."""
    return nodes_sweep_liveness(now=now).offline


@transaction.atomic
def liveness_guard_release(*, reason: str = "released by an operator") -> None:
    """An operator declares the current silence real: the guard lets go at the next sweep and
    silent nodes are judged from their last beat (no fresh grace)."""
    row = lock_liveness_state()
    if row.guard_since is None:
        return
    row.operator_release = True
    row.save(update_fields=["operator_release"])
    logger.warning("liveness guard: %s", reason)
