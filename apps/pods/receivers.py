"""The pods app listens to what the nodes app learns from agents."""

from typing import Any

from django.dispatch import receiver

from apps.nodes import signals
from apps.pods import services, volumes


@receiver(signals.workload_observed)
def _workload_observed(sender: Any, workload: Any, previous_state: str, **kwargs: Any) -> None:
    services.pod_observe_workload(workload=workload)


@receiver(signals.command_finished)
def _command_finished(sender: Any, command: Any, **kwargs: Any) -> None:
    services.pod_observe_command(command=command)
    volumes.volume_observe_command(command=command)


@receiver(signals.volumes_measured)
def _volumes_measured(sender: Any, node: Any, volumes: list, at: Any, **kwargs: Any) -> None:
    services.volumes_observe_usage(node=node, volumes_measured=volumes, at=at)


@receiver(signals.node_went_offline)
def _node_went_offline(
    sender: Any, node: Any, last_heartbeat_at: Any, reason: str, **kwargs: Any
) -> None:
    services.pods_on_offline_node(node=node, last_heartbeat_at=last_heartbeat_at, reason=reason)
