"""The pod state machine (DESIGN.md §4). Every move goes through `pod_transition`."""

from django.utils import timezone

from apps.pods.models import Pod, PodEvent, PodStatus

S = PodStatus
FINAL = {S.STOPPED, S.FAILED, S.INTERRUPTED, S.TERMINATED}
ALLOWED: dict[str, set[str]] = {
    S.PENDING: {S.PROVISIONING, S.SCHEDULED, S.STOPPED, S.FAILED},
    # PROVISIONING → STARTING/RUNNING: on a container cloud the rented instance is the pod.
    S.PROVISIONING: {S.SCHEDULED, S.STARTING, S.RUNNING, S.PENDING, S.STOPPED, S.FAILED},
    S.SCHEDULED: {S.STARTING, S.RUNNING, S.STOPPING, S.PENDING, S.STOPPED, S.FAILED},
    S.STARTING: {S.RUNNING, S.STOPPING, S.PENDING, S.STOPPED, S.FAILED, S.INTERRUPTED},
    S.RUNNING: {S.STOPPING, S.PENDING, S.STOPPED, S.FAILED, S.INTERRUPTED},
    S.STOPPING: {S.STOPPED, S.FAILED},
    S.STOPPED: {S.TERMINATED, S.PENDING},  # PENDING: resumed by its owner
    S.FAILED: {S.TERMINATED},
    # restart: on-interruption places it again
    S.INTERRUPTED: {S.PENDING, S.TERMINATED},
    S.TERMINATED: set(),
}


class IllegalPodTransitionError(Exception):
    pass


def pod_transition_event(*, pod: Pod, to: str, reason: str) -> PodEvent:
    """Check and apply the move on the object, and return its (unsaved) event: for callers that
    save many pods and events in bulk. The caller holds the pods' row locks."""
    if to not in ALLOWED[pod.status]:
        raise IllegalPodTransitionError(f"pod {pod.pk}: {pod.status} → {to} is not allowed")
    event = PodEvent(pod=pod, from_status=pod.status, to_status=to, reason=reason[:500])
    pod.status = to
    pod.status_reason = reason[:500]
    if to in FINAL and pod.stopped_at is None:
        pod.stopped_at = timezone.now()
    return event


def pod_transition(*, pod: Pod, to: str, reason: str, extra_fields: tuple[str, ...] = ()) -> None:
    """Move `pod` to `to` (the caller holds its row lock) and record the event."""
    pod_transition_event(pod=pod, to=to, reason=reason).save()
    pod.save(update_fields=["status", "status_reason", "stopped_at", "updated_at", *extra_fields])
