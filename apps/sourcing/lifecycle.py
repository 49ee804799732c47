"""The provisioned-instance state machine (DESIGN.md §4). Every move goes through
`instance_transition`."""

from apps.sourcing.models import InstanceEvent, InstanceStatus, ProvisionedInstance

S = InstanceStatus
_LIVE_TO_END = {S.TERMINATING, S.FAILED}
ALLOWED: dict[str, set[str]] = {
    S.PENDING: {S.CREATING, S.FAILED, S.TERMINATED},
    S.CREATING: {
        S.STARTING,
        S.INSTALLING,
        S.WAITING_REGISTRATION,
        S.ACTIVE,
        *_LIVE_TO_END,
        S.TERMINATED,
    },
    S.STARTING: {S.INSTALLING, S.WAITING_REGISTRATION, S.ACTIVE, *_LIVE_TO_END, S.TERMINATED},
    S.INSTALLING: {S.WAITING_REGISTRATION, S.ACTIVE, *_LIVE_TO_END, S.TERMINATED},
    S.WAITING_REGISTRATION: {S.ACTIVE, *_LIVE_TO_END, S.TERMINATED},
    S.ACTIVE: {*_LIVE_TO_END, S.TERMINATED},
    S.TERMINATING: {S.TERMINATED, S.FAILED},
    S.FAILED: {S.TERMINATED},
    S.TERMINATED: set(),
}


class IllegalInstanceTransitionError(Exception):
    pass


def instance_transition(
    *, instance: ProvisionedInstance, to: str, reason: str, extra_fields: tuple[str, ...] = ()
) -> None:
    """Move `instance` to `to` (the caller holds its row lock) and record the event."""
    if to not in ALLOWED[instance.status]:
        raise IllegalInstanceTransitionError(
            f"instance {instance.pk}: {instance.status} → {to} is not allowed"
        )
    InstanceEvent.objects.create(
        instance=instance, from_status=instance.status, to_status=to, reason=reason[:500]
    )
    instance.status = to
    instance.status_reason = reason[:500]
    instance.save(update_fields=["status", "status_reason", "updated_at", *extra_fields])
