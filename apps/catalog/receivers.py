"""The catalog follows its replicas' pods: a pod that starts, stops or fails moves its replica
(and so its deployment) at once, without waiting for the periodic sync."""

from typing import Any

from django.db import transaction
from django.dispatch import receiver

from apps.catalog.services.provisioning import replica_sync_pod
from apps.nodes import signals


def _sync_later(pod_id: Any) -> None:
    transaction.on_commit(lambda: replica_sync_pod(pod_id=pod_id))


@receiver(signals.workload_observed)
def _workload_observed(sender: Any, workload: Any, previous_state: str, **kwargs: Any) -> None:
    _sync_later(workload.pod_id)


@receiver(signals.command_finished)
def _command_finished(sender: Any, command: Any, **kwargs: Any) -> None:
    pod_id = command.payload.get("pod_id")
    if pod_id:
        _sync_later(pod_id)
