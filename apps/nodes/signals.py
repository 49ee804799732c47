"""What other apps (pods, billing) listen to. Sent after the database transaction commits."""

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
