"""The pods app listens to what the nodes app learns from agents."""

from typing import Any

from django.dispatch import receiver

from apps.nodes import signals
from apps.pods import services


@receiver(signals.workload_observed)
def _workload_observed(sender: Any, workload: Any, previous_state: str, **kwargs: Any) -> None:
    services.pod_observe_workload(workload=workload)


@receiver(signals.command_finished)
def _command_finished(sender: Any, command: Any, **kwargs: Any) -> None:
    services.pod_observe_command(command=command)


@receiver(signals.node_went_offline)
def _node_went_offline(
    sender: Any, node: Any, last_heartbeat_at: Any, reason: str, **kwargs: Any
) -> None:
    services.pods_on_offline_node(node=node, last_heartbeat_at=last_heartbeat_at, reason=reason)
