"""The webhooks app listens to what the other apps record: the status events of pods,
deployments and payouts (their `*Event` rows, saved by each app's one transition function), and
the nodes app's `node_went_offline` signal. Events of a transaction that rolls back are rolled
back with it; deliveries start after it commits."""

from typing import Any

from django.db.models.signals import post_save
from django.dispatch import receiver

from apps.catalog.models import DeploymentEvent
from apps.nodes import signals as node_signals
from apps.pods.models import PodEvent
from apps.providers.models import PayoutEvent
from apps.webhooks import notify


@receiver(post_save, sender=PodEvent)
def _pod_event(sender: Any, instance: PodEvent, created: bool, **kwargs: Any) -> None:
    if created:
        notify.pod_status_changed(instance)


@receiver(post_save, sender=DeploymentEvent)
def _deployment_event(sender: Any, instance: DeploymentEvent, created: bool, **kwargs: Any) -> None:
    if created:
        notify.deployment_status_changed(instance)


@receiver(post_save, sender=PayoutEvent)
def _payout_event(sender: Any, instance: PayoutEvent, created: bool, **kwargs: Any) -> None:
    if created:
        notify.payout_status_changed(instance)


@receiver(node_signals.node_went_offline)
def _node_went_offline(
    sender: Any, node: Any, last_heartbeat_at: Any, reason: str, **kwargs: Any
) -> None:
    notify.node_went_offline(node=node, last_heartbeat_at=last_heartbeat_at, reason=reason)
