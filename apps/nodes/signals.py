"""What other apps (pods, billing) listen to. Sent after the database transaction commits."""

from typing import Any

from django.dispatch import Signal

# sender=Node; kwargs: node, last_heartbeat_at, reason
node_went_offline = Signal()
# sender=Workload; kwargs: workload, previous_state
workload_observed = Signal()
# sender=NodeCommand; kwargs: command
command_finished = Signal()
# sender=Node; kwargs: node, grant (the RegistrationGrant it registered with)
node_registered = Signal()
# sender=Node; kwargs: node, volumes ([{"name", "used_bytes"}] measured by its agent), at
volumes_measured = Signal()


def announce_observed(changed: list[tuple[Any, str]]) -> None:
    """`workload_observed` for each (workload, previous state) whose observation was just saved."""
    for workload, previous in changed:
        workload_observed.send(sender=type(workload), workload=workload, previous_state=previous)
